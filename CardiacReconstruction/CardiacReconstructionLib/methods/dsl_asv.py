"""DeepWHR (``dsl_asv``): label-domain motion correction (DSL) + arbitrary-scale through-plane
super-resolution (ASV); Dong et al., "Cross-Modality Whole-Heart MRI Reconstruction with Deep
Motion Correction and Super-Resolution".

Pipeline for one SAX label stack (any in-plane spacing, any oblique pose, 2-40 slices; the
networks were trained on stacks of about 6-22 slices 7-11.5 mm apart):

1. **Canonical LR grid** (:func:`canonical_geometry`). The networks work on one grid: 64 x 64
   voxels of 2.5 mm in-plane (160 mm), one canonical slice per input slice, placed by physical
   coordinates: the in-plane axes are rotated so that +i points from the LV towards the RV
   (centroid of the RV minus centroid of LV + myocardium, the direction :func:`..anatomy.frame.sax_frame`
   uses), +k runs from base to apex (slice order reversed when the input runs apex -> base), the
   grid is centred on the mean per-slice centroid of the labelled heart, and k x i gives j so the
   frame is right-handed in RAS. The same function canonicalises the training stacks, so the
   networks never see a pose they were not trained on.
2. **DSL** maps the one-hot stack to the corrected stack on the same grid. The per-slice
   displacement is the in-plane shift that best overlays the input slice on the corrected one
   (cross-correlation of the foreground class maps, sub-voxel peak); the stack is then shifted
   back and DSL is run again (``iterations``), so a network that only partly corrects a large
   shift converges (``start='centroid'`` starts from the centroid alignment instead of the stack
   as acquired). The displacements are centred on their mean over the labelled slices: a common
   shift of every slice cannot be seen in the stack, so the heart stays where it was acquired.
   With ``correction='shift'`` (default) the input slices moved by the estimated displacements
   go to ASV, keeping the patient's own slice shapes; with ``'network'`` the DSL output itself
   does (the paper's choice); ``'centroid'`` replaces DSL by the centroid alignment
   of the ``centroid_shape_interp`` baseline and ``'none'`` skips motion correction (ablations).
3. **ASV** super-resolves the corrected stack to the requested slice spacing on the canonical
   in-plane grid (only over the box that holds the heart, for speed); class probabilities are
   resampled by physical position onto the output grid (:func:`.methods.output_geometry`) and
   the most probable label is kept.

Whole-heart (LV, MYO, RV, LA, RA, aorta, pulmonary artery) or biventricular mode follows the
input's labels: the networks handle all 8 classes, and the output holds only classes present in
the input. Diagnostics: per-structure surface-to-volume ratio (DeepWHR's smoothness measure)
before (the input stack, nearest upsampled to the output grid) and after, and its relative
change. Weights: ``dsl.pt`` and ``asv.pt`` (see their model cards in Resources/Weights).
"""

from __future__ import annotations

import time
from typing import Dict, Optional, Tuple

import numpy as np

from ..core.api import Method, Option, Result
from ..anatomy.canonical import (CanonicalGrid, canonical_geometry, canonical_to_input_mm, input_mm_to_canonical,
                                  onehot, to_canonical_labels, to_output_grid)
from ..core.errors import InputError
from ..core.geometry import Geometry, Volume, resample
from ..core.labels import WHOLE_HEART, mode_of, present_labels
from ..networks.cache import NetworkCache

MAX_SHIFT_MM = 30.0  # the largest per-slice displacement the correction searches
MIN_SLICES, MAX_SLICES = 2, 40
CORRECTIONS = ("shift", "network", "centroid", "none")
STARTS = ("zero", "centroid")
#: DSL passes. On the held-out CT hearts under 'severe' motion a third pass adds ~0.01 Dice
#: (0.857 vs 0.847) for ~0.5 s more on two CPU cores; two keep the median under 3 s.
DEFAULT_ITERATIONS = 2


def _parabolic_offset(c_minus: float, c_0: float, c_plus: float) -> float:
    denom = c_minus - 2 * c_0 + c_plus
    return 0.0 if abs(denom) < 1e-12 else float(np.clip(0.5 * (c_minus - c_plus) / denom, -0.5, 0.5))


