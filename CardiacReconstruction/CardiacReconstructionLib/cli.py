"""``cardiac-recon``: the engine on the command line (demo, run, degrade, evaluate, bench).

Bad input exits with status 2 and one line on stderr saying what was wrong; outputs are
staged in a temporary folder and appear only when the whole command succeeded.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import __version__
from .core.errors import Cancelled, InputError

EPILOG_RUN = """\
examples:
  cardiac-recon run --input sax.seg.nrrd --method centroid_shape_interp --output out/
  cardiac-recon run --input sax.nii.gz --convention acdc --lax 4ch=lax4.nii.gz \\
      --method centroid_shape_interp --slice-spacing 1.5 --output out/

The SAX segmentation's slice axis must be the file's third (k) axis. Labels are mapped to
1 LV blood pool, 2 LV myocardium, 3 RV blood pool (+ 4 LA, 5 RA, 6 aorta, 7 pulmonary artery):
.seg.nrrd segments by name, other files by --convention (auto explains what it chose).
"""

DESCRIPTION = """\
Motion correction and super-resolution of cardiac short-axis MRI segmentations.

A clinical SAX cine stack has ~10 thick slices, each from its own breath-hold, so slices are
shifted against each other. These commands turn such a segmentation into a motion-corrected,
super-resolved 3D segmentation with per-slice displacements and surface meshes.
"""


def _progress_bar(desc: str):
    """A tqdm bar driven by the engine's progress(fraction, message) callback."""
    from tqdm import tqdm

    bar = tqdm(total=100, desc=desc, bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}", leave=False,
               file=sys.stderr, disable=None)

    def update(fraction: float, message: str = ""):
        bar.n = int(round(100 * fraction))
        bar.set_postfix_str(message[:60], refresh=False)
        bar.refresh()

    return bar, update


def _parse_options(items: Sequence[str]) -> Dict[str, str]:
    out = {}
    for item in items or ():
        if "=" not in item:
            raise InputError(f"--option expects NAME=VALUE, got {item!r}.")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _parse_lax(items: Sequence[str]):
    pairs = []
    for item in items or ():
        view, _, path = item.rpartition("=") if "=" in item else (None, "", item)
        pairs.append((view or None, path))
    return pairs


def _format_table(rows: List[dict], columns: Sequence[str]) -> str:
    cols = [c for c in columns if any(c in r for r in rows)]
    cells = [[str(r.get(c, "")) if not isinstance(r.get(c), float) else f"{r[c]:.3f}" for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths)))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


TABLE_COLUMNS = ("method", "dice_LV", "dice_MYO", "dice_RV", "dice_mean", "hd95_mean", "assd_mean",
                 "displacement_error_mm", "time_s")


def _checked_output(args) -> List[Path]:
    """Check the output folder before any work (writable; empty unless --overwrite); the earlier
    run's files that the new results replace."""
    from .core.io import previous_run_files

    return previous_run_files(args.output, getattr(args, "overwrite", False))


def _write_record(folder: Path, info: Dict) -> None:
    """``run.json``: what the command did, and the files it wrote (all that --overwrite may remove)."""
    from .core.io import RUN_RECORD

    files = sorted(p.name for p in folder.iterdir() if p.name != RUN_RECORD)
    (folder / RUN_RECORD).write_text(json.dumps({"command": info.pop("command", None), **info, "files": files},
                                                indent=2))


def _write_result(result, folder: Path, prefix: str = "", axis_order=(0, 1, 2)) -> None:
    """Labels in the input file's axis order (``axis_order``: the case's), displacements,
    surfaces (physical, so no axis order)."""
    from .core.axes import restore_axes
    from .core.io import write_displacements, write_segmentation
    from .core.surfaces import write_surface

    write_segmentation(restore_axes(result.labels, axis_order), folder / f"{prefix}labels.seg.nrrd")
    write_displacements(result.displacements, folder / f"{prefix}displacements.csv", estimated=result.estimated)
    for key, polydata in result.surfaces.items():
        write_surface(polydata, folder / f"{prefix}surface_{key}.vtp")


