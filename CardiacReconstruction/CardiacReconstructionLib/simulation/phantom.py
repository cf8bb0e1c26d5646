"""A procedural, seeded cardiac phantom: realistic adult end-diastolic labels with known truth.

Why a phantom of our own: tests, the demo and the benchmark need high-resolution ground truth
with exact landmarks that the project may ship and regenerate at will (the shared real data may
not be copied into the repository).

Construction
------------
Everything is built in a heart frame with millimetre coordinates ``(x, y, z)``:

* ``z`` is the LV long axis, running from the basal plane (``z = 0``, the mitral valve plane)
  towards the apex, so the truth's k axis runs base -> apex like a clinical short-axis stack;
* ``-x`` points from the LV towards the RV (the septum faces ``-x``);
* ``+y`` points towards the outflow tracts (aorta and pulmonary artery).

Each structure is the negative part of a signed-distance-style implicit function in mm
(radial distance to a superellipsoid profile, distance to a tube axis, ...), evaluated at the
physical position of every voxel centre. Because the functions live in physical space, the
phantom is equally smooth at any spacing and needs no resampling.

* LV blood pool: a truncated prolate half-superellipsoid, ``r(z) = R (1 - (z/L)^p)^(1/p)``, whose
  radius is solved from a sampled cavity volume; mildly elliptic in-plane.
* LV myocardium: the same profile inflated by the wall thickness (thinner at the apex, which it
  closes), minus the cavity.
* RV blood pool: a crescent on the LV epicardium facing ``-x``: its thickness across the septum is
  a window ``(1 - u^2)^q`` of the angle (pointed insertion points), tapering to an RV apex short of
  the LV apex; its thickness is solved from a sampled RV volume.
* Ventricles are cut flat at ``z = 0``, as clinical short-axis segmentations stop at the base.
* Whole heart adds the LA and RA as ellipsoids above the base (split by the nearer implicit
  surface, so they share a septum) and the aorta and pulmonary artery as straight tubes leaving
  the base from their valves. As in the whole-heart CT cohort (see :mod:`..core.labels`), the great
  vessels are walls by default; ``vessel_lumen=True`` fills them (MM-WHS style).
* Irregularity: a smooth random in-plane warp (a few low-frequency sinusoids, Jacobian kept far
  from folding) plus a mild bow of the long axis, so shapes are not perfectly symmetric. The
  warp is in-plane only so that the basal cut stays flat.

The heart frame is then placed in RAS by a seeded pose resembling a scanner's short-axis
planning (apex towards the patient's left, anterior and inferior), perturbed by up to ~15 degrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..core.errors import InputError
from ..core.geometry import Volume
from ..core.labels import LV, MYO, RV

MODES = ("biventricular", "wholeheart")
LANDMARK_KEYS = ("lv_apex", "mitral_valve_centre", "tricuspid_valve_centre", "aortic_valve_centre",
                 "pulmonary_valve_centre")
LA, RA, AO, PA = 4, 5, 6, 7

#: Default array shapes (k, j, i): the SRHeart high-resolution grid for the ventricles; the whole
#: heart needs a longer k axis for the atria and vessels above the base.
DEFAULT_SHAPES = {"biventricular": (64, 128, 128), "wholeheart": (88, 128, 128)}
DEFAULT_SPACING = (1.25, 1.25, 2.0)

MYOCARDIUM_DENSITY_G_PER_ML = 1.05
AORTIC_WALL_MM, PULMONARY_WALL_MM = 2.5, 2.0  # vessel walls of the whole-heart CT cohort's kind
MARGIN_MM = 6.0  # the smallest gap the grid must leave between the heart and its border
_COARSE_MM = 3.0  # spacing of the quick pass that finds the heart's extent


@dataclass(frozen=True)
class Phantom:
    """A phantom's canonical truth (uint8 labels on its SAX grid), landmarks in RAS mm (keys
    :data:`LANDMARK_KEYS`) and the sampled parameters that produced it."""

    truth: Volume
    landmarks: Dict[str, np.ndarray]
    params: Dict[str, Any]


def _profile(s, p: float):
    """Superellipse profile ``(1 - s^p)^(1/p)`` on [0, 1], 0 beyond: the radius fraction of a
    half-superellipsoid at normalised depth ``s`` (1 at the base, 0 at the tip)."""
    s = np.clip(s, 0.0, 1.0)
    return (1.0 - s ** p) ** (1.0 / p)


_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2 renamed trapz


def _profile_area_factor(p: float) -> float:
    """``int_0^1 profile(s)^2 ds``: a half-superellipsoid of radius R and length L holds
    ``pi R^2 L`` times this (2/3 for the ellipsoid, p = 2)."""
    s = np.linspace(0.0, 1.0, 4001)
    return float(_trapezoid(_profile(s, p) ** 2, s))


def _rv_window(phi, half_width_ant, half_width_inf, q: float):
    """RV thickness fraction across the septum: ``(1 - u^2)^q`` of the normalised angle from
    the septal midline, wider on the anterior (``phi > 0``) side; 0 beyond the insertion points."""
    u = np.where(phi >= 0, phi / half_width_ant, -phi / half_width_inf)
    return np.clip(1.0 - u * u, 0.0, None) ** q


def _rotation(axis, angle: float) -> np.ndarray:
    """Rotation matrix about ``axis`` by ``angle`` radians (Rodrigues)."""
    a = np.asarray(axis, float)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _sample_parameters(rng: np.random.Generator) -> Dict[str, Any]:
    """Draw every anatomical parameter (always in the same order, whatever the mode, so that
    the ventricles of a seed are the same in both modes) and solve the dependent sizes."""
    u = rng.uniform
    p = {}
    # LV cavity: volume and length drawn, radius solved.
    p["lv_volume_ml"] = u(124.0, 148.0)
    p["lv_length_mm"] = u(82.0, 92.0)
    p["lv_profile_exponent"] = u(2.1, 2.6)
    p["lv_radius_mm"] = float(np.sqrt(p["lv_volume_ml"] * 1000.0 / (
        np.pi * p["lv_length_mm"] * _profile_area_factor(p["lv_profile_exponent"]))))
    p["lv_eccentricity"] = u(0.0, 0.08)
    p["lv_eccentricity_angle"] = u(0.0, np.pi)
    # Myocardium: mass drawn, wall thickness solved.
    p["lv_mass_g"] = u(120.0, 145.0)
    p["apex_thickness_ratio"] = u(0.7, 0.9)
    p["wall_thickness_mm"] = _solve_wall_thickness(p)
    p["wall_thickness_variation"] = u(0.0, 0.1)
    p["wall_thickness_angle"] = u(-np.pi, np.pi)
    # RV crescent.
    p["rv_volume_ml"] = u(140.0, 170.0)
    p["rv_length_ratio"] = u(0.72, 0.84)
    p["rv_profile_exponent"] = u(1.8, 2.4)
    p["rv_half_width_anterior"] = np.deg2rad(u(80.0, 95.0))
    p["rv_half_width_inferior"] = np.deg2rad(u(65.0, 80.0))
    p["rv_window_exponent"] = u(0.55, 0.8)
    # Irregularity: long-axis bow and smooth in-plane warp.
    p["bow_mm"] = u(1.5, 4.0)
    p["bow_angle"] = u(-np.pi, np.pi)
    n_waves = 4
    p["warp_amplitude_mm"] = u(0.8, 1.6, n_waves)
    p["warp_wavelength_mm"] = u(80.0, 140.0, n_waves)
    p["warp_wave_direction"] = np.array([_unit(rng.normal(size=3)) for _ in range(n_waves)])
    p["warp_phase"] = u(-np.pi, np.pi, n_waves)
    # Whole heart: sizes relative to the LV's outer radius, jittered.
    p["la_semi_axes_mm"] = np.array([28.0, 21.0, 24.0]) * u(0.92, 1.08, 3)
    p["ra_semi_axes_mm"] = np.array([25.0, 23.0, 26.0]) * u(0.92, 1.08, 3)
    p["atria_tilt"] = u(-0.2, 0.2, 2)
    p["aorta_radius_mm"] = u(12.0, 14.0)
    p["pa_radius_mm"] = u(11.0, 12.5)
    p["aorta_length_mm"] = u(40.0, 50.0)
    p["pa_length_mm"] = u(34.0, 42.0)
    # Pose in the scanner.
    p["pose_tilt_axis"] = _unit(rng.normal(size=3))
    p["pose_tilt_deg"] = u(0.0, 15.0)
    p["pose_roll_deg"] = u(-15.0, 15.0)
    p["pose_centre_ras_mm"] = rng.normal(0.0, 15.0, 3)
    _solve_rv_thickness(p)
    return p


def _solve_wall_thickness(p) -> float:
    """Wall thickness (mm) that gives the sampled LV mass at 1.05 g/ml: the epicardial
    half-superellipsoid (radius R + t, length L + apex ratio * t) holds cavity + myocardium."""
    from scipy.optimize import brentq

    c = _profile_area_factor(p["lv_profile_exponent"])
    r, length, ratio = p["lv_radius_mm"], p["lv_length_mm"], p["apex_thickness_ratio"]
    target = (p["lv_volume_ml"] + p["lv_mass_g"] / MYOCARDIUM_DENSITY_G_PER_ML) * 1000.0
    return float(brentq(lambda t: np.pi * (r + t) ** 2 * (length + ratio * t) * c - target, 0.0, 40.0))


def _lv_epicardial_profile(p, phi, z):
    """Outer LV radius (mm) at angle ``phi`` from the septal midline and depth ``z``."""
    t = p["wall_thickness_mm"] * (1.0 + p["wall_thickness_variation"] * np.cos(phi - p["wall_thickness_angle"]))
    outer_length = p["lv_length_mm"] + p["apex_thickness_ratio"] * p["wall_thickness_mm"]
    return (p["lv_radius_mm"] + t) * _profile(z / outer_length, p["lv_profile_exponent"])


def _rv_half_widths(p, z):
    """Angular half-widths of the RV crescent, narrowing towards the RV apex."""
    narrowing = 1.0 - 0.35 * np.clip(z / p["rv_length_mm"], 0.0, 1.0) ** 2
    return p["rv_half_width_anterior"] * narrowing, p["rv_half_width_inferior"] * narrowing


def _rv_shape(p, phi, z):
    """RV thickness per mm of maximal thickness at ``(phi, z)``: depth taper times window."""
    ant, inf = _rv_half_widths(p, z)
    taper = _profile(z / p["rv_length_mm"], p["rv_profile_exponent"])
    return taper * _rv_window(phi, ant, inf, p["rv_window_exponent"])


def _solve_rv_thickness(p) -> None:
    """Set the RV's maximal thickness so that the crescent holds the sampled RV volume.

    In polar coordinates around the LV the crescent's area element is ``(Re h + h^2 / 2) dphi``,
    so its volume is quadratic in the thickness scale H: ``V = H a1 + H^2 a2 / 2``.
    """
    p["rv_length_mm"] = p["rv_length_ratio"] * p["lv_length_mm"]
    z = np.linspace(0.0, p["rv_length_mm"], 241)
    phi = np.linspace(-np.pi, np.pi, 721)
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    shape = _rv_shape(p, pp, zz)
    outer = _lv_epicardial_profile(p, pp, zz)
    a1 = _trapezoid(_trapezoid(outer * shape, phi, axis=1), z)
    a2 = _trapezoid(_trapezoid(shape ** 2, phi, axis=1), z)
    v = p["rv_volume_ml"] * 1000.0
    p["rv_thickness_mm"] = float((-a1 + np.sqrt(a1 * a1 + 2.0 * a2 * v)) / a2)


# The anatomy as implicit functions in the heart frame
class _Heart:
    """Implicit anatomy of one seed: maps heart-frame points (mm) to canonical labels."""

    def __init__(self, p: Dict[str, Any], vessel_lumen: bool = False):
        self.p = p
        self.vessel_lumen = vessel_lumen
        self.outer_radius = p["lv_radius_mm"] + p["wall_thickness_mm"]
        self.outer_length = p["lv_length_mm"] + p["apex_thickness_ratio"] * p["wall_thickness_mm"]
        self.size = self.outer_radius / 36.0  # whole-heart structures scale with the LV
        self._place_great_vessels_and_atria()

    def _bow(self, z):
        """In-plane offset of the long axis at depth z: zero at base and apex, ``bow_mm`` mid-way."""
        b = self.p["bow_mm"] * np.sin(np.pi * np.clip(z / self.outer_length, 0.0, 1.0))
        return b * np.cos(self.p["bow_angle"]), b * np.sin(self.p["bow_angle"])

    def _warp(self, x, y, z):
        """Smooth in-plane displacement field (mm): a sum of a few long-wavelength transverse
        waves. Each wave moves points across its own in-plane direction of travel, so the field
        is divergence-free: it bends shapes without changing their areas (and volumes)."""
        p = self.p
        dx = np.zeros(np.broadcast(x, y, z).shape)
        dy = np.zeros_like(dx)
        for amp, lam, d, phase in zip(p["warp_amplitude_mm"], p["warp_wavelength_mm"], p["warp_wave_direction"],
                                      p["warp_phase"]):
            wave = amp * np.sin(2 * np.pi / lam * (d[0] * x + d[1] * y + d[2] * z) + phase)
            across = np.array([-d[1], d[0]]) / max(np.hypot(d[0], d[1]), 1e-9)
            dx = dx + wave * across[0]
            dy = dy + wave * across[1]
        return dx, dy

    def to_anatomy(self, x, y, z):
        """Frame position -> undeformed anatomical coordinates (only x and y change)."""
        wx, wy = self._warp(x, y, z)
        bx, by = self._bow(z)
        return x + wx - bx, y + wy - by

    def from_anatomy(self, point) -> np.ndarray:
        """Inverse of :meth:`to_anatomy` for one point, by fixed-point iteration (the warp is a
        contraction, so this converges)."""
        ax, ay, z = (float(v) for v in point)
        bx, by = self._bow(z)
        x, y = ax + bx, ay + by
        for _ in range(50):
            wx, wy = self._warp(x, y, z)
            x, y = ax + bx - float(wx), ay + by - float(wy)
        return np.array([x, y, z])

    def _lv_polar(self, ax, ay):
        """Elliptic radius (mm, area preserving) and angle from the septal midline (-x)."""
        p = self.p
        c, s = np.cos(p["lv_eccentricity_angle"]), np.sin(p["lv_eccentricity_angle"])
        kappa = 1.0 + p["lv_eccentricity"]
        xr, yr = c * ax + s * ay, -s * ax + c * ay
        return np.hypot(xr / kappa, yr * kappa), np.arctan2(ay, -ax)

    def ventricles(self, x, y, z) -> np.ndarray:
        """Labels LV, MYO, RV (0 elsewhere) at frame points; flat basal cut at z = 0."""
        p = self.p
        ax, ay = self.to_anatomy(x, y, z)
        rho, phi = self._lv_polar(ax, ay)
        below_base = z >= 0.0
        endo = rho - p["lv_radius_mm"] * _profile(z / p["lv_length_mm"], p["lv_profile_exponent"])
        epi = rho - _lv_epicardial_profile(p, phi, z)
        rv_depth = epi  # distance outside the epicardium, measured radially
        rv_outer = rv_depth - p["rv_thickness_mm"] * _rv_shape(p, phi, z)
        out = np.zeros(np.broadcast(x, y, z).shape, np.uint8)
        out[below_base & (epi < 0)] = MYO
        out[below_base & (endo < 0)] = LV
        out[below_base & (rv_depth >= 0) & (rv_outer < 0)] = RV
        return out

    def _place_great_vessels_and_atria(self) -> None:
        """Valve positions and the atria, in anatomical coordinates, after the CT cohort's
        typical layout: aortic valve over the antero-septal LV base, pulmonary valve over the
        anterior RV horn, tricuspid valve over the RV, atria above their valves."""
        p, g, re = self.p, self.size, self.outer_radius
        self.mitral = np.array([0.0, 0.0, 0.0])
        self.tricuspid = np.array([-(re + 0.45 * p["rv_thickness_mm"]), 0.0, 0.0])
        self.aortic = np.array([-0.39 * re, 0.58 * re, -1.0])
        self.pulmonary = np.array([-0.45 * re, 1.3 * re, -3.0])
        self.aorta_dir = _unit([-0.35, 0.0, -1.0])
        self.pa_dir = _unit([0.45, 0.05, -1.0])
        self.la_centre = np.array([-3.0, -12.0, -20.0]) * g
        self.ra_centre = self.tricuspid * np.array([1.0, 0.0, 0.0]) + np.array([2.0, -8.0, -20.0]) * g
        self.la_axes = p["la_semi_axes_mm"] * g
        self.ra_axes = p["ra_semi_axes_mm"] * g
        self.lv_apex = np.array([0.0, 0.0, self.outer_length])

    def _ellipsoid(self, ax, ay, z, centre, axes, tilt):
        """Signed-distance-style ellipsoid function (mm): (normalised radius - 1) * mean axis."""
        c, s = np.cos(tilt), np.sin(tilt)
        dx, dy, dz = ax - centre[0], ay - centre[1], z - centre[2]
        u, v = c * dx + s * dy, -s * dx + c * dy
        return (np.sqrt((u / axes[0]) ** 2 + (v / axes[1]) ** 2 + (dz / axes[2]) ** 2) - 1.0) * float(np.mean(axes))

    @staticmethod
    def _tube(ax, ay, z, start, direction, length):
        """Distance (mm) to a straight vessel's axis, and whether the point lies along it."""
        d = np.stack(np.broadcast_arrays(ax - start[0], ay - start[1], z - start[2]))
        t = np.tensordot(direction, d, axes=1)
        radial = np.sqrt(np.maximum((d ** 2).sum(axis=0) - t ** 2, 0.0))
        return radial, (t >= 0.0) & (t <= length)

    def above_base(self, x, y, z) -> np.ndarray:
        """Labels LA, RA, AO, PA (0 elsewhere) at frame points above the base (z < 0)."""
        p, g = self.p, self.size
        ax, ay = self.to_anatomy(x, y, z)
        above = z < 0.0
        ao_r, ao_along = self._tube(ax, ay, z, self.aortic, self.aorta_dir, p["aorta_length_mm"] * g)
        pa_r, pa_along = self._tube(ax, ay, z, self.pulmonary, self.pa_dir, p["pa_length_mm"] * g)
        ao_outer, pa_outer = p["aorta_radius_mm"] * g, p["pa_radius_mm"] * g
        ao_solid = above & ao_along & (ao_r < ao_outer)
        pa_solid = above & pa_along & (pa_r < pa_outer) & ~ao_solid
        la = self._ellipsoid(ax, ay, z, self.la_centre, self.la_axes, p["atria_tilt"][0])
        ra = self._ellipsoid(ax, ay, z, self.ra_centre, self.ra_axes, p["atria_tilt"][1])
        atrium = above & ~ao_solid & ~pa_solid
        out = np.zeros(np.broadcast(x, y, z).shape, np.uint8)
        out[atrium & (la < 0) & (la <= ra)] = LA
        out[atrium & (ra < 0) & (ra < la)] = RA
        if self.vessel_lumen:
            out[ao_solid], out[pa_solid] = AO, PA
        else:
            out[ao_solid & (ao_r >= ao_outer - AORTIC_WALL_MM)] = AO
            out[pa_solid & (pa_r >= pa_outer - PULMONARY_WALL_MM)] = PA
        return out

    def landmarks(self) -> Dict[str, np.ndarray]:
        """Landmarks in frame mm: valve centres and the epicardial LV apex (the most apical
        point of the myocardium)."""
        anatomical = {"lv_apex": self.lv_apex, "mitral_valve_centre": self.mitral,
                      "tricuspid_valve_centre": self.tricuspid, "aortic_valve_centre": self.aortic,
                      "pulmonary_valve_centre": self.pulmonary}
        return {k: self.from_anatomy(v) for k, v in anatomical.items()}


