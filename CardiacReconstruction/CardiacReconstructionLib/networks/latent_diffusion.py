"""Mask2Surface's shape prior: a VQ-VAE over signed distance grids and a conditional latent
denoiser (Zhang et al., "Mask2Surface"), built from MONAI's ``VQVAE``, ``DiffusionModelUNet``,
``DDPMScheduler`` and ``DDIMScheduler``; this module only adds configurations that are stored
with the weights and the conditional sampling loop.

* :class:`SDGAutoencoder`: SDGs ``[B, S, D, H, W]`` (one channel per surface, mm divided by
  ``clip_mm`` so values lie in [-1, 1]) -> quantised latents ``[B, embedding_dim, D/2, H/2,
  W/2]`` (codebook of 1024 vectors of size 8, as the paper) -> SDGs. Its encoder also encodes the
  coarse SDG (C-SDG) of the corrected mask: the condition.
* :class:`LatentDenoiser`: a DiffusionModelUNet whose input is the noisy target latent
  concatenated with the condition latent (the paper's conditioning). Trained with DDPM (1000
  steps, linear betas 0.0015 -> 0.0195); sampled with DDIM (10 steps by default). It predicts
  the clean latent (``prediction_type='sample'``): with a condition this informative, x0
  prediction gives usable samples in few DDIM steps. Latents are divided by ``latent_scale``
  (their training standard deviation) so the noise schedule sees unit-variance data.
  With ``condition_residual`` (the default; not in the paper) the UNet predicts the clean latent
  *minus the condition latent*: an untrained network already returns the condition, and
  training only has to learn the correction, which the CPU-sized budgets here could not do for
  the whole latent (the denoised latents were worse than the condition's own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .config import NetworkConfig


@dataclass(frozen=True)
class VQVAEConfig(NetworkConfig):
    n_surfaces: int = 4
    channels: Tuple[int, ...] = (24, 48)
    strides: Tuple[int, ...] = (2, 1)  # per level; x2 overall: a x4 latent (10 x 10 x 16 mm cells)
    # quantised to 1024 codes loses ~1 mm at the surface, more than the condition's own error
    num_res_layers: int = 1
    num_embeddings: int = 1024
    embedding_dim: int = 8
    clip_mm: float = 20.0  # SDG values are clipped to +-clip_mm and divided by it
    grid_shape: Tuple[int, int, int] = (32, 64, 64)  # surface grid (k, j, i)
    spacing_mm: Tuple[float, float, float] = (2.5, 2.5, 4.0)  # surface grid spacing (i, j, k)

    @property
    def downsampling(self) -> int:
        return int(np.prod(self.strides))


class SDGAutoencoder(nn.Module):
    """MONAI VQVAE over normalised SDGs (see the module docstring)."""

    def __init__(self, config: VQVAEConfig = VQVAEConfig()):
        super().__init__()
        from monai.networks.nets import VQVAE

        self.config = config
        down = tuple((s, 2 * s, 1, 1) if s > 1 else (1, 3, 1, 1) for s in config.strides)
        up = tuple((s, 2 * s, 1, 1, 0) if s > 1 else (1, 3, 1, 1, 0) for s in config.strides[::-1])
        self.vqvae = VQVAE(spatial_dims=3, in_channels=config.n_surfaces, out_channels=config.n_surfaces,
                           channels=config.channels, num_res_layers=config.num_res_layers,
                           num_res_channels=config.channels, downsample_parameters=down,
                           upsample_parameters=up, num_embeddings=config.num_embeddings,
                           embedding_dim=config.embedding_dim)

    def forward(self, sdg: torch.Tensor):
        """(reconstruction, quantisation loss)."""
        return self.vqvae(sdg)

    def encode(self, sdg: torch.Tensor) -> torch.Tensor:
        """Quantised latents of normalised SDGs."""
        return self.vqvae.encode_stage_2_inputs(sdg)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised SDGs of (possibly unquantised) latents: quantised first, like MONAI's
        ``decode_stage_2_outputs``."""
        return self.vqvae.decode_stage_2_outputs(latent)


@dataclass(frozen=True)
class LDMConfig(NetworkConfig):
    latent_channels: int = 8
    channels: Tuple[int, ...] = (32, 64, 64)
    attention_levels: Tuple[bool, ...] = (False, False, False)  # the mid block attends anyway
    num_res_blocks: int = 1
    norm_num_groups: int = 16
    num_head_channels: int = 16
    num_train_timesteps: int = 1000
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    prediction_type: str = "sample"
    latent_scale: float = 1.0  # training std of the latents (set by the trainer)
    condition_residual: bool = True  # x0 = condition + UNet output (only with prediction_type 'sample')


def ddpm_scheduler(config: LDMConfig):
    from monai.networks.schedulers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, schedule="linear_beta",
                         beta_start=config.beta_start, beta_end=config.beta_end, clip_sample=False,
                         prediction_type=config.prediction_type)


def ddim_scheduler(config: LDMConfig, steps: int):
    from monai.networks.schedulers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=config.num_train_timesteps, schedule="linear_beta",
                              beta_start=config.beta_start, beta_end=config.beta_end, clip_sample=False,
                              prediction_type=config.prediction_type)
    scheduler.set_timesteps(int(steps))
    return scheduler


class LatentDenoiser(nn.Module):
    """DiffusionModelUNet on [noisy target latent, condition latent] (see the module docstring)."""

    def __init__(self, config: LDMConfig = LDMConfig()):
        super().__init__()
        from monai.networks.nets import DiffusionModelUNet

        self.config = config
        self.unet = DiffusionModelUNet(spatial_dims=3, in_channels=2 * config.latent_channels,
                                       out_channels=config.latent_channels, num_res_blocks=config.num_res_blocks,
                                       channels=config.channels, attention_levels=config.attention_levels,
                                       norm_num_groups=config.norm_num_groups,
                                       num_head_channels=config.num_head_channels)

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Scaled latents in, the scheduler's prediction (scaled) out."""
        out = self.unet(torch.cat([noisy, condition], dim=1), timesteps)
        if self.config.condition_residual and self.config.prediction_type == "sample":
            out = out + condition
        return out

    @torch.no_grad()
    def sample(self, condition_latent: torch.Tensor, steps: int = 10, generator: Optional[torch.Generator] = None,
               progress: Optional[Callable[[int, int], None]] = None, strength: float = 1.0) -> torch.Tensor:
        """DDIM sampling of the target latent given an (unscaled) condition latent; the same
        generator state gives the same sample. ``strength`` 1 starts from pure noise (the paper);
        below 1 it starts from the condition latent noised to that fraction of the schedule and
        runs only the remaining steps (SDEdit), which keeps more of the condition."""
        scale = self.config.latent_scale
        cond = condition_latent / scale
        scheduler = ddim_scheduler(self.config, steps)
        noise = torch.randn(cond.shape, generator=generator, device="cpu").to(cond.device)
        timesteps = scheduler.timesteps
        if strength < 1.0:
            timesteps = timesteps[len(timesteps) - max(1, int(round(len(timesteps) * strength))):]
            x = scheduler.add_noise(cond, noise, timesteps[:1].to(cond.device))
        else:
            x = noise
        for n, t in enumerate(timesteps):
            ts = torch.full((cond.shape[0],), int(t), device=cond.device, dtype=torch.long)
            x, _ = scheduler.step(self(x, ts, cond), t, x, eta=0.0)  # deterministic DDIM
            if progress is not None:
                progress(n + 1, len(timesteps))
        return x * scale
