"""MCSR-Net: per-slice motion correction followed by through-plane super-resolution of a label
stack (Chen et al. 2024, MCSR-ETE; reused as the first stage of Mask2Surface, Zhang et al.).

Both halves work on the canonical LR grid of :mod:`..methods.dsl_asv` (64 x 64 voxels of 2.5
mm in-plane, one row per input slice, base -> apex), for any number of slices:

* **MC-Net** predicts one in-plane translation (di, dj) per slice, in canonical voxels. Its trunk
  is a stack of 3x3x3 convolutions with in-plane-only pooling (1, 2, 2), so every slice keeps its
  own row while seeing its neighbours; the per-slice head is one convolution over the whole
  remaining in-plane map (a dense layer shared by all slices, where the paper has one dense head
  per slice: sharing it is what lets one network serve 6-20 slices) followed by two
  convolutions along the slices. The translations are centred on their mean over the labelled
  slices, since a common shift of every slice cannot be seen in the stack (the gauge).
* the slices are moved by **bilinear** resampling (``grid_sample``), so the image gradient
  reaches the translations (the public MCSR code warps with nearest sampling, which has none).
* **SR-Net** takes the corrected stack linearly interpolated to the HR slice positions and adds a
  residual MONAI ``UNet`` with intra-slice down/upsampling (strides (1, 2, 2)) to its logits.

Training losses (see :mod:`..training.mask2surface`): L1 on the translations, soft Dice on the
corrected LR stack and soft Dice on the HR output, equal weights (as MCSR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import conv_block, interpolate_slices
from .config import NetworkConfig


@dataclass(frozen=True)
class MCSRConfig(NetworkConfig):
    """Architecture and grid of an MCSR network (stored with its weights)."""

    n_classes: int = 4  # background, LV blood pool, LV myocardium, RV blood pool
    mc_channels: Tuple[int, ...] = (16, 32, 48, 64)  # MC trunk levels (in-plane /1, /2, /4, /8)
    sr_channels: Tuple[int, ...] = (16, 32, 64)  # SR UNet levels
    groups: int = 8
    inplane_size: int = 64  # canonical in-plane grid (voxels), divisible by 8
    inplane_spacing_mm: float = 2.5
    hr_slice_spacing_mm: float = 2.0  # the SR-Net's output slice spacing
    shift_scale_px: float = 2.0  # the head's output unit (voxels): keeps its weights O(1)


class MCNet(nn.Module):
    """One-hot stack [B, C, K, H, W] -> translations [B, K, 2] (di, dj) in voxels."""

    def __init__(self, config: MCSRConfig):
        super().__init__()
        self.config = config
        layers, c_in = [], config.n_classes
        for level, c in enumerate(config.mc_channels):
            if level:
                layers.append(nn.MaxPool3d((1, 2, 2)))
            layers += [conv_block(c_in, c, config.groups), conv_block(c, c, config.groups)]
            c_in = c
        self.trunk = nn.Sequential(*layers)
        reduced = config.inplane_size // 2 ** (len(config.mc_channels) - 1)
        hidden = 64
        self.head = nn.Sequential(
            nn.Conv3d(c_in, hidden, (1, reduced, reduced)), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv3d(hidden, hidden, (3, 1, 1), padding=(1, 0, 0)), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv3d(hidden, 2, (3, 1, 1), padding=(1, 0, 0)))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)  # start from "no motion"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.trunk(x))  # [B, 2, K, 1, 1]
        return out[..., 0, 0].transpose(1, 2) * self.config.shift_scale_px


def labelled_slices(x: torch.Tensor) -> torch.Tensor:
    """[B, K] bool: slices of a one-hot stack with any foreground."""
    return x[:, 1:].sum(dim=(1, 3, 4)) > 0.5


def centre_shifts(shifts: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Remove the mean translation over the labelled slices; unlabelled slices get zero."""
    w = labelled.to(shifts.dtype)[..., None]
    mean = (shifts * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1)
    return (shifts - mean) * w


def warp_slices(x: torch.Tensor, shifts: torch.Tensor, background: bool = True) -> torch.Tensor:
    """Move every slice of ``x`` [B, C, K, H, W] by ``-shifts[b, k] = -(di, dj)`` voxels, i.e.
    sample the observed slice at ``p + d`` (the displacement convention: the observed slice at p
    shows the truth at p - d). Bilinear, so gradients reach ``shifts``; what enters the field of
    view is background (class 0 = 1) when ``background``."""
    b, c, k, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack((gx, gy), dim=-1)  # [H, W, 2] as (x=i, y=j)
    scale = torch.tensor([2.0 / (w - 1), 2.0 / (h - 1)], device=x.device, dtype=x.dtype)
    grid = base[None] + (shifts.reshape(b * k, 1, 1, 2) * scale)
    planes = x.permute(0, 2, 1, 3, 4).reshape(b * k, c, h, w)
    if background:
        planes = planes.clone()
        planes[:, 0] -= 1.0  # zero padding of (p0 - 1) == background padding of p0
    out = F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    if background:
        out[:, 0] += 1.0
    return out.reshape(b, k, c, h, w).permute(0, 2, 1, 3, 4)


class SRNet(nn.Module):
    """Corrected LR probabilities + HR slice positions -> HR logits [B, C, len(z), H, W]."""

    def __init__(self, config: MCSRConfig):
        super().__init__()
        from monai.networks.nets import UNet

        self.config = config
        n = len(config.sr_channels)
        self.unet = UNet(spatial_dims=3, in_channels=config.n_classes, out_channels=config.n_classes,
                         channels=config.sr_channels, strides=((1, 2, 2),) * (n - 1), num_res_units=1,
                         norm=("group", {"num_groups": config.n_classes}), act=("leakyrelu", {"negative_slope": 0.1}))

    def forward(self, prob_lr: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        up = interpolate_slices(prob_lr, z)
        return self.unet(up) + 4.0 * (up - 0.5)


class MCSRNet(nn.Module):
    """MC-Net, bilinear slice warp and SR-Net in one module (the pieces stay reachable)."""

    def __init__(self, config: MCSRConfig = MCSRConfig()):
        super().__init__()
        self.config = config
        self.mc = MCNet(config)
        self.sr = SRNet(config)

    def correct(self, x: torch.Tensor, shifts: torch.Tensor = None):
        """(centred translations [B, K, 2] voxels, corrected stack) of one-hot stack ``x``;
        ``shifts`` overrides the prediction (ablations, iterated correction)."""
        labelled = labelled_slices(x)
        if shifts is None:
            shifts = self.mc(x)
        shifts = centre_shifts(shifts, labelled)
        return shifts, warp_slices(x, shifts)

    def forward(self, x: torch.Tensor, z: torch.Tensor):
        shifts, corrected = self.correct(x)
        return shifts, corrected, self.sr(corrected, z)
