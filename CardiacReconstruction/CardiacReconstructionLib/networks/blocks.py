"""Building blocks shared by the hand-built networks (DSL, ASV, MC-Net): the convolution block
(MONAI's ``Convolution``: 3D convolution, GroupNorm, LeakyReLU 0.1, the same building block as the
SR-Net's ``UNet``) and the linear interpolation between slices that ASV's explicit branch, MCSR's
SR input and DeepRecon's latent codes use; one definition each instead of a copy per use."""

from __future__ import annotations


def conv_block(c_in: int, c_out: int, groups: int, kernel=3, stride=1, dilation=1, act: bool = True):
    """Conv3d (MONAI's "same" padding: ``(kernel - 1) / 2 * dilation`` per axis), GroupNorm of
    ``min(groups, c_out)`` groups (narrow layers keep one channel per group at least), then an
    in-place LeakyReLU(0.1) unless ``act`` is False (a residual body's last layer, activated after
    the sum). State-dict keys: ``conv.*``, ``adn.N.*``."""
    from monai.networks.blocks import Convolution

    return Convolution(3, c_in, c_out, strides=stride, kernel_size=kernel, dilation=dilation,
                       norm=("group", {"num_groups": min(groups, c_out)}),
                       act=("leakyrelu", {"negative_slope": 0.1, "inplace": True}) if act else None)


def lerp_along(x, z, dim: int):
    """Linear interpolation of tensor ``x`` along ``dim`` at continuous positions ``z`` (0 = the
    first entry; clamped to the end entries, i.e. nearest beyond them). ``z`` is a tensor, or an
    array whose weights are computed in double precision and applied in ``x``'s dtype. One rule
    for every interpolation between slices: the super-resolution inputs here, DeepRecon's codes
    between slices and its motion differences between stacks."""
    import numpy as np
    import torch

    given_tensor = torch.is_tensor(z)
    if not given_tensor:  # positions from numpy: their weights are found in double precision
        z = torch.as_tensor(np.asarray(z, dtype=np.float64), device=x.device)
    k = x.shape[dim]
    z = z.clamp(0, k - 1)
    lo = z.floor().long().clamp(max=k - 1)
    hi = (lo + 1).clamp(max=k - 1)
    shape = [1] * x.dim()
    shape[dim] = -1
    t = (z - lo.to(z.dtype)).view(shape)
    t = t if given_tensor else t.to(x.dtype)
    return x.index_select(dim, lo) * (1 - t) + x.index_select(dim, hi) * t


def interpolate_slices(x, z):
    """Linear interpolation of ``x`` [B, C, K, H, W] along K at continuous slice positions ``z``
    (LR slice units, 0 = first slice centre; clamped to the end slices, i.e. nearest beyond the
    first/last slice centre) -> [B, C, len(z), H, W]."""
    return lerp_along(x, z, 2)
