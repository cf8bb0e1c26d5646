"""Segmentation losses of the trainers, on MONAI's soft Dice.

Every label network here is trained with a soft Dice term: MONAI's :class:`monai.losses.DiceLoss`
over the whole batch (``batch=True``: one Dice per class of all voxels together) with a smoothing of
1e-3 in numerator and denominator, averaged over the classes present in the target only. Why only
those: a stack of the biventricular part of a heart holds none of the atria or vessels, and the
Dice of a class that is absent is ~0 whatever the network does (``1e-3 / (sum(p) + 1e-3)``), so
counting it would add a constant that pushes every absent class to exactly zero probability.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _dice():
    from monai.losses import DiceLoss

    return DiceLoss(batch=True, smooth_nr=1e-3, smooth_dr=1e-3, reduction="none")


def onehot_target(target, n_classes: int, dtype):
    """Class indices [B, *spatial] -> one-hot [B, n_classes, *spatial] of ``dtype``."""
    import torch

    onehot = torch.nn.functional.one_hot(target.long(), n_classes)
    return onehot.movedim(-1, 1).to(dtype)


def soft_dice_loss(prob, target_onehot):
    """1 - soft Dice of probabilities [B, C, ...] against a one-hot target, mean over the classes
    present in the target (zero when none is)."""
    per_class = _dice()(prob, target_onehot).flatten()
    present = target_onehot.sum(dim=[0] + list(range(2, target_onehot.dim()))) > 0
    return per_class[present].mean() if bool(present.any()) else prob.new_zeros(())


def ce_dice_loss(logits, target, n_classes: int):
    """Cross-entropy + soft Dice of logits [B, C, ...] against class indices [B, ...] (DSL, the HR
    output of MCSR-Net)."""
    import torch.nn.functional as F

    prob = F.softmax(logits, dim=1)
    return F.cross_entropy(logits, target.long()) + soft_dice_loss(prob, onehot_target(target, n_classes, prob.dtype))


def asv_loss(logits, target, n_classes: int, dice_weight: float = 1.0):
    """ASV (DeepWHR): L2 between softmax and one-hot target + ``dice_weight`` x soft Dice."""
    import torch.nn.functional as F

    prob = F.softmax(logits, dim=1)
    onehot = onehot_target(target, n_classes, prob.dtype)
    return ((prob - onehot) ** 2).mean() + dice_weight * soft_dice_loss(prob, onehot)
