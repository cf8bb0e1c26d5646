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
  cardiac-recon run --image cine.nii.gz --method deeprecon --output out/
  cardiac-recon run --image cine.nii.gz --segment deeprecon --method latent_optimisation --output out/

The SAX stack's slice axis is the file axis with the clearly largest spacing (--slice-axis when the
spacings do not tell); results are written in the file's own axis order. Labels are mapped to
1 LV blood pool, 2 LV myocardium, 3 RV blood pool (+ 4 LA, 5 RA, 6 aorta, 7 pulmonary artery):
.seg.nrrd segments by name, other files by --convention (auto explains what it chose).
An image given without --input is segmented first (--segment: directseg, the default, or
deeprecon); that segmentation is written as segmentation_input.seg.nrrd.
"""

EPILOG_ADAPT = """\
example:
  cardiac-recon adapt-motion --source subjectA_ed.nii.gz --target subjectB_ed.nii.gz \\
      --target subjectB_es.nii.gz --between 3 --output adapted/

Writes adapted_image.nii.gz and adapted_labels.nii.gz (4D: one frame per phase along the 4th
axis, on the generator's heart-centred crop grid), volumes.csv (phase, lv_ml), volume_curve.png and
run.json (EDV, ESV, EF). Segmentations not given are DirectSeg's (they only centre the crops).
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
    """Labels and the synthetic image of a method that makes one (``Result.image``, on the labels'
    grid) in the input file's axis order (``axis_order``: the case's), displacements, surfaces
    (physical, so no axis order)."""
    from .core.axes import restore_axes
    from .core.io import write_displacements, write_segmentation, write_volume
    from .core.surfaces import write_surface
    from .worker import RESULT_IMAGE

    write_segmentation(restore_axes(result.labels, axis_order), folder / f"{prefix}labels.seg.nrrd")
    if result.image is not None:
        write_volume(restore_axes(result.image, axis_order), folder / f"{prefix}{RESULT_IMAGE}")
    write_displacements(result.displacements, folder / f"{prefix}displacements.csv", estimated=result.estimated)
    for key, polydata in result.surfaces.items():
        write_surface(polydata, folder / f"{prefix}surface_{key}.vtp")


def cmd_demo(args) -> int:
    from . import methods
    from .evaluation.bench import run_methods
    from .simulation.cases import make_case
    from .evaluation.figures import orthogonal_views
    from .core.io import staged_folder, write_displacements, write_segmentation, write_volume
    from .simulation.mr_render import render_cine
    from .simulation.phantom import make_phantom

    names = [m.name for m in methods.available()] if args.methods == "all" else args.methods.split(",")
    for n in names:
        methods.get(n)
    replace = _checked_output(args)
    print(f"Building phantom (seed {args.seed}), degrading it with the '{args.preset}' preset...", file=sys.stderr)
    phantom = make_phantom(seed=args.seed)
    case = make_case(phantom.truth, args.preset, seed=args.seed, slice_spacing=10.0, lax_views=("4ch",),
                     landmarks=phantom.landmarks)
    case.image = render_cine(case.sax, seed=args.seed)  # a synthetic cine for the image-domain methods
    hr_spacing = float(phantom.truth.spacing[2])
    rows = []
    with staged_folder(args.output, replace) as out:
        write_segmentation(case.sax, out / "input_sax.seg.nrrd")
        write_volume(case.image, out / "input_image.nii.gz")
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


def _check_requirements(module) -> None:
    """InputError (one line) when the packages a learned step needs (``module.REQUIRES``) are missing."""
    missing = [name for name in module.REQUIRES if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"Segmenting or adapting images needs {', '.join(missing)}, which is not installed "
                         "(pip install torch monai; in Slicer, the PyTorch extension provides torch).")


def _read_image_stack(path, slice_axis: Optional[str] = None):
    """An image given without its segmentation, read like every input (header checks, the slice
    axis found from the spacings or ``slice_axis``, made k) and refused in one line when it cannot
    be a cine SAX stack (:func:`.core.case.check_image_stack`). Returns ``(image, axis order, note)``;
    ``note`` says where the slices ran when not along k (else None)."""
    from .core.axes import working_image
    from .core.io import read_volume

    return working_image(read_volume(path), Path(path).name, slice_axis)


def _precheck_run(method, geometry, args) -> None:
    """What ``methods.run`` refuses before it starts (unknown or bad option values, the output
    grid, the memory guard), checked on the image's grid before an image given alone is
    segmented, so that such a refusal costs no segmentation."""
    from .core.api import check_memory, output_geometry

    options = _parse_options(args.option)
    known = {o.name: o for o in method.options}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(f"Method {method.name!r} has no option(s) {unknown}; its options are "
                         f"{sorted(known) or 'none'}.")
    for name, value in options.items():
        known[name].coerce(value)
    grid = output_geometry(geometry, args.slice_spacing, args.factor)
    check_memory(method, grid, _run_keywords(args).get("max_memory_mib"))


def _segmented_case(args, method, update, cancel):
    """The case of an image given alone: the image segmented by ``args.segment`` (canonical
    labels on its grid), its long-axis views; and the messages for the user."""
    from .core.case import Case
    from .core.device import resolve_device
    from .core.io import file_stem, read_lax
    from .methods import DEFAULT_THREADS, deeprecon, torch_threads

    image, order, note = _read_image_stack(args.image, args.slice_axis)
    _precheck_run(method, image.geometry, args)
    messages = [note] if note else []
    views = []
    for view, path in _parse_lax(args.lax):
        lax_view, msg = read_lax(path, view, args.convention)
        views.append(lax_view)
        messages.append(msg)
    _check_requirements(deeprecon)
    device = resolve_device(args.device)
    threads = DEFAULT_THREADS if args.threads is None else args.threads

    def segmenting(fraction: float, message: str = "") -> None:
        if cancel is not None and cancel():
            raise Cancelled("Cancelled by the user.")
        update(SEGMENT_SHARE * fraction, f"segmenting the image ({args.segment})")

    segmenting(0.0)
    with torch_threads(threads, device):
        labels = deeprecon.segment_image(image, args.segment, device=device, steps=args.segment_steps,
                                         progress=segmenting)
    segmenting(1.0)
    messages.append(f"SAX: segmented from the image by {args.segment}")
    case = Case(sax=labels, lax=views, image=image, name=file_stem(args.image), info={"axis_order": list(order)})
    return case, messages


#: Share of the progress bar for segmenting an image given alone; the method has the rest.
SEGMENT_SHARE = 0.3
#: Inversion steps per slice of the DeepRecon segmenter and of motion adaptation
#: (``methods.deeprecon.DEFAULT_STEPS``; a test keeps the two equal).
SEGMENT_STEPS = 80


def cmd_run(args) -> int:
    from . import methods
    from .core.axes import restore_axes
    from .core.io import read_case, staged_folder, write_segmentation, write_volume
    from .core.stack import corrected_image
    from .worker import RESULT_INPUT_SEGMENTATION, cancel_file_checker, progress_printer

    if args.input is None and args.image is None:
        raise InputError("Give the SAX segmentation (--input) or the cine SAX image (--image), which is then "
                         "segmented first (--segment).")
    if args.input is not None and args.segment is not None:
        raise InputError("--segment segments an image given without its segmentation; with --input the given "
                         "segmentation is used: drop one of them.")
    method = methods.get(args.method)
    replace = _checked_output(args)
    cancel = cancel_file_checker(args.cancel_file)
    if args.progress_format == "lines":  # for a calling process (the Slicer module) to parse
        bar, update = None, progress_printer(sys.stderr)
    else:
        bar, update = _progress_bar(method.title)
    try:
        t0 = time.perf_counter()
        if args.input is None:
            args.segment = args.segment or "directseg"
            case, messages = _segmented_case(args, method, update, cancel)
            segmentation = {"source": args.segment, "steps": args.segment_steps} if args.segment == "deeprecon" \
                else {"source": args.segment}
            run_progress = lambda f, m="": update(SEGMENT_SHARE + (1 - SEGMENT_SHARE) * f, m)  # noqa: E731
        else:
            case, messages = read_case(args.input, _parse_lax(args.lax), args.image, args.convention,
                                       slice_axis=args.slice_axis)
            segmentation = {"source": "file", "path": str(args.input)}
            run_progress = update
        segmentation_s = time.perf_counter() - t0
        for m in messages:
            print(m, file=sys.stderr)
        result = methods.run(method.name, case, slice_spacing=args.slice_spacing, factor=args.factor,
                             device=args.device, seed=args.seed, progress=run_progress, cancel=cancel,
                             surfaces=not args.no_surfaces, **_run_keywords(args), **_parse_options(args.option))
    finally:
        if bar is not None:
            bar.close()
    if cancel is not None and cancel():
        raise Cancelled("Cancelled by the user.")
    axis_order = tuple(case.info["axis_order"])
    timings = dict(result.timings)
    if args.input is None:
        timings["segmentation_s"] = segmentation_s
    with staged_folder(args.output, replace) as out:
        _write_result(result, out, axis_order=axis_order)
        if args.input is None:  # the segmentation the method ran on, for the user to check
            write_segmentation(restore_axes(case.sax, axis_order), out / RESULT_INPUT_SEGMENTATION)
        if case.image is not None:
            corrected = corrected_image(case.image, result.displacements, axis_order, 0 if case.image.is_label else 1)
            write_volume(corrected, out / "corrected_image.nii.gz")
        _write_record(out, {"command": "run", "method": method.name,
                            "input": None if args.input is None else str(args.input),
                            "image": None if args.image is None else str(args.image),
                            "segmentation": segmentation, "messages": messages,
                            "timings": timings, "output_shape_kji": list(result.labels.shape),
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


def crop_frame_geometry(source, centres_ji, size: int, pixel_mm: float, slice_mm: float):
    """The grid of DeepRecon's generator crops of ``source`` (an image stack with its slices along
    k), as a :class:`.core.geometry.Geometry`: ``size`` x ``size`` pixels of ``pixel_mm``, one slice
    per source slice ``slice_mm`` apart, rows and columns along the source's j and i axes.

    It is the *heart-centred crop frame*: every slice's crop was cut around that slice's own heart
    centre (``centres_ji``, continuous (j, i) indices), so one rigid grid can only place the crops
    approximately: it is centred in-plane on the mean of those centres, and overlays the source
    image to within the spread of the per-slice centres (the breath-hold shifts), not voxel by voxel."""
    from .core.geometry import Geometry

    centre_ji = np.nanmean(np.asarray(centres_ji, float), axis=0)
    direction = source.geometry.direction
    matrix = np.eye(4)
    matrix[:3, 0] = direction[:, 0] * pixel_mm
    matrix[:3, 1] = direction[:, 1] * pixel_mm
    matrix[:3, 2] = direction[:, 2] * slice_mm
    centre = source.geometry.index_to_ras([centre_ji[1], centre_ji[0], 0.0])
    matrix[:3, 3] = centre - (size - 1) / 2.0 * pixel_mm * (direction[:, 0] + direction[:, 1])
    return Geometry((source.shape[0], size, size), matrix)


def _write_sequence(frames, geometry, path) -> Path:
    """A 4D NIfTI: the 3D ``frames`` (arrays on ``geometry``) along the 4th axis (1 per phase)."""
    import SimpleITK as sitk

    from .core.geometry import Volume, to_sitk
    from .core.io import atomic_path

    sequence = sitk.JoinSeries([to_sitk(Volume.on(geometry, frame)) for frame in frames])
    with atomic_path(path) as tmp:
        sitk.WriteImage(sequence, tmp, True)
    return Path(path)


def _read_image_with_labels(image_path, seg_path, convention: str, slice_axis: Optional[str]):
    """An image stack (slices along k, see :func:`_read_image_stack`), its segmentation when
    ``seg_path`` is given (canonical labels on the image's grid, in the same axis order; else
    None) and the note of :func:`_read_image_stack`."""
    from .core.axes import permute
    from .core.io import check_shared_grid, read_segmentation

    image, order, note = _read_image_stack(image_path, slice_axis)
    if seg_path is None:
        return image, None, note
    labels = permute(read_segmentation(seg_path, convention)[0], order)
    check_shared_grid(labels, image, image_path)
    return image, labels, note


def cmd_adapt_motion(args) -> int:
    from .core.crops import from_window, window_bounds
    from .core.device import resolve_device
    from .core.io import atomic_path, staged_folder
    from .evaluation.figures import volume_curve
    from .methods import DEFAULT_THREADS, torch_threads
    from .methods import deeprecon, motion_adaptation

    if len(args.target) < 2:
        raise InputError(f"--target is needed at least twice (the target's ED frame first, then its other frames), "
                         f"got {len(args.target)}.")
    if args.target_seg and len(args.target_seg) != len(args.target):
        raise InputError(f"Give one --target-seg per --target ({len(args.target)}), or none; got "
                         f"{len(args.target_seg)}.")
    if args.between < 0:
        raise InputError(f"--between must be 0 or more, got {args.between}.")
    if args.steps < 0:
        raise InputError(f"--steps must be 0 or more, got {args.steps}.")
    replace = _checked_output(args)
    source, source_labels, note = _read_image_with_labels(args.source, args.source_seg, args.convention,
                                                          args.slice_axis)
    notes = [note] if note else []
    targets, target_labels = [], []
    for n, path in enumerate(args.target):
        seg = args.target_seg[n] if args.target_seg else None
        frame, labels, note = _read_image_with_labels(path, seg, args.convention, args.slice_axis)
        targets.append(frame)
        target_labels.append(labels)
        notes += [note] if note else []
    for m in notes:
        print(m, file=sys.stderr)
    _check_requirements(deeprecon)
    device = resolve_device(args.device)
    bar, update = _progress_bar("adapt-motion")
    t0 = time.perf_counter()
    try:
        with torch_threads(DEFAULT_THREADS if args.threads is None else args.threads, device):
            adapted = motion_adaptation.adapt_motion(
                source, targets, device=device, steps=args.steps, between=args.between, source_labels=source_labels,
                target_labels=target_labels if args.target_seg else None, progress=update)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    size = int(adapted.images[0].shape[-1])
    frame = crop_frame_geometry(source, adapted.centres, size, adapted.pixel_mm, adapted.slice_mm)
    lo, hi = window_bounds(source.array)  # painted in the source's intensity window
    images = [from_window(img, lo, hi) for img in adapted.images]
    title = (f"LV blood pool: EDV {adapted.edv:.1f} ml, ESV {adapted.esv:.1f} ml, EF {100 * adapted.ef:.1f}%")
    with staged_folder(args.output, replace) as out:
        _write_sequence(images, frame, out / "adapted_image.nii.gz")
        _write_sequence([lab.astype(np.uint8) for lab in adapted.labels], frame, out / "adapted_labels.nii.gz")
        with atomic_path(out / "volumes.csv") as tmp:
            Path(tmp).write_text("phase,lv_ml\n" + "".join(f"{ph:.4g},{v:.3f}\n"
                                                           for ph, v in zip(adapted.phases, adapted.lv_ml)))
        volume_curve(adapted.phases, adapted.lv_ml, out / "volume_curve.png", title=title)
        _write_record(out, {"command": "adapt-motion", "source": str(args.source),
                            "source_segmentation": args.source_seg or "directseg",
                            "targets": [str(t) for t in args.target],
                            "target_segmentations": list(args.target_seg or []) or "directseg",
                            "between": args.between, "steps": args.steps, "device": device,
                            "edv_ml": _jsonable(adapted.edv), "esv_ml": _jsonable(adapted.esv),
                            "ef": _jsonable(adapted.ef), "phases": _jsonable(adapted.phases),
                            "lv_ml": _jsonable(adapted.lv_ml),
                            "crop_frame": {"size_px": size, "pixel_mm": adapted.pixel_mm,
                                           "slice_mm": adapted.slice_mm, "ijk_to_ras": frame.ijk_to_ras.tolist(),
                                           "note": "heart-centred crop frame: each slice's crop is centred on "
                                                   "its own heart centre; the grid is centred on their mean"},
                            "messages": notes, "info": _jsonable(adapted.info), "time_s": seconds})
    print(f"{len(adapted.phases)} phases; {title}; wrote {args.output}/")
    return 0


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
    from .worker import SEGMENTERS

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

    r = sub.add_parser("run", help="reconstruct one SAX segmentation (or cine SAX image)", epilog=EPILOG_RUN,
                       formatter_class=fmt, description="Motion-correct and super-resolve one SAX segmentation "
                       "stack, or a cine SAX image stack, which is segmented first.")
    r.add_argument("--input", help="SAX segmentation (.seg.nrrd, .nii[.gz], .nrrd, .mha); without it --image is "
                   "segmented first (--segment)")
    r.add_argument("--lax", action="append", metavar="[VIEW=]FILE",
                   help="long-axis segmentation; VIEW is 2ch, 3ch or 4ch (else read from the file name); repeatable")
    r.add_argument("--image", help="cine SAX image: on the segmentation's grid with --input, or alone (then "
                   "segmented first); written back motion-corrected; image-domain methods (deeprecon) need it")
    r.add_argument("--segment", choices=list(SEGMENTERS), default=None,
                   help="how an image given without --input is segmented before the method runs: 'directseg' "
                   "(default; a U-Net on every slice, fast) or 'deeprecon' (the DeepRecon segmenter on the inverted "
                   "generator's images); written as segmentation_input.seg.nrrd")
    r.add_argument("--segment-steps", type=int, default=SEGMENT_STEPS, metavar="N",
                   help="inversion steps per slice of --segment deeprecon (default: %(default)s)")
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

    a = sub.add_parser("adapt-motion", help="give one subject's end-diastolic images another subject's cardiac "
                       "motion (DeepRecon)", epilog=EPILOG_ADAPT, formatter_class=fmt,
                       description="DeepRecon's 4D motion adaptation: the target's motion, as latent frame "
                       "differences of DeepRecon's generator, is added to the source's end-diastolic codes; every "
                       "phase is painted and segmented, and the LV blood-pool volume curve gives EDV, ESV and EF.")
    a.add_argument("--source", required=True, metavar="IMAGE", help="the source subject's end-diastolic SAX image")
    a.add_argument("--target", action="append", required=True, metavar="IMAGE",
                   help="a frame of the target subject's SAX cine, ED first; give it at least twice (ED, ES, ...)")
    a.add_argument("--source-seg", metavar="FILE", help="the source's segmentation (default: DirectSeg's)")
    a.add_argument("--target-seg", action="append", metavar="FILE",
                   help="a target frame's segmentation, one per --target in the same order (default: DirectSeg's)")
    a.add_argument("--between", type=int, default=3, metavar="N",
                   help="phases interpolated between given frames (default: %(default)s)")
    a.add_argument("--steps", type=int, default=SEGMENT_STEPS, metavar="N",
                   help="inversion steps per slice (default: %(default)s)")
    a.add_argument("--convention", default="auto", choices=list(CONVENTION_NAMES),
                   help="label convention of the segmentations (default: auto)")
    a.add_argument("--slice-axis", choices=("i", "j", "k"), help="as for 'run'")
    a.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES), help="torch device (default: auto)")
    a.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads (default: 1)")
    a.add_argument("--output", required=True, help="output folder")
    _add_overwrite(a)
    a.set_defaults(func=cmd_adapt_motion)

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
