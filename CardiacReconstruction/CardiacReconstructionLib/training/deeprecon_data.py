"""DeepRecon's training material: heart-centred crops of the real ACDC cine slices and their labels.

Every network of DeepRecon (G, D, E, Seg, DirectSeg) trains on the slices of the fixed ACDC
training patients only (:func:`.cohort.acdc_split`, validation = patient number divisible by 5),
ED and ES frames, every slice that holds the heart. Crops are centred on the slice's label centre
of mass (at run time DirectSeg's segmentation gives that centre), resampled to the networks'
pixel size from the assumed 1.5 mm ACDC in-plane spacing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..core.crops import intensity_window, label_centres, sample_crops
from .cohort import ACDC_SPACING, acdc_split, load_acdc, load_acdc_image


@dataclass(frozen=True)
class SliceSet:
    """Crops [N, S, S] (images in [-1, 1], canonical labels) with their key and slice index."""
    images: np.ndarray
    labels: np.ndarray
    keys: Tuple[str, ...]
    slices: np.ndarray
    centres: np.ndarray


def stack_crops(key: str, size: int, pixel_mm: float, root=None, jitter_mm: float = 0.0,
                rng: Optional[np.random.Generator] = None):
    """(image crops, label crops, slice indices, centres) of the heart-holding slices of ``key``."""
    labels = load_acdc(root, key).array
    image = intensity_window(load_acdc_image(key, root))
    centres = label_centres(labels, fallback=False)
    keep = np.flatnonzero(np.isfinite(centres[:, 0]))
    centres = centres[keep]
    if jitter_mm and rng is not None:
        centres = centres + rng.normal(0, jitter_mm, centres.shape) / np.asarray(ACDC_SPACING[:2])
    spacing = ACDC_SPACING[:2]
    imgs = sample_crops(image[keep], centres, spacing, size, pixel_mm, fill=-1.0)
    labs = sample_crops(labels[keep], centres, spacing, size, pixel_mm, labels=True)
    return imgs, labs, keep, centres


@functools.lru_cache(maxsize=8)
def slice_set(which: str, size: int, pixel_mm: float, root=None) -> SliceSet:
    """All heart-holding slices of the ``which`` ('train' / 'val') ACDC patients, cached."""
    parts = [(k, *stack_crops(k, size, pixel_mm, root)) for k in acdc_split(root, which)]
    return SliceSet(images=np.concatenate([p[1] for p in parts]), labels=np.concatenate([p[2] for p in parts]),
                    keys=tuple(k for k, _, _, s, _ in parts for _ in s),
                    slices=np.concatenate([p[3] for p in parts]), centres=np.concatenate([p[4] for p in parts]))
