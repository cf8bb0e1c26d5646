"""DSL: the latent-volume-map autoencoder of DeepWHR (deep structure-consistency learning).

The network maps a motion-corrupted one-hot label stack ``[C, D, H, W]`` (D slices) to logits of
the clean stack on the same grid (Dong et al., "Cross-Modality Whole-Heart MRI Reconstruction
with Deep Motion Correction and Super-Resolution", sec. 3.1):

* encoder: convolution blocks with max pooling of kernel and stride (1, 2, 2) twice, so the
  in-plane grid shrinks by 4 while every slice keeps its own row of the map;
* the latent volume map: ``latent_channels`` (64) channels at (D, H/4, W/4). Residual blocks at
  this level mix information across slices (depth dilations 1 and 3 reach about +-7 slices
  together with the encoder's 3x3x3 convolutions): that is
  where the network learns where each slice's anatomy *should* lie given its neighbours;
* decoder: the mirror image, with (1, 2, 2) upsampling, to one logit per class and voxel.

There are no skip connections: a skip would carry the misaligned details straight past the
latent map, which is the thing that must forget them. No batch normalisation either (GroupNorm
instead), so the network behaves identically for any batch size and in training and inference.

"MRI fine-tuning" (sec. 3.1.3) updates only the encoder (:meth:`DSLNet.encoder_parameters`)
with the decoder frozen, so the decoder keeps the CT-learned shape manifold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Tuple

import torch
from torch import nn

from .blocks import conv_block
from .config import NetworkConfig


@dataclass(frozen=True)
class DSLConfig(NetworkConfig):
    """Architecture and input grid of a DSL network (stored with its weights)."""

    n_classes: int = 8  # background + the 7 canonical labels
    channels: Tuple[int, int, int] = (16, 32, 64)  # full-resolution, /2 and /4 (latent) levels
    latent_blocks_dilation: Tuple[int, ...] = (1, 3)  # depth dilation of each latent residual block
    groups: int = 8  # GroupNorm groups
    inplane_size: int = 64  # canonical LR in-plane grid (voxels); must be divisible by 4
    inplane_spacing_mm: float = 2.5

    @property
    def latent_channels(self) -> int:
        return self.channels[-1]


class _LatentBlock(nn.Module):
    """Residual 3x3x3 block whose depth dilation lets the latent map see distant slices."""

    def __init__(self, channels: int, dilation: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(conv_block(channels, channels, groups, dilation=(dilation, 1, 1)),
                                  conv_block(channels, channels, groups, act=False))
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x):
        return self.act(x + self.body(x))


class DSLNet(nn.Module):
    """Degraded one-hot stack [B, C, D, H, W] -> clean-stack logits [B, C, D, H, W]."""

    def __init__(self, config: DSLConfig = DSLConfig()):
        super().__init__()
        self.config = config
        c1, c2, c3 = config.channels
        g, n = config.groups, config.n_classes
        # Full-resolution and /2 levels are cheap in-plane feature extractors; the slices talk to
        # each other at the latent level (3x3x3 residual blocks, dilated along depth), where a
        # voxel covers 4 x 4 input voxels and the cost is 16x lower.
        self.encoder = nn.Sequential(
            conv_block(n, c1, g, (1, 3, 3)),
            nn.MaxPool3d((1, 2, 2), (1, 2, 2)),
            conv_block(c1, c2, g), conv_block(c2, c2, g, (1, 3, 3)),
            nn.MaxPool3d((1, 2, 2), (1, 2, 2)),
            conv_block(c2, c3, g),
            *[_LatentBlock(c3, d, g) for d in config.latent_blocks_dilation])
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=(1, 2, 2), mode="nearest"),
            conv_block(c3, c2, g),
            nn.Upsample(scale_factor=(1, 2, 2), mode="nearest"),
            conv_block(c2, c1, g, (1, 3, 3)),
            nn.Conv3d(c1, n, 1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent volume map [B, latent_channels, D, H/4, W/4]."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x))

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        return self.encoder.parameters()

    def freeze_decoder(self) -> None:
        """MRI fine-tuning: the decoder keeps the CT-learned manifold."""
        for p in self.decoder.parameters():
            p.requires_grad_(False)