def cmd_demo(args) -> int:
    from . import methods
    from .evaluation.bench import run_methods
    from .simulation.cases import make_case
    from .evaluation.figures import orthogonal_views
    from .core.io import staged_folder, write_displacements, write_segmentation
    from .simulation.phantom import make_phantom

    names = [m.name for m in methods.available()] if args.methods == "all" else args.methods.split(",")
    for n in names:
        methods.get(n)
    replace = _checked_output(args)
    print(f"Building phantom (seed {args.seed}), degrading it with the '{args.preset}' preset...", file=sys.stderr)
    phantom = make_phantom(seed=args.seed)
    case = make_case(phantom.truth, args.preset, seed=args.seed, slice_spacing=10.0, lax_views=("4ch",),
                     landmarks=phantom.landmarks)
    hr_spacing = float(phantom.truth.spacing[2])
    rows = []
    with staged_folder(args.output, replace) as out:
        write_segmentation(case.sax, out / "input_sax.seg.nrrd")
        for view in case.lax:
            write_segmentation(view.labels, out / f"input_lax_{view.view}.seg.nrrd")
        write_segmentation(case.truth, out / "truth.seg.nrrd")
        write_displacements(case.true_displacements, out / "true_displacements.csv")
        figure_rows = {"truth": case.truth, f"input ({args.preset})": case.sax}
        for name in names:
            print(f"Running {name}...", file=sys.stderr)
            (result, metrics), = run_methods(case, [name], hr_spacing, args.seed, surfaces=True)
            _write_result(result, out, prefix=f"{name}_")
            rows.append(dict(method=name, **metrics))
            figure_rows[name] = result.labels
        orthogonal_views(figure_rows, out / "demo.png",
                         title=f"Phantom seed {args.seed}, motion preset '{args.preset}'")
        table = _format_table(rows, TABLE_COLUMNS)
        (out / "summary.md").write_text(
            f"# cardiac-recon demo\n\nPhantom seed {args.seed}, motion preset `{args.preset}`, "
            f"{case.n_slices} SAX slices at 10 mm, reconstructed at {hr_spacing:g} mm. Plain Dice (no shift "
            f"search), HD95/ASSD in mm averaged over LV, MYO, RV; displacement error in mm.\n\n```\n{table}\n```\n\n"
            "![orthogonal views](demo.png)\n")
        _write_record(out, {"command": "demo", "seed": args.seed, "preset": args.preset, "methods": names})
    print(table)
    print(f"\nWrote {args.output}/ (segmentations, surfaces, displacements, summary.md, demo.png)")
    return 0


def cmd_run(args) -> int:
    from . import methods
    from .core.io import read_case, staged_folder, write_volume
    from .core.stack import corrected_image
    from .worker import cancel_file_checker, progress_printer

    method = methods.get(args.method)
    replace = _checked_output(args)
    case, messages = read_case(args.input, _parse_lax(args.lax), args.image, args.convention,
                               slice_axis=args.slice_axis)
    for m in messages:
        print(m, file=sys.stderr)
    cancel = cancel_file_checker(args.cancel_file)
    if args.progress_format == "lines":  # for a calling process (the Slicer module) to parse
        bar, update = None, progress_printer(sys.stderr)
    else:
        bar, update = _progress_bar(method.title)
    try:
        result = methods.run(method.name, case, slice_spacing=args.slice_spacing, factor=args.factor,
                             device=args.device, seed=args.seed, progress=update, cancel=cancel,
                             surfaces=not args.no_surfaces, **_run_keywords(args), **_parse_options(args.option))
    finally:
        if bar is not None:
            bar.close()
    if cancel is not None and cancel():
        raise Cancelled("Cancelled by the user.")
    axis_order = tuple(case.info["axis_order"])
    with staged_folder(args.output, replace) as out:
        _write_result(result, out, axis_order=axis_order)
        if case.image is not None:
            corrected = corrected_image(case.image, result.displacements, axis_order, 0 if case.image.is_label else 1)
            write_volume(corrected, out / "corrected_image.nii.gz")
        _write_record(out, {"command": "run", "method": method.name, "input": str(args.input), "messages": messages,
                            "timings": result.timings, "output_shape_kji": list(result.labels.shape),
                            "output_spacing_ijk": result.labels.spacing.tolist(),
                            "weights_sha256": _user_weights(result.diagnostics.get("options", {})),
                            "displacements_mm": _jsonable(result.displacements),
                            "displacement_estimated": _jsonable(result.estimated),
                            "diagnostics": _jsonable(result.diagnostics)})
    print(f"{method.title}: {result.timings['total_s']:.2f} s; wrote {args.output}/")
    return 0


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, (np.integer, int, bool, str)) or obj is None:
        return obj.item() if isinstance(obj, np.generic) else obj
    return str(obj)


