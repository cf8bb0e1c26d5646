"""Simulate a clinical SAX segmentation stack from a high-resolution (HR) label volume.

This is the degradation model of SRHeart (Wang et al., MICCAI 2021, eq. 1:
``S_LR = M_d(downsample_s(S_HR)) + noise``) together with the variants its peers use, so every
method can be trained and benchmarked on the same, seeded simulations.

Input: an HR canonical label :class:`~..core.geometry.Volume` in a SAX frame (k = slice axis = long
axis; any oblique ``ijk_to_ras`` is fine). Output: a :class:`Degraded` bundle with the LR stack,
the true per-slice displacements (convention of :mod:`..core.case`), the motion-free LR stack and the
HR truth cropped to the slab the stack covers.

LR grid
-------
The LR slabs tile the HR volume: LR slice ``k`` is centred at ``z0 - s_hr/2 + S/2 + k*S`` along
the k axis (``z0`` first HR slice centre, ``s_hr`` HR spacing, ``S`` LR spacing) and there are
``floor(n_hr * s_hr / S)`` of them. This is :func:`..core.api.output_geometry` run backwards:
reconstructing the LR stack at spacing ``s_hr`` gives exactly the grid of ``Degraded.truth``.
The in-plane grid is the HR one.

Per-slice acquisition
---------------------
Every LR slice is one :func:`..core.geometry.resample` of the HR volume through a rigid SimpleITK
transform (expressed in LPS, like all SimpleITK geometry) that combines, in this order:
plane tilt (about a random in-plane axis through the slice centre), then the inverse of the
slice's content motion (in-plane rotation about the slice's LV+MYO centroid, then the in-plane
translation ``d``). With ``thickness=None`` a slice is point-sampled (nearest HR voxel); with a
``thickness`` the slab is sampled every half HR spacing or finer and the labels are put to a
majority vote (one-hot average, then argmax; ties go to the lower label).

Presets (:data:`PRESETS`; sources in :data:`PRESET_REFERENCES`)
-----------------------------------------------------------------
=============== ==================================================================================
``none``        downsampling only (SRHeart "no motion")
``normal``      SRHeart: |d| ~ N(2.3, 0.87) mm clipped at 0, uniform direction (fitted on UK Biobank)
``severe``      SRHeart: 4 x the normal magnitudes, |d| ~ N(9.2, 3.48) mm
``mcsr``        MCSR-ETE (Chen et al. 2024): |d| ~ |N(2.5, 0.75)| mm redrawn until <= 5 mm
``mask2surface`` Mask2Surface (Zhang et al.): dx, dy ~ N(3.45, 1.305) mm each, random sign per axis
``stacom``      STACOM 2024 label completion (Xu et al.): dx, dy ~ N(0, 3.5) (px there, mm here),
                plane tilt U(3, 10) degrees, basal and apical dropout with probability 0.5 each
=============== ==================================================================================

All presets default to a 10 mm LR slice spacing (SRHeart s = [5, 1, 1] on 2 mm, MCSR and
Mask2Surface every 5th 2 mm slice). Randomness: one :class:`numpy.random.SeedSequence` per call,
split into independent streams per effect, so switching one effect on does not change the draws
of another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy.spatial.transform import Rotation

from ..core.errors import InputError
from ..core.geometry import Geometry, Volume, resample, sitk_affine
from ..core.labels import LV, MYO, WHOLE_HEART
from ..core.stack import base_is_first

DEFAULT_LR_SLICE_SPACING_MM = 10.0

#: Every parameter a preset sets, with the value used when a preset does not mention it.
_DEFAULTS: Dict[str, object] = {
    "slice_spacing_mm": DEFAULT_LR_SLICE_SPACING_MM,
    # 'none' | 'magnitude' (|d| from a normal, uniform direction) | 'per_axis' (dx, dy each normal)
    "motion": "none",
    "displacement_mean_mm": 0.0,
    "displacement_sd_mm": 0.0,
    "displacement_max_mm": None,  # 'magnitude' only: redraw magnitudes above this
    "magnitude_fold": "clip",  # 'magnitude' only: 'clip' negative draws to 0 or take 'abs'
    "per_axis_random_sign": False,  # 'per_axis' only: flip the sign of each axis at random
    "rotation_deg_sd": 0.0,  # in-plane rotation ~ N(0, sd) degrees about the LV+MYO centroid
    "tilt_deg_range": (0.0, 0.0),  # plane tilt ~ U(lo, hi) degrees about a random in-plane axis
    "label_noise": 0.0,  # fraction of in-plane boundary voxels flipped to a neighbouring label
    "basal_dropout_probability": 0.0,
    "apical_dropout_probability": 0.0,
    "dropout_max_slices": 2,  # a dropped end loses 1..N slices (uniform)
}

PRESETS: Dict[str, Dict[str, object]] = {
    "none": dict(_DEFAULTS),
    "normal": {**_DEFAULTS, "motion": "magnitude", "displacement_mean_mm": 2.3, "displacement_sd_mm": 0.87},
    "severe": {**_DEFAULTS, "motion": "magnitude", "displacement_mean_mm": 4 * 2.3,
               "displacement_sd_mm": 4 * 0.87},
    "mcsr": {**_DEFAULTS, "motion": "magnitude", "displacement_mean_mm": 2.5, "displacement_sd_mm": 0.75,
             "displacement_max_mm": 5.0, "magnitude_fold": "abs"},
    "mask2surface": {**_DEFAULTS, "motion": "per_axis", "displacement_mean_mm": 3.45,
                     "displacement_sd_mm": 1.305, "per_axis_random_sign": True},
    "stacom": {**_DEFAULTS, "motion": "per_axis", "displacement_mean_mm": 0.0, "displacement_sd_mm": 3.5,
               "tilt_deg_range": (3.0, 10.0), "basal_dropout_probability": 0.5,
               "apical_dropout_probability": 0.5},
}

PRESET_REFERENCES: Dict[str, str] = {
    "none": "Wang et al., 'Joint motion correction and super resolution for cardiac segmentation via "
            "latent optimisation', MICCAI 2021 (SRHeart), 'No-motion' setting: downsampling s = [5, 1, 1].",
    "normal": "SRHeart (Wang et al., MICCAI 2021), eq. 1 and sec. 3.2: direction uniform, amplitude "
              "N(2.3 mm, 0.87 mm), fitted on UK Biobank.",
    "severe": "SRHeart (Wang et al., MICCAI 2021), sec. 3.2: 4-times the normal misalignment.",
    "mcsr": "Chen et al. 2024, MCSR-ETE/MCSR-MS: per slice |t| ~ |N(2.5, 0.75)| mm, redrawn until <= 5 mm, "
            "random direction.",
    "mask2surface": "Zhang et al., Mask2Surface: each entry of the 2D translation ~ N(3.45 mm, 1.305 mm) "
                    "(1.5 x a previously fitted distribution); random sign per axis is this project's reading.",
    "stacom": "Xu et al., STACOM 2024 label completion: per-slice shifts N(0, 3.5) px (taken as mm here), "
              "SAX tilt 3-10 degrees, basal/apical slice dropout (probability 0.5 per end and at most 2 "
              "slices are this project's choices).",
}

_MOTION_MODELS = ("none", "magnitude", "per_axis")
_FOLDS = ("clip", "abs")
#: Point samples exactly half-way between two HR slices (even downsampling factors) are nudged
#: by this fraction of the HR spacing towards +k so the tie is broken the same way everywhere,
#: not by floating-point round-off.
_TIE_BREAK_FRACTION = 1e-3
_STREAMS = ("displacement", "rotation", "tilt", "dropout", "noise")


@dataclass
class Degraded:
    """A simulated SAX stack and everything needed to score a reconstruction of it."""

    sax: Volume  # LR labels (uint8) after motion, tilt, noise and dropout
    displacements: np.ndarray  # (n_lr, 2) mm along the stack's i, j axes, for the returned slices
    lr_truth: Volume  # the same LR grid, sampled without motion, tilt or noise
    truth: Volume  # HR labels cropped to the slab of the full (pre-dropout) stack
    rotations_deg: np.ndarray  # (n_lr,) in-plane content rotation, right-handed about +k
    tilts_deg: np.ndarray  # (n_lr,) plane tilt angle
    kept_slices: np.ndarray  # indices of the returned slices in the pre-dropout stack
    preset: str
    seed: int
    parameters: Dict[str, object] = field(default_factory=dict)  # the resolved preset parameters
    tilt_axes: Optional[np.ndarray] = None  # (n_lr, 2) unit tilt axis in the stack's (i, j) plane


def resolve_parameters(preset: str, **overrides) -> Dict[str, object]:
    """The preset's parameters with ``overrides`` applied and checked (InputError if invalid)."""
    if preset not in PRESETS:
        raise InputError(f"Unknown degradation preset {preset!r}; expected one of {', '.join(PRESETS)}.")
    unknown = sorted(set(overrides) - set(_DEFAULTS))
    if unknown:
        raise InputError(f"Unknown degradation parameter(s) {unknown}; valid keys are {', '.join(_DEFAULTS)}.")
    params = {**PRESETS[preset], **overrides}
    _check_parameters(params)
    return params


