"""``cardiac-recon train directseg`` and ``train deeprecon-seg``: DeepRecon's 2D segmenters.

* DirectSeg: the U-Net trained on the real training images (the paper's upper bound). It is also
  the images-in path's localiser, so it trains on wide crops (``crop`` px) whose centre wanders
  ``jitter_mm`` around the heart: at run time it sees the whole slice and must find the heart.
* Seg: the same network trained on the generator's images of the training slices, G(w+*) with
  w+* from the hybrid inversion, and the slices' real labels (the paper's synthetic-image
  segmentation); it sees heart-centred crops of G's size, as at run time.

Both: MONAI ``DiceCELoss``, kornia affine + intensity augmentation (image and mask together).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.crops import intensity_window, label_centres, sample_crops
from .cohort import ACDC_SPACING, acdc_split, load_acdc, load_acdc_image
from .trainer import BudgetConfig, budgeted_trainer, started


@dataclass
class SegConfig(BudgetConfig):
    minutes: float = 20.0
    lr: float = 2e-3
    batch: int = 16
    crop: int = 96
    pixel_mm: float = 2.5
    jitter_mm: float = 25.0


def _augmenter():
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.RandomAffine(degrees=20.0, translate=(0.03, 0.03), scale=(0.85, 1.15), p=0.8),
        data_keys=["input", "mask"])


def _intensity(img, rng: np.random.Generator):
    """Random gamma and contrast on [-1, 1] images: scanners differ in both."""
    gamma = float(np.exp(rng.normal(0, 0.25)))
    return (((img + 1) / 2).clamp(0, 1) ** gamma * 2 - 1) * float(rng.uniform(0.85, 1.15))


def _loss():
    from monai.losses import DiceCELoss

    return DiceCELoss(to_onehot_y=True, softmax=True)


def _train(kind_note: str, output, cfg: SegConfig, draw, trained_on: str, resume: bool, log, meta) -> Path:
    import torch

    from ..networks.segmenter import SegmenterConfig, SliceSegmenter

    model = SliceSegmenter(SegmenterConfig(pixel_mm=cfg.pixel_mm, trained_on=trained_on))
    trainer = budgeted_trainer("segmenter", cfg, model, output, resume, log=log)
    aug, loss_fn, rng = _augmenter(), _loss(), np.random.default_rng(cfg.seed)

    def sample_loss(step):
        img, lab = draw(rng, cfg.batch)
        img, lab = torch.as_tensor(img)[:, None].to(cfg.device), torch.as_tensor(lab)[:, None].float().to(cfg.device)
        img, lab = aug(img, lab)
        return loss_fn(model(_intensity(img, rng)), lab.round().long())

    trainer.run_budget(cfg, sample_loss)
    log(f"{kind_note}: done")
    return trainer.export(output, **meta)


def train_directseg(output, cfg: Optional[SegConfig] = None, resume: bool = False, root=None, log=print) -> Path:
    """DirectSeg on the real training images: crops drawn on the fly around the heart."""
    cfg = started(cfg or SegConfig())
    keys = acdc_split(root, "train")
    stacks = []
    for key in keys:
        labels = load_acdc(root, key).array
        centres = label_centres(labels, fallback=False)
        keep = np.flatnonzero(np.isfinite(centres[:, 0]))
        stacks.append((intensity_window(load_acdc_image(key, root))[keep], labels[keep], centres[keep]))
    index = [(s, k) for s, (_, lab, _) in enumerate(stacks) for k in range(len(lab))]
    spacing = np.asarray(ACDC_SPACING[:2])
    log(f"directseg: {len(index)} training slices of {len(keys)} stacks, crops {cfg.crop} px at {cfg.pixel_mm} mm")

    def draw(rng, n):
        picks = [index[i] for i in rng.integers(len(index), size=n)]
        imgs, labs = [], []
        for s, k in picks:
            img, lab, centres = stacks[s]
            c = centres[k:k + 1] + rng.normal(0, cfg.jitter_mm, (1, 2)) / spacing
            imgs.append(sample_crops(img[k:k + 1], c, spacing, cfg.crop, cfg.pixel_mm, fill=-1.0)[0])
            labs.append(sample_crops(lab[k:k + 1], c, spacing, cfg.crop, cfg.pixel_mm, labels=True)[0])
        return np.stack(imgs), np.stack(labs)

    return _train("directseg", output, cfg, draw, "real", resume, log,
                  {"training_slices": len(index), "training_keys": len(keys)})


def train_synthetic_seg(output, images: np.ndarray, labels: np.ndarray, cfg: Optional[SegConfig] = None,
                        resume: bool = False, log=print, meta=None) -> Path:
    """Seg on synthetic crops ``images`` [N, S, S] (G(w+*) of the training slices) with the real
    ``labels`` [N, S, S] of those slices."""
    cfg = started(cfg or SegConfig())
    images, labels = np.asarray(images, np.float32), np.asarray(labels, np.uint8)

    def draw(rng, n):
        idx = rng.integers(len(images), size=n)
        return images[idx], labels[idx]

    return _train("deeprecon-seg", output, cfg, draw, "synthetic", resume, log,
                  {"training_slices": int(len(images)), **(meta or {})})
