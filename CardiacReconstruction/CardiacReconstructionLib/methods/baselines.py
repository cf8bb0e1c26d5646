"""Classical reconstructions users would otherwise reach for; every benchmark's reference.

* ``nearest``: each output slice copies the input slice whose slab contains it.
* ``linear``: linear through-plane interpolation of the one-hot labels, then argmax.
* ``shape_interp``: shape-based interpolation (Raya & Udupa 1990; Herman et al. 1992):
  per-slice 2D signed distance maps of every structure, interpolated linearly through-plane
  and thresholded at zero. The LV is interpolated as nested shapes (epicardium = LV blood
  pool + myocardium, endocardium = blood pool) so no gap opens between cavity and wall.
* ``centroid_shape_interp``: per-slice LV (+ myocardium) centroids, a smooth (polynomial)
  fit through them along the stack, each slice moved onto the fit, then shape-based
  interpolation. The displacement of a slice is its centroid's offset from the fit.

Beyond the first and last slice centres (half a slab each) all of them hold the end slice.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from ..core.case import Case
from ..core.geometry import Geometry, Volume, resample, resample_onehot
from ..core.labels import LV, MYO, RV, present_labels
from ..core.api import Method, Option, Result, RunContext
from ..core.stack import shift_slices, slice_areas, slice_centroids, slice_signed_distances


def _zero_displacements(case: Case) -> np.ndarray:
    return np.zeros((case.n_slices, 2))


def nearest(case: Case, ctx: RunContext) -> Result:
    labels = resample(case.sax, ctx.geometry, "nearest", nearest_extrapolation=True)
    return Result(labels.with_array(labels.array.astype(np.uint8)), _zero_displacements(case))


def linear(case: Case, ctx: RunContext) -> Result:
    present = (0,) + present_labels(case.sax.array)
    probs = resample_onehot(case.sax, ctx.geometry, present, nearest_extrapolation=True)
    out = np.asarray(present, np.uint8)[np.argmax(probs, axis=0)]
    return Result(Volume.on(ctx.geometry, out), _zero_displacements(case))


def _shape_groups(present: Tuple[int, ...]) -> Tuple[List[Tuple[int, Tuple[int, ...]]], bool]:
    """(label painted, source labels) per interpolated shape, and whether the LV is nested
    (the epicardial shape is painted as myocardium, the endocardial one as blood pool)."""
    nested = LV in present and MYO in present
    groups = [(MYO, (LV, MYO))] if nested else [(l, (l,)) for l in (LV, MYO) if l in present]
    groups += [(l, (l,)) for l in present if l > MYO]
    if nested:
        groups.append((LV, (LV,)))
    return groups, nested


def shape_based_interpolation(sax: Volume, geometry: Geometry, shifts_mm=None) -> Volume:
    """Shape-based interpolation of ``sax`` onto ``geometry``, after moving each slice by
    ``shifts_mm`` (mm, optional). Slices lacking a structure hold a signed distance of one
    input slice spacing, so structures taper off between their last slice and the next."""
    present = present_labels(sax.array)
    groups, nested = _shape_groups(present)
    sdf = slice_signed_distances(sax, [g[1] for g in groups], empty_distance_mm=float(sax.spacing[2]))
    resampled = []
    for g in range(len(groups)):
        field = Volume(sdf[g], sax.ijk_to_ras)
        if shifts_mm is not None:
            field = shift_slices(field, shifts_mm, order=1)
        resampled.append(resample(field, geometry, "linear", nearest_extrapolation=True).array)
    stacked = np.stack(resampled)
    painted = stacked[:-1] if nested else stacked
    winner = np.argmin(painted, axis=0)
    out = np.where(painted.min(axis=0) < 0, np.asarray([g[0] for g in groups[:len(painted)]], np.uint8)[winner], 0)
    if nested:
        out = np.where((out == MYO) & (stacked[-1] < 0), LV, out)
    return Volume.on(geometry, out.astype(np.uint8))


def shape_interp(case: Case, ctx: RunContext) -> Result:
    return Result(shape_based_interpolation(case.sax, ctx.geometry), _zero_displacements(case))


#: Structures whose per-slice centroids track the heart, in order of preference: the LV ring is
#: the most reliable; slices without it (the RV outflow at the base, say) fall back on the RV,
#: then on everything labelled.
CENTROID_TRACKS = ((LV, MYO), (RV,), (LV, MYO, RV, 4, 5, 6, 7))


def _track_fit(centroids: np.ndarray, areas: np.ndarray, have: np.ndarray, degree: int,
               robust_iterations: int) -> np.ndarray:
    """Area-weighted (tiny end slices matter less), robust (Huber reweighting: a few badly
    shifted slices do not tilt the axis) polynomial fit of centroids along the stack."""
    k = np.arange(len(centroids), dtype=float)
    w_area = np.sqrt(areas[have])
    robust = np.ones(len(have))
    huber_mm = 1.0  # residuals beyond this count linearly, not quadratically
    for _ in range(robust_iterations + 1):
        coef = [np.polyfit(k[have], centroids[have, a], degree, w=w_area * robust) for a in (0, 1)]
        fit = np.stack([np.polyval(c, k) for c in coef], 1)
        residual = np.linalg.norm(centroids[have] - fit[have], axis=1)
        robust = np.sqrt(np.minimum(1.0, huber_mm / np.maximum(residual, 1e-9)))
    return fit


def centroid_displacements(sax: Volume, fit_degree: int = 1, robust_iterations: int = 5) -> Tuple[np.ndarray, Dict]:
    """Per-slice displacement (mm): the offset of the slice's centroid from a smooth fit of
    the centroids along the stack, using the first of :data:`CENTROID_TRACKS` that the slice
    contains and that enough slices share. Slices with no usable track get zero."""
    d = np.zeros((sax.shape[0], 2))
    done = np.zeros(sax.shape[0], bool)
    used = np.full(sax.shape[0], -1)
    for t, track in enumerate(CENTROID_TRACKS):
        centroids = slice_centroids(sax, track)
        have = np.flatnonzero(~np.isnan(centroids[:, 0]))
        todo = [k for k in have if not done[k]]
        if len(have) < fit_degree + 2 or not todo:  # too few slices to tell motion from anatomy
            continue
        fit = _track_fit(centroids, slice_areas(sax, track), have, fit_degree, robust_iterations)
        d[todo] = centroids[todo] - fit[todo]
        done[todo], used[todo] = True, t
    return d, {"track_per_slice": used.tolist(), "aligned_slices": int(done.sum())}


def centroid_shape_interp(case: Case, ctx: RunContext, fit_degree: int = 1) -> Result:
    d, diag = centroid_displacements(case.sax, fit_degree)
    ctx.report(0.3, "slices aligned on the LV centroid fit")
    labels = shape_based_interpolation(case.sax, ctx.geometry, shifts_mm=-d)
    return Result(labels, d, diagnostics=diag)


METHODS = (
    Method("nearest", "Nearest-neighbour upsampling",
           "Each output slice copies the input slice whose slab contains it. No motion correction.", nearest,
           memory=(4, 16)),
    Method("linear", "Linear interpolation of one-hot labels",
           "Through-plane linear interpolation of each label's indicator, then argmax. No motion correction.",
           linear, memory=(48, 16)),
    Method("shape_interp", "Shape-based interpolation",
           "Per-slice signed distance maps interpolated through-plane (smooth, no motion correction).",
           shape_interp, memory=(48, 16)),
    Method("centroid_shape_interp", "Centroid alignment + shape-based interpolation",
           "Moves every slice so its LV centroid lies on a smooth fit through all centroids, then "
           "shape-based interpolation. Estimates per-slice displacements.", centroid_shape_interp,
           options=(Option("fit_degree", int, 1, "Polynomial degree of the centroid fit along the stack "
                           "(1: straight long axis, 2: allows curvature).", choices=(1, 2)),),
           estimates_displacements=True, memory=(48, 16)),
)
