"""The short-axis (SAX) frame of a heart and its valve planes, both from landmarks, and the
canonical SAX grid the shape priors are trained and fitted on.

Why here and not with the data loaders: latent optimisation fits its prior in this frame at
run time, and the simulation and training layers build their training shapes in it; the frame
is anatomy, not data set code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from ..core.errors import InputError
from ..core.geometry import Geometry, Volume, make_ijk_to_ras
from ..core.labels import BIVENTRICULAR, LV, MYO, RV


#: Default SAX training grid: array shape (k, j, i) and spacing (i, j, k) in mm:
#: 160 x 160 mm in-plane, 128 mm along the long axis.
DEFAULT_GRID_SHAPE = (64, 128, 128)
DEFAULT_SPACING = (1.25, 1.25, 2.0)

LANDMARK_KEYS = ("mitral_valve_centre", "tricuspid_valve_centre", "aortic_valve_centre",
                 "pulmonary_valve_centre", "lv_apex")


def _landmark(landmarks: Mapping, key: str) -> np.ndarray:
    if key not in landmarks:
        raise InputError(f"Landmark {key!r} missing; expected {', '.join(LANDMARK_KEYS)}.")
    p = np.asarray(landmarks[key], float)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise InputError(f"Landmark {key!r} must be 3 finite millimetre coordinates, got {landmarks[key]!r}.")
    return p


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n < 1e-6:
        raise InputError(f"Degenerate landmarks: {what} has zero length.")
    return v / n


def long_axis(landmarks: Mapping) -> np.ndarray:
    """Unit LV long axis from the mitral valve centre to the apex (base -> apex)."""
    return _unit(_landmark(landmarks, "lv_apex") - _landmark(landmarks, "mitral_valve_centre"),
                 "the mitral-to-apex long axis")


@dataclass(frozen=True)
class SaxFrame:
    """A right-handed short-axis frame: ``axes`` columns are the unit i, j, k directions (world
    mm), k along the long axis base -> apex, i from the LV towards the RV; ``centre`` in mm."""

    centre: np.ndarray
    axes: np.ndarray

    def geometry(self, grid_shape=DEFAULT_GRID_SHAPE, spacing=DEFAULT_SPACING) -> Geometry:
        """The grid of shape (k, j, i) and spacing (i, j, k) whose centre is the frame's centre."""
        shape, spacing = check_grid(grid_shape, spacing)
        half_extent = spacing * (np.array(shape[::-1], float) - 1) / 2  # i, j, k
        origin = self.centre - self.axes @ half_extent
        return Geometry(shape, make_ijk_to_ras(spacing, origin, self.axes))

    def to_local(self, points) -> np.ndarray:
        """World points (..., 3) -> coordinates (mm) along i, j, k from the centre."""
        return (np.asarray(points, float) - self.centre) @ self.axes


def sax_frame(landmarks: Mapping, labels_xyz: Optional[np.ndarray] = None, origin=(0.0, 0.0, 0.0),
              spacing: float = 1.0) -> SaxFrame:
    """SAX frame of a heart from its landmarks.

    Axes: k = unit(apex - mitral centre) (base -> apex); i = (tricuspid centre - mitral centre)
    made orthogonal to k, i.e. from the LV towards the RV; j = k x i, so (i, j, k) is right-handed.

    Centre: in the short-axis plane, the centroid of the LV, LV myocardium and RV voxels (raw
    labels 1-3) of ``labels_xyz`` (indexed x, y, z on the isotropic grid at ``origin``); along
    the long axis, the midpoint of the mitral centre and the apex. The ventricles' centroid lies
    ~7 mm basal of that midpoint (the base is bulkier than the apex), so a grid centred on it
    would put the apex ~54 mm from the centre and the default 128 mm slab would clip the apex in
    ~17% of the +-15% scale / long-axis augmentations; the midpoint leaves ~46 mm either side.
    The raw, uncut labels are used, so every mode of one subject shares one frame. Without labels
    the centre is the midpoint of the mitral centre and the apex.
    """
    k = long_axis(landmarks)
    mitral = _landmark(landmarks, "mitral_valve_centre")
    to_rv = _landmark(landmarks, "tricuspid_valve_centre") - mitral
    i = _unit(to_rv - (to_rv @ k) * k, "the mitral-to-tricuspid direction orthogonal to the long axis")
    j = np.cross(k, i)
    centre = (mitral + _landmark(landmarks, "lv_apex")) / 2
    if labels_xyz is not None:
        idx = np.argwhere(np.isin(np.asarray(labels_xyz), BIVENTRICULAR))
        if idx.size == 0:
            raise InputError("The label map has no LV, myocardium or RV voxels (labels 1-3) to centre on.")
        centroid = np.asarray(origin, float) + float(spacing) * idx.mean(axis=0)
        centre = centroid + ((centre - centroid) @ k) * k  # in-plane centroid, long-axis midpoint
    return SaxFrame(centre, np.stack([i, j, k], axis=1))


