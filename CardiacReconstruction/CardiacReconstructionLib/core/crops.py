"""Heart-centred 2D crops of a short-axis stack at a fixed physical pixel size, and back.

Why: DeepRecon's networks see square crops of a fixed field of view (``size`` x ``pixel_mm``)
whatever the scanner's in-plane spacing, so every image goes through one resampling in and one
out. Plain functions on ``[k, j, i]`` arrays (slices along k, the project's convention after
:func:`..core.axes.working_stack`), with the in-plane spacing ``(sj, si)`` in mm; centres are
continuous ``(j, i)`` voxel indices of the input grid.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from scipy import ndimage

from .errors import InputError


def crop_grid(centre_ji: Sequence[float], spacing_ji: Sequence[float], size: int, pixel_mm: float) -> np.ndarray:
    """Input-grid (j, i) indices [2, size, size] of the crop pixels' centres."""
    offsets = (np.arange(size) - (size - 1) / 2.0) * pixel_mm
    jj = centre_ji[0] + offsets[:, None] / spacing_ji[0]
    ii = centre_ji[1] + offsets[None, :] / spacing_ji[1]
    return np.stack(np.broadcast_arrays(jj, ii))


def sample_crops(stack: np.ndarray, centres: np.ndarray, spacing_ji: Sequence[float], size: int, pixel_mm: float,
                 labels: bool = False, fill: float = 0.0) -> np.ndarray:
    """Crops [K, size, size] of every slice of ``stack`` [K, J, I] around ``centres`` [K, 2]:
    linear interpolation for images, nearest for ``labels``; ``fill`` outside the slice."""
    if stack.ndim != 3 or len(centres) != stack.shape[0]:
        raise InputError(f"Expected a stack [slices, rows, cols] and one centre per slice; got {stack.shape} and "
                         f"{len(centres)} centres.")
    out = np.empty((stack.shape[0], size, size), np.uint8 if labels else np.float32)
    for k, c in enumerate(centres):
        grid = crop_grid(c, spacing_ji, size, pixel_mm)
        out[k] = ndimage.map_coordinates(stack[k].astype(np.float32, copy=False), grid, order=0 if labels else 1,
                                         mode="constant", cval=fill)
    return out


def paste_grid(shape_ji: Tuple[int, int], centre_ji: Sequence[float], spacing_ji: Sequence[float], size: int,
               pixel_mm: float) -> np.ndarray:
    """Crop-pixel (row, col) coordinates [2, J, I] of every pixel of an output slice: the inverse
    of :func:`crop_grid`, for putting a crop back on a grid of ``shape_ji`` and ``spacing_ji``."""
    jj, ii = np.meshgrid(np.arange(shape_ji[0]), np.arange(shape_ji[1]), indexing="ij")
    centre = (size - 1) / 2.0
    return np.stack([centre + (jj - centre_ji[0]) * spacing_ji[0] / pixel_mm,
                     centre + (ii - centre_ji[1]) * spacing_ji[1] / pixel_mm])


def window_bounds(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> Tuple[float, float]:
    """The ``low``-``high`` percentile window (lo, hi) of the finite intensities of a volume
    (numpy float32 scalars, so that arithmetic with them stays in single precision)."""
    image = np.asarray(image, dtype=np.float32)
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        raise InputError("The image has no finite intensities.")
    lo, hi = np.percentile(finite, [low, high])
    if hi <= lo:
        raise InputError(f"The image is constant ({lo:g}); expected a cine MR image with contrast.")
    return lo, hi


def intensity_window(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Image -> float32 in [-1, 1] by the ``low``-``high`` percentile window of the whole volume:
    the normalisation the ACDC training images had at their source (0.5-99.5 %, per volume), so
    that any scanner's intensities reach the networks on the same scale."""
    image = np.asarray(image, dtype=np.float32)
    lo, hi = window_bounds(image, low, high)
    return (np.clip((np.nan_to_num(image, nan=lo) - lo) / (hi - lo), 0, 1) * 2 - 1).astype(np.float32)


def from_window(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The inverse of :func:`intensity_window`: network intensities in [-1, 1] (clipped) back onto
    an image's window ``(lo, hi)`` (:func:`window_bounds`), float32."""
    return (lo + (np.clip(values, -1, 1) + 1) / 2 * (hi - lo)).astype(np.float32)


def label_centres(labels: np.ndarray, fallback: bool = True) -> np.ndarray:
    """Per-slice (j, i) centre of mass of the foreground of ``labels`` [K, J, I]; slices without
    foreground take the linear interpolation of their neighbours' centres (the end slices the
    nearest), or NaN when ``fallback`` is False."""
    centres = np.full((labels.shape[0], 2), np.nan)
    for k in range(labels.shape[0]):
        fg = labels[k] > 0
        if fg.any():
            centres[k] = ndimage.center_of_mass(fg)
    if fallback:
        ok = np.isfinite(centres[:, 0])
        if not ok.any():
            raise InputError("No slice contains the heart: nothing to centre the crops on.")
        ks = np.arange(labels.shape[0])
        for a in range(2):
            centres[:, a] = np.interp(ks, ks[ok], centres[ok, a])
    return centres