def _labels_on_grid(heart: _Heart, axes_mm, wholeheart: bool) -> np.ndarray:
    """Evaluate the anatomy on a grid given by its x, y, z coordinate vectors; slabs below and
    above the base are evaluated separately since each holds only its own structures."""
    xs, ys, zs = axes_mm
    out = np.zeros((len(zs), len(ys), len(xs)), np.uint8)
    x, y = xs[None, None, :], ys[None, :, None]
    ventricular = zs >= 0.0
    if ventricular.any():
        z = zs[ventricular][:, None, None]
        out[ventricular] = heart.ventricles(x, y, z)
    if wholeheart and (~ventricular).any():
        z = zs[~ventricular][:, None, None]
        out[~ventricular] = heart.above_base(x, y, z)
    return out


def _heart_bounds(heart: _Heart, wholeheart: bool) -> np.ndarray:
    """(2, 3) frame-mm bounds [min, max] of all labelled voxels, from a quick coarse pass."""
    half = 130.0
    xs = ys = np.arange(-half, half + 1e-6, _COARSE_MM)
    zs = np.arange(-90.0 if wholeheart else -_COARSE_MM, heart.outer_length + 2 * _COARSE_MM, _COARSE_MM)
    lab = _labels_on_grid(heart, (xs, ys, zs), wholeheart)
    k, j, i = np.nonzero(lab)
    if min(i.min(), j.min(), k.min()) == 0 or i.max() == len(xs) - 1 or j.max() == len(ys) - 1 \
            or k.max() == len(zs) - 1:
        raise RuntimeError("The phantom's heart outgrew the box used to measure it; enlarge the box.")
    lo = np.array([xs[i.min()], ys[j.min()], zs[k.min()]]) - _COARSE_MM
    hi = np.array([xs[i.max()], ys[j.max()], zs[k.max()]]) + _COARSE_MM
    return np.stack([lo, hi])


