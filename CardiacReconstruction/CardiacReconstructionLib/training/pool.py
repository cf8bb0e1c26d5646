"""Augmented CT hearts and random motion: the samples DeepWHR's and Mask2Surface's trainers share.

One resampling of a CT heart with augmentation (:func:`.cohort.load_subject`: scale, long-axis
scale, tilt and spin of the cutting planes, elastic field) costs more than a training step, so a
:class:`HeartPool` keeps a few in memory and replaces one at a time; every training sample is then a
fresh degradation of a pool heart with motion drawn by :func:`random_motion`, cut to the slices
around the heart (:func:`crop_to_heart`), as clinical stacks are.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

#: HR grids (k, j, i) per mode along a 2 mm (DSL) k axis; the whole heart reaches ~70 mm above
#: the mitral valve, beyond the 128 mm slab that suits the ventricles.
_K_EXTENT_MM = {"biventricular": 128.0, "wholeheart": 240.0}
_INPLANE_EXTENT_MM = 160.0


def cohort_paths(root, subjects) -> Tuple[Path, ...]:
    """The named CT subjects, or the cohort's training split (no PCA shapes: they saw the
    validation subjects)."""
    from .cohort import split, subject_path

    if subjects:
        return tuple(subject_path(s, root) for s in subjects)
    return split(root, "train", include_pca=False)


class HeartPool:
    """Augmented HR hearts kept in memory, one replaced by a fresh augmentation on request."""

    def __init__(self, paths, n_biv: int, n_wh: int, inplane_mm, k_mm: float, rng: np.random.Generator,
                 log=print):
        self.paths, self.inplane_mm, self.k_mm, self.rng = paths, inplane_mm, k_mm, rng
        self.modes = ["biventricular"] * n_biv + ["wholeheart"] * n_wh
        t0 = time.perf_counter()
        self.hearts = [self._new(m) for m in self.modes]
        log(f"pool of {len(self.hearts)} augmented hearts in {time.perf_counter() - t0:.0f} s")

    def _new(self, mode: str):
        from .cohort import load_subject

        path = self.paths[int(self.rng.integers(len(self.paths)))]
        lo, hi = self.inplane_mm if isinstance(self.inplane_mm, tuple) else (self.inplane_mm, self.inplane_mm)
        inplane_mm = float(self.rng.uniform(lo, hi))
        n_i, n_k = int(round(_INPLANE_EXTENT_MM / inplane_mm)), int(round(_K_EXTENT_MM[mode] / self.k_mm))
        return load_subject(path, grid_shape=(n_k, n_i, n_i), spacing=(inplane_mm, inplane_mm, self.k_mm), mode=mode,
                            augment=self.rng)

    def refresh(self) -> None:
        i = int(self.rng.integers(len(self.hearts)))
        self.hearts[i] = self._new(self.modes[i])

    def pick(self):
        return self.hearts[int(self.rng.integers(len(self.hearts)))]

    def refresher(self, every: int):
        """An ``after_step`` for :meth:`.trainer.Trainer.run`: one heart replaced every ``every`` steps."""
        return lambda step: self.refresh() if step % every == 0 else None


def random_motion(rng: np.random.Generator) -> Tuple[str, Dict]:
    """A degradation preset and overrides spanning no motion to beyond SRHeart's 'severe'."""
    u = rng.random()
    extra = dict(rotation_deg_sd=float(rng.uniform(0, 4)),
                 label_noise=float(rng.uniform(0, 0.2)) if rng.random() < 0.5 else 0.0)
    if u < 0.12:
        return "none", extra
    if u < 0.7:
        mean = float(rng.uniform(1.0, 12.0))
        return "normal", dict(extra, displacement_mean_mm=mean, displacement_sd_mm=0.38 * mean)
    return "stacom", dict(extra, displacement_sd_mm=float(rng.uniform(1.0, 6.0)),
                          tilt_deg_range=(0.0, float(rng.uniform(0.0, 10.0))),
                          basal_dropout_probability=0.3, apical_dropout_probability=0.3)


def crop_to_heart(deg, rng: np.random.Generator, margin_max: int = 1):
    """Keep the slices around the heart (0..margin_max empty slices beyond each end), as clinical
    stacks start near the base and end near the apex; returns (sax, lr_truth) Volumes and the
    kept slice range of ``deg``'s stack."""
    from ..core.geometry import Volume

    have = np.flatnonzero(deg.sax.array.any(axis=(1, 2)) | deg.lr_truth.array.any(axis=(1, 2)))
    n = deg.sax.shape[0]
    lo = max(0, int(have[0]) - int(rng.integers(0, margin_max + 1)))
    hi = min(n, int(have[-1]) + 1 + int(rng.integers(0, margin_max + 1)))
    if hi - lo < 2:
        lo, hi = max(0, min(lo, n - 2)), min(n, max(hi, lo + 2))
    g = deg.sax.geometry
    sub = g.with_slices(hi - lo, float(g.spacing[2]), lo * float(g.spacing[2]))
    return Volume.on(sub, deg.sax.array[lo:hi]), Volume.on(sub, deg.lr_truth.array[lo:hi]), slice(lo, hi)


def heart_crop(labels: np.ndarray, size: int, rng: np.random.Generator) -> Tuple[slice, slice]:
    """A random in-plane (j, i) window of ``size`` voxels centred near a random heart voxel."""
    fg = np.argwhere(labels.any(axis=0))
    n_j, n_i = labels.shape[1:]
    cj, ci = fg[int(rng.integers(len(fg)))] if len(fg) else (n_j // 2, n_i // 2)
    j0 = int(np.clip(cj - size // 2 + rng.integers(-4, 5), 0, n_j - size))
    i0 = int(np.clip(ci - size // 2 + rng.integers(-4, 5), 0, n_i - size))
    return slice(j0, j0 + size), slice(i0, i0 + size)


def degraded_sample(pool: HeartPool, slice_spacing_mm, rng: np.random.Generator):
    """A pool heart degraded with :func:`random_motion` at a random slice spacing, cut to the
    heart: (HR heart, Degraded, sax, lr_truth, kept slice range); drawn again while the cut stack
    is empty."""
    from ..simulation.degrade import degrade

    while True:
        hr = pool.pick()
        preset, overrides = random_motion(rng)
        spacing = float(rng.uniform(*slice_spacing_mm))
        deg = degrade(hr, preset, slice_spacing=spacing, seed=int(rng.integers(2 ** 31)), **overrides)
        sax, clean, kept = crop_to_heart(deg, rng)
        if sax.array.any():
            return hr, deg, sax, clean, kept
