"""``cardiac-recon train deeprecon STAGE``: DeepRecon's networks, in their order of dependence.

Stages: ``gan`` (G and D, :mod:`.deeprecon_gan`), ``encoder`` (E for that G,
:mod:`.deeprecon_encoder`), ``directseg`` (the U-Net on the real images), ``seg`` (the U-Net on
G(w+*) of the training slices: inverts every training crop with the hybrid inversion first, then
trains), ``validate`` (the paper's Table 1 on the held-out ACDC patients) and ``install``
(validate, then register all five files with model cards). Every stage trains on the fixed ACDC
training patients only; validation patients (number divisible by 5) are never trained on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from ..core.errors import InputError
from .cards import ACDC_CITATION, DEFAULT_SELECTION, add_selection_argument
from .trainer import add_run_arguments

STAGES = ("gan", "encoder", "directseg", "seg", "validate", "install")
#: Stage -> the weights it writes (manifest name).
OUTPUTS = {"gan": "deeprecon_g", "encoder": "deeprecon_e", "directseg": "deeprecon_directseg", "seg": "deeprecon_seg"}


def _networks(paths: Dict[str, str], device: str):
    from ..networks.checkpoint import load_network
    from ..networks.weights import resolve

    kinds = {"g": "stylegan", "d": "stylegan_d", "e": "stylegan_encoder", "seg": "segmenter", "directseg": "segmenter"}
    return {k: load_network(resolve(v), kinds[k]).to(device).requires_grad_(False) for k, v in paths.items()
            if v is not None}


def invert_crops(G, E, D, images: np.ndarray, labels: np.ndarray, steps: int, device: str, batch: int = 64,
                 log=print) -> np.ndarray:
    """G(w+*) [N, S, S] of crops ``images`` after ``steps`` of the hybrid inversion (ROI: labels
    dilated as at run time)."""
    import torch

    from ..methods.deeprecon import _roi
    from ..networks.inversion import hybrid_invert

    out = np.empty_like(images, dtype=np.float32)
    for start in range(0, len(images), batch):
        x = torch.as_tensor(images[start:start + batch])[:, None].to(device)
        r = torch.as_tensor(_roi(labels[start:start + batch], G.config.pixel_mm))[:, None].to(device)
        ws = hybrid_invert(G, E, x, steps, r, D=D)
        with torch.no_grad():
            out[start:start + len(x)] = G(ws, "const")[:, 0].cpu().numpy()
        log(f"inverted {start + len(x)}/{len(images)} crops ({steps} steps)")
    return out


def _per_stack_scores(pred: np.ndarray, truth: np.ndarray, keys: Sequence[str], pixel_mm: float) -> Dict[str, float]:
    """Mean over held-out stacks of Dice and HD95 (mm) per structure, on the crops of each stack
    (pixel_mm in-plane, the assumed 10 mm between slices)."""
    from ..core.geometry import Geometry, Volume, make_ijk_to_ras
    from ..core.labels import LV, MYO, RV
    from ..evaluation.metrics import dice, hd95

    keys = np.asarray(keys)
    out: Dict[str, list] = {}
    for key in dict.fromkeys(keys):
        sel = keys == key
        geo = Geometry(pred[sel].shape, make_ijk_to_ras((pixel_mm, pixel_mm, 10.0)))
        p, t = Volume.on(geo, pred[sel]), Volume.on(geo, truth[sel])
        for name, scores in (("dice", dice(p, t)), ("hd95", hd95(p, t))):
            for label, struct in ((LV, "LV"), (MYO, "MYO"), (RV, "RV")):
                out.setdefault(f"{name}_{struct}", []).append(scores[label])
    # HD95 is infinite where a structure is missing from one side: averaged over the finite ones,
    # with the count of the others reported
    means = {k: float(np.nanmean(np.where(np.isfinite(v), v, np.nan))) for k, v in out.items()}
    means["hd95_missing"] = int(sum(np.isinf(v).sum() for k, v in out.items() if k.startswith("hd95")))
    means["dice_mean"] = float(np.mean([means["dice_LV"], means["dice_MYO"], means["dice_RV"]]))
    return means


def image_similarity(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    """PSNR (dB, intensity range 2) and SSIM (MONAI) of image crops in [-1, 1]."""
    import torch
    from monai.metrics import SSIMMetric

    mse = float(np.mean((a - b) ** 2))
    ssim = SSIMMetric(spatial_dims=2, data_range=2.0)(torch.as_tensor(a)[:, None], torch.as_tensor(b)[:, None])
    return {"psnr_db": float(10 * np.log10(4.0 / max(mse, 1e-12))), "ssim": float(ssim.mean())}


def validate(paths: Dict[str, str], root=None, device: str = "cpu", steps: Optional[Sequence[int]] = None,
             log=print) -> Dict[str, Dict[str, float]]:
    """The paper's Table 1 on the held-out ACDC patients: per-structure Dice and HD95 of DirectSeg
    (run as at run time, on the whole slice, scored on the crop), of DeepRecon with the encoder only
    (0 steps), with the default steps and with 5x more; PSNR and SSIM of G(w+*) against the real
    crops. Crops are centred on the true labels (the localisation is not what is compared)."""
    from ..core.crops import sample_crops
    from ..methods.deeprecon import DEFAULT_STEPS, _check_image, crop_labels
    from ..methods import deeprecon as dr
    from .cohort import ACDC_SPACING, acdc_image_volume
    from .deeprecon_data import slice_set

    nets = _networks(paths, device)
    G = nets["g"]
    cfg = G.config
    val = slice_set("val", cfg.size, cfg.pixel_mm, root)
    rows: Dict[str, Dict[str, float]] = {}
    # DirectSeg through its run-time path (whole field of view), scored on the same crops
    pred = []
    with dr.DIRECTSEG.using(segmenter=paths["directseg"]):
        for key in dict.fromkeys(val.keys):
            labels = dr.directseg(_check_image(acdc_image_volume(key, root)), device).array
            sel = np.asarray(val.keys) == key
            pred.append(sample_crops(labels[val.slices[sel]], val.centres[sel], ACDC_SPACING[:2], cfg.size,
                                     cfg.pixel_mm, labels=True))
    rows["DirectSeg"] = _per_stack_scores(np.concatenate(pred), val.labels, val.keys, cfg.pixel_mm)
    log(f"DirectSeg: {rows['DirectSeg']}")
    every6 = np.arange(0, len(val.images), 6)
    for n in (steps if steps is not None else (0, DEFAULT_STEPS, 5 * DEFAULT_STEPS)):
        # more steps than the default cost minutes per hundred crops on a CPU: every sixth slice,
        # with the default steps on the same slices beside it for a paired comparison
        subsets = [("", slice(None))] if n <= DEFAULT_STEPS else []
        if n >= DEFAULT_STEPS and steps is None:
            subsets.append((", every 6th slice", every6))
        for suffix, sel in subsets:
            keys = np.asarray(val.keys)[sel]
            synth = invert_crops(G, nets["e"], nets["d"], val.images[sel], val.labels[sel], n, device,
                                 log=lambda m: None)
            name = ("DeepRecon, encoder only" if n == 0 else f"DeepRecon, {n} steps") + suffix
            rows[name] = {**_per_stack_scores(crop_labels(nets["seg"], synth, device), val.labels[sel], keys,
                                              cfg.pixel_mm), **image_similarity(synth, val.images[sel]), "steps": n}
            log(f"{name}: {rows[name]}")
    return rows


def _weights_paths(args) -> Dict[str, str]:
    return {"g": args.generator or "deeprecon_g", "d": args.discriminator or "deeprecon_d",
            "e": args.encoder or "deeprecon_e", "seg": args.seg or "deeprecon_seg",
            "directseg": args.directseg or "deeprecon_directseg"}


def train_seg_stage(output, paths: Dict[str, str], cfg, steps: int, resume: bool, root=None, log=print) -> Path:
    """Invert every training crop (cached beside ``output``), then train Seg on G(w+*)."""
    from .deeprecon_data import slice_set
    from .deeprecon_seg import train_synthetic_seg

    nets = _networks({k: paths[k] for k in ("g", "d", "e")}, cfg.device)
    G = nets["g"]
    train = slice_set("train", G.config.size, G.config.pixel_mm, root)
    cache = Path(output).with_suffix(".synthetic.npz")
    if resume and cache.is_file():
        synth = np.load(cache)["images"]
    else:
        synth = invert_crops(G, nets["e"], nets["d"], train.images, train.labels, steps, cfg.device, log=log)
        from ..core.io import atomic_path

        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, images=synth)
    cfg.crop, cfg.jitter_mm, cfg.pixel_mm = G.config.size, 0.0, G.config.pixel_mm
    return train_synthetic_seg(output, synth, train.labels, cfg, resume, log,
                               meta={"inversion_steps": int(steps), "generator": Path(str(paths["g"])).name})


METHOD = ("DeepRecon (image-domain reconstruction by StyleGAN2 inversion, latent interpolation and segmentation of "
          "synthetic images), re-implemented from the paper (no public code exists); StyleGAN2 after Karras et al., "
          "'Analyzing and improving the image quality of StyleGAN' (CVPR 2020), adaptive augmentation after Karras "
          "et al. (NeurIPS 2020).")
DATA_USED = ("the fixed ACDC training patients (patient number not divisible by 5: 63 patients, ED and ES, every "
             "slice that holds the heart), images and labels, at the ASSUMED 1.5 mm in-plane spacing; the 17 "
             "validation patients were never trained on.")

_CARD_TEXT = {
    "deeprecon_g": ("DeepRecon generator G (StyleGAN2, exponential moving average)",
                    "A StyleGAN2-style generator of heart-centred cine SAX crops: mapping network to W, one w per "
                    "layer (W+), modulated convolutions, noise inputs.", "gan"),
    "deeprecon_d": ("DeepRecon discriminator D", "The discriminator trained with G; its block features are the "
                    "inversion's perceptual term (instead of LPIPS, whose ImageNet weights cannot be fetched at run "
                    "time).", "gan"),
    "deeprecon_e": ("DeepRecon encoder E (image -> W+)", "MONAI Regressor predicting each crop's W+ offset from G's "
                    "mean w; the starting point of the hybrid inversion.", "encoder"),
    "deeprecon_seg": ("DeepRecon Seg (U-Net trained on G's synthetic images)", "MONAI 2D U-Net trained on G(w+*) of "
                      "the training slices (w+* from the hybrid inversion) with the slices' real labels.", "seg"),
    "deeprecon_directseg": ("DeepRecon DirectSeg (U-Net trained on the real images)", "MONAI 2D U-Net trained on "
                            "the real training images (the paper's upper bound); also the images-in path's localiser "
                            "and quick segmenter.", "directseg"),
}


def model_card(name: str, path, metrics: Dict[str, Dict[str, float]], selection: str = DEFAULT_SELECTION) -> str:
    from .cards import Card, device_line, render
    from ..networks.weights import sha256

    import torch

    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    meta, cfg = obj.get("meta", {}), obj["config"]
    train = meta.get("train_config", {})
    title, what, stage = _CARD_TEXT[name]
    n_params = sum(int(np.prod(v.shape)) for v in obj["state_dict"].values())
    minutes = train.get("minutes", 0)
    command = f"cardiac-recon train deeprecon {stage} --output {name}.pt --minutes {minutes:g} " \
              f"--threads {train.get('threads', 1)} --seed {train.get('seed', 0)} --device {train.get('device', 'cpu')}"
    if stage == "gan":
        command += f" --preset {train.get('preset', 'cpu')}"
    header = "| variant | Dice LV | Dice MYO | Dice RV | mean Dice | HD95 LV | HD95 MYO | HD95 RV | PSNR | SSIM |"
    lines = [header, "|---" * 10 + "|"]
    for row, m in metrics.items():
        lines.append(f"| {row} | " + " | ".join(f"{m.get(k, float('nan')):.3f}" for k in (
            "dice_LV", "dice_MYO", "dice_RV", "dice_mean", "hd95_LV", "hd95_MYO", "hd95_RV", "psnr_db", "ssim")) + " |")
    validation = ("## Validation (the paper's Table 1; 17 held-out ACDC patients, ED and ES)\n\n"
                  "Measured by `cardiac-recon train deeprecon validate`: 2D segmentation of the heart-centred crops "
                  "of every heart-holding slice, scored per stack (crops at the generator's pixel size, 10 mm "
                  "assumed between slices) and averaged over the stacks; HD95 in mm; PSNR/SSIM of G(w+*) against "
                  "the real crops (intensities in [-1, 1]).\n\n" + "\n".join(lines))
    return render(Card(
        title=title, summary=what, use="As part of the `deeprecon` method and the images-in path (`--segment`).",
        method=METHOD, data=("acdc",), data_used=DATA_USED, command=command, device=device_line(meta),
        sha256=sha256(path), validation=validation, selection=selection,
        training=[f"{meta.get('train_minutes', 0):.1f} min, {meta.get('steps', 0)} steps.",
                  f"Network configuration: `{json.dumps(cfg)}` ({n_params} parameters).",
                  f"Training configuration: `{json.dumps(train, default=str)}`."],
        notes=("A time-budgeted run: the same command reproduces these weights in kind, not bit for bit.",
               f"Data citation: {ACDC_CITATION}"),
        limits=("Trained on 63 patients of one public data set (ACDC, one centre, 1.5 T and 3 T): other scanners, "
                "sequences and contrasts are extrapolation; the intensities are normalised by a 0.5-99.5 % window.",
                "CPU-sized generator (64 x 64 crops at 2.5 mm): fine detail is beyond it; `--preset gpu` trains the "
                "128 x 128 size on a GPU.")))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stage", choices=STAGES, help="gan | encoder | directseg | seg (in this order), validate, install")
    p.add_argument("--output", help="weights file to write (.pt); its checkpoint is <output>.ckpt")
    p.add_argument("--minutes", type=float, help="training time budget (defaults: gan 120, encoder 15, directseg 20, "
                   "seg 15)")
    p.add_argument("--max-steps", type=int, default=100000)
    p.add_argument("--preset", default="cpu", choices=("cpu", "gpu"), help="gan: generator size (default: cpu, "
                   "64 px at 2.5 mm; gpu: 128 px at 1.25 mm)")
    p.add_argument("--steps", type=int, default=None, help="seg: inversion steps of the training crops (default: "
                   "the method's); validate: only this number of steps")
    for name in ("generator", "discriminator", "encoder", "seg", "directseg"):
        p.add_argument(f"--{name}", help=f"the {name} weights to use (default: the shipped ones)")
    add_run_arguments(p, "continue from <output>.ckpt")
    add_selection_argument(p)


def main(args) -> int:
    from ..core.device import resolve_device

    args.device = resolve_device(args.device)
    paths = _weights_paths(args)
    stage = args.stage
    if stage in ("validate", "install"):
        rows = validate(paths, args.data, args.device, None if args.steps is None else (args.steps,))
        print(json.dumps(rows, indent=2))
        if stage == "install":
            from ..networks import weights

            files = {"deeprecon_g": paths["g"], "deeprecon_d": paths["d"], "deeprecon_e": paths["e"],
                     "deeprecon_seg": paths["seg"], "deeprecon_directseg": paths["directseg"]}
            for name, path in files.items():
                path = weights.resolve(path)
                print(weights.register(name, path, model_card(name, path, rows, args.selection)))
        return 0
    if not args.output:
        raise InputError(f"train deeprecon {stage} needs --output FILE.pt.")
    import importlib.util

    if stage in ("gan", "directseg", "seg") and importlib.util.find_spec("kornia") is None:
        raise InputError(f"train deeprecon {stage} augments with kornia, which is not installed "
                         "(pip install '.[train]' or pip install kornia).")
    budget = dict(seed=args.seed, max_steps=args.max_steps, threads=args.threads, device=args.device)
    if args.minutes is not None:
        budget["minutes"] = args.minutes
    if stage == "gan":
        from .deeprecon_gan import GANConfig, train_generator

        train_generator(args.output, GANConfig(preset=args.preset, **budget), args.resume, args.data)
    elif stage == "encoder":
        from .deeprecon_encoder import EncoderTrainConfig, train_encoder

        train_encoder(args.output, paths["g"], paths["d"], EncoderTrainConfig(**budget), args.resume, args.data)
    elif stage == "directseg":
        from .deeprecon_seg import SegConfig, train_directseg

        train_directseg(args.output, SegConfig(**budget), args.resume, args.data)
    else:
        from ..methods.deeprecon import DEFAULT_STEPS
        from .deeprecon_seg import SegConfig

        steps = DEFAULT_STEPS if args.steps is None else args.steps
        train_seg_stage(args.output, paths, SegConfig(**{"minutes": 15.0, **budget}), steps, args.resume, args.data)
    return 0
