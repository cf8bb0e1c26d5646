"""The canonical in-plane grid of a SAX stack, shared by the label-domain networks.

The DSL/ASV and MCSR networks were trained on stacks resampled so that every heart looks alike
in-plane: the grid's slices coincide with the input's (only the in-plane sampling changes), its
i axis points from the LV to the RV, it is centred on the mean slice centroid and its slices run
base -> apex. Why a module of its own: two methods and two training commands use the same grid
and the same maps between its voxel shifts and the input's millimetre displacements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..core.errors import InputError
from ..core.geometry import Geometry, Volume, resample
from ..core.labels import LV, MYO, RV
from ..core.stack import base_is_first

N_CLASSES = 8  # background + 7 canonical labels
CANONICAL_SIZE = 64
CANONICAL_SPACING_MM = 2.5


def _mean_slice_centroid(labels: np.ndarray) -> Tuple[float, float]:
    """Mean over slices of each slice's foreground centroid (i, j) in voxels: every slice counts
    once, so large basal slices do not pull the centre, and a common shift of all slices moves
    it by exactly that shift."""
    per_slice = []
    for sl in labels:
        jj, ii = np.nonzero(sl)
        if ii.size:
            per_slice.append((ii.mean(), jj.mean()))
    if not per_slice:
        raise InputError("The SAX segmentation is empty: it contains no labelled voxels.")
    ci, cj = np.mean(per_slice, axis=0)
    return float(ci), float(cj)


def _lv_to_rv_direction(labels: np.ndarray, matrix: np.ndarray) -> Optional[np.ndarray]:
    """RAS vector from the LV (+ myocardium) centroid to the RV centroid, None if either is absent."""
    lv = np.argwhere(np.isin(labels, (LV, MYO)))
    rv = np.argwhere(labels == RV)
    if len(lv) == 0 or len(rv) == 0:
        return None
    diff_kji = rv.mean(axis=0) - lv.mean(axis=0)
    return matrix[:, :2] @ diff_kji[[2, 1]]  # in-plane part only (i, j)


@dataclass(frozen=True)
class CanonicalGrid:
    """The canonical LR grid of one input stack and how its slices map to the input's."""

    geometry: Geometry  # (n_slices, size, size), k base -> apex
    reversed: bool  # canonical slice m is input slice n - 1 - m

    def to_canonical_order(self, array: np.ndarray) -> np.ndarray:
        return array[::-1].copy() if self.reversed else array

    to_input_order = to_canonical_order  # reversing the slice order is its own inverse


def canonical_geometry(sax: Volume, size: int = CANONICAL_SIZE, spacing: float = CANONICAL_SPACING_MM) -> CanonicalGrid:
    """The canonical LR grid of ``sax`` (see the module docstring): its slices coincide with the
    input's slices; only the in-plane sampling, orientation and centre differ."""
    labels = np.asarray(sax.array)
    m = sax.ijk_to_ras[:3, :3]
    d_i, d_j = m[:, 0] / np.linalg.norm(m[:, 0]), m[:, 1] / np.linalg.norm(m[:, 1])
    normal = np.cross(d_i, d_j)
    normal /= np.linalg.norm(normal)
    first_basal = base_is_first(labels)
    step = m[:, 2] if first_basal else -m[:, 2]  # base -> apex slice step (RAS)
    if normal @ step < 0:
        normal = -normal
    v = _lv_to_rv_direction(labels, m)
    v = d_i if v is None else v - (v @ normal) * normal
    if np.linalg.norm(v) < 1e-6:
        v = d_i
    axis_i = v / np.linalg.norm(v)
    axis_j = np.cross(normal, axis_i)
    ci, cj = _mean_slice_centroid(labels)
    k0 = 0 if first_basal else labels.shape[0] - 1
    centre0 = sax.geometry.index_to_ras([ci, cj, k0])
    half = (size - 1) / 2 * spacing
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = axis_i * spacing, axis_j * spacing, step
    matrix[:3, 3] = centre0 - half * (axis_i + axis_j)
    return CanonicalGrid(Geometry((labels.shape[0], size, size), matrix), not first_basal)


def to_canonical_labels(volume: Volume, grid: CanonicalGrid) -> np.ndarray:
    """``volume`` (any label stack on the input's slices) resampled onto the canonical grid
    (uint8 [k, j, i]). The slices coincide, so only the in-plane plane is interpolated
    (SimpleITK label-linear: the label with the largest linearly interpolated indicator)."""
    return resample(Volume(np.asarray(volume.array, np.uint8), volume.ijk_to_ras), grid.geometry,
                    "label_linear").array.astype(np.uint8)


def canonical_to_input_mm(shifts_px: np.ndarray, grid: CanonicalGrid, sax: Volume) -> np.ndarray:
    """Canonical (di, dj) voxel shifts (canonical slice order) -> displacements (dx, dy) in mm
    along the input stack's i and j axes (input slice order), the convention of :mod:`.case`."""
    g = grid.geometry
    ras = shifts_px @ g.ijk_to_ras[:3, :2].T  # (n, 3) RAS vectors
    m = sax.ijk_to_ras[:3, :2]
    mm = np.linalg.lstsq(m / np.linalg.norm(m, axis=0), ras.T, rcond=None)[0].T  # along unit i, j
    return grid.to_input_order(mm)


def input_mm_to_canonical(displacements_mm: np.ndarray, grid: CanonicalGrid, sax: Volume) -> np.ndarray:
    """The inverse of :func:`canonical_to_input_mm`: input-order (dx, dy) mm -> canonical-order
    (di, dj) voxel shifts."""
    m = sax.ijk_to_ras[:3, :2]
    ras = np.asarray(displacements_mm, float) @ (m / np.linalg.norm(m, axis=0)).T
    g = grid.geometry.ijk_to_ras[:3, :2]
    px = np.linalg.lstsq(g, ras.T, rcond=None)[0].T
    return grid.to_canonical_order(px)


def onehot(labels: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """float32 [C, ...] one-hot of an integer label array."""
    return (np.arange(n_classes, dtype=np.uint8).reshape((-1,) + (1,) * labels.ndim) == labels[None]).astype(np.float32)


def to_output_grid(prob_hr: np.ndarray, hr_geometry: Geometry, output: Geometry,
                    present: Tuple[int, ...]) -> np.ndarray:
    """Resample canonical HR probabilities onto the output grid by physical position (linear;
    background outside the canonical field of view) and keep the most probable present label."""
    best = np.full(output.shape, -1.0, np.float32)
    labels = np.zeros(output.shape, np.uint8)
    for c in present:
        p = resample(Volume(prob_hr[c].astype(np.float32), hr_geometry.ijk_to_ras), output, "linear",
                     default_value=1.0 if c == 0 else 0.0).array
        better = p > best
        labels[better], best[better] = c, p[better]
    return labels