def slice_shifts(observed: np.ndarray, reference: np.ndarray, max_shift_px: float) -> np.ndarray:
    """Per-slice in-plane shift (di, dj) in voxels such that ``observed`` slice k is best matched
    by ``reference`` slice k moved by (di, dj): the peak of the cross-correlation of the
    foreground class maps (channels 1.., [C, K, J, I] probabilities), refined to sub-voxel by a
    parabola through the peak and its neighbours, searched within ``max_shift_px``. Slices where
    either map is empty get zero."""
    c, n_k, n_j, n_i = observed.shape
    out = np.zeros((n_k, 2))
    jj = np.fft.fftfreq(n_j) * n_j
    ii = np.fft.fftfreq(n_i) * n_i
    window = np.hypot(ii[None, :], jj[:, None]) <= max_shift_px
    for k in range(n_k):
        a, b = observed[1:, k], reference[1:, k]
        if a.sum() < 1e-3 or b.sum() < 1e-3:
            continue
        # corr[s] = sum_p a(p) b(p - s): zero-padded so that nothing wraps around.
        shape = (2 * n_j, 2 * n_i)
        fa, fb = np.fft.rfft2(a, shape), np.fft.rfft2(b, shape)
        corr_full = np.fft.irfft2((fa * np.conj(fb)).sum(axis=0), shape)
        corr = np.concatenate([corr_full[:n_j // 2 + n_j % 2], corr_full[-(n_j // 2):]], axis=0)
        corr = np.concatenate([corr[:, :n_i // 2 + n_i % 2], corr[:, -(n_i // 2):]], axis=1)
        masked = np.where(window, corr, -np.inf)
        pj, pi = np.unravel_index(int(np.argmax(masked)), masked.shape)
        sub_j = _parabolic_offset(corr[(pj - 1) % n_j, pi], corr[pj, pi], corr[(pj + 1) % n_j, pi])
        sub_i = _parabolic_offset(corr[pj, (pi - 1) % n_i], corr[pj, pi], corr[pj, (pi + 1) % n_i])
        out[k] = (ii[pi] + sub_i, jj[pj] + sub_j)
    return out


def shift_probabilities(prob: np.ndarray, shifts_px: np.ndarray) -> np.ndarray:
    """Move every slice of ``prob`` [C, K, J, I] by ``shifts_px[k] = (di, dj)`` voxels (linear
    interpolation; background fills what enters the field of view)."""
    from scipy import ndimage

    out = np.empty_like(prob)
    for k, (di, dj) in enumerate(shifts_px):
        for c in range(prob.shape[0]):
            out[c, k] = ndimage.shift(prob[c, k], (dj, di), order=1, mode="constant", cval=1.0 if c == 0 else 0.0)
    return out


# Networks (loaded once per device from the shipped, checksummed weights)
DSL_WEIGHTS, ASV_WEIGHTS = "dsl", "asv"  # names in Resources/Weights/manifest.json
NETWORKS = NetworkCache({"dsl": DSL_WEIGHTS, "asv": ASV_WEIGHTS})


def using_weights(dsl_weights=None, asv_weights=None):
    """Within the block, ``dsl_asv`` runs with these weights files instead of the shipped ones
    (validation of freshly trained or fine-tuned networks)."""
    return NETWORKS.using(dsl=dsl_weights, asv=asv_weights)


def load_models(device: str = "cpu"):
    """(DSLNet, ASVNet) in eval mode on ``device``: the shipped weights unless :func:`using_weights`
    names others; cached per device and weights source."""
    return NETWORKS.get("dsl", device), NETWORKS.get("asv", device)


def _masked_softmax(logits, present: Tuple[int, ...]):
    """Softmax over the classes present in the input only (absent classes get probability 0)."""
    import torch

    mask = torch.full((logits.shape[1],), float("-inf"), device=logits.device)
    mask[list(present)] = 0.0
    return torch.softmax(logits + mask.view(1, -1, 1, 1, 1), dim=1)


def run_dsl(model, prob: np.ndarray, present: Tuple[int, ...], device: str = "cpu") -> np.ndarray:
    """DSL on one canonical stack of class probabilities [C, K, J, I] -> corrected probabilities."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(prob, np.float32))[None].to(device)
        return _masked_softmax(model(x), present)[0].cpu().numpy()


def correct_motion(model, prob: np.ndarray, present: Tuple[int, ...], iterations: int, max_shift_px: float,
                   device: str = "cpu",
                   initial_shifts: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, list]:
    """Iterated DSL correction: estimate each slice's shift against the DSL output, move the
    slices back, repeat. Returns (total shifts (K, 2) voxels, last DSL output, per-iteration
    mean |update| in voxels). Shifts are centred on their mean over the labelled slices: a common
    shift of every slice is invisible in the stack (the heart's position is the input's)."""
    shifts = np.zeros((prob.shape[1], 2)) if initial_shifts is None else np.array(initial_shifts, float)
    labelled = prob[1:].sum(axis=(0, 2, 3)) > 0
    updates, out = [], None
    for _ in range(iterations):
        moved = shift_probabilities(prob, -shifts) if shifts.any() else prob
        out = run_dsl(model, moved, present, device)
        step = slice_shifts(moved, out, max_shift_px)
        shifts = shifts + step
        if labelled.any():
            shifts[labelled] -= shifts[labelled].mean(axis=0)
        shifts[~labelled] = 0.0
        updates.append(float(np.linalg.norm(step, axis=1).mean()))
    return shifts, out, updates


def run_asv(model, prob: np.ndarray, z: np.ndarray, cell: float, present: Tuple[int, ...],
            device: str = "cpu", chunk: int = 32) -> np.ndarray:
    """ASV: LR probabilities [C, K, J, I] -> probabilities [C, len(z), J, I] at continuous LR
    slice positions ``z`` (ascending), in chunks of target slices to bound memory."""
    import torch

    outs = []
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(prob, np.float32))[None].to(device)
        for s in range(0, len(z), chunk):
            zz = torch.from_numpy(np.asarray(z[s:s + chunk], np.float32)).to(device)
            outs.append(_masked_softmax(model(x, zz, float(cell)), present)[0].cpu().numpy())
    return np.concatenate(outs, axis=1)


def heart_box(prob: np.ndarray, margin: int = 6) -> Tuple[slice, slice]:
    """In-plane (j, i) box of even size around every labelled voxel of any slice, plus a margin:
    ASV only needs to run where there is anatomy (about a third of the canonical plane)."""
    fg = prob[1:].sum(axis=(0, 1)) > 0.05
    if not fg.any():
        return slice(0, prob.shape[2]), slice(0, prob.shape[3])
    boxes = []
    for axis, n in ((1, prob.shape[2]), (0, prob.shape[3])):
        idx = np.flatnonzero(fg.any(axis=axis))
        lo, hi = max(0, int(idx[0]) - margin), min(n, int(idx[-1]) + 1 + margin)
        if (hi - lo) % 2:
            hi, lo = (hi + 1, lo) if hi < n else (hi, lo - 1)
        boxes.append(slice(lo, hi))
    return boxes[0], boxes[1]


def super_resolve(model, prob: np.ndarray, grid: CanonicalGrid, output: Geometry, present: Tuple[int, ...],
                  device: str = "cpu") -> np.ndarray:
    """ASV from the canonical LR grid to the labels of ``output`` (uint8 [k, j, i])."""
    g = grid.geometry
    z_out = g.ras_to_index(output.slice_centres())[:, 2]
    order = np.argsort(z_out)
    z_sorted = z_out[order]
    s_lr = float(g.spacing[2])
    s_out = float(output.spacing[2])
    box_j, box_i = heart_box(prob)
    corner = g.index_to_ras([box_i.start, box_j.start, 0])
    m = g.ijk_to_ras.copy()
    m[:3, 3] = corner
    boxed = Geometry((g.shape[0], box_j.stop - box_j.start, box_i.stop - box_i.start), m)
    first = float(z_sorted[0]) * s_lr
    hr_geometry = boxed.with_slices(len(z_sorted), s_out, first_slice_offset_mm=first)
    prob_hr = run_asv(model, prob[:, :, box_j, box_i], z_sorted, s_out / s_lr, present, device)
    return to_output_grid(prob_hr, hr_geometry, output, present)


def _check_input(sax: Volume) -> None:
    n = sax.shape[0]
    if not MIN_SLICES <= n <= MAX_SLICES:
        raise InputError(f"dsl_asv needs a SAX stack of {MIN_SLICES}-{MAX_SLICES} slices, got {n}.")


def _sv_diagnostics(before: Volume, after: Volume, present: Tuple[int, ...]) -> Dict[str, Dict[str, float]]:
    from ..core.indices import relative_change, structure_key, surface_to_volume

    labs = tuple(l for l in present if l)
    sv_before, sv_after = surface_to_volume(before, labs), surface_to_volume(after, labs)
    change = relative_change(sv_before, sv_after)
    key = lambda d: {structure_key(k): float(v) for k, v in d.items()}  # noqa: E731
    return {"sv_before": key(sv_before), "sv_after": key(sv_after), "sv_relative_change": key(change)}


def _centroid_shifts(sax: Volume, grid: CanonicalGrid) -> np.ndarray:
    """The centroid alignment of the ``centroid_shape_interp`` baseline, in canonical voxels."""
    from .baselines import centroid_displacements

    return input_mm_to_canonical(centroid_displacements(sax)[0], grid, sax)


def dsl_asv(case, ctx, correction: str = "shift", iterations: int = DEFAULT_ITERATIONS,
            max_shift_mm: float = MAX_SHIFT_MM, start: str = "zero"):
    """The registered ``dsl_asv`` method (see the module docstring)."""

    if correction not in CORRECTIONS:
        raise InputError(f"Unknown correction {correction!r}; expected one of {', '.join(CORRECTIONS)}.")
    sax = case.sax
    _check_input(sax)
    timings = {}
    t0 = time.perf_counter()
    present = (0,) + tuple(l for l in present_labels(sax.array) if l in WHOLE_HEART)
    dsl_model, asv_model = load_models(ctx.device)
    timings["load_s"] = time.perf_counter() - t0
    ctx.report(0.05, "canonical grid")

    t1 = time.perf_counter()
    grid = canonical_geometry(sax, dsl_model.config.inplane_size, dsl_model.config.inplane_spacing_mm)
    labels_c = to_canonical_labels(sax, grid)
    prob = onehot(labels_c)
    clipped = bool(labels_c[:, [0, -1], :].any() or labels_c[:, :, [0, -1]].any())
    timings["canonical_s"] = time.perf_counter() - t1

    ctx.report(0.15, "DSL motion correction")
    t2 = time.perf_counter()
    spacing = float(grid.geometry.spacing[0])
    shifts = np.zeros((sax.shape[0], 2))
    updates = []
    corrected = prob
    if correction in ("shift", "network"):
        initial = _centroid_shifts(sax, grid) if start == "centroid" else None
        shifts, _, updates = correct_motion(dsl_model, prob, present, int(iterations), max_shift_mm / spacing,
                                            ctx.device, initial)
        corrected = shift_probabilities(prob, -shifts)
        if correction == "network":
            corrected = run_dsl(dsl_model, corrected, present, ctx.device)
    elif correction == "centroid":
        shifts = _centroid_shifts(sax, grid)
        corrected = shift_probabilities(prob, -shifts)
    timings["dsl_s"] = time.perf_counter() - t2

    ctx.report(0.5, "ASV super-resolution")
    t3 = time.perf_counter()
    out = super_resolve(asv_model, corrected, grid, ctx.geometry, present, ctx.device)
    labels = Volume.on(ctx.geometry, out)
    timings["asv_s"] = time.perf_counter() - t3

    displacements = canonical_to_input_mm(shifts, grid, sax)
    before = resample(sax, ctx.geometry, "nearest", nearest_extrapolation=True)
    diagnostics = {"mode": mode_of(present[1:]), "correction": correction, "iterations": int(iterations),
                   "start": start,
                   "shift_update_mm_per_iteration": [u * spacing for u in updates],
                   "canonical_grid": {"shape_kji": list(grid.geometry.shape), "spacing_mm": spacing,
                                      "reversed_slice_order": grid.reversed},
                   "heart_reaches_canonical_border": clipped,
                   **_sv_diagnostics(before, labels, present)}
    return Result(labels, displacements, timings=timings, diagnostics=diagnostics)


REQUIRES = ("torch", "monai")  # beyond the core's packages (monai: the networks' Convolution blocks)

METHODS = (Method(
    "dsl_asv", "DeepWHR: DSL motion correction + ASV super-resolution",
    "Label-domain motion correction by a CT-trained latent-volume-map autoencoder (per-slice displacements "
    "from its correction), then arbitrary-scale through-plane super-resolution by an implicit neural "
    "representation network. Whole heart or biventricular, from the input's labels.",
    dsl_asv,
    options=(Option("correction", str, "shift", "'shift': move the input slices by the displacements DSL "
                    "estimates (keeps the patient's slice shapes); 'network': use the DSL output itself "
                    "(the paper); 'centroid': centroid alignment instead of DSL, 'none': no motion correction "
                    "(ablations).", choices=CORRECTIONS),
             Option("iterations", int, DEFAULT_ITERATIONS, "DSL passes (each re-estimates the displacements "
                    "after moving the slices back).", minimum=1, maximum=5),
             Option("max_shift_mm", float, MAX_SHIFT_MM, "largest per-slice displacement searched (mm).",
                    minimum=2.0, maximum=60.0, advanced=True),
             Option("start", str, "zero", "DSL's starting point: 'zero' (the input as acquired) or "
                    "'centroid' (after the centroid alignment of the baseline).", choices=STARTS,
                    advanced=True)),
    kind="learned", requires=REQUIRES, estimates_displacements=True, memory=(64, 96), test_options={"iterations": 1}),)