def cmd_check(args) -> int:
    from .check import report
    from .core.io import read_case

    case, messages = read_case(args.input, _parse_lax(args.lax), args.image, args.convention,
                               slice_axis=args.slice_axis)
    print("\n".join(report(case, messages, args.slice_spacing)))
    return 0


def cmd_degrade(args) -> int:
    from .simulation.cases import make_case
    from .core.io import read_segmentation, staged_folder, write_displacements, write_segmentation

    replace = _checked_output(args)
    hr, message = read_segmentation(args.input, args.convention)
    print(message, file=sys.stderr)
    views = tuple(args.lax or ())
    case = make_case(hr, args.preset, seed=args.seed, slice_spacing=args.slice_spacing, lax_views=views)
    with staged_folder(args.output, replace) as out:
        write_segmentation(case.sax, out / "sax.seg.nrrd")
        write_segmentation(case.truth, out / "truth.seg.nrrd")
        write_displacements(case.true_displacements, out / "true_displacements.csv")
        for view in case.lax:
            write_segmentation(view.labels, out / f"lax_{view.view}.seg.nrrd")
        _write_record(out, {"command": "degrade", "input": str(args.input), "preset": args.preset, "seed": args.seed})
    print(f"{case.n_slices} slices at {case.sax.spacing[2]:g} mm, preset '{args.preset}', seed {args.seed}; "
          f"wrote {args.output}/")
    return 0


def cmd_evaluate(args) -> int:
    from .core.io import read_segmentation
    from .evaluation.metrics import evaluate

    result, _ = read_segmentation(args.result, args.convention)
    truth, _ = read_segmentation(args.truth, args.convention)
    metrics = evaluate(result, truth)
    if args.json:
        print(json.dumps(_jsonable(metrics), indent=2))
    else:
        for k, v in metrics.items():
            print(f"{k:>16}  {v:.4f}" if isinstance(v, float) else f"{k:>16}  {v}")
    return 0


SURFACE_NOTE = ("Surfaces: Chamfer distance and mesh ASSD (exact point-to-mesh, mm) to the ground-truth "
                "surfaces (CT: from the template-registered meshes; phantom: zero level set of the truth's signed "
                "distance), mean over LV myocardium, LV endo-, LV epi- and RV endocardium; methods without "
                "surfaces of their own are meshed by marching cubes at 0.5 on their labels; curvature_spread = "
                "robust spread of the mean curvature (1/mm, lower is smoother). ")