@dataclass(frozen=True)
class ValvePlane:
    """A plane with a unit normal pointing into the ventricle (towards the apex)."""

    point: np.ndarray
    normal: np.ndarray

    def signed_distance(self, points) -> np.ndarray:
        """mm from the plane, positive on the ventricular (apical) side."""
        return (np.asarray(points, float) - self.point) @ self.normal


def valve_plane(valve_a: np.ndarray, valve_b: np.ndarray, axis: np.ndarray) -> ValvePlane:
    """The plane through two valve centres whose normal is as close as possible to ``axis``:
    the component of ``axis`` orthogonal to the line joining the two centres."""
    line = _unit(valve_b - valve_a, "the line between two valve centres")
    normal = _unit(axis - (axis @ line) * line, "the valve plane normal (valve line along the long axis)")
    return ValvePlane(valve_a, normal)


def valve_planes(landmarks: Mapping) -> Dict[str, ValvePlane]:
    """``'left'``: the mitral/aortic valve plane; ``'right'``: the tricuspid/pulmonary valve plane."""
    k = long_axis(landmarks)
    return {"left": valve_plane(_landmark(landmarks, "mitral_valve_centre"),
                                _landmark(landmarks, "aortic_valve_centre"), k),
            "right": valve_plane(_landmark(landmarks, "tricuspid_valve_centre"),
                                 _landmark(landmarks, "pulmonary_valve_centre"), k)}


def cut_at_valve_planes(volume: Volume, landmarks: Mapping) -> Volume:
    """Remove the ventricles' basal rim and valve stubs, as clinical SAX segmentations do.

    CT shapes keep the ventricular tissue up to the annulus and outflow tracts; clinical SAX
    segmentations stop flat at the base. On canonical labels, LV blood pool and LV myocardium on
    the atrial side of the mitral/aortic valve plane, and RV blood pool on the atrial side of the
    tricuspid/pulmonary valve plane (see :func:`valve_planes`), become background. Returns a new
    volume; other labels are untouched.
    """
    planes = valve_planes(landmarks)
    arr = volume.array
    ventricles = np.isin(arr, (LV, MYO, RV))
    if not ventricles.any():
        return volume.copy()
    # Only the bounding box of the ventricles needs world coordinates (saves memory and time).
    where = np.argwhere(ventricles)
    lo, hi = where.min(0), where.max(0) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    k, j, i = np.meshgrid(*(np.arange(a, b, dtype=np.float64) for a, b in zip(lo, hi)), indexing="ij")
    points = volume.geometry.index_to_ras(np.stack([i, j, k], axis=-1))  # voxel centres of the box
    sub = arr[box]
    remove = (np.isin(sub, (LV, MYO)) & (planes["left"].signed_distance(points) < 0)) | \
             ((sub == RV) & (planes["right"].signed_distance(points) < 0))
    out = arr.copy()
    out[box] = np.where(remove, 0, sub)
    return volume.with_array(out)


def check_grid(grid_shape, spacing) -> Tuple[tuple, np.ndarray]:
    shape = tuple(int(s) for s in grid_shape)
    sp = np.asarray(spacing, float)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"grid_shape must be three positive sizes (k, j, i), got {tuple(grid_shape)}.")
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or sp.min() <= 0:
        raise InputError(f"spacing must be three positive mm values (i, j, k), got {spacing}.")
    return shape, sp