def _check_parameters(p: Dict[str, object]) -> None:
    def number(key, lo=0.0, hi=math.inf, allow_none=False):
        v = p[key]
        if v is None and allow_none:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not lo <= v <= hi:
            raise InputError(f"Degradation parameter {key!r} must be a number in [{lo}, {hi}], got {v!r}.")

    if p["motion"] not in _MOTION_MODELS:
        raise InputError(f"Degradation parameter 'motion' must be one of {_MOTION_MODELS}, got {p['motion']!r}.")
    if p["magnitude_fold"] not in _FOLDS:
        raise InputError(f"Degradation parameter 'magnitude_fold' must be one of {_FOLDS}, "
                         f"got {p['magnitude_fold']!r}.")
    number("slice_spacing_mm", 1e-6)
    number("displacement_mean_mm", -math.inf)
    number("displacement_sd_mm")
    number("displacement_max_mm", 1e-6, allow_none=True)
    number("rotation_deg_sd", 0.0, 180.0)
    number("label_noise", 0.0, 1.0)
    number("basal_dropout_probability", 0.0, 1.0)
    number("apical_dropout_probability", 0.0, 1.0)
    if not isinstance(p["dropout_max_slices"], (int, np.integer)) or p["dropout_max_slices"] < 1:
        raise InputError(f"Degradation parameter 'dropout_max_slices' must be an integer >= 1, "
                         f"got {p['dropout_max_slices']!r}.")
    tilt = p["tilt_deg_range"]
    try:
        lo, hi = (float(t) for t in tilt)
    except (TypeError, ValueError):
        raise InputError(f"Degradation parameter 'tilt_deg_range' must be a pair (lo, hi) of degrees, "
                         f"got {tilt!r}.") from None
    if not 0.0 <= lo <= hi <= 45.0:
        raise InputError(f"Degradation parameter 'tilt_deg_range' must satisfy 0 <= lo <= hi <= 45 degrees, "
                         f"got {tilt!r}.")