def cmd_bench(args) -> int:
    from . import methods
    from .evaluation.bench import (SURFACE_SUMMARY_METRICS, SUMMARY_METRICS, benchmark, cohort_anatomies, parse_list,
                        parse_method_label, phantom_anatomies, plot_rows, summary_markdown, write_rows_csv)
    from .simulation.degrade import PRESETS
    from .core.io import staged_folder

    presets = parse_list(args.presets, "presets", list(PRESETS))
    names = [m.name for m in methods.available()] if args.methods == "all" else parse_list(args.methods, "methods")
    for n in names:
        methods.get(parse_method_label(n)[0])
    seeds = [int(s) for s in parse_list(args.seeds, "seeds")]
    replace = _checked_output(args)
    if args.source == "phantom":
        anatomies = list(phantom_anatomies(args.cases))
    else:
        anatomies = list(cohort_anatomies(args.source, args.cases))
    from tqdm import tqdm

    total = len(anatomies) * len(presets) * len(seeds)
    with tqdm(total=total, desc="bench", file=sys.stderr, disable=None) as bar:
        t0 = time.perf_counter()
        rows = benchmark(anatomies, presets, names, seeds, slice_spacing_lr=args.slice_spacing,
                         progress=lambda msg: (bar.set_postfix_str(msg), bar.update(1)),
                         lax_views=tuple(args.lax or ()), surface_metrics=args.surfaces,
                         shift_search_px=args.shift_search)
    metrics = SURFACE_SUMMARY_METRICS if args.surfaces else SUMMARY_METRICS
    searched = ""
    if args.shift_search is not None:
        metrics += ("dice_shift_searched_mean",)
        searched = (f"dice_shift_searched_mean: Dice after the best global in-plane translation of up to "
                    f"{args.shift_search} voxels (shift-searched, NOT plain Dice; the common shift of all slices is "
                    "unobservable without a long-axis view). ")
    summary = summary_markdown(rows, metrics)
    with staged_folder(args.output, replace) as out:
        write_rows_csv(rows, out / "cases.csv")
        plots = plot_rows(rows, out)
        source = "procedural phantom" if args.source == "phantom" else f"held-out cohort hearts ({args.source})"
        (out / "summary.md").write_text(
            f"# cardiac-recon bench\n\nSource: {source}, {len(anatomies)} hearts; presets {', '.join(presets)}; "
            f"seeds {', '.join(map(str, seeds))}; long-axis views: {', '.join(args.lax or ()) or 'none'}; "
            f"SAX slices every {args.slice_spacing:g} mm, reconstructed at the "
            f"truth's slice spacing. Plain Dice (no shift search); HD95/ASSD in mm, mean over LV, MYO, RV; "
            f"displacement error = mean per-slice Euclidean error in mm. "
            + (SURFACE_NOTE if args.surfaces else "") + searched + f"Total {time.perf_counter() - t0:.0f} s.\n\n"
            + summary + "\n" + "".join(f"![{p.stem}]({p.name})\n" for p in plots))
        _write_record(out, {"command": "bench", "source": str(args.source), "presets": presets, "methods": names,
                            "seeds": seeds})
    print(summary)
    print(f"Wrote {args.output}/ (cases.csv, summary.md, plots)")
    return 0


def _user_weights(options: Dict) -> Dict[str, str]:
    """SHA-256 of every weights file given as an option (shipped weights are named and verified
    by the manifest), so a run can be traced to the exact file."""
    from .networks.weights import sha256

    return {name: sha256(value) for name, value in options.items()
            if isinstance(value, str) and value.endswith(".pt") and Path(value).is_file()}


def _run_keywords(args) -> Dict[str, float]:
    """The run keywords of --threads and --max-memory that were given."""
    out = {} if args.threads is None else {"threads": args.threads}
    if getattr(args, "max_memory", None) is not None:
        out["max_memory_mib"] = args.max_memory * 1024
    return out


def cmd_train(args) -> int:
    from .training import TRAINERS

    return importlib.import_module(TRAINERS[args.trainer]).main(args)


def cmd_methods(args) -> int:
    from . import methods

    for m in methods.available():
        print(f"{m.name}  ({m.kind}) - {m.title}\n    {m.description}")
        for o in m.options:
            extra = f" choices {list(o.choices)}" if o.choices else ""
            expert = " [advanced]" if o.advanced else ""
            print(f"    --option {o.name}=<{o.type.__name__}> (default {o.default}){extra}{expert}: {o.help}")
    for name, reason in methods.unavailable():
        print(f"{name}  (unavailable) - {reason}")
    return 0


#: Layers that the Slicer extension does not ship (the benchmark, figures and training commands).
DEVELOPMENT_LAYERS = ("evaluation.bench", "evaluation.figures", "training")
FULL_PACKAGE = ("this command needs the full CardiacReconstruction package, which the Slicer extension does not "
                "ship: pip install slicer-cardiac-reconstruction (or install the repository with pip)")


def _development_layers_installed() -> bool:
    return all(importlib.util.find_spec(f"{__package__}.{name}") is not None for name in DEVELOPMENT_LAYERS)


def cmd_unshipped(args) -> int:
    raise InputError(FULL_PACKAGE + ".")


def _add_overwrite(parser: argparse.ArgumentParser) -> None:
    """The output-folder option of every command that writes one (see core.io.previous_run_files)."""
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in the output "
                        "folder (only those its run.json lists); without it the folder must be empty or new")