def _scanner_rotation(p, oblique: bool) -> np.ndarray:
    """3x3 rotation whose columns are the heart frame's x, y, z axes in RAS.

    Nominal short-axis planning: the long axis (base -> apex) points to the patient's left,
    anterior and inferior; the RV (frame -x) lies to the right of the LV. The seed tilts the
    long axis by up to 15 degrees and rolls the in-plane axes by up to +-15 degrees.
    """
    if not oblique:
        return np.eye(3)
    long_axis = _unit([-0.579, 0.579, -0.574])  # RAS: left, anterior, inferior
    towards_rv = _unit([1.0, 0.4, 0.0])  # patient's right, a little anterior
    long_axis = _rotation(p["pose_tilt_axis"], np.deg2rad(p["pose_tilt_deg"])) @ long_axis
    towards_rv = _unit(towards_rv - long_axis * (towards_rv @ long_axis))
    towards_rv = _rotation(long_axis, np.deg2rad(p["pose_roll_deg"])) @ towards_rv
    x_axis = -towards_rv
    y_axis = np.cross(long_axis, x_axis)
    return np.stack([x_axis, y_axis, long_axis], axis=1)


def _check_grid(mode, spacing, shape) -> Tuple[np.ndarray, Tuple[int, int, int]]:
    if mode not in MODES:
        raise InputError(f"Unknown phantom mode {mode!r}; expected one of {', '.join(MODES)}.")
    shape = DEFAULT_SHAPES[mode] if shape is None else shape
    try:
        spacing = np.asarray(spacing, float).reshape(3)
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise InputError("The phantom needs spacing (i, j, k) as 3 numbers in mm and shape (k, j, i) "
                         "as 3 integers.") from None
    if len(shape) != 3 or min(shape) < 1 or not np.all(np.isfinite(spacing)) or spacing.min() <= 0:
        raise InputError(f"The phantom needs 3 positive spacings (mm) and 3 positive sizes, got spacing "
                         f"{tuple(spacing)} and shape {shape}.")
    return spacing, shape


