"""DeepRecon on the held-out ACDC validation patients (never trained on): the issue's benchmarks.

* ``leave-out``: leave-slices-out 3D test, our stand-in for the paper's long-axis check (ACDC has
  no long-axis views). Every other slice of a held-out stack is dropped (20 mm between the kept
  slices); each method reconstructs the reduced stack onto the original slice positions and is
  scored at the dropped positions against those slices' real labels (plain Dice per structure,
  3D over the dropped slices of a stack, then the mean over stacks), DeepRecon's synthetic image
  there by SSIM against the real slice (on the heart-centred crop). DeepRecon gets the reduced
  stack's images and labels (the labels centre the crops and give the centroid motion); the
  label-domain baselines get the same labels.
* ``motion``: motion adaptation on held-out pairs (source = patient p, target = the next
  validation patient): the adapted source's EDV against its own (real labels), its EF against
  the target's and its own; a table and a volume-curve plot.
* ``terms``: what each term of the hybrid inversion gives (every sixth held-out crop, the default
  steps): L2 in the heart ROI alone, then adding local NCC, the domain regulariser, the
  discriminator-feature perceptual term (the shipped objective), and SSIM; Seg's Dice on G(w+*)
  and PSNR/SSIM against the real crops.
* ``speed``: median seconds per stack of ``methods.run('deeprecon')`` with its defaults and the
  peak memory (max RSS of a fresh process per stack) on this machine.

Usage: python Testing/benchmarks/deeprecon_bench.py [leave-out] [motion] [terms] [speed] [--stacks N]
       [--output DIR]   (writes DIR/deeprecon_<part>.json and the volume-curve plot)
The ACDC spacing is ASSUMED (1.5 x 1.5 x 10 mm): figures in mm and ml rest on it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from CardiacReconstructionLib.core.api import RunContext
from CardiacReconstructionLib.core.case import Case
from CardiacReconstructionLib.core.crops import label_centres, sample_crops
from CardiacReconstructionLib.core.geometry import Volume
from CardiacReconstructionLib.core.labels import LV, MYO, RV
from CardiacReconstructionLib.methods import get
from CardiacReconstructionLib.training.cohort import ACDC_SPACING, acdc_image_volume, acdc_split, load_acdc

STRUCTURES = ((LV, "LV"), (MYO, "MYO"), (RV, "RV"))
BASELINES = ("shape_interp", "centroid_shape_interp", "nearest")


def _dice(pred: np.ndarray, truth: np.ndarray) -> dict:
    out = {}
    for label, name in STRUCTURES:
        a, b = pred == label, truth == label
        out[name] = float(2 * (a & b).sum() / (a.sum() + b.sum())) if a.sum() + b.sum() else float("nan")
    return out


def leave_out(keys, threads: int = 1):
    import torch
    from monai.metrics import SSIMMetric

    from CardiacReconstructionLib.core.crops import intensity_window
    from CardiacReconstructionLib.methods import deeprecon as dr

    torch.set_num_threads(threads)
    rows = {m: [] for m in ("deeprecon",) + BASELINES}
    ssim = []
    for key in keys:
        lab, img = load_acdc(None, key), acdc_image_volume(key)
        n = lab.shape[0]
        kept, dropped = np.arange(0, n, 2), np.arange(1, n - 1, 2)  # dropped slices lie between kept ones
        dropped = dropped[lab.array[dropped].reshape(len(dropped), -1).any(1)]
        if len(dropped) == 0 or len(kept) < 3:
            continue
        geo = lab.geometry
        reduced = Case(sax=Volume(lab.array[kept], geo.with_slices(len(kept), 2 * ACDC_SPACING[2]).ijk_to_ras),
                       image=Volume(img.array[kept], geo.with_slices(len(kept), 2 * ACDC_SPACING[2]).ijk_to_ras))
        ctx = RunContext(geo)  # the original slice positions
        truth = lab.array[dropped]
        for name in rows:
            out = get(name).fn(reduced, ctx)
            rows[name].append(_dice(out.labels.array[dropped], truth))
            if name == "deeprecon":
                centres = label_centres(lab.array)[dropped]
                cfg = dr.networks("cpu")[0].config
                real, synth = (sample_crops(intensity_window(v.array)[dropped], centres, ACDC_SPACING[:2], cfg.size,
                                            cfg.pixel_mm, fill=-1.0) for v in (img, out.image))
                ssim.append(float(SSIMMetric(spatial_dims=2, data_range=2.0)(
                    torch.as_tensor(synth)[:, None], torch.as_tensor(real)[:, None]).mean()))
        print(key, {m: round(float(np.nanmean(list(r[-1].values()))), 3) for m, r in rows.items()}, flush=True)
    table = {}
    for name, scores in rows.items():
        per = {s: float(np.nanmean([r[s] for r in scores])) for _, s in STRUCTURES}
        table[name] = {**per, "mean": float(np.mean(list(per.values()))), "stacks": len(scores)}
    table["deeprecon"]["ssim_dropped"] = float(np.mean(ssim)) if ssim else float("nan")
    return table


def _lv_ml(labels: np.ndarray) -> float:
    from CardiacReconstructionLib.methods.motion_adaptation import lv_volume_ml

    return lv_volume_ml(labels, ACDC_SPACING[0], ACDC_SPACING[2])  # ACDC's assumed pixels are square


def motion(keys, output: Path, threads: int = 1):
    import torch
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from CardiacReconstructionLib.methods.motion_adaptation import adapt_motion

    torch.set_num_threads(threads)
    patients = sorted({k.split("_")[0] for k in keys})
    rows, curves = [], []
    for src, tgt in zip(patients, patients[1:] + patients[:1]):
        s_ed, s_es = f"{src}_frame01", f"{src}_frame02"
        t_ed, t_es = f"{tgt}_frame01", f"{tgt}_frame02"
        labels = {k: load_acdc(None, k) for k in (s_ed, s_es, t_ed, t_es)}
        res = adapt_motion(acdc_image_volume(s_ed), [acdc_image_volume(t_ed), acdc_image_volume(t_es)],
                           source_labels=labels[s_ed], target_labels=[labels[t_ed], labels[t_es]])
        own = (_lv_ml(labels[s_ed].array), _lv_ml(labels[s_es].array))
        tv = (_lv_ml(labels[t_ed].array), _lv_ml(labels[t_es].array))
        row = {"source": src, "target": tgt, "source_edv": own[0], "adapted_edv": res.edv,
               "edv_error": res.edv / own[0] - 1, "source_ef": 1 - own[1] / own[0], "target_ef": 1 - tv[1] / tv[0],
               "adapted_ef": res.ef}
        row["closer_to_target"] = abs(row["adapted_ef"] - row["target_ef"]) < abs(row["adapted_ef"] - row["source_ef"])
        rows.append(row)
        curves.append((src, tgt, res.phases, res.lv_ml))
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for src, tgt, ph, lv in curves[:6]:
        ax.plot(ph, lv, marker="o", label=f"{src} with {tgt}'s motion")
    ax.set_xlabel("phase (0 = ED, 1 = target's ES)")
    ax.set_ylabel("LV blood-pool volume (ml)")
    ax.set_title("DeepRecon motion adaptation, held-out ACDC pairs")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(output / "deeprecon_motion_curves.png", dpi=120)
    summary = {"pairs": len(rows), "edv_within_10pct": int(sum(abs(r["edv_error"]) <= 0.10 for r in rows)),
               "median_abs_edv_error": float(np.median([abs(r["edv_error"]) for r in rows])),
               "ef_closer_to_target": int(sum(r["closer_to_target"] for r in rows)),
               "median_abs_ef_error_to_target": float(np.median([abs(r["adapted_ef"] - r["target_ef"]) for r in rows]))}
    return {"rows": rows, "summary": summary}


def terms():
    import torch
    from dataclasses import replace

    from CardiacReconstructionLib.methods import deeprecon as dr
    from CardiacReconstructionLib.networks.inversion import InversionWeights, hybrid_invert
    from CardiacReconstructionLib.training import deeprecon as T
    from CardiacReconstructionLib.training.deeprecon_data import slice_set

    torch.set_num_threads(1)
    G, D, E, seg = dr.networks("cpu")
    val = slice_set("val", G.config.size, G.config.pixel_mm)
    sel = np.arange(0, len(val.images), 6)
    x = torch.as_tensor(val.images[sel])[:, None]
    roi = torch.as_tensor(dr._roi(val.labels[sel], G.config.pixel_mm))[:, None]
    none = InversionWeights(ncc=0.0, domain=0.0, perceptual=0.0, ssim=0.0)
    variants = {"L2 in the ROI": none, "+ LNCC": replace(none, ncc=InversionWeights.ncc),
                "+ LNCC + domain": replace(none, ncc=InversionWeights.ncc, domain=InversionWeights.domain),
                "+ LNCC + domain + D features (shipped)": InversionWeights(),
                "+ LNCC + domain + D features + SSIM": replace(InversionWeights(), ssim=0.5)}
    table = {}
    for name, w in variants.items():
        synth = []
        for s in range(0, len(x), 64):
            ws = hybrid_invert(G, E, x[s:s + 64], dr.DEFAULT_STEPS, roi[s:s + 64], w, D)
            with torch.no_grad():
                synth.append(G(ws, "const")[:, 0].numpy())
        synth = np.concatenate(synth)
        scores = T._per_stack_scores(dr.crop_labels(seg, synth, "cpu"), val.labels[sel], np.asarray(val.keys)[sel],
                                     G.config.pixel_mm)
        table[name] = {"dice_mean": scores["dice_mean"], **T.image_similarity(synth, val.images[sel])}
        print(name, table[name], flush=True)
    return table


_CHILD = """
import sys, time, resource, numpy as np, torch
from CardiacReconstructionLib.training.cohort import acdc_image_volume, load_acdc
from CardiacReconstructionLib.core.case import Case
from CardiacReconstructionLib.methods import run
key = {key!r}
case = Case(sax=load_acdc(None, key), image=acdc_image_volume(key))
run("deeprecon", case, threads=1, steps=1)  # loads the networks (not timed)
t = time.perf_counter(); run("deeprecon", case, threads=1); dt = time.perf_counter() - t
print(dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def speed(keys):
    times, rss = [], []
    for key in keys:
        out = subprocess.run([sys.executable, "-c", _CHILD.format(key=key)],
                             capture_output=True, text=True, check=True).stdout.split()
        times.append(float(out[-2]))
        rss.append(float(out[-1]))
        print(key, out[-2:], flush=True)
    return {"stacks": len(keys), "median_s": float(np.median(times)), "max_s": float(np.max(times)),
            "median_peak_mib": float(np.median(rss)), "max_peak_mib": float(np.max(rss))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("parts", nargs="*", default=["leave-out", "motion", "terms", "speed"])
    p.add_argument("--stacks", type=int, default=0, help="at most this many validation stacks (0: all 34)")
    p.add_argument("--output", default="deeprecon-bench")
    args = p.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    keys = list(acdc_split(None, "val"))
    if args.stacks:
        keys = keys[:args.stacks]
    for part in args.parts:
        t0 = time.perf_counter()
        if part == "leave-out":
            result = leave_out(keys)
        elif part == "motion":
            result = motion(keys, out)
        elif part == "terms":
            result = terms()
        elif part == "speed":
            result = speed(keys[:min(len(keys), 8)])
        else:
            raise SystemExit(f"unknown part {part!r}")
        result = {"result": result, "seconds": time.perf_counter() - t0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        (out / f"deeprecon_{part}.json").write_text(json.dumps(result, indent=2, default=float))
        print(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
