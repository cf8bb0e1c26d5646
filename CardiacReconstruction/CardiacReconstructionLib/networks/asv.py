"""ASV: arbitrary-scale through-plane super-resolution of label stacks (DeepWHR, sec. 3.2).

Input: a (motion-corrected) low-resolution (LR) stack of class probabilities ``[B, C, D, H, W]``
with D thick slices; output: logits ``[B, C, Z, H, W]`` at Z target slice positions given as
continuous LR slice coordinates ``z`` (slice index units, 0 = centre of the first LR slice).
The in-plane grid is kept; only the slice axis is super-resolved.

1. A small convolutional encoder turns the LR stack into a coarse feature volume (F channels).
2. For every target slice, the features of the two LR slices around it are sampled (trilinear
   sampling at normalised target coordinates reduces, on a slice-aligned target grid, to the
   two neighbouring LR rows) and, together with the target's local coordinate ``t`` in [0, 1]
   between them and the *cell size* (target spacing / LR spacing), fed to a
   coordinate-conditioned MLP (1x1x1 convolutions), giving continuous features. Because the MLP
   sees only local coordinates and the cell size, one model serves any output spacing: it is
   trained over factors x1.5 to x6 and non-integer spacings (the paper retrains per factor).
3. A shallow encoder-decoder at the target resolution fuses those features with the explicitly
   (linearly) interpolated LR probabilities and outputs the class logits; the explicit branch
   keeps the input's topology, the implicit one adds continuity between slices.

Loss (paper): L2 between softmax probabilities and the one-hot target + multi-class soft Dice
(:func:`..training.losses.asv_loss`, with the trainers' other losses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
from torch import nn

from .blocks import conv_block, interpolate_slices
from .config import NetworkConfig


@dataclass(frozen=True)
class ASVConfig(NetworkConfig):
    n_classes: int = 8
    feature_channels: int = 24  # F: coarse LR features
    mlp_hidden: int = 48
    implicit_channels: int = 16  # continuous features out of the MLP
    fusion_channels: Tuple[int, int] = (16, 32)  # shallow encoder-decoder at the target resolution
    groups: int = 8
    factor_range: Tuple[float, float] = (1.5, 6.0)  # LR / target slice spacing seen in training


def slice_coordinates(n_lr: int, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lower LR slice index, upper index and local coordinate t of continuous positions ``z``.

    Inside the stack ``t`` in [0, 1) between slices ``lo`` and ``lo + 1``; beyond the first or
    last slice centre (the half slab at each end) the end pair is used and ``t`` leaves [0, 1],
    so the MLP extrapolates from the end slices rather than seeing a clamped copy."""
    if n_lr < 2:
        lo = torch.zeros_like(z, dtype=torch.long)
        return lo, lo, z - 0.0
    lo = torch.clamp(torch.floor(z), 0, n_lr - 2).long()
    return lo, lo + 1, z - lo.to(z.dtype)


class ASVNet(nn.Module):
    """LR probabilities [B, C, D, H, W] + target positions z [Z] + cell size -> logits [B, C, Z, H, W]."""

    def __init__(self, config: ASVConfig = ASVConfig()):
        super().__init__()
        self.config = config
        c, f, g = config.n_classes, config.feature_channels, config.groups
        self.lr_encoder = nn.Sequential(conv_block(c, f, g, (1, 3, 3)), conv_block(f, f, g), conv_block(f, f, g))
        h, m = config.mlp_hidden, config.implicit_channels
        # The MLP's first layer is linear in [f_lo, f_hi, t, cell]: its feature part is applied
        # once per LR voxel (1x1x1 convs at LR), not once per target voxel.
        self.mlp_lo = nn.Conv3d(f, h, 1)
        self.mlp_hi = nn.Conv3d(f, h, 1, bias=False)
        self.mlp_coord = nn.Linear(2, h)
        self.mlp_rest = nn.Sequential(nn.LeakyReLU(0.1), nn.Conv3d(h, h, 1), nn.LeakyReLU(0.1), nn.Conv3d(h, m, 1))
        e1, e2 = config.fusion_channels
        self.fuse_in = conv_block(m + c, e1, g)
        self.fuse_down = conv_block(e1, e2, g, 3, stride=(1, 2, 2))
        self.fuse_mid = conv_block(e2, e2, g)
        self.fuse_up = nn.Upsample(scale_factor=(1, 2, 2), mode="nearest")
        # The last full-resolution block is in-plane only: it is the costliest layer (all target
        # voxels) and the through-plane context is already in e1 and the /2 level.
        self.fuse_out = nn.Sequential(conv_block(e2 + e1, e1, g, (1, 3, 3)), nn.Conv3d(e1, c, 1))

    def forward(self, lr: torch.Tensor, z: torch.Tensor, cell: float) -> torch.Tensor:
        if lr.shape[-1] % 2 or lr.shape[-2] % 2:
            raise ValueError("ASV needs an even in-plane grid.")
        feats = self.lr_encoder(lr)
        lo, hi, t = slice_coordinates(lr.shape[2], z)
        a, b = self.mlp_lo(feats), self.mlp_hi(feats)
        coord = torch.stack([t, torch.full_like(t, float(cell))], dim=1)  # [Z, 2]
        hidden = a[:, :, lo] + b[:, :, hi] + self.mlp_coord(coord).t()[None, :, :, None, None]
        implicit = self.mlp_rest(hidden)
        explicit = interpolate_slices(lr, z)
        e1 = self.fuse_in(torch.cat([implicit, explicit], dim=1))
        e2 = self.fuse_mid(self.fuse_down(e1))
        up = self.fuse_up(e2)[..., : e1.shape[-2], : e1.shape[-1]]
        # Residual on the explicit branch: the network learns the correction to interpolation.
        return self.fuse_out(torch.cat([up, e1], dim=1)) + 4.0 * (explicit - 0.5)
