"""A synthetic, MR-like rendering of a label stack: a bSSFP-cine-looking short-axis image.

Why it exists: the images-in path (methods that take cine SAX *images*, not segmentations) needs
small cases that the project makes itself, for its tests and demos, just as the label path has
the phantom (:mod:`.phantom`) and the degradation simulator (:mod:`.degrade`). This is a
cartoon of a bSSFP cine, not a physical MR simulation (no Bloch equations, no coil, k-space or
flow effects), and it is not used to train anything.

What it draws, slice by slice in the stack's (j, i) plane:

* bright blood pools (LV, RV and any other lumen, ~0.85-0.95, a little different per structure)
  and dark walls (the myocardium and vessel walls, ~0.25);
* mid-grey surrounding tissue (~0.35-0.5) with a smooth low-frequency texture (Gaussian-blurred
  random fields), inside an elliptic body outline around the heart with a thin bright fat layer
  under its edge, darker lung-like regions either side of the heart and air (~0.02) outside;
* a smooth multiplicative intensity bias (coil-like shading), a mild in-plane blur (partial volume,
  sigma 0.7 px) and Rician noise (magnitude of complex Gaussian noise, sigma 0.03);
* finally scaled from 0..1 to 0..255 (float32).

Labels above 3 follow one rule: the atria (4, 5) are blood pools; any other label is a lumen
(bright) if it is thick in-plane, else a wall (dark) whose enclosed in-plane lumen is drawn as
blood (the great vessels are walls in the whole-heart convention, see :mod:`..core.labels`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core.errors import InputError
from ..core.geometry import Volume
from ..core.labels import LV, MYO, RV

LA, RA = 4, 5
BLOOD_LABELS = (LV, RV, LA, RA)

BLOOD, WALL, TISSUE, LUNG, FAT, AIR = 0.90, 0.25, 0.42, 0.10, 0.62, 0.02
PARTIAL_VOLUME_SIGMA_PX = 0.7
NOISE_SIGMA = 0.03

_IN_PLANE = np.zeros((3, 3, 3), bool)  # 4-connectivity within each k-slice, none across slices
_IN_PLANE[1, 1, :] = _IN_PLANE[1, :, 1] = True


def _smooth_field(rng: np.random.Generator, shape, sigmas_px) -> np.ndarray:
    """Sum of Gaussian-blurred white-noise fields (one per in-plane sigma, in pixels), each
    normalised to unit standard deviation; blurred in-plane only. Zero mean, std ~1."""
    total = np.zeros(shape, np.float32)
    for sigma in sigmas_px:
        field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), (0.0, sigma, sigma),
                                        mode="reflect")
        total += field / max(float(field.std()), 1e-6)
    return total / np.sqrt(len(sigmas_px))


def _is_wall(mask: np.ndarray) -> bool:
    """A structure is a wall if little of it survives a 2-pixel in-plane erosion (thin)."""
    core = ndimage.binary_erosion(mask, _IN_PLANE, iterations=2)
    return core.sum() < 0.3 * mask.sum()


def _ellipse(x, y, centre, semi_axes) -> np.ndarray:
    return ((x - centre[0]) / semi_axes[0]) ** 2 + ((y - centre[1]) / semi_axes[1]) ** 2 <= 1.0


def render_cine(labels: Volume, seed: int = 0) -> Volume:
    """A bSSFP-cine-like float32 image (0..255) of the canonical label stack ``labels``, on the same
    geometry; the same ``seed`` gives the same image. See the module docstring for what is drawn.
    ``labels`` is not modified. Raises InputError for a non-label (non-integer) volume."""
    if not labels.is_label:
        raise InputError(f"render_cine needs a label volume (integer array), got dtype {labels.array.dtype}.")
    lab = np.asarray(labels.array).astype(np.int64)  # a copy: the input stays untouched
    rng = np.random.default_rng(seed)
    n_k, n_j, n_i = lab.shape
    si, sj = (float(s) for s in labels.spacing[:2])

    # In-plane physical coordinates (mm) of the pixel centres, broadcast to (1, j, i).
    y = (np.arange(n_j, dtype=np.float32) * sj)[None, :, None]
    x = (np.arange(n_i, dtype=np.float32) * si)[None, None, :]

    # The heart's in-plane centre and half-extents over all slices (one body for the whole stack).
    heart_2d = (lab > 0).any(axis=0)
    if heart_2d.any():
        jj, ii = np.nonzero(heart_2d)
        centre = np.array([(ii.min() + ii.max()) / 2 * si, (jj.min() + jj.max()) / 2 * sj])
        half = np.array([(ii.max() - ii.min() + 1) / 2 * si, (jj.max() - jj.min() + 1) / 2 * sj])
    else:
        centre = np.array([(n_i - 1) / 2 * si, (n_j - 1) / 2 * sj])
        half = np.array([0.15 * n_i * si, 0.15 * n_j * sj])
    half = np.maximum(half, 15.0)

    # Body, fat layer and lungs (air outside the body).
    body_axes = np.array([1.7 * half[0] + 15.0, 1.45 * half[1] + 12.0]) * rng.uniform(0.92, 1.08, 2)
    body_centre = centre + np.array([0.0, 0.15 * half[1]]) + rng.uniform(-0.1, 0.1, 2) * half
    body = _ellipse(x, y, body_centre, body_axes)
    inner = _ellipse(x, y, body_centre, body_axes * 0.95)
    chest = _ellipse(x, y, body_centre, body_axes * 0.86)
    lung_axes = np.array([0.55 * half[0], 1.0 * half[1]]) * rng.uniform(0.9, 1.1, 2)
    lungs = np.zeros_like(chest)
    for side in (-1.0, 1.0):
        offset = np.array([side * (0.75 * half[0] + 0.9 * lung_axes[0]), 0.2 * half[1]])
        lungs |= _ellipse(x, y, centre + offset, lung_axes)
    lungs &= chest

    texture = _smooth_field(rng, lab.shape, (3.0, 8.0, 16.0))
    image = np.where(body, TISSUE + 0.05 * texture, AIR).astype(np.float32)
    image = np.where(body & ~inner, FAT + 0.03 * texture, image)
    image = np.where(lungs, LUNG + 0.03 * texture, image)

    # The heart: blood bright, walls dark, each structure with its own small offset.
    blood = np.zeros(lab.shape, bool)
    for value in (int(v) for v in np.unique(lab) if v > 0):
        mask = lab == value
        if value in BLOOD_LABELS:
            blood |= mask
            image[mask] = np.clip(BLOOD + rng.uniform(-0.05, 0.05), 0.85, 0.95)
            continue
        if value == MYO or _is_wall(mask):
            image[mask] = WALL + rng.uniform(-0.02, 0.02)
            if value != MYO:  # a vessel wall: its enclosed lumen (not another structure) is blood
                lumen = np.stack([ndimage.binary_fill_holes(m) for m in mask]) & ~mask & (lab == 0)
                image[lumen] = np.clip(BLOOD + rng.uniform(-0.05, 0.05), 0.85, 0.95)
                blood |= lumen
        else:
            blood |= mask
            image[mask] = np.clip(BLOOD + rng.uniform(-0.05, 0.05), 0.85, 0.95)
    image = np.where(blood, image + 0.01 * texture, image)  # blood is nearly uniform in bSSFP

    # Coil-like shading, partial volume, Rician noise, then 0..255.
    bias = 1.0 + 0.06 * _smooth_field(rng, lab.shape, (max(n_i, n_j) / 4.0,))
    image = ndimage.gaussian_filter(image * bias, (0.0, PARTIAL_VOLUME_SIGMA_PX, PARTIAL_VOLUME_SIGMA_PX))
    noise = rng.standard_normal((2,) + lab.shape).astype(np.float32) * NOISE_SIGMA
    image = np.hypot(image + noise[0], noise[1])
    return labels.with_array((np.clip(image, 0.0, 1.0) * 255.0).astype(np.float32))
