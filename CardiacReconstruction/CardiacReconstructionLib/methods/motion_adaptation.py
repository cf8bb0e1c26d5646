"""DeepRecon's 4D motion adaptation (paper eq. 3): give a source subject another subject's motion.

The target's cardiac motion, as latent frame differences ``w_t[f] - w_t[ED]`` per slice, is added
to the source's end-diastolic codes: ``w_s[f] = w_s[ED] + (w_t[f] - w_t[ED])``. The two stacks
rarely have the same number of slices, so the target's differences are resampled along the
long axis onto the source's slices (heart-holding slices matched base to apex). Phases between
the given frames come from linear interpolation of the codes. Each adapted phase is painted by G
and segmented by Seg; the LV blood-pool volume of every phase gives the volume curve and EDV,
ESV and EF.

Used by ``cardiac-recon adapt-motion``; not a reconstruction method of the registry (it needs two
subjects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..core.crops import label_centres
from ..core.errors import InputError
from ..core.geometry import Volume
from ..core.labels import LV
from .deeprecon import DEFAULT_STEPS, _check_image, crop_labels, directseg, invert_stack, networks


@dataclass
class AdaptedMotion:
    """The adapted sequence: per phase, the synthetic crops [K, S, S] (in [-1, 1]) and their labels,
    the LV blood-pool volumes (ml), and the phase positions (0 = ED, 1 = the next given frame...);
    ``centres`` the (j, i) centres of the source's crops on its own grid."""
    images: List[np.ndarray]
    labels: List[np.ndarray]
    lv_ml: np.ndarray
    phases: np.ndarray
    pixel_mm: float
    slice_mm: float
    centres: np.ndarray
    info: Dict = field(default_factory=dict)

    @property
    def edv(self) -> float:
        return float(self.lv_ml[0])

    @property
    def esv(self) -> float:
        return float(self.lv_ml.min())

    @property
    def ef(self) -> float:
        return (self.edv - self.esv) / self.edv if self.edv > 0 else float("nan")


def _heart_span(labels: np.ndarray) -> np.ndarray:
    shows = np.flatnonzero(labels.reshape(len(labels), -1).any(1))
    if shows.size == 0:
        raise InputError("No slice of the stack shows the heart.")
    return shows


def align_differences(diff, target_labels: np.ndarray, source_labels: np.ndarray):
    """Resample per-slice code differences [K_t, ...] of the target onto the source's K_s slices,
    matching the heart-holding slice ranges (base to apex) linearly; outside them the nearest."""
    from ..networks.blocks import lerp_along

    t_span, s_span = _heart_span(target_labels), _heart_span(source_labels)
    ks = np.arange(len(source_labels), dtype=float)
    frac = (ks - s_span[0]) / max(1, s_span[-1] - s_span[0])
    return lerp_along(diff, t_span[0] + frac * (t_span[-1] - t_span[0]), 0)


def lv_volume_ml(labels: np.ndarray, pixel_mm: float, slice_mm: float) -> float:
    return float((labels == LV).sum() * pixel_mm * pixel_mm * slice_mm / 1000.0)


def adapt_motion(source: Volume, target_frames: Sequence[Volume], device: str = "cpu", steps: int = DEFAULT_STEPS,
                 between: int = 3, source_labels: Optional[Volume] = None,
                 target_labels: Optional[Sequence[Volume]] = None, progress=None) -> AdaptedMotion:
    """Adapt ``source`` (its ED image stack) to the motion of ``target_frames`` (the target's image
    stacks, ED first; at least two frames); ``between`` interpolated phases between given frames.
    Segmentations, where not given, are DirectSeg's (they only centre the crops)."""
    import torch

    _check_image(source, "Motion adaptation")
    if len(target_frames) < 2:
        raise InputError(f"The target needs at least two frames (ED first), got {len(target_frames)}.")
    for f in target_frames:
        _check_image(f, "Motion adaptation")
    if any(f.shape != target_frames[0].shape for f in target_frames):
        raise InputError("The target frames must share one grid.")
    G, _, _, seg = networks(device)
    report = progress or (lambda f, m="": None)
    s_lab = source_labels if source_labels is not None else directseg(source, device)
    t_labs = list(target_labels) if target_labels is not None else [directseg(f, device) for f in target_frames]
    report(0.1, "segmented")
    w_s, _, s_centres, _ = invert_stack(source, s_lab, device, steps)
    # one centre per target slice (the ED frame's), so the differences carry the in-plane motion too
    t_centres = label_centres(t_labs[0].array)
    w_t = [invert_stack(f, lab, device, steps, centres=t_centres)[0] for f, lab in zip(target_frames, t_labs)]
    report(0.6, "inverted")
    codes = [w_s + align_differences(w - w_t[0], t_labs[0].array, s_lab.array) for w in w_t]
    phases, sequence = [], []
    for f in range(len(codes)):
        if f == 0:
            phases.append(0.0)
            sequence.append(codes[0])
            continue
        for b in range(1, between + 2):
            a = b / (between + 1)
            phases.append(f - 1 + a)
            sequence.append(codes[f - 1] * (1 - a) + codes[f] * a)
    images, labels, lv = [], [], []
    pixel = float(G.config.pixel_mm)
    slice_mm = float(source.spacing[2])
    shows = s_lab.array.reshape(source.shape[0], -1).any(1)
    for w in sequence:
        with torch.no_grad():
            img = G(w, "const")[:, 0].cpu().numpy()
        lab = crop_labels(seg, img, device)
        lab[~shows] = 0  # slices beyond the source's heart stay empty in every phase
        images.append(img)
        labels.append(lab)
        lv.append(lv_volume_ml(lab, pixel, slice_mm))
    report(1.0, "adapted")
    return AdaptedMotion(images, labels, np.asarray(lv), np.asarray(phases), pixel, slice_mm, s_centres,
                         info={"steps": int(steps), "target_frames": len(target_frames), "between": int(between)})