# Random draws (each effect has its own generator)
def sample_displacements(params: Dict[str, object], n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` in-plane displacements (n, 2) mm (stack i, j axes) from the motion model."""
    model = params["motion"]
    mean, sd = float(params["displacement_mean_mm"]), float(params["displacement_sd_mm"])
    if model == "none" or n == 0:
        return np.zeros((n, 2))
    if model == "per_axis":
        d = rng.normal(mean, sd, size=(n, 2))
        if params["per_axis_random_sign"]:
            d *= rng.choice([-1.0, 1.0], size=(n, 2))
        return d
    magnitude = _draw_magnitudes(mean, sd, params["magnitude_fold"], params["displacement_max_mm"], n, rng)
    angle = rng.uniform(0.0, 2 * np.pi, size=n)
    return magnitude[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _draw_magnitudes(mean, sd, fold, maximum, n, rng) -> np.ndarray:
    """Non-negative magnitudes from N(mean, sd), folded ('abs') or clipped ('clip') at 0 and,
    when ``maximum`` is set, redrawn until at most ``maximum`` (as MCSR does)."""
    def draw(size):
        m = rng.normal(mean, sd, size=size)
        return np.abs(m) if fold == "abs" else np.maximum(m, 0.0)

    mag = draw(n)
    if maximum is not None:
        for _ in range(1000):
            over = mag > maximum
            if not over.any():
                break
            mag[over] = draw(int(over.sum()))
        else:
            raise InputError(f"Cannot draw displacement magnitudes below {maximum} mm from N({mean}, {sd}); "
                             "raise 'displacement_max_mm'.")
    return mag


def _draw_tilts(params, n, rng) -> Tuple[np.ndarray, np.ndarray]:
    """Tilt angles (degrees) and unit tilt axes in the stack's (i, j) plane."""
    lo, hi = (float(t) for t in params["tilt_deg_range"])
    angles = rng.uniform(lo, hi, size=n) if hi > 0 else np.zeros(n)
    phi = rng.uniform(0.0, 2 * np.pi, size=n)
    return angles, np.stack([np.cos(phi), np.sin(phi)], axis=1)


def _draw_dropout(params, n, basal_first: bool, rng) -> np.ndarray:
    """Indices of the slices kept after basal/apical dropout; always keeps at least 2 slices."""
    n_max = int(params["dropout_max_slices"])
    drop_base = int(rng.integers(1, n_max + 1)) if rng.random() < params["basal_dropout_probability"] else 0
    drop_apex = int(rng.integers(1, n_max + 1)) if rng.random() < params["apical_dropout_probability"] else 0
    while n - drop_base - drop_apex < 2:
        if drop_base >= drop_apex:
            drop_base -= 1
        else:
            drop_apex -= 1
    first, last = (drop_base, drop_apex) if basal_first else (drop_apex, drop_base)
    return np.arange(first, n - last)


def lr_geometry(hr: Geometry, slice_spacing: float) -> Geometry:
    """The LR stack whose slabs of ``slice_spacing`` mm tile the HR volume from its first slab
    edge (see the module docstring); InputError when fewer than 2 slices fit."""
    s_hr = float(hr.spacing[2])
    if not (np.isfinite(slice_spacing) and slice_spacing >= s_hr * (1 - 1e-6)):
        raise InputError(f"The LR slice spacing must be at least the HR slice spacing ({s_hr:g} mm), "
                         f"got {slice_spacing} mm.")
    n_lr = int(math.floor(hr.n_slices * s_hr / slice_spacing + 1e-6))
    if n_lr < 2:
        raise InputError(f"The HR volume ({hr.n_slices} slices of {s_hr:g} mm) is too short for 2 LR slices "
                         f"of {slice_spacing:g} mm; use a smaller slice spacing or a longer volume.")
    return hr.with_slices(n_lr, slice_spacing, first_slice_offset_mm=-s_hr / 2 + slice_spacing / 2)


def _crop_truth(hr: Volume, lr: Geometry) -> Volume:
    """The HR truth on :func:`..core.api.output_geometry` of the LR stack at the HR spacing: a plain
    crop when the slab holds a whole number of HR slices, otherwise a nearest resampling."""
    from ..core.api import output_geometry

    s_hr = float(hr.spacing[2])
    grid = output_geometry(lr, slice_spacing=s_hr)
    if abs(grid.spacing[2] - s_hr) <= 1e-6 * s_hr and grid.n_slices <= hr.shape[0]:
        return Volume.on(grid, hr.array[:grid.n_slices].copy())
    return resample(hr, grid, "nearest")


def _rigid(rotation=None, centre=None, translation=None) -> np.ndarray:
    """4x4 matrix of x -> R (x - c) + c + t (identity, origin and zero when not given)."""
    r = np.eye(3) if rotation is None else np.asarray(rotation, float)
    c = np.zeros(3) if centre is None else np.asarray(centre, float)
    t = np.zeros(3) if translation is None else np.asarray(translation, float)
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = c - r @ c + t
    return m


def _axis_rotation(axis, degrees) -> np.ndarray:
    return Rotation.from_rotvec(np.radians(float(degrees)) * np.asarray(axis, float)).as_matrix()


def slice_sampling_matrix(stack: Geometry, k: int, displacement_mm=(0.0, 0.0), rotation_deg: float = 0.0,
                          rotation_centre=None, tilt_deg: float = 0.0, tilt_axis=(1.0, 0.0)) -> np.ndarray:
    """4x4 RAS map from a point p of LR slice ``k`` to the HR point it shows.

    The content of the slice is moved by ``x -> R(x - c) + c + d`` (rotation about the stack's +k
    axis through ``rotation_centre``, then the in-plane displacement of :mod:`..core.case`), and the
    plane itself is tilted about ``tilt_axis`` (stack i, j components) through the slice centre:
    p shows the truth at ``motion^-1(tilt(p))``.
    """
    d = stack.direction
    centre = stack.slice_centres()[k]
    c = centre if rotation_centre is None else np.asarray(rotation_centre, float)
    disp = d[:, 0] * displacement_mm[0] + d[:, 1] * displacement_mm[1]
    motion = _rigid(_axis_rotation(d[:, 2], rotation_deg), c, disp)
    axis = d[:, 0] * tilt_axis[0] + d[:, 1] * tilt_axis[1]
    tilt = _rigid(_axis_rotation(axis / np.linalg.norm(axis), tilt_deg), centre)
    return np.linalg.inv(motion) @ tilt


def _slab_offsets(thickness: Optional[float], s_hr: float) -> np.ndarray:
    """Offsets (mm along k) of the sub-samples of one slice: the centre for point sampling, else
    the midpoints of ceil(2 t / s_hr) equal parts of the slab, i.e. at least two per HR slice so
    that each HR slice is weighted by its overlap with the slab."""
    if thickness is None:
        return np.zeros(1)
    n_sub = max(1, int(math.ceil(2 * thickness / s_hr - 1e-9)))
    return -thickness / 2 + (np.arange(n_sub) + 0.5) * thickness / n_sub


def _sample_slice(hr: Volume, stack: Geometry, k: int, offsets: np.ndarray, matrix: np.ndarray,
                  labels: Sequence[int]) -> np.ndarray:
    """One LR slice (j, i): nearest-sample the HR volume at every sub-sample of the slab through
    ``matrix`` and keep the majority label."""
    s_lr = float(stack.spacing[2])
    step = float(offsets[1] - offsets[0]) if len(offsets) > 1 else s_lr
    sub = stack.with_slices(len(offsets), step, first_slice_offset_mm=k * s_lr + float(offsets[0]))
    nudge = _rigid(translation=stack.direction[:, 2] * _TIE_BREAK_FRACTION * float(hr.spacing[2]))
    samples = resample(hr, sub, "nearest", transform=sitk_affine(nudge @ matrix)).array
    if samples.shape[0] == 1:
        return samples[0]
    votes = np.stack([(samples == lab).sum(axis=0) for lab in labels])
    return np.asarray(labels, dtype=np.uint8)[np.argmax(votes, axis=0)]


def _lv_centroid(stack: Geometry, k: int, slice_labels: np.ndarray) -> Optional[np.ndarray]:
    """RAS centroid of LV blood pool + myocardium in one slice, None if the slice has neither."""
    jj, ii = np.nonzero(np.isin(slice_labels, (LV, MYO)))
    if ii.size == 0:
        return None
    return stack.index_to_ras([ii.mean(), jj.mean(), float(k)])


def add_label_noise(array: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Copy of a (k, j, i) label array where ``fraction`` of the in-plane boundary voxels (those
    with a 4-neighbour of another label) take the label of a random differing neighbour."""
    out = array.copy()
    if fraction <= 0:
        return out
    padded = np.pad(array, ((0, 0), (1, 1), (1, 1)), mode="edge")
    neighbours = np.stack([padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]])
    differs = neighbours != array[None]
    boundary = np.flatnonzero(differs.any(axis=0))
    n_flip = int(round(fraction * boundary.size))
    if n_flip == 0:
        return out
    chosen = np.sort(rng.choice(boundary, size=n_flip, replace=False))
    flat_differs = differs.reshape(4, -1)[:, chosen].T
    scores = np.where(flat_differs, rng.random(flat_differs.shape), -1.0)
    pick = np.argmax(scores, axis=1)
    out.reshape(-1)[chosen] = neighbours.reshape(4, -1)[pick, chosen]
    return out


def validate_hr(hr) -> Volume:
    """The HR label volume as uint8 canonical labels; InputError for anything else."""
    if not isinstance(hr, Volume):
        raise InputError(f"The HR input must be a Volume (array [k, j, i] + ijk_to_ras), got {type(hr).__name__}.")
    if not hr.is_label:
        raise InputError(f"The HR input must be a label map (integer voxels), got {hr.array.dtype} voxels.")
    values = np.unique(hr.array)
    if values.size and (values.min() < 0 or values.max() > max(WHOLE_HEART)):
        raise InputError(f"The HR input holds non-canonical labels {values.tolist()}; map it with "
                         "labels.to_canonical first (0 background, 1 LV ... 7 PA).")
    if not (values > 0).any():
        raise InputError("The HR input is empty: it contains no labelled voxels.")
    return Volume(hr.array.astype(np.uint8, copy=False), hr.ijk_to_ras)


def _lr_spacing(hr: Volume, params, slice_spacing, factor) -> float:
    if slice_spacing is not None and factor is not None:
        raise InputError("Give either an LR slice spacing or a downsampling factor, not both.")
    if factor is not None:
        if isinstance(factor, bool) or not isinstance(factor, (int, float, np.integer, np.floating)) \
                or not factor >= 1:
            raise InputError(f"The downsampling factor must be a number >= 1, got {factor!r}.")
        return float(hr.spacing[2]) * float(factor)
    if slice_spacing is None:
        return float(params["slice_spacing_mm"])
    if isinstance(slice_spacing, bool) or not isinstance(slice_spacing, (int, float, np.integer, np.floating)) \
            or not slice_spacing > 0:
        raise InputError(f"The LR slice spacing must be a positive number of mm, got {slice_spacing!r}.")
    return float(slice_spacing)


def _check_thickness(thickness) -> Optional[float]:
    if thickness is None:
        return None
    if isinstance(thickness, bool) or not isinstance(thickness, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(thickness) and thickness > 0):
        raise InputError(f"The slice thickness must be a positive number of mm (or None), got {thickness!r}.")
    return float(thickness)


def degrade(hr: Volume, preset: str = "normal", *, slice_spacing: Optional[float] = None,
            factor: Optional[float] = None, thickness: Optional[float] = None, seed: int = 0,
            **overrides) -> Degraded:
    """Simulate a clinical SAX stack from the HR label volume ``hr`` (k = long axis).

    Parameters
    ----------
    hr : Volume
        Canonical labels (0..7), k = slice axis; any oblique pose.
    preset : str
        One of :data:`PRESETS`.
    slice_spacing, factor : float, optional
        LR slice spacing in mm, or as a multiple of the HR spacing (default: the preset's 10 mm).
    thickness : float, optional
        Slab thickness (mm) to average over; None samples the nearest HR slice.
    seed : int
        Seed of every random draw; the same input and seed give the same output.
    **overrides
        Preset parameters to change (keys of :data:`PRESETS` entries, e.g. ``rotation_deg_sd``,
        ``label_noise``, ``basal_dropout_probability``).
    """
    params = resolve_parameters(preset, **overrides)
    hr = validate_hr(hr)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"The seed must be a non-negative integer, got {seed!r}.")
    seed = int(seed)
    thickness = _check_thickness(thickness)
    stack = lr_geometry(hr.geometry, _lr_spacing(hr, params, slice_spacing, factor))
    n = stack.n_slices
    rngs = dict(zip(_STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(_STREAMS)))))

    labels = tuple(int(v) for v in np.unique(hr.array))
    offsets = _slab_offsets(thickness, float(hr.spacing[2]))
    lr_truth = np.stack([_sample_slice(hr, stack, k, offsets, slice_sampling_matrix(stack, k), labels)
                         for k in range(n)])

    displacements = sample_displacements(params, n, rngs["displacement"])
    sd = float(params["rotation_deg_sd"])
    rotations = rngs["rotation"].normal(0.0, sd, size=n) if sd > 0 else np.zeros(n)
    tilts, tilt_axes = _draw_tilts(params, n, rngs["tilt"])

    moved = []
    for k in range(n):
        if not (displacements[k].any() or rotations[k] or tilts[k]):
            moved.append(lr_truth[k])
            continue
        centre = _lv_centroid(stack, k, lr_truth[k]) if rotations[k] else None
        matrix = slice_sampling_matrix(stack, k, displacements[k], rotations[k], centre, tilts[k], tilt_axes[k])
        moved.append(_sample_slice(hr, stack, k, offsets, matrix, labels))
    observed = add_label_noise(np.stack(moved), float(params["label_noise"]), rngs["noise"])

    kept = _draw_dropout(params, n, base_is_first(lr_truth), rngs["dropout"])
    kept_stack = stack.with_slices(kept.size, float(stack.spacing[2]), float(kept[0] * stack.spacing[2]))
    return Degraded(sax=Volume.on(kept_stack, observed[kept].astype(np.uint8)), displacements=displacements[kept],
                    lr_truth=Volume.on(kept_stack, lr_truth[kept].astype(np.uint8)), truth=_crop_truth(hr, stack),
                    rotations_deg=rotations[kept], tilts_deg=tilts[kept], kept_slices=kept, preset=preset, seed=seed,
                    parameters=params, tilt_axes=tilt_axes[kept])
