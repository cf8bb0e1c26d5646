"""Evaluation metrics on canonical label volumes, in millimetres where they have a unit.

Grids
-----
Every label metric compares ``result`` against ``truth`` *on the truth grid*: when the two
volumes live on different grids, :func:`to_truth_grid` resamples ``result`` with nearest-neighbour
interpolation (:func:`..core.geometry.resample`), and whatever lies outside the result's field of view
becomes background. The reference grid therefore defines what is measured, and a method cannot
improve its score by choosing its own output grid.

Definitions (stated once here; the functions repeat the essentials)
-------------------------------------------------------------------
* Dice per label: ``2 |A n B| / (|A| + |B|)``; **NaN when both masks are empty** (nothing to
  compare), 0 when exactly one is empty.
* Surface voxels: voxels of a mask with at least one face neighbour (6-connectivity) outside
  the mask; axes of length 1 (single-slice volumes) are treated as 2D, so a slice is not all edge.
* Directed surface distances A->B: the Euclidean distance in mm (anisotropic spacing through
  ``scipy.ndimage.distance_transform_edt(sampling=...)``) from every surface voxel of A to the
  nearest surface voxel of B.
* HD95 = ``max(P95(A->B), P95(B->A))``, the maximum of the two directed 95th percentiles
  (MONAI's ``compute_hausdorff_distance(percentile=95)``; MedPy's ``hd95`` instead takes one
  percentile of both directions pooled, which gives equal or smaller values).
* ASSD = mean of all surface distances of both directions pooled (MONAI's symmetric average
  surface distance).
* Empty masks for HD95/ASSD/Chamfer: **NaN when both are empty, +inf when exactly one is
  empty** (a missing structure is infinitely wrong, not unmeasurable).
* Surface-to-volume ratio S/V (DeepWHR): exposed voxel-face area (mm^2; each face's own area,
  so anisotropic spacing is handled) divided by the label volume (mm^3); NaN for an empty label.
  Staircase artefacts from slice misalignment inflate it.

Distances along the grid axes assume orthogonal voxel axes, which holds for every scanner grid
the engine receives; volumes use ``|det(ijk_to_ras)|`` and are exact for any grid.
"""

from __future__ import annotations

import itertools
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..core.case import LaxView
from ..core.errors import InputError
from ..core.geometry import Volume, resample
from ..core.indices import (MYOCARDIAL_DENSITY_G_PER_ML, Labels, label_tuple, require_label_volume,
                            structure_key, surface_to_volume, volumes_ml)
from ..core.labels import BIVENTRICULAR, MYO, present_labels


# Input handling shared by all label metrics
def to_truth_grid(result: Volume, truth: Volume) -> Volume:
    """``result`` on the truth grid: unchanged when the grids already agree, otherwise
    nearest-neighbour resampled by physical position with background outside its field of view.

    This is the one place where label metrics reconcile grids, so every metric measures the
    same thing on the same voxels.
    """
    require_label_volume(result, "result")
    require_label_volume(truth, "truth")
    if result.geometry.same_as(truth.geometry):
        return result
    return resample(result, truth.geometry, "nearest", default_value=0)


def _sampling_kji(volume: Volume) -> np.ndarray:
    """Voxel size in mm in array-axis order (k, j, i), as scipy's ``sampling`` expects."""
    return volume.spacing[::-1].copy()


def _dice_of_masks(a: np.ndarray, b: np.ndarray) -> float:
    total = np.count_nonzero(a) + np.count_nonzero(b)
    if total == 0:
        return float("nan")
    return float(2.0 * np.count_nonzero(a & b) / total)


def dice(result: Volume, truth: Volume, labels: Labels = BIVENTRICULAR) -> Dict[int, float]:
    """Dice per label on the truth grid: ``{label: 2|A n B| / (|A| + |B|)}``.

    Both masks empty gives NaN (undefined, so it does not silently count as a perfect 1 in a
    mean); exactly one empty gives 0.
    """
    r = to_truth_grid(result, truth).array
    t = truth.array
    return {lab: _dice_of_masks(r == lab, t == lab) for lab in label_tuple(labels)}


def _mean_ignoring_nan(values: Iterable[float]) -> float:
    vals = np.asarray(list(values), dtype=float)
    if vals.size == 0 or np.all(np.isnan(vals)):
        return float("nan")
    return float(np.nanmean(vals))