def build_parser() -> argparse.ArgumentParser:
    from .simulation.degrade import PRESETS
    from .core.device import DEVICE_CHOICES
    from .core.labels import CONVENTION_NAMES

    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="cardiac-recon", description=DESCRIPTION, formatter_class=fmt,
                                epilog="Start with 'cardiac-recon demo' (runs every method on a built-in phantom);\n"
                                "'cardiac-recon COMMAND --help' shows each command's options and examples.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("demo", help="build a phantom, degrade it, run every method, write and print results",
                       description="Runs the whole job on the embedded phantom: writes the input, each method's "
                       "result (.seg.nrrd, .vtp surfaces, displacement CSV), summary.md and demo.png.",
                       formatter_class=fmt)
    d.add_argument("--output", default="cardiac-recon-demo", help="output folder (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0, help="phantom and motion seed (default: %(default)s)")
    d.add_argument("--preset", default="normal", choices=list(PRESETS), help="motion preset (default: %(default)s)")
    d.add_argument("--methods", default="all", help="comma-separated method names or 'all' (default)")
    _add_overwrite(d)
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="reconstruct one SAX segmentation", epilog=EPILOG_RUN, formatter_class=fmt,
                       description="Motion-correct and super-resolve one SAX segmentation stack.")
    r.add_argument("--input", required=True, help="SAX segmentation (.seg.nrrd, .nii[.gz], .nrrd, .mha)")
    r.add_argument("--lax", action="append", metavar="[VIEW=]FILE",
                   help="long-axis segmentation; VIEW is 2ch, 3ch or 4ch (else read from the file name); repeatable")
    r.add_argument("--image", help="SAX image on the same grid; written back motion-corrected")
    r.add_argument("--method", required=True, help="method name (see 'cardiac-recon methods')")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--slice-spacing", type=float, help="output slice spacing in mm (default: 2 mm)")
    g.add_argument("--factor", type=float, help="through-plane upsampling factor instead of a spacing")
    r.add_argument("--slice-axis", choices=("i", "j", "k"), help="the file axis that runs across the slices "
                   "(default: the one with the clearly largest spacing; needed only when the spacings do not tell)")
    r.add_argument("--convention", default="auto", choices=list(CONVENTION_NAMES),
                   help="input label convention (default: auto; .seg.nrrd maps segment names)")
    r.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES), help="torch device (default: auto)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    r.add_argument("--max-memory", type=float, default=None, metavar="GIB",
                   help="refuse the run when its estimated peak memory is larger (default: what the machine has "
                   "available)")
    r.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads for a learned method (0: torch's own setting; default: 1, the same result "
                   "on every machine and fastest when other work shares the CPU; 2 is faster on an idle CPU but "
                   "changes latent optimisation's fit slightly)")
    r.add_argument("--option", action="append", metavar="NAME=VALUE", help="method option; repeatable")
    r.add_argument("--no-surfaces", action="store_true", help="skip surface meshes")
    r.add_argument("--progress-format", choices=("bar", "lines"), default="bar",
                   help="'bar' (default): a progress bar; 'lines': 'PROGRESS <fraction> <message>' lines on "
                   "stderr, flushed, for a calling program such as the Slicer module")
    r.add_argument("--cancel-file", metavar="FILE", help="stop (exit status 130, nothing written) as soon as FILE "
                   "exists; lets a calling program cancel the run")
    r.add_argument("--output", required=True, help="output folder")
    _add_overwrite(r)
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="read a case's files and say what was understood; runs no method",
                       formatter_class=fmt,
                       description="Reads the SAX segmentation (and long-axis views, image) like "
                       "'run' does and prints the slice axis and count, spacings, slice order and LV-to-RV direction "
                       "in anatomical words, the label convention and why, where each long-axis view lies, whether the "
                       "image shares the labels' grid, and the memory each method would need.")
    c.add_argument("--input", required=True, help="SAX segmentation")
    c.add_argument("--lax", action="append", metavar="[VIEW=]FILE", help="long-axis segmentation; repeatable")
    c.add_argument("--image", help="SAX image on the same grid")
    c.add_argument("--slice-axis", choices=("i", "j", "k"), help="as for 'run'")
    c.add_argument("--slice-spacing", type=float, help="output slice spacing for the memory estimate")
    c.add_argument("--convention", default="auto", choices=list(CONVENTION_NAMES))
    c.set_defaults(func=cmd_check)

    dg = sub.add_parser("degrade", help="simulate a clinical SAX stack from a high-resolution segmentation",
                        formatter_class=fmt, description="Downsample through-plane and add breath-hold motion "
                        "(presets from SRHeart, MCSR, Mask2Surface, STACOM). The input's k axis must be the long axis.")
    dg.add_argument("--input", required=True, help="HR segmentation in its SAX frame")
    dg.add_argument("--preset", default="normal", choices=list(PRESETS), help="(default: %(default)s)")
    dg.add_argument("--slice-spacing", type=float, default=10.0, help="LR slice spacing in mm (default: 10)")
    dg.add_argument("--seed", type=int, default=0)
    dg.add_argument("--lax", action="append", choices=["2ch", "3ch", "4ch"], help="also extract a LAX view")
    dg.add_argument("--convention", default="auto", choices=list(CONVENTION_NAMES))
    dg.add_argument("--output", required=True, help="output folder")
    _add_overwrite(dg)
    dg.set_defaults(func=cmd_degrade)

    e = sub.add_parser("evaluate", help="score a result against a ground truth (plain Dice, HD95, ASSD, S/V)")
    e.add_argument("--result", required=True)
    e.add_argument("--truth", required=True)
    e.add_argument("--convention", default="auto", choices=list(CONVENTION_NAMES))
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("bench", help="benchmark methods on phantoms or held-out cohort hearts", formatter_class=fmt,
                       description="Degrades known hearts with each preset and seed, runs each method, and writes "
                       "cases.csv, summary.md (mean ± sd; time medians and ratios to 'nearest') and PNG plots.")
    b.add_argument("--source", default="phantom", help="'phantom' or a whole-heart CT cohort folder "
                   "(its validation split is used)")
    b.add_argument("--cases", type=int, default=3, help="number of hearts (default: %(default)s)")
    b.add_argument("--presets", default="none,normal,severe", help="comma-separated (default: %(default)s)")
    b.add_argument("--methods", default="all", help="comma-separated method names or 'all'; a variant with options "
                   "is written name[key=value;key=value], e.g. 'mask2surface[refine=none]'")
    b.add_argument("--surfaces", action="store_true", help="also score surfaces against the ground-truth surfaces "
                   "(Chamfer distance, mesh ASSD, mean-curvature spread); baselines are meshed by marching cubes")
    b.add_argument("--seeds", default="0,1,2", help="comma-separated motion seeds (default: %(default)s)")
    b.add_argument("--slice-spacing", type=float, default=10.0, help="SAX slice spacing in mm (default: 10)")
    b.add_argument("--lax", action="append", choices=["2ch", "3ch", "4ch"],
                   help="also give every method this long-axis view, cut from the truth; repeatable")
    b.add_argument("--shift-search", type=int, default=None, metavar="VOXELS",
                   help="also report Dice after the best global in-plane translation of up to VOXELS voxels "
                   "(columns dice_shift_searched_*, labelled as such: not plain Dice)")
    b.add_argument("--output", default="cardiac-recon-bench", help="output folder (default: %(default)s)")
    _add_overwrite(b)
    b.set_defaults(func=cmd_bench)

    if _development_layers_installed():
        t = sub.add_parser("train", help="train the prior of a learned method (e.g. 'train lo')",
                           description="Train a learned method's network on the shared data; resumable.")
        tsub = t.add_subparsers(dest="trainer", metavar="NAME")
        tsub.required = True
        from .training import TRAINERS

        for trainer, module in TRAINERS.items():
            tp = tsub.add_parser(trainer, help=f"train the {trainer} prior", formatter_class=fmt)
            importlib.import_module(module).add_arguments(tp)
        t.set_defaults(func=cmd_train)
    else:  # the Slicer extension ships the runtime only
        t = sub.add_parser("train", help="(needs the full package)", add_help=False)
        t.add_argument("rest", nargs=argparse.REMAINDER)
        t.set_defaults(func=cmd_unshipped)

    m = sub.add_parser("methods", help="list the registered methods and their options")
    m.set_defaults(func=cmd_methods)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"cardiac-recon {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Cancelled as exc:
        print(f"cardiac-recon {args.command}: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"cardiac-recon {args.command}: interrupted; nothing written", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a folder that vanished, a permission changed mid-run
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"cardiac-recon {args.command}: error: cannot write {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if not any((exc.name or "").startswith(f"{__package__}.{name}") for name in DEVELOPMENT_LAYERS):
            raise
        print(f"cardiac-recon {args.command}: error: {FULL_PACKAGE}.", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
