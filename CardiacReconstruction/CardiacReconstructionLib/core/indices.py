"""Clinical and shape indices of a label volume: volumes, myocardial mass, surface-to-volume.

Why in the core: they are outputs of a run (the Slicer table, ``run.json``, DSL+ASV's
smoothness diagnostics), not only benchmark metrics, so the runtime computes them without the
evaluation layer (:mod:`..evaluation.metrics` re-exports them for the benchmark).
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Tuple, Union

import numpy as np

from .errors import InputError
from .geometry import Volume
from .labels import MYO, STRUCTURES, present_labels

Labels = Union[int, Iterable[int]]

#: Myocardial tissue density used for the mass (g/ml), the usual CMR value.
MYOCARDIAL_DENSITY_G_PER_ML = 1.05


def require_label_volume(volume, name: str) -> Volume:
    if not isinstance(volume, Volume):
        raise InputError(f"The {name} must be a label Volume, got {type(volume).__name__}.")
    if not volume.is_label:
        raise InputError(f"The {name} must be a label map (integer voxels), got {volume.array.dtype} voxels.")
    return volume


def label_tuple(labels: Labels) -> Tuple[int, ...]:
    if isinstance(labels, (int, np.integer)):
        return (int(labels),)
    try:
        out = tuple(int(l) for l in labels)
    except (TypeError, ValueError):
        raise InputError(f"Labels must be integers or a list of integers, got {labels!r}.") from None
    if not out:
        raise InputError("At least one label must be given to compute a metric.")
    return out


def voxel_volume_mm3(volume: Volume) -> float:
    return float(abs(np.linalg.det(volume.ijk_to_ras[:3, :3])))


def _labels_or_present(volume: Volume, labels: Optional[Labels]) -> Tuple[int, ...]:
    return present_labels(volume.array) if labels is None else label_tuple(labels)


def _exposed_face_area_mm2(mask: np.ndarray, spacing_ijk: np.ndarray) -> float:
    """Sum of the areas of voxel faces between the mask and the outside (array border = outside)."""
    padded = np.pad(mask, 1).astype(np.int8)
    s_i, s_j, s_k = (float(s) for s in spacing_ijk)
    face_area = {0: s_i * s_j, 1: s_i * s_k, 2: s_j * s_k}  # faces normal to array axes k, j, i
    return float(sum(np.count_nonzero(np.diff(padded, axis=ax)) * area for ax, area in face_area.items()))


def surface_area_mm2(volume: Volume, labels: Optional[Labels] = None) -> Dict[int, float]:
    """Voxel-face surface area (mm^2) per label: exposed faces times each face's area."""
    require_label_volume(volume, "volume")
    return {lab: _exposed_face_area_mm2(volume.array == lab, volume.spacing)
            for lab in _labels_or_present(volume, labels)}


def surface_to_volume(volume: Volume, labels: Optional[Labels] = None) -> Dict[int, float]:
    """DeepWHR's surface-to-volume ratio S/V (1/mm) per label: voxel-face surface area (mm^2)
    over label volume (mm^3). A cube of n voxels of size s gives exactly 6 / (n s). Staircase
    artefacts raise it, so a drop after correction means a smoother shape. NaN for empty labels.
    """
    areas = surface_area_mm2(volume, labels)
    voxel = voxel_volume_mm3(volume)
    out = {}
    for lab, area in areas.items():
        n = np.count_nonzero(volume.array == lab)
        out[lab] = float(area / (n * voxel)) if n else float("nan")
    return out


def _relative(before: float, after: float) -> float:
    before, after = float(before), float(after)
    return (after - before) / before if before != 0 and np.isfinite(before) else float("nan")


def relative_change(before, after):
    """Relative change ``(after - before) / before`` (negative = decrease), for two numbers or
    for two dicts (e.g. S/V before and after correction: the keys present in both); NaN where
    ``before`` is 0 or not finite."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        return {k: _relative(before[k], after[k]) for k in before if k in after}
    if isinstance(before, Mapping) or isinstance(after, Mapping):
        raise InputError("relative_change needs two numbers or two dicts, not one of each.")
    return _relative(before, after)


def volumes_ml(volume: Volume, labels: Optional[Labels] = None) -> Dict[int, float]:
    """Volume (ml) per label (default: the labels present): voxel count x |det(ijk_to_ras)|."""
    require_label_volume(volume, "volume")
    voxel_ml = voxel_volume_mm3(volume) / 1000.0
    return {lab: float(np.count_nonzero(volume.array == lab) * voxel_ml) for lab in _labels_or_present(volume, labels)}


def myocardial_mass_g(volume: Volume) -> float:
    """LV myocardial mass (g): myocardium (label 2) volume x 1.05 g/ml."""
    return volumes_ml(volume, MYO)[MYO] * MYOCARDIAL_DENSITY_G_PER_ML


def structure_key(label: int) -> str:
    """Short name used in metric keys ('LV', 'MYO', ...); 'L<n>' for a non-canonical label."""
    return STRUCTURES[label].key if label in STRUCTURES else f"L{label}"
