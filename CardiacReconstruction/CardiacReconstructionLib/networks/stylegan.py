"""DeepRecon's image prior: a compact StyleGAN2 generator of 2D cine SAX crops, its discriminator
and the encoder that maps an image to the generator's W+ space.

Why written here: no well-kept library ships a StyleGAN2 generator (MONAI has none; the official
code is not a library). This is the StyleGAN2 recipe (Karras et al. 2020) at the smallest size that
keeps its parts: a mapping network z -> w, one w per layer (W+), weight-modulated and demodulated
3x3 convolutions, per-pixel noise inputs, skip "toGray" outputs, equalised learning rate, and a
residual discriminator with a minibatch standard-deviation layer. Upsampling is bilinear before
the convolution (instead of a transposed convolution and a blur filter): fewer lines, the same
role. The encoder is MONAI's ``Regressor`` predicting the offset of W+ from the mean w.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import NetworkConfig


@dataclass
class StyleGANConfig(NetworkConfig):
    """Sizes of the generator and discriminator: ``size`` x ``size`` single-channel crops;
    ``channels`` per resolution from 4 x 4 up (one entry per resolution)."""
    size: int = 64
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    channels: tuple = (128, 128, 128, 64, 32)
    pixel_mm: float = 2.5  # physical size of a crop pixel (the crop's field of view: size * pixel_mm)

    @property
    def resolutions(self):
        return [4 * 2 ** i for i in range(len(self.channels))]

    @property
    def num_ws(self) -> int:
        """One w per convolution plus the last toGray (the earlier toGrays share the next conv's)."""
        return 2 * len(self.channels)

    def check(self) -> None:
        if self.resolutions[-1] != self.size:
            raise ValueError(f"channels {self.channels} reach {self.resolutions[-1]} px, not size {self.size}")


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights N(0, 1) scaled at run time)."""

    def __init__(self, c_in: int, c_out: int, bias_init: float = 0.0, lr_mul: float = 1.0, act: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((c_out,), float(bias_init)))
        self.scale, self.lr_mul, self.act = lr_mul / math.sqrt(c_in), lr_mul, act

    def forward(self, x):
        x = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.act else x


class EqualConv2d(nn.Module):
    """3x3 (or 1x1) convolution with equalised learning rate; ``down`` halves the size after it."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, bias: bool = True, act: bool = True,
                 down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.scale, self.act, self.down = 1 / math.sqrt(c_in * kernel * kernel), act, down

    def forward(self, x):
        x = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.weight.shape[-1] // 2)
        if self.down:
            x = F.avg_pool2d(x, 2)
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.act else x


class ModulatedConv2d(nn.Module):
    """StyleGAN2's convolution: the style (an affine map of w) scales the input channels of the
    weights, which are then demodulated to unit output variance."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, kernel: int = 3, demodulate: bool = True,
                 up: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.scale, self.demodulate, self.up = 1 / math.sqrt(c_in * kernel * kernel), demodulate, up

    def forward(self, x, w):
        # StyleGAN2's non-fused form: scale the input by the style, one shared convolution, then
        # scale the output by the demodulation coefficients; the same result as modulating the
        # weights per sample, and several times faster than a grouped convolution on the CPU.
        style = self.affine(w)  # [B, C_in]
        weight = self.weight * self.scale
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x * style[:, :, None, None], weight, padding=weight.shape[-1] // 2)
        if self.demodulate:
            d = torch.rsqrt((weight[None] * style[:, None, :, None, None]).pow(2).sum(dim=(2, 3, 4)) + 1e-8)
            x = x * d[:, :, None, None]
        return x


class StyledLayer(nn.Module):
    """Modulated convolution + scaled noise + bias + leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, c_out, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x, w, noise_mode: str = "random"):
        x = self.conv(x, w)
        if noise_mode == "random":
            x = x + self.noise_strength * torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * math.sqrt(2)


class ToGray(nn.Module):
    """1x1 modulated convolution (no demodulation) to the single image channel."""

    def __init__(self, c_in: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, 1, w_dim, kernel=1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x, w):
        return self.conv(x, w) + self.bias[None, :, None, None]


class MappingNetwork(nn.Module):
    """z -> w: pixel-normalised z through ``mapping_layers`` equalised linear layers (lr x 0.01)."""

    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        dims = [cfg.z_dim] + [cfg.w_dim] * cfg.mapping_layers
        self.net = nn.Sequential(*[EqualLinear(a, b, lr_mul=0.01, act=True) for a, b in zip(dims[:-1], dims[1:])])

    def forward(self, z):
        return self.net(z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8))


