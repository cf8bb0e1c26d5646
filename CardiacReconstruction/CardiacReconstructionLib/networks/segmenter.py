"""The 2D segmentation network of DeepRecon: Seg (trained on the generator's synthetic images of the
training slices, with their real labels) and DirectSeg (the same network trained on the real
images; the paper's upper bound and the quick images-in path). MONAI's ``UNet``: no reason to
hand-write one."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .config import NetworkConfig


@dataclass
class SegmenterConfig(NetworkConfig):
    """The 2D segmentation network of DeepRecon (Seg, trained on synthetic images) and of DirectSeg
    (the same network trained on the real images): MONAI ``UNet``, 4 classes (background, LV blood
    pool, LV myocardium, RV blood pool); ``pixel_mm`` is the in-plane pixel it was trained at."""
    channels: tuple = (16, 32, 64, 128)
    strides: tuple = (2, 2, 2)
    classes: int = 4
    pixel_mm: float = 2.5
    trained_on: str = "real"  # 'real' (DirectSeg) or 'synthetic' (Seg on G(w+*))


class SliceSegmenter(nn.Module):
    """MONAI 2D U-Net with residual units; input [B, 1, H, W] with H, W multiples of 8."""

    def __init__(self, cfg: SegmenterConfig):
        super().__init__()
        from monai.networks.nets import UNet

        self.config = cfg
        self.net = UNet(spatial_dims=2, in_channels=1, out_channels=cfg.classes, channels=cfg.channels,
                        strides=cfg.strides, num_res_units=1)

    def forward(self, img):
        return self.net(img)