def lax_dice(result_3d: Volume, lax_view: LaxView, labels: Labels = BIVENTRICULAR) -> Dict[int, float]:
    """Dice of the 3D result sliced on a long-axis view's plane against that view's labels.

    The result is nearest-neighbour resampled onto the view's single-slice grid (its pose comes
    from the view's own geometry), i.e. the SRHeart evaluation against real LAX contours.
    """
    if not isinstance(lax_view, LaxView):
        raise InputError(f"lax_dice expects a LaxView, got {type(lax_view).__name__}.")
    return dice(result_3d, lax_view.labels, labels)


def _overlap_slices(n: int, shift: int) -> Tuple[slice, slice]:
    """(source, destination) slices along one axis for moving content by ``shift`` voxels
    with zero fill (no wrap-around)."""
    if shift >= 0:
        return slice(0, n - shift), slice(shift, n)
    return slice(-shift, n), slice(0, n + shift)


def _shifted_dice(r_mask: np.ndarray, t_mask: np.ndarray, t_count: int, di: int, dj: int) -> float:
    """Dice of ``t_mask`` against ``r_mask`` moved by ``+di`` along i and ``+dj`` along j,
    computed on the overlapping windows without building the shifted array."""
    n_j, n_i = r_mask.shape[1:]
    src_j, dst_j = _overlap_slices(n_j, dj)
    src_i, dst_i = _overlap_slices(n_i, di)
    r_win = r_mask[:, src_j, src_i]
    total = np.count_nonzero(r_win) + t_count
    if total == 0:
        return float("nan")
    return float(2.0 * np.count_nonzero(r_win & t_mask[:, dst_j, dst_i]) / total)


def shift_searched_dice(result: Volume, truth: Volume, labels: Labels = BIVENTRICULAR,
                        max_shift_px: int = 5) -> Dict[str, object]:
    """Dice after the best integer in-plane shift of the whole result (SRHeart/MCSR habit).

    NOT a plain Dice: every integer shift ``(di, dj)`` with ``|di|, |dj| <= max_shift_px``
    voxels of the truth grid (content moved by ``+di`` along i and ``+dj`` along j, zero fill)
    is tried and the one maximising the mean Dice over ``labels`` is kept; ties go to the
    smallest shift. Report it only next to, and labelled apart from, plain Dice.

    Returns ``{'dice': {label: dice}, 'shift_px': (di, dj), 'shift_mm': (di * s_i, dj * s_j)}``.
    """
    max_shift_px = int(max_shift_px)
    if max_shift_px < 0:
        raise InputError(f"max_shift_px must be a non-negative number of voxels, got {max_shift_px}.")
    labs = label_tuple(labels)
    r = to_truth_grid(result, truth).array
    masks = [(r == lab, truth.array == lab) for lab in labs]
    counts = [np.count_nonzero(t) for _, t in masks]
    rng = range(-max_shift_px, max_shift_px + 1)
    shifts = sorted(itertools.product(rng, rng), key=lambda s: (s[0] ** 2 + s[1] ** 2, s))
    best_shift, best_scores, best_mean = (0, 0), None, -np.inf
    for di, dj in shifts:
        scores = [_shifted_dice(rm, tm, c, di, dj) for (rm, tm), c in zip(masks, counts)]
        mean = _mean_ignoring_nan(scores)
        if best_scores is None or mean > best_mean + 1e-12:
            best_shift, best_scores, best_mean = (di, dj), scores, mean
    s = truth.spacing
    return {"dice": dict(zip(labs, best_scores)), "shift_px": best_shift,
            "shift_mm": (best_shift[0] * float(s[0]), best_shift[1] * float(s[1]))}


def _face_footprint(shape: Sequence[int]) -> np.ndarray:
    """6-connectivity footprint that ignores axes of length 1 (a single slice is 2D)."""
    footprint = ndimage.generate_binary_structure(3, 1)
    for axis, n in enumerate(shape):
        if n == 1:
            footprint = np.take(footprint, [1], axis=axis)
    return footprint


def _surface_voxels(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, footprint, border_value=0)


