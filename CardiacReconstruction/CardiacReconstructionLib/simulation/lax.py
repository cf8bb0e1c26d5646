"""Long-axis (LAX) views: the 2-, 3- and 4-chamber planes and their extraction from a volume.

Planes from landmarks (RAS mm, in the same physical frame as the volume; keys as in the
whole-heart CT cohort's ``landmarks_mm``): the LV long axis runs from ``mitral_valve_centre``
to ``lv_apex``; the 4-chamber plane contains it and ``tricuspid_valve_centre``; the 3-chamber
plane contains it and ``aortic_valve_centre``; the 2-chamber plane contains it and is
perpendicular to the 4-chamber plane.

Planes from labels (no landmarks): the long axis is the principal axis of LV blood pool +
myocardium (or the volume's k axis when the LV is not clearly elongated, as in a SAX-frame
volume of a short LV), pointing from base to apex: away from the LA when there is one, else
towards the narrow end (the LV is widest at its base). The LV's extent along that axis gives
proxy mitral and apex points; the RV blood pool centroid stands in for the tricuspid valve
(4ch, 2ch) and the aorta centroid for the aortic valve (3ch), so a 3ch view from labels needs
label 6 (aorta).

Pose of a view: in-plane axes ``(u, v)`` with ``v`` the long axis (base -> apex, so the apex is at
the bottom of an image whose rows run along j) and ``u`` perpendicular to it, towards the
defining landmark (tricuspid for 4ch, aortic valve for 3ch); for 2ch ``u`` is the 4ch plane's
normal, turned towards the aortic valve (anterior) when that is known. ``normal = u x v``, so
``[u, v, normal]`` is a right-handed orthonormal frame; the extracted single-slice volume uses
it as its i, j, k axes.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np

from ..core.case import LAX_VIEWS, LaxView
from .degrade import PRESETS, sample_displacements, slice_sampling_matrix, validate_hr
from ..core.errors import InputError
from ..core.geometry import Geometry, Volume, make_ijk_to_ras, resample, sitk_affine
from ..core.labels import LV, MYO, RV

LANDMARK_KEYS = ("lv_apex", "mitral_valve_centre", "tricuspid_valve_centre", "aortic_valve_centre",
                 "pulmonary_valve_centre")
#: Landmarks each view needs besides the long axis (mitral valve centre -> LV apex).
_VIEW_LANDMARK = {"4ch": "tricuspid_valve_centre", "2ch": "tricuspid_valve_centre", "3ch": "aortic_valve_centre"}
LA_LABEL, AORTA_LABEL = 4, 6
#: The principal axis of LV+MYO is trusted as the long axis when its standard deviation exceeds
#: the second one by this ratio; below it the shape is too round for the axis to mean anything.
_ELONGATION_RATIO = 1.2
DEFAULT_LAX_SPACING_MM = 1.25  # the in-plane HR spacing of SRHeart


def _check_view(view) -> str:
    if view not in LAX_VIEWS:
        raise InputError(f"Unknown long-axis view {view!r}; expected one of {', '.join(LAX_VIEWS)}.")
    return view


def _point(landmarks: dict, key: str) -> np.ndarray:
    if key not in landmarks:
        raise InputError(f"Landmark {key!r} is missing; the landmarks given are {sorted(landmarks)} "
                         f"(expected keys: {', '.join(LANDMARK_KEYS)}).")
    p = np.asarray(landmarks[key], dtype=float)
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise InputError(f"Landmark {key!r} must be 3 finite RAS coordinates in mm, got {landmarks[key]!r}.")
    return p


def _normalise_landmarks(landmarks) -> dict:
    """Accept the landmark dict itself or a cohort JSON dict that holds it as ``landmarks_mm``."""
    if not isinstance(landmarks, dict):
        raise InputError(f"Landmarks must be a dict of RAS points (keys {', '.join(LANDMARK_KEYS)}), "
                         f"got {type(landmarks).__name__}.")
    return landmarks.get("landmarks_mm", landmarks)


def _perpendicular_direction(point, base, axis, name) -> np.ndarray:
    """Unit direction from the long axis towards ``point``, perpendicular to the axis."""
    w = point - base
    w = w - (w @ axis) * axis
    norm = np.linalg.norm(w)
    if norm < 1e-3:
        raise InputError(f"The {name} lies on the LV long axis, so it cannot define a long-axis plane.")
    return w / norm


def plane_from_landmarks(view: str, landmarks: dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(origin, normal, in_plane_axes)`` of ``view`` from landmarks; see the module docstring."""
    view = _check_view(view)
    landmarks = _normalise_landmarks(landmarks)
    mitral, apex = _point(landmarks, "mitral_valve_centre"), _point(landmarks, "lv_apex")
    length = np.linalg.norm(apex - mitral)
    if length < 1.0:
        raise InputError(f"The mitral valve centre and the LV apex are {length:.2g} mm apart; they must be "
                         "distinct points (at least 1 mm apart) to define the long axis.")
    v = (apex - mitral) / length
    key = _VIEW_LANDMARK[view]
    u = _perpendicular_direction(_point(landmarks, key), mitral, v, key.replace("_", " "))
    if view == "2ch":
        u = np.cross(u, v)  # the 4ch normal lies in the 2ch plane
        if "aortic_valve_centre" in landmarks and u @ (_point(landmarks, "aortic_valve_centre") - mitral) < 0:
            u = -u
    return (mitral + apex) / 2, np.cross(u, v), np.stack([u, v])


