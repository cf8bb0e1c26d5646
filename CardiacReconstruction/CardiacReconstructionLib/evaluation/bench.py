"""Benchmark: degrade known anatomy, run methods, score them, time them, plot them.

Speed and memory are measured here, not in unit tests: per case the wall time of the method
(``methods.run``, surfaces excluded) and the peak memory it allocated (:class:`PeakMemory`).
Summaries report mean +- sd per method, and time medians with their ratio to a baseline
measured in the same run.
"""

from __future__ import annotations

import csv
import os
import threading
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import methods as method_registry
from ..core.case import Case
from ..simulation.cases import make_case
from ..simulation.mr_render import render_cine
from ..core.errors import InputError
from ..core.geometry import Geometry, Volume
from .metrics import evaluate

REFERENCE_METHOD = "nearest"


class PeakMemory:
    """Context manager: peak memory (MiB) allocated while inside, the larger of two views:
    tracemalloc's peak of traced allocations (Python objects and numpy arrays, exact even when
    freed memory is reused) and the peak increase of resident memory sampled from /proc every
    few ms (which also sees torch's and ITK's native allocations)."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.peak_mib = float("nan")

    @staticmethod
    def _rss_bytes() -> Optional[int]:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            return None

    def _sample(self):
        while not self._stop.is_set():
            self._max_rss = max(self._max_rss, self._rss_bytes() or 0)
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._started_tracing = not tracemalloc.is_tracing()
        if self._started_tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        self._traced_start = tracemalloc.get_traced_memory()[0]
        self._rss_start = self._rss_bytes()
        self._max_rss = self._rss_start or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        traced_peak = tracemalloc.get_traced_memory()[1] - self._traced_start
        if self._started_tracing:
            tracemalloc.stop()
        rss_peak = (max(self._max_rss, self._rss_bytes() or 0) - self._rss_start) if self._rss_start else 0
        self.peak_mib = max(traced_peak, rss_peak) / 2**20
        return False


@dataclass
class Anatomy:
    """A ground-truth heart to benchmark on: HR labels in its SAX frame (+ landmarks), and how to
    make its ground-truth surfaces (:data:`..core.sdf.SURFACE_KEYS` -> vtkPolyData, RAS) on demand."""

    name: str
    truth: Volume
    landmarks: Optional[dict] = None
    surface_truth: Optional[Callable[[], Dict[str, object]]] = None
    _surfaces: Optional[Dict[str, object]] = field(default=None, repr=False)

    def truth_surfaces(self) -> Dict[str, object]:
        if self._surfaces is None:
            from ..core.sdf import label_truth_surfaces

            self._surfaces = self.surface_truth() if self.surface_truth else label_truth_surfaces(self.truth)
        return self._surfaces


def phantom_anatomies(n: int, mode: str = "biventricular", first_seed: int = 0) -> Iterator[Anatomy]:
    """Procedural phantoms; their ground-truth surfaces are the zero level sets of the signed
    distance to their HR labels (no mesh exists)."""
    from ..simulation.phantom import make_phantom

    for seed in range(first_seed, first_seed + n):
        p = make_phantom(seed=seed, mode=mode)
        yield Anatomy(f"phantom{seed:02d}", p.truth, p.landmarks)


def heart_box_geometry(truth: Volume, margin_mm: float = 10.0):
    """The part of ``truth``'s grid around its labelled voxels (plus a margin): where the
    ground-truth surfaces are made, to keep the fine grid small."""
    idx = np.argwhere(np.asarray(truth.array) > 0)
    margin = np.ceil(margin_mm / truth.spacing[::-1]).astype(int)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, truth.shape)
    m = truth.ijk_to_ras.copy()
    m[:3, 3] = truth.geometry.index_to_ras(lo[::-1].astype(float))
    return Geometry(tuple(int(v) for v in hi - lo), m)


def cohort_anatomies(root, n: Optional[int] = None, mode: str = "biventricular") -> Iterator[Anatomy]:
    """Held-out (validation split) hearts of the whole-heart CT cohort, never trained on; their
    ground-truth surfaces come from the template-registered meshes (:mod:`.surface_truth`)."""
    from ..training.cohort import load_subject, read_shape, split

    for path in split(root, "val")[: n or None]:
        truth = load_subject(path, mode=mode)

        def surfaces(path=path, truth=truth):
            from .surface_truth import truth_surfaces

            return truth_surfaces(path, heart_box_geometry(truth), spacing_mm=SURFACE_TRUTH_SPACING_MM, root=root)

        yield Anatomy(Path(path).stem, truth, read_shape(path).landmarks, surfaces)


SURFACE_TRUTH_SPACING_MM = 1.0


def acdc_anatomies(n: int, every: int = 1, root=None) -> List[Anatomy]:
    """MRI-shaped hearts never trained on: every ``every``-th ACDC validation stack (the first
    ``n``), each as its pseudo high-resolution shape (:func:`..training.cohort.acdc_pseudo_hr`; an
    approximate truth, surfaces from its labels)."""
    from ..training.cohort import acdc_pseudo_hr, acdc_split, load_acdc

    return [Anatomy(k, acdc_pseudo_hr(load_acdc(root, k))) for k in acdc_split(root, "val")[::every][:n]]


def result_surfaces(result: method_registry.Result) -> Dict[str, object]:
    """The surfaces of :data:`..core.sdf.SURFACE_KEYS` a result is judged by: its own where the method
    made them (Mask2Surface), otherwise marching cubes at 0.5 of its label masks without smoothing
    (as the Mask2Surface paper meshes its baselines)."""
    from ..core.sdf import SURFACE_KEYS, surface_masks
    from ..core.surfaces import mask_surface

    own = {k: v for k, v in result.surfaces.items() if k in SURFACE_KEYS}
    if own:
        return own
    masks = surface_masks(result.labels.array)
    return {k: mask_surface(m, result.labels.ijk_to_ras, smoothing_iterations=0) for k, m in masks.items() if m.any()}


def surface_scores(surfaces: Dict[str, object], truth: Dict[str, object]) -> Dict[str, float]:
    """Per surface key: Chamfer distance and mesh ASSD (exact point-to-mesh, mm) to the truth,
    and the robust mean-curvature spread (1/mm); plus their means over the keys both have."""
    from .metrics import chamfer_distance, curvature_spread, mesh_assd

    row, keys = {}, [k for k in truth if k in surfaces]
    for k in keys:
        row[f"chamfer_{k}_mm"] = chamfer_distance(surfaces[k], truth[k], to_surface=True)
        row[f"surface_assd_{k}_mm"] = mesh_assd(surfaces[k], truth[k])
        row[f"curvature_spread_{k}"] = curvature_spread(surfaces[k])
    for metric in ("chamfer", "surface_assd"):
        vals = [row[f"{metric}_{k}_mm"] for k in keys]
        row[f"{metric}_mean_mm"] = float(np.mean(vals)) if vals else float("nan")
    return row


def score(case: Case, result: method_registry.Result, shift_search_px: Optional[int] = None) -> Dict[str, float]:
    """Plain metrics of a result against the case's truth, and the displacement errors; with
    ``shift_search_px``, also the (separately labelled) shift-searched Dice of :func:`.metrics.evaluate`."""
    return evaluate(result.labels, case.truth, estimated_displacements=result.displacements,
                    true_displacements=case.true_displacements, shift_search_px=shift_search_px)


def run_methods(case: Case, method_names: Sequence[str], slice_spacing: float, seed: int = 0,
                method_options: Optional[Dict[str, dict]] = None, surfaces: bool = False,
                device: str = "auto", shift_search_px: Optional[int] = None
                ) -> List[Tuple[method_registry.Result, Dict[str, float]]]:
    """Run each method on ``case`` and score it; timing and peak memory included per method.
    With ``surfaces``, methods that make no surfaces of their own get marching-cubes surfaces
    (``methods.run``); their time is excluded from ``time_s``."""
    out = []
    for name in method_names:
        with PeakMemory() as mem:
            result = method_registry.run(name, case, slice_spacing=slice_spacing, seed=seed, device=device,
                                         surfaces=surfaces, **(method_options or {}).get(name, {}))
        row = score(case, result, shift_search_px) if case.truth is not None else {}
        row.update(time_s=result.timings["total_s"], peak_mem_mib=mem.peak_mib)
        out.append((result, row))
    return out


def benchmark(anatomies: Iterable[Anatomy], presets: Sequence[str], method_names: Sequence[str],
              seeds: Sequence[int], slice_spacing_lr: float = 10.0,
              progress: Optional[Callable[[str], None]] = None, lax_views: Sequence[str] = (),
              method_options: Optional[Dict[str, dict]] = None, surface_metrics: bool = False,
              shift_search_px: Optional[int] = None, device: str = "auto") -> List[dict]:
    """Every (anatomy, preset, seed) case degraded and reconstructed by every method: one row
    per (case, method) with all metrics (with ``surface_metrics``, also :func:`surface_scores`
    of :func:`result_surfaces` against the anatomy's ground-truth surfaces). A method may be a
    variant with options, ``'name[key=value;...]'`` (:func:`parse_method_label`, e.g. an ablation);
    ``method_options`` adds options per label. ``shift_search_px`` adds the shift-searched Dice
    columns (``dice_shift_searched_*``: after the best global in-plane translation; not plain Dice)."""
    rows = []
    for anatomy in anatomies:
        hr_spacing = float(anatomy.truth.spacing[2])
        for preset in presets:
            for seed in seeds:
                case = make_case(anatomy.truth, preset, seed=seed, slice_spacing=slice_spacing_lr,
                                 lax_views=lax_views, landmarks=anatomy.landmarks)
                if case.image is None and any(method_registry.get(parse_method_label(m)[0]).needs_image
                                              for m in method_names):
                    # the image-domain methods get the project's MR-like rendering of the stack
                    case.image = render_cine(case.sax, seed=seed)
                for label in method_names:
                    name, options = parse_method_label(label)
                    options = {name: {**options, **(method_options or {}).get(label, {})}}
                    (result, metrics), = run_methods(case, [name], hr_spacing, seed, options,
                                                     device=device, shift_search_px=shift_search_px)
                    if surface_metrics:
                        metrics.update(surface_scores(result_surfaces(result), anatomy.truth_surfaces()))
                    rows.append(dict(case=anatomy.name, preset=preset, seed=seed, method=label, **metrics))
                if progress:
                    progress(f"{anatomy.name} {preset} seed {seed}")
    return rows


def write_rows_csv(rows: List[dict], path) -> Path:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in r.items()})
    return Path(path)


SUMMARY_METRICS = ("dice_LV", "dice_MYO", "dice_RV", "dice_mean", "hd95_mean", "assd_mean", "displacement_error_mm",
                   "displacement_error_mean_removed_mm")
SURFACE_SUMMARY_METRICS = ("dice_MYO", "chamfer_mean_mm", "chamfer_LV_myocardium_mm", "surface_assd_mean_mm",
                           "curvature_spread_LV_myocardium", "displacement_error_mean_removed_mm")


def _mean_sd(vals) -> str:
    vals = np.asarray([v for v in vals if v is not None], float)
    vals = vals[np.isfinite(vals)]
    return f"{vals.mean():.3f} ± {vals.std():.3f}" if len(vals) else "n/a"


def summary_markdown(rows: List[dict], metrics: Sequence[str] = SUMMARY_METRICS,
                     reference: str = REFERENCE_METHOD) -> str:
    """Markdown tables: mean ± sd per preset and method, then time/memory medians with the
    time ratio to ``reference`` (same run)."""
    metrics = [m for m in metrics if any(m in r for r in rows)]
    lines = []
    for preset in dict.fromkeys(r["preset"] for r in rows):
        sub = [r for r in rows if r["preset"] == preset]
        n_cases = len({(r["case"], r["seed"]) for r in sub})
        lines += [f"### preset `{preset}` ({n_cases} cases)", "",
                  "| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for method in dict.fromkeys(r["method"] for r in sub):
            mrows = [r for r in sub if r["method"] == method]
            lines.append(f"| {method} | " + " | ".join(_mean_sd([r.get(m) for r in mrows]) for m in metrics) + " |")
        lines.append("")
    ref = [r["time_s"] for r in rows if r["method"] == reference]
    ref_median = float(np.median(ref)) if ref else float("nan")
    lines += ["### time and memory per case (all presets)", "",
              f"| method | median time (s) | time / {reference} | median peak memory increase (MiB) |",
              "|---|---|---|---|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        t = float(np.median([r["time_s"] for r in rows if r["method"] == method]))
        m = np.median([r["peak_mem_mib"] for r in rows if r["method"] == method])
        lines.append(f"| {method} | {t:.3f} | {t / ref_median:.2f} | {m:.1f} |")
    return "\n".join(lines) + "\n"


def plot_rows(rows: List[dict], folder) -> List[Path]:
    from .figures import metric_bars

    folder = Path(folder)
    plots = []
    for metric, label in (("dice_mean", "mean Dice (LV, MYO, RV)"), ("assd_mean", "mean ASSD (mm)"),
                          ("displacement_error_mm", "displacement error (mm)")):
        if any(metric in r for r in rows):
            plots.append(metric_bars(rows, metric, folder / f"{metric}.png", ylabel=label))
    return plots


def parse_method_label(label: str) -> Tuple[str, Dict[str, str]]:
    """``'mask2surface[refine=none;ddim_steps=5]'`` -> ``('mask2surface', {'refine': 'none', ...})``;
    a plain name has no options. Values stay strings: :func:`..methods.run` coerces them."""
    label = label.strip()
    if "[" not in label:
        return label, {}
    if not label.endswith("]"):
        raise InputError(f"Method variant {label!r} must look like name[key=value;key=value].")
    name, inner = label[:-1].split("[", 1)
    options = {}
    for item in filter(None, (t.strip() for t in inner.split(";"))):
        if "=" not in item:
            raise InputError(f"Option {item!r} of method variant {label!r} must be key=value.")
        key, value = item.split("=", 1)
        options[key.strip()] = value.strip()
    return name.strip(), options


def parse_list(text: str, what: str, allowed: Optional[Sequence[str]] = None) -> List[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise InputError(f"No {what} given.")
    if allowed is not None:
        bad = [t for t in items if t not in allowed]
        if bad:
            raise InputError(f"Unknown {what} {bad}; choose from {', '.join(allowed)}.")
    return items