def _union_box(a: np.ndarray, b: np.ndarray) -> Tuple[slice, ...]:
    """Bounding box of ``a | b`` grown by one voxel: cropping to it leaves every surface
    voxel and every nearest-surface distance unchanged, and makes the transforms cheap."""
    box = ndimage.find_objects((a | b).astype(np.uint8))[0]
    return tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, a.shape))


def _directed_surface_distances(a: np.ndarray, b: np.ndarray, sampling: np.ndarray,
                                footprint: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(distances A->B, distances B->A) in mm for two non-empty masks."""
    box = _union_box(a, b)
    sa, sb = _surface_voxels(a[box], footprint), _surface_voxels(b[box], footprint)
    to_b = ndimage.distance_transform_edt(~sb, sampling=sampling)
    to_a = ndimage.distance_transform_edt(~sa, sampling=sampling)
    return to_b[sa], to_a[sb]


def _empty_rule(a_empty: bool, b_empty: bool) -> float:
    return float("nan") if (a_empty and b_empty) else float("inf")


def _surface_distance_summary(result_on_grid: Volume, truth: Volume,
                              labels: Tuple[int, ...]) -> Dict[int, Dict[str, float]]:
    """{label: {'hd95': mm, 'assd': mm}} from one pair of distance transforms per label."""
    sampling = _sampling_kji(truth)
    footprint = _face_footprint(truth.shape)
    out = {}
    for lab in labels:
        a, b = result_on_grid.array == lab, truth.array == lab
        a_empty, b_empty = not a.any(), not b.any()
        if a_empty or b_empty:
            value = _empty_rule(a_empty, b_empty)
            out[lab] = {"hd95": value, "assd": value}
            continue
        d_ab, d_ba = _directed_surface_distances(a, b, sampling, footprint)
        out[lab] = {"hd95": float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))),
                    "assd": float(np.concatenate([d_ab, d_ba]).mean())}
    return out


def hd95(result: Volume, truth: Volume, labels: Labels = BIVENTRICULAR) -> Dict[int, float]:
    """95th-percentile symmetric Hausdorff distance (mm) per label on the truth grid.

    ``max(P95(result->truth), P95(truth->result))`` over surface-voxel distances (MONAI
    definition, see the module docstring); NaN if both masks are empty, inf if one is.
    """
    summary = _surface_distance_summary(to_truth_grid(result, truth), truth, label_tuple(labels))
    return {lab: v["hd95"] for lab, v in summary.items()}


def assd(result: Volume, truth: Volume, labels: Labels = BIVENTRICULAR) -> Dict[int, float]:
    """Average symmetric surface distance (mm) per label on the truth grid: the mean of all
    surface-voxel distances of both directions pooled; NaN if both masks are empty, inf if one is."""
    summary = _surface_distance_summary(to_truth_grid(result, truth), truth, label_tuple(labels))
    return {lab: v["assd"] for lab, v in summary.items()}


def _points_of(surface, name: str) -> np.ndarray:
    """(N, 3) float array of the vertices of a vtkPolyData or of a point array."""
    if hasattr(surface, "GetPoints"):
        from ..core.surfaces import polydata_points

        return polydata_points(surface)
    pts = np.asarray(surface, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"Surface {name} must be a vtkPolyData or an (N, 3) array of points, got shape {pts.shape}.")
    if not np.all(np.isfinite(pts)):
        raise InputError(f"Surface {name} contains non-finite point coordinates.")
    return pts


def _distances_to_mesh(points: np.ndarray, mesh, name: str) -> np.ndarray:
    """Unsigned distance of each point to the triangles of ``mesh`` (vtkImplicitPolyDataDistance)."""
    import vtk
    from vtk.util.numpy_support import numpy_to_vtk, vtk_to_numpy

    if not hasattr(mesh, "GetNumberOfPolys") or mesh.GetNumberOfPolys() == 0:
        raise InputError(f"Point-to-surface Chamfer needs surface {name} as a vtkPolyData with polygons.")
    implicit = vtk.vtkImplicitPolyDataDistance()
    implicit.SetInput(mesh)
    out = vtk.vtkDoubleArray()
    implicit.FunctionValue(numpy_to_vtk(np.ascontiguousarray(points), deep=1), out)
    return np.abs(vtk_to_numpy(out))


def chamfer_distance(surface_a, surface_b, to_surface: bool = False) -> float:
    """Symmetric Chamfer distance (mm): the mean of the two directed mean nearest distances,
    ``(mean_a d(a, B) + mean_b d(b, A)) / 2``.

    ``surface_a``/``surface_b`` are vtkPolyData or (N, 3) point arrays in mm. By default
    ``d`` is the distance to the nearest *vertex* of the other surface (scipy cKDTree), the usual
    point-cloud Chamfer; it is biased upwards by about the mesh edge length. With
    ``to_surface=True`` (both inputs vtkPolyData with triangles) ``d`` is the exact distance to
    the other *mesh* (vtkImplicitPolyDataDistance). NaN if both are empty, inf if one is.
    """
    d_ab, d_ba = _directed_distances(surface_a, surface_b, to_surface)
    if d_ab is None:
        return d_ba
    return float((d_ab.mean() + d_ba.mean()) / 2.0)


def _directed_distances(surface_a, surface_b, to_surface: bool):
    """(d(a, B), d(b, A)) per point; (None, empty-rule value) when a surface is empty."""
    pa, pb = _points_of(surface_a, "A"), _points_of(surface_b, "B")
    if len(pa) == 0 or len(pb) == 0:
        return None, _empty_rule(len(pa) == 0, len(pb) == 0)
    if to_surface:
        return _distances_to_mesh(pa, surface_b, "B"), _distances_to_mesh(pb, surface_a, "A")
    return cKDTree(pb).query(pa)[0], cKDTree(pa).query(pb)[0]


def mesh_assd(surface_a, surface_b, to_surface: bool = True) -> float:
    """Average symmetric surface distance (mm) between two meshes: the mean of every vertex's
    distance to the other surface, both directions pooled (exact point-to-mesh distances by
    default). NaN if both are empty, inf if one is."""
    d_ab, d_ba = _directed_distances(surface_a, surface_b, to_surface)
    if d_ab is None:
        return d_ba
    return float(np.concatenate([d_ab, d_ba]).mean())


def curvature_spread(surface) -> float:
    """Robust spread (1/mm) of the mean curvature over a mesh's vertices, 1.4826 x the median
    absolute deviation (the standard deviation for normal data): a smoothness measure that
    staircase and noise raise, and that a few sliver triangles (whose curvature estimates explode)
    cannot dominate. NaN for an empty mesh."""
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    if surface.GetNumberOfPoints() == 0:
        return float("nan")
    f = vtk.vtkCurvatures()
    f.SetInputData(surface)
    f.SetCurvatureTypeToMean()
    f.Update()
    h = vtk_to_numpy(f.GetOutput().GetPointData().GetScalars())
    return float(1.4826 * np.median(np.abs(h - np.median(h))))


def _displacement_array(d, name: str, unmeasured_ok: bool = False) -> np.ndarray:
    """``unmeasured_ok``: NaN rows (slices without labels) are allowed, infinities never."""
    arr = np.asarray(d, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputError(f"The {name} displacements must be an (n_slices, 2) array of mm, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr) | (unmeasured_ok & np.isnan(arr))):
        raise InputError(f"The {name} displacements contain non-finite values.")
    return arr


def displacement_error(estimated, true, remove_mean: bool = False) -> Dict[str, object]:
    """Per-slice Euclidean error (mm) between estimated and true in-plane displacements.

    ``remove_mean=False``: the absolute error ``|d_est[k] - d_true[k]|``.
    ``remove_mean=True``: the *mean-removed* (relative) error, each set centred on its own mean
    first. A common shift of all slices moves the whole heart, which a segmentation-only method
    cannot observe (gauge freedom), so this is the fair measure of inter-slice alignment.

    Returns ``{'mean_mm': float, 'per_slice': (n,) array, 'remove_mean': bool}``.
    """
    est, tru = _displacement_array(estimated, "estimated", unmeasured_ok=True), _displacement_array(true, "true")
    if est.shape != tru.shape:
        raise InputError(f"Estimated displacements {est.shape} and true displacements {tru.shape} must have the "
                         "same shape (n_slices, 2).")
    measured = np.isfinite(est).all(axis=1)  # NaN rows: slices without labels, not measured (skipped)
    if remove_mean and measured.any():
        est, tru = est - est[measured].mean(axis=0), tru - tru[measured].mean(axis=0)
    per_slice = np.linalg.norm(est - tru, axis=1)
    mean = float(per_slice[measured].mean()) if measured.any() else float("nan")
    return {"mean_mm": mean, "per_slice": per_slice, "remove_mean": bool(remove_mean)}


def evaluate(result: Volume, truth: Volume, labels: Optional[Labels] = None, *,
             estimated_displacements=None, true_displacements=None,
             lax_views: Sequence[LaxView] = (), shift_search_px: Optional[int] = None) -> Dict[str, float]:
    """All plain metrics as one flat dict (for the CLI ``evaluate`` and the benchmark).

    Per structure (``labels`` default: those present in ``truth``), with ``KEY`` from
    ``labels.STRUCTURES``: ``dice_KEY``, ``hd95_KEY``, ``assd_KEY`` (mm), ``sv_KEY`` and
    ``sv_truth_KEY`` (S/V, 1/mm), ``vol_ml_KEY`` and ``vol_truth_ml_KEY``; plus ``dice_mean``,
    ``hd95_mean``, ``assd_mean`` over the structures (NaN entries skipped), and when label 2 is
    evaluated ``myo_mass_g`` / ``myo_mass_truth_g``. Volumes and S/V of the result are measured
    on the truth grid, like everything else.

    Optional extras: ``displacement_error_mm`` and ``displacement_error_mean_removed_mm`` when
    both displacement sets are given; ``lax_dice_<view>_KEY`` per LAX view; and, only when
    ``shift_search_px`` is set, the clearly separate ``dice_shift_searched_KEY``,
    ``dice_shift_searched_mean`` and ``shift_searched_di_px`` / ``shift_searched_dj_px``.
    """
    r = to_truth_grid(result, truth)
    labs = present_labels(truth.array) if labels is None else label_tuple(labels)
    if not labs:
        raise InputError("The truth segmentation is empty; give the labels to evaluate explicitly.")
    out: Dict[str, float] = {}
    dices = dice(r, truth, labs)
    distances = _surface_distance_summary(r, truth, labs)
    sv, sv_truth = surface_to_volume(r, labs), surface_to_volume(truth, labs)
    vol, vol_truth = volumes_ml(r, labs), volumes_ml(truth, labs)
    for lab in labs:
        key = structure_key(lab)
        out[f"dice_{key}"] = dices[lab]
        out[f"hd95_{key}"] = distances[lab]["hd95"]
        out[f"assd_{key}"] = distances[lab]["assd"]
        out[f"sv_{key}"], out[f"sv_truth_{key}"] = sv[lab], sv_truth[lab]
        out[f"vol_ml_{key}"], out[f"vol_truth_ml_{key}"] = vol[lab], vol_truth[lab]
    out["dice_mean"] = _mean_ignoring_nan(dices.values())
    out["hd95_mean"] = _mean_ignoring_nan(d["hd95"] for d in distances.values())
    out["assd_mean"] = _mean_ignoring_nan(d["assd"] for d in distances.values())
    if MYO in labs:
        out["myo_mass_g"] = vol[MYO] * MYOCARDIAL_DENSITY_G_PER_ML
        out["myo_mass_truth_g"] = vol_truth[MYO] * MYOCARDIAL_DENSITY_G_PER_ML
    if (estimated_displacements is None) != (true_displacements is None):
        raise InputError("Give both estimated and true displacements to evaluate motion, or neither.")
    if estimated_displacements is not None:
        out["displacement_error_mm"] = displacement_error(estimated_displacements, true_displacements)["mean_mm"]
        out["displacement_error_mean_removed_mm"] = displacement_error(
            estimated_displacements, true_displacements, remove_mean=True)["mean_mm"]
    for view in lax_views:
        for lab, value in lax_dice(result, view, labs).items():
            out[f"lax_dice_{view.view}_{structure_key(lab)}"] = value
    if shift_search_px is not None:
        searched = shift_searched_dice(r, truth, labs, shift_search_px)
        for lab, value in searched["dice"].items():
            out[f"dice_shift_searched_{structure_key(lab)}"] = value
        out["dice_shift_searched_mean"] = _mean_ignoring_nan(searched["dice"].values())
        out["shift_searched_di_px"], out["shift_searched_dj_px"] = (float(s) for s in searched["shift_px"])
    return out