def _label_points(labels: Volume, values) -> np.ndarray:
    """RAS centres (n, 3) of the voxels holding any of ``values``."""
    k, j, i = np.nonzero(np.isin(labels.array, values))
    return labels.geometry.index_to_ras(np.stack([i, j, k], axis=1).astype(float))


def _centroid(labels: Volume, value) -> Optional[np.ndarray]:
    pts = _label_points(labels, (value,))
    return pts.mean(axis=0) if len(pts) else None


def _long_axis_direction(points: np.ndarray, labels: Volume, long_axis: str) -> np.ndarray:
    """Unit long-axis direction (unsigned) of the LV+MYO points."""
    if long_axis == "k":
        return labels.geometry.direction[:, 2].copy()
    eigval, eigvec = np.linalg.eigh(np.cov(points.T))
    elongated = eigval[-1] >= _ELONGATION_RATIO ** 2 * eigval[-2]
    if long_axis == "auto" and not elongated:
        return labels.geometry.direction[:, 2].copy()
    return eigvec[:, -1]


def landmarks_from_labels(labels: Volume, long_axis: str = "auto") -> Dict[str, np.ndarray]:
    """Proxy landmarks from a label volume (see the module docstring): ``mitral_valve_centre`` and
    ``lv_apex`` at the basal and apical ends of LV+MYO along its long axis, the RV and aorta
    centroids as ``tricuspid_valve_centre`` and ``aortic_valve_centre`` when those labels exist."""
    if long_axis not in ("auto", "principal", "k"):
        raise InputError(f"long_axis must be 'auto', 'principal' or 'k', got {long_axis!r}.")
    labels = validate_hr(labels)
    points = _label_points(labels, (LV, MYO))
    if len(points) < 4:
        raise InputError("Cannot derive long-axis planes: the labels hold no LV (1) or myocardium (2); "
                         "give landmarks instead.")
    centre = points.mean(axis=0)
    axis = _long_axis_direction(points, labels, long_axis)
    t = (points - centre) @ axis
    la = _centroid(labels, LA_LABEL)
    base_at_max = (la - centre) @ axis > 0 if la is not None else (t.min() + t.max()) / 2 < 0
    if base_at_max:
        axis, t = -axis, -t
    out = {"mitral_valve_centre": centre + t.min() * axis, "lv_apex": centre + t.max() * axis}
    for key, value in (("tricuspid_valve_centre", RV), ("aortic_valve_centre", AORTA_LABEL)):
        c = _centroid(labels, value)
        if c is not None:
            out[key] = c
    return out