class StyleGenerator(nn.Module):
    """G: W+ codes [B, num_ws, w_dim] -> images [B, 1, size, size] (intensities about [-1, 1]).

    ``w_avg`` (the running mean of mapped w, a buffer) is the truncation centre and the encoder's
    starting point."""

    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        cfg.check()
        self.config = cfg
        ch = cfg.channels
        self.mapping = MappingNetwork(cfg)
        self.const = nn.Parameter(torch.randn(1, ch[0], 4, 4))
        self.convs = nn.ModuleList([StyledLayer(ch[0], ch[0], cfg.w_dim)])
        self.to_grays = nn.ModuleList([ToGray(ch[0], cfg.w_dim)])
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            self.convs.append(StyledLayer(c_in, c_out, cfg.w_dim, up=True))
            self.convs.append(StyledLayer(c_out, c_out, cfg.w_dim))
            self.to_grays.append(ToGray(c_out, cfg.w_dim))
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    def map(self, z, psi: float = 1.0):
        """w+ [B, num_ws, w_dim] of latent z [B, z_dim], truncated toward ``w_avg`` by ``psi``."""
        w = self.mapping(z)
        if psi != 1.0:
            w = self.w_avg + psi * (w - self.w_avg)
        return w[:, None].repeat(1, self.num_ws, 1)

    def mean_ws(self, batch: int = 1):
        return self.w_avg[None, None].repeat(batch, self.num_ws, 1)

    def forward(self, ws, noise_mode: str = "const"):
        """``noise_mode``: 'random' (training, sampling) or 'const'/'none' (no noise: a
        deterministic image of the code, what inversion and interpolation need)."""
        x = self.const.repeat(ws.shape[0], 1, 1, 1)
        x = self.convs[0](x, ws[:, 0], noise_mode)
        img = self.to_grays[0](x, ws[:, 1])
        for i in range(1, len(self.to_grays)):
            x = self.convs[2 * i - 1](x, ws[:, 2 * i - 1], noise_mode)
            x = self.convs[2 * i](x, ws[:, 2 * i], noise_mode)
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False) + \
                self.to_grays[i](x, ws[:, 2 * i + 1])
        return img


class StyleDiscriminator(nn.Module):
    """D: residual blocks down to 4 x 4, minibatch standard deviation, two linear layers -> score.
    ``features`` returns the block outputs too: the project's own perceptual features (LPIPS needs
    ImageNet weights that cannot be downloaded at run time)."""

    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        cfg.check()
        self.config = cfg
        ch = list(reversed(cfg.channels))  # from the full resolution down
        self.from_gray = EqualConv2d(1, ch[0], kernel=1)
        self.blocks = nn.ModuleList()
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            self.blocks.append(nn.ModuleDict({
                "conv1": EqualConv2d(c_in, c_in), "conv2": EqualConv2d(c_in, c_out, down=True),
                "skip": EqualConv2d(c_in, c_out, kernel=1, bias=False, act=False, down=True)}))
        self.final_conv = EqualConv2d(ch[-1] + 1, ch[-1])
        self.fc = EqualLinear(ch[-1] * 16, ch[-1], act=True)
        self.out = EqualLinear(ch[-1], 1)

    def features(self, img):
        x = self.from_gray(img)
        feats = [x]
        for blk in self.blocks:
            x = (blk["skip"](x) + blk["conv2"](blk["conv1"](x))) / math.sqrt(2)
            feats.append(x)
        return x, feats

    def forward(self, img):
        x, _ = self.features(img)
        group = min(4, x.shape[0])
        while x.shape[0] % group:
            group -= 1
        y = x.reshape(group, -1, *x.shape[1:])
        std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [B / group]
        std = std.repeat(group)[:, None, None, None].expand(-1, 1, *x.shape[2:])
        x = self.final_conv(torch.cat([x, std], dim=1))
        return self.out(self.fc(x.flatten(1)))


@dataclass
class EncoderConfig(NetworkConfig):
    """E: image crop -> W+ offsets from the generator's mean w (MONAI ``Regressor``)."""
    size: int = 64
    num_ws: int = 10
    w_dim: int = 128
    channels: tuple = (32, 64, 128, 256)
    strides: tuple = (2, 2, 2, 2)


class StyleEncoder(nn.Module):
    """E(x) = w_avg + Regressor(x): starting from the mean code, what the paper's hybrid inversion
    refines. ``w_avg`` is copied from the generator the encoder was trained for."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        from monai.networks.nets import Regressor

        self.config = cfg
        self.net = Regressor(in_shape=(1, cfg.size, cfg.size), out_shape=(cfg.num_ws * cfg.w_dim,),
                             channels=cfg.channels, strides=cfg.strides, num_res_units=1)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, img):
        return self.w_avg + 0.1 * self.net(img).reshape(-1, self.config.num_ws, self.config.w_dim)
