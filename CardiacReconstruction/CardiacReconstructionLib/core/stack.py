"""Per-slice operations on SAX stacks: centroids, in-plane shifts, 2D signed distances.

All displacements follow the convention of :mod:`.case` (mm along the stack's i and j axes).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from .axes import IDENTITY, restore_axes
from .geometry import Volume
from .labels import LV, MYO, RV


def slice_centroids(volume: Volume, labels: Sequence[int]) -> np.ndarray:
    """Centroid of ``labels`` in every slice, in mm along the stack's (i, j) axes from voxel
    (0, 0); rows of NaN where a slice has none of the labels. Shape (n_slices, 2)."""
    mask = np.isin(volume.array, labels)
    si, sj = volume.spacing[:2]
    out = np.full((volume.shape[0], 2), np.nan)
    for k in range(volume.shape[0]):
        if mask[k].any():
            cj, ci = ndimage.center_of_mass(mask[k])
            out[k] = (ci * si, cj * sj)
    return out


def slice_areas(volume: Volume, labels: Sequence[int]) -> np.ndarray:
    """Area (mm^2) of ``labels`` in every slice."""
    si, sj = volume.spacing[:2]
    return np.isin(volume.array, labels).sum(axis=(1, 2)) * si * sj


def shift_slices(volume: Volume, shifts_mm: np.ndarray, order: int = 1) -> Volume:
    """Move the content of every slice by ``shifts_mm[k] = (dx, dy)`` mm (positive = along +i,
    +j). To undo estimated displacements d, pass ``-d``. ``order`` 0 keeps labels exact; edges
    repeat the border value so no artificial background enters the field of view."""
    shifts_mm = np.asarray(shifts_mm, float).reshape(volume.shape[0], 2)
    si, sj = volume.spacing[:2]
    out = np.empty_like(volume.array)
    for k in range(volume.shape[0]):
        dx, dy = shifts_mm[k]
        if dx == 0 and dy == 0:
            out[k] = volume.array[k]
        else:
            out[k] = ndimage.shift(volume.array[k], (dy / sj, dx / si), order=order, mode="nearest")
    return volume.with_array(out)


def corrected_image(image: Volume, displacements: np.ndarray, axis_order=IDENTITY, order: int = 1) -> Volume:
    """The motion-corrected copy of a SAX image on the working grid (slices along k): every slice
    moved by ``-displacements[k]`` (slices whose displacement was not measured, NaN, stay where they
    are), returned in the file's axis order ``axis_order`` (the case's)."""
    shifts = np.nan_to_num(np.asarray(displacements, float))
    return restore_axes(shift_slices(image, -shifts, order=order), tuple(axis_order))


def slice_signed_distances(volume: Volume, label_groups: Sequence[Sequence[int]],
                           empty_distance_mm: float) -> np.ndarray:
    """2D signed distance (mm, negative inside) of each label group in every slice, float32
    ``[len(groups), k, j, i]``. Slices without the structure get ``+empty_distance_mm``.

    SimpleITK's Maurer map puts the zero on the inner boundary voxels; it is shifted by half a
    voxel so that the zero level lies on the mask boundary and ``sdf < 0`` is the mask itself."""
    import SimpleITK as sitk

    si, sj = volume.spacing[:2]
    half_voxel = 0.5 * min(si, sj)
    out = np.full((len(label_groups),) + volume.shape, empty_distance_mm, np.float32)
    for g, labs in enumerate(label_groups):
        mask = np.isin(volume.array, labs)
        for k in np.flatnonzero(mask.any(axis=(1, 2))):
            img = sitk.GetImageFromArray(mask[k].astype(np.uint8))
            img.SetSpacing((float(si), float(sj)))
            sdf = sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False,
                                               useImageSpacing=True)
            out[g, k] = sitk.GetArrayFromImage(sdf) - half_voxel
    return out


def base_is_first(labels: np.ndarray) -> bool:
    """True when slice 0 of a (k, j, i) label stack is basal.

    Whole heart: the atria and great vessels (labels 4-7) lie on the basal side of the
    ventricles. Otherwise the LV is widest at the base and tapers to the apex, so its LV+MYO
    area-weighted mean slice lies on the basal side of the middle of its extent (this generalises
    'the end with the larger cross-section' to stacks whose end slices show no LV at all); a
    stack without LV counts slice 0 as basal."""
    k = np.arange(labels.shape[0], dtype=float)
    atria = np.isin(labels, (4, 5, 6, 7)).sum(axis=(1, 2)).astype(float)
    ventricles = np.isin(labels, (LV, MYO, RV)).sum(axis=(1, 2)).astype(float)
    if atria.sum() > 0 and ventricles.sum() > 0:
        return float((atria * k).sum() / atria.sum()) <= float((ventricles * k).sum() / ventricles.sum())
    area = np.isin(labels, (LV, MYO)).sum(axis=(1, 2)).astype(float)
    present = np.flatnonzero(area)
    if present.size == 0:
        return True
    mean_k = float((area * k).sum() / area.sum())
    return mean_k <= (present[0] + present[-1]) / 2