def lax_plane(view: str, landmarks: Optional[dict] = None, labels: Optional[Volume] = None,
              long_axis: str = "auto") -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``view`` ('2ch', '3ch', '4ch') plane as ``(origin_ras, normal, in_plane_axes)``.

    ``origin_ras`` is the middle of the long axis, ``normal`` a unit vector and ``in_plane_axes``
    a (2, 3) array ``[u, v]`` (v = long axis, base -> apex) with ``u x v = normal``. Uses
    ``landmarks`` when given, else proxies derived from ``labels`` (see the module docstring).
    """
    view = _check_view(view)
    if landmarks is None:
        if labels is None:
            raise InputError("A long-axis plane needs landmarks or a label volume to derive them from.")
        proxies = landmarks_from_labels(labels, long_axis)
        if _VIEW_LANDMARK[view] not in proxies:
            need = "RV blood pool (label 3)" if view != "3ch" else "aorta (label 6)"
            raise InputError(f"The {view} plane cannot be derived from these labels: they have no {need}; "
                             "give landmarks instead.")
        landmarks = proxies
    return plane_from_landmarks(view, landmarks)


def random_lax_shift(seed: int) -> np.ndarray:
    """The in-plane breath-hold shift (du, dv) mm that :func:`extract_lax` adds for ``seed``:
    one draw of the SRHeart 'normal' motion model (|d| ~ N(2.3, 0.87) mm, uniform direction)."""
    return sample_displacements(PRESETS["normal"], 1, np.random.default_rng(int(seed)))[0]


def _view_grid(hr: Volume, origin, axes, normal, spacing: float, size_mm) -> Geometry:
    """Single-slice grid on the plane, centred on ``origin``; by default it spans the projection
    of the whole volume onto the plane."""
    if size_mm is None:
        k, j, i = hr.shape
        corners = np.array([[a, b, c] for a in (-0.5, i - 0.5) for b in (-0.5, j - 0.5) for c in (-0.5, k - 0.5)])
        rel = hr.geometry.index_to_ras(corners) - origin
        counts = [2 * int(math.ceil(np.abs(rel @ ax).max() / spacing)) + 1 for ax in axes]
    else:
        size = np.broadcast_to(np.asarray(size_mm, dtype=float), (2,))
        if not np.all(np.isfinite(size)) or np.any(size <= 0):
            raise InputError(f"The view size must be one or two positive numbers of mm, got {size_mm!r}.")
        counts = [max(1, int(round(s / spacing))) for s in size]
    direction = np.stack([axes[0], axes[1], normal], axis=1)
    first = origin - (counts[0] - 1) / 2 * spacing * axes[0] - (counts[1] - 1) / 2 * spacing * axes[1]
    return Geometry((1, counts[1], counts[0]), make_ijk_to_ras((spacing,) * 3, first, direction))


def extract_lax(hr: Volume, view: str, landmarks: Optional[dict] = None, *,
                spacing: float = DEFAULT_LAX_SPACING_MM, size_mm=None, shift_mm=(0.0, 0.0),
                seed: Optional[int] = None, long_axis: str = "auto") -> LaxView:
    """Cut the ``view`` plane out of the label volume ``hr`` (nearest neighbour).

    The result is a single-slice volume whose i, j axes are the plane's ``u``, ``v`` and whose k
    axis is its normal (k spacing is nominal, equal to ``spacing``). ``shift_mm`` = (du, dv)
    moves the content in-plane along u, v with the displacement convention of :mod:`..core.case`
    (the view at p shows the anatomy at p - d), as a breath-hold offset of the LAX acquisition;
    with a ``seed`` the shift :func:`random_lax_shift` gives for it is added.
    """
    hr = validate_hr(hr)
    if isinstance(spacing, bool) or not isinstance(spacing, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(spacing) and spacing > 0):
        raise InputError(f"The long-axis pixel spacing must be a positive number of mm, got {spacing!r}.")
    shift = np.asarray(shift_mm, dtype=float)
    if shift.shape != (2,) or not np.all(np.isfinite(shift)):
        raise InputError(f"The long-axis shift must be two finite numbers (du, dv) in mm, got {shift_mm!r}.")
    if seed is not None:
        shift = shift + random_lax_shift(seed)
    origin, normal, axes = lax_plane(view, landmarks, labels=hr if landmarks is None else None,
                                     long_axis=long_axis)
    grid = _view_grid(hr, origin, axes, normal, float(spacing), size_mm)
    transform = sitk_affine(slice_sampling_matrix(grid, 0, displacement_mm=shift))
    cut = resample(hr, grid, "nearest", transform=transform)
    return LaxView(view, Volume.on(grid, cut.array.astype(np.uint8)))