def make_phantom(seed: int = 0, mode: str = "biventricular", spacing=DEFAULT_SPACING,
                 shape: Optional[Tuple[int, int, int]] = None, oblique: bool = True,
                 vessel_lumen: bool = False) -> Phantom:
    """Generate a seeded adult end-diastolic heart phantom.

    Parameters
    ----------
    seed : the random seed; the same seed always gives the same phantom.
    mode : 'biventricular' (LV, MYO, RV) or 'wholeheart' (adds LA, RA, aorta, pulmonary artery).
    spacing : voxel size (i, j, k) in mm; k is the long axis.
    shape : array shape (k, j, i); ``None`` gives :data:`DEFAULT_SHAPES` for the mode.
    oblique : place the heart in RAS with a seeded, scanner-like oblique pose; if False the
        grid is axis-aligned and centred on the RAS origin.
    vessel_lumen : whole heart only: fill the great vessels instead of labelling their walls.

    Returns
    -------
    Phantom whose ``truth`` grid is the heart's short-axis frame (k runs base -> apex) centred
    on the heart; raises InputError if the grid cannot hold the heart with a margin.
    ``params`` holds the sampled parameters (volumes and mass are targets; the voxel counts
    match them to within discretisation), the arguments, and ``frame_to_ras``: the 4x4 map from
    the heart frame (mm; see the module docstring) to RAS.
    """
    spacing, shape = _check_grid(mode, spacing, shape)
    rng = np.random.default_rng(seed)
    p = _sample_parameters(rng)
    heart = _Heart(p, vessel_lumen=vessel_lumen)
    wholeheart = mode == "wholeheart"

    bounds = _heart_bounds(_Heart(p, vessel_lumen=True), wholeheart)  # the same grid for walls or lumens
    centre = bounds.mean(axis=0)
    extent_mm = np.array(shape[::-1]) * spacing
    needed_mm = bounds[1] - bounds[0] + 2 * MARGIN_MM
    if np.any(needed_mm > extent_mm):
        raise InputError(f"The phantom grid {shape} (k, j, i) at {tuple(spacing)} mm covers {tuple(extent_mm)} mm; "
                         f"the heart needs at least {tuple(np.round(needed_mm, 1))} mm (i, j, k).")
    first = centre - (np.array(shape[::-1]) - 1) / 2.0 * spacing  # frame position of voxel (0, 0, 0)
    axes_mm = [first[a] + np.arange(shape[2 - a]) * spacing[a] for a in range(3)]
    labels = _labels_on_grid(heart, axes_mm, wholeheart)

    rotation = _scanner_rotation(p, oblique)
    frame_to_ras = np.eye(4)
    frame_to_ras[:3, :3] = rotation
    frame_to_ras[:3, 3] = (p["pose_centre_ras_mm"] - rotation @ centre) if oblique else -centre
    ijk_to_frame = np.eye(4)
    ijk_to_frame[:3, :3] = np.diag(spacing)
    ijk_to_frame[:3, 3] = first
    truth = Volume(labels, frame_to_ras @ ijk_to_frame)

    landmarks = {k: rotation @ v + frame_to_ras[:3, 3] for k, v in heart.landmarks().items()}
    params = {k: (v.tolist() if isinstance(v, np.ndarray) else float(v)) for k, v in p.items()}
    params.update(seed=int(seed), mode=mode, oblique=bool(oblique), vessel_lumen=bool(vessel_lumen),
                  frame_to_ras=frame_to_ras.tolist())
    return Phantom(truth=truth, landmarks=landmarks, params=params)


def phantom_truth(seed: int = 0, **kwargs) -> Volume:
    """The truth label volume of :func:`make_phantom` (same arguments)."""
    return make_phantom(seed, **kwargs).truth
