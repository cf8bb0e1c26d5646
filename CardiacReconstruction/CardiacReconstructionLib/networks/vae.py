"""A 3D beta-VAE over one-hot biventricular label maps: the shape prior of latent optimisation.

The prior (SRHeart, Wang et al., MICCAI 2021) maps a latent code z to logits of (background, LV,
MYO, RV) on a fixed grid centred on the heart, in the short-axis (SAX) frame of
:func:`..anatomy.frame.sax_frame` (k from base to apex, i from the LV towards the RV). The grid and every
architecture choice are a :class:`VAEConfig` stored with the weights (the ``vae`` kind of
:mod:`.checkpoint`), so a model trained at another grid (e.g. the SRHeart default 64 x 128 x 128
on a GPU) drops in without code changes.

Architecture (chosen for CPU inference, where the decoder runs hundreds of times per case):

* encoder: ``len(channels)`` strided 4x4x4 convolutions (each halves every axis) with a
  residual 3x3x3 block at :func:`residual_level` (the third level from the bottleneck, the second
  level of the shipped four: never at a fine level, where it would cost most), then linear
  layers to ``mu`` and ``log_var``;
* decoder: linear layer to the coarsest feature map, mirrored 4x4x4 transposed convolutions
  with a residual block at the same level, and a last transposed convolution straight to the
  class logits. The overlapping 4x4x4 kernel of that last layer keeps the output smooth while
  costing ~4x less than a full-resolution 3x3x3 layer (the full decoder of a 32 x 64 x 64 grid
  runs forward and backward for a batch of 4 in ~0.06 s on two CPU cores).
* no batch normalisation: the network behaves identically in training and in inference and for
  any batch size (the public SRHeart code leaves BatchNorm in training mode at inference).

Loss: cross-entropy (mean over voxels) + ``beta`` x KL with *free bits*: every latent dimension
whose KL (averaged over the batch) is below ``free_bits`` nats costs nothing, so the code is not
pushed to collapse onto the prior and carries information (Kingma et al., NeurIPS 2016).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..core.errors import InputError
from .config import NetworkConfig

#: Channel order of the one-hot maps: background and the canonical labels 1 LV, 2 MYO, 3 RV.
CLASSES = (0, 1, 2, 3)


@dataclass(frozen=True)
class VAEConfig(NetworkConfig):
    """Everything that fixes the network and the grid it works on.

    ``grid_shape`` is the array shape (k, j, i); ``spacing`` the voxel size (i, j, k) in mm, as
    everywhere in the engine. The grid is centred on the heart (see :mod:`..methods.latent_optimisation`).
    """

    grid_shape: Tuple[int, int, int] = (32, 64, 64)
    spacing: Tuple[float, float, float] = (2.5, 2.5, 4.0)
    latent_dim: int = 64
    channels: Tuple[int, ...] = (16, 32, 64, 128)
    n_classes: int = len(CLASSES)
    beta: float = 1e-3
    free_bits: float = 2.0
    negative_slope: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "grid_shape", tuple(int(s) for s in self.grid_shape))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        factor = 2 ** len(self.channels)
        if len(self.grid_shape) != 3 or any(s % factor or s < factor for s in self.grid_shape):
            raise InputError(f"The VAE grid {self.grid_shape} must have three sizes divisible by "
                             f"{factor} (2 ** number of levels).")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise InputError(f"The VAE spacing must be three positive mm values (i, j, k), got {self.spacing}.")
        if self.latent_dim < 1 or len(self.channels) < 2:
            raise InputError("The VAE needs a latent size >= 1 and at least two levels.")

    @property
    def bottleneck_shape(self) -> Tuple[int, int, int]:
        f = 2 ** len(self.channels)
        return tuple(s // f for s in self.grid_shape)

    @property
    def field_of_view_mm(self) -> Tuple[float, float, float]:
        """Extent (i, j, k) in mm."""
        return tuple(n * s for n, s in zip(self.grid_shape[::-1], self.spacing))


class _Residual(nn.Module):
    """x + conv(act(conv(x))) at constant resolution (3x3x3)."""

    def __init__(self, channels: int, slope: float):
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(channels, channels, 3, padding=1), nn.LeakyReLU(slope),
                                  nn.Conv3d(channels, channels, 3, padding=1))
        self.act = nn.LeakyReLU(slope)

    def forward(self, x):
        return self.act(x + self.body(x))


def residual_level(n_levels: int) -> int:
    """Encoder level (0-based) after which the residual block sits: the third from the
    bottleneck, so that a finer grid with one more level (:func:`refined`) keeps it at the same
    resolution and channel count (level 1 for up to four levels, as the shipped prior)."""
    return max(1, n_levels - 3)


class LabelVAE(nn.Module):
    """beta-VAE: ``encode(onehot) -> (mu, log_var)``, ``decode(z) -> logits [B, C, k, j, i]``."""

    def __init__(self, config: VAEConfig = VAEConfig()):
        super().__init__()
        self.config = config
        c, slope = config.channels, config.negative_slope
        enc, ch_in, res = [], config.n_classes, residual_level(len(c))
        for level, ch in enumerate(c):
            enc += [nn.Conv3d(ch_in, ch, 4, stride=2, padding=1), nn.LeakyReLU(slope)]
            if level == res:
                enc.append(_Residual(ch, slope))
            ch_in = ch
        self.encoder = nn.Sequential(*enc)
        n_flat = c[-1] * int(np.prod(config.bottleneck_shape))
        self.to_stats = nn.Linear(n_flat, 2 * config.latent_dim)
        self.from_latent = nn.Linear(config.latent_dim, n_flat)
        dec = [nn.LeakyReLU(slope)]
        rev = c[::-1]
        for level in range(len(rev) - 1):
            dec += [nn.ConvTranspose3d(rev[level], rev[level + 1], 4, stride=2, padding=1), nn.LeakyReLU(slope)]
            if level == len(rev) - 2 - res:  # mirror of the encoder's residual level
                dec.append(_Residual(rev[level + 1], slope))
        dec.append(nn.ConvTranspose3d(rev[-1], config.n_classes, 4, stride=2, padding=1))
        self.decoder = nn.Sequential(*dec)

    def encode(self, onehot: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(onehot).flatten(1)
        mu, log_var = self.to_stats(h).chunk(2, dim=1)
        return mu, log_var.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(z).view(z.shape[0], self.config.channels[-1], *self.config.bottleneck_shape)
        return self.decoder(h)

    def forward(self, onehot: torch.Tensor, sample: bool = True):
        mu, log_var = self.encode(onehot)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var) if sample else mu
        return self.decode(z), mu, log_var


def refined_config(config: VAEConfig) -> VAEConfig:
    """The config of :func:`refined`: twice the grid at half the spacing (same field of view) and
    one more level of ``channels[0] // 2`` channels at the fine end."""
    return VAEConfig(**{**config.to_dict(), "grid_shape": tuple(2 * s for s in config.grid_shape),
                        "spacing": tuple(s / 2 for s in config.spacing),
                        "channels": (config.channels[0] // 2,) + tuple(config.channels)})


def refined(model: LabelVAE) -> LabelVAE:
    """A VAE on a grid twice as fine that starts out computing what ``model`` computes: its
    logits, upsampled trilinearly. The warm start for training a finer prior (e.g. the SRHeart
    64 x 128 x 128 grid from the 32 x 64 x 64 one), so that the minutes of training go to the
    fine detail instead of relearning the shape space.

    Every layer of ``model`` is kept; the new fine level is wired as an identity:

    * encoder: the new first convolution averages each 2 x 2 x 2 block of the one-hot input into
      its first ``n_classes`` channels (the coarse one-hot the old first layer expects; its other
      channels start random and their weights into the next layer zero, so they learn from the
      first step without changing the output);
    * decoder: the old last layer now writes each logit ``l`` twice, as ``l`` and ``-l`` (so the
      leaky ReLU that follows loses nothing: ``a - b = (1 + slope) l``), and the new last
      transposed convolution recombines them with the 4-tap linear-interpolation kernel
      ``[1, 3, 3, 1] / 4`` per axis, exactly trilinear upsampling by 2 (half-voxel aligned, as
      both grids share their centre).
    """
    old, cfg = model.config, refined_config(model.config)
    n, c0 = old.n_classes, cfg.channels[0]
    if c0 < 2 * n:
        raise InputError(f"Cannot refine a VAE whose first level has {old.channels[0]} channels: the new "
                         f"level needs channels[0] // 2 >= 2 x {n} classes.")
    if residual_level(len(cfg.channels)) != residual_level(len(old.channels)) + 1:
        raise InputError(f"Cannot refine a VAE of {len(old.channels)} levels: its residual block would move; "
                         "growing needs at least four levels (the shipped prior has four).")
    new = LabelVAE(cfg)
    src, dst = model.state_dict(), new.state_dict()
    enc_old = [k for k in src if k.startswith("encoder.")]
    enc_new = [k for k in dst if k.startswith("encoder.")]
    dec_old = [k for k in src if k.startswith("decoder.")]
    dec_new = [k for k in dst if k.startswith("decoder.")]
    with torch.no_grad():
        # encoder: new first conv (2 tensors) = block average into channels 0..n-1
        w0 = dst[enc_new[0]]
        w0[:n].zero_()
        for ch in range(n):
            w0[ch, ch, 1:3, 1:3, 1:3] = 1.0 / 8.0
        dst[enc_new[1]][:n].zero_()
        # the old first conv takes the first n input channels; the new ones enter with zero weight
        w1 = dst[enc_new[2]]
        w1.zero_()
        w1[:, :n] = src[enc_old[0]]
        dst[enc_new[3]].copy_(src[enc_old[1]])
        for a, b in zip(enc_old[2:], enc_new[4:]):
            dst[b].copy_(src[a])
        for key in ("to_stats.weight", "to_stats.bias", "from_latent.weight", "from_latent.bias"):
            dst[key].copy_(src[key])
        # decoder: all but the old last layer unchanged
        for a, b in zip(dec_old[:-2], dec_new[:-4]):
            dst[b].copy_(src[a])
        w_last, b_last = src[dec_old[-2]], src[dec_old[-1]]  # [C_in, n, 4, 4, 4], [n]
        w_mid, b_mid = dst[dec_new[-4]], dst[dec_new[-3]]  # [C_in, c0, 4, 4, 4], [c0]
        w_mid.zero_()
        b_mid.zero_()
        w_mid[:, :n], w_mid[:, n:2 * n] = w_last, -w_last
        b_mid[:n], b_mid[n:2 * n] = b_last, -b_last
        k1 = torch.tensor([0.25, 0.75, 0.75, 0.25])
        kernel = k1[:, None, None] * k1[None, :, None] * k1[None, None, :] / (1.0 + old.negative_slope)
        w_out = dst[dec_new[-2]]  # [c0, n, 4, 4, 4]
        w_out.zero_()
        for ch in range(n):
            w_out[ch, ch], w_out[n + ch, ch] = kernel, -kernel
        dst[dec_new[-1]].zero_()
    new.load_state_dict(dst)
    return new


def kl_per_dimension(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per latent dimension, averaged over the batch (nats), shape [latent]."""
    return (0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var)).mean(0)


def vae_loss(logits: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
             config: VAEConfig) -> Dict[str, torch.Tensor]:
    """Cross-entropy (mean over voxels) + beta x free-bits KL; ``target`` holds class indices."""
    ce = F.cross_entropy(logits, target)
    kl_dims = kl_per_dimension(mu, log_var)
    kl_penalised = torch.clamp(kl_dims, min=config.free_bits).sum()
    return {"loss": ce + config.beta * kl_penalised, "ce": ce, "kl": kl_dims.sum()}


def onehot(labels, n_classes: int = len(CLASSES)) -> torch.Tensor:
    """Class-index array [..., k, j, i] (labels above ``n_classes - 1`` become background) ->
    float one-hot tensor [..., C, k, j, i] (a leading batch axis is kept)."""
    t = torch.as_tensor(np.asarray(labels)).long()
    t = torch.where(t < n_classes, t, torch.zeros_like(t))
    oh = F.one_hot(t, n_classes).float()
    return oh.movedim(-1, -4)
