"""DeepRecon's hybrid GAN inversion (paper eq. 1-2): the encoder's W+ code of each crop, refined by
gradient steps on the generator so that G(w+) matches the image.

The objective, per crop x with heart region ``roi``:

    l2_roi * mean_roi (G(w) - x)^2  +  ncc * (1 - LNCC(G(w), x))  +  domain * ||w - E(G(w))||^2
    + perceptual * D-feature distance  +  ssim * (1 - SSIM(G(w), x))

The domain regulariser keeps w where the encoder's inverse is consistent (in G's domain, not on
any code that happens to paint the pixels). LPIPS would need ImageNet-trained weights that cannot
be fetched at run time, so the perceptual term compares the project's own discriminator's
features (channel-normalised, LPIPS-style); SSIM is available as an alternative. MONAI provides
LNCC and SSIM.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional


@dataclass
class InversionWeights:
    """Loss weights and step size of :func:`hybrid_invert` (the method's defaults)."""
    l2_roi: float = 1.0
    ncc: float = 0.5
    domain: float = 0.05
    perceptual: float = 0.2
    ssim: float = 0.0
    lr: float = 0.02

    def to_dict(self):
        return asdict(self)


def feature_distance(D, a, b):
    """Mean squared distance of channel-normalised discriminator features of ``a`` and ``b``
    (one number per image)."""
    _, fa = D.features(a)
    _, fb = D.features(b)
    total = 0
    for x, y in zip(fa, fb):
        x = x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-8)
        y = y / (y.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-8)
        total = total + (x - y).pow(2).sum(dim=1).mean(dim=(1, 2))
    return total / len(fa)


def inversion_loss(G, E, x, ws, roi=None, weights: InversionWeights = InversionWeights(), D=None):
    """Per-image loss terms ({name: [B] tensor} and their weighted sum 'loss') of codes ``ws``."""
    from monai.losses import LocalNormalizedCrossCorrelationLoss, SSIMLoss

    y = G(ws, "const")
    roi = roi if roi is not None else x.new_ones(x.shape)
    terms = {"l2_roi": ((y - x).pow(2) * roi).sum(dim=(1, 2, 3)) / roi.sum(dim=(1, 2, 3)).clamp_min(1.0)}
    if weights.ncc:
        lncc = LocalNormalizedCrossCorrelationLoss(spatial_dims=2, kernel_size=9, reduction="none")
        terms["ncc"] = 1 + lncc(y, x).reshape(len(x), -1).mean(dim=1)
    if weights.domain:
        terms["domain"] = (ws - E(y)).pow(2).mean(dim=(1, 2))
    if weights.perceptual and D is not None:
        terms["perceptual"] = feature_distance(D, y, x)
    if weights.ssim:
        ssim = SSIMLoss(spatial_dims=2, data_range=2.0, reduction="none")
        terms["ssim"] = ssim(y, x).reshape(len(x), -1).mean(dim=1)
    terms["loss"] = sum(getattr(weights, k) * v for k, v in terms.items())
    return terms, y


def hybrid_invert(G, E, x, steps: int = 30, roi=None, weights: InversionWeights = InversionWeights(), D=None,
                  progress: Optional[Callable[[float], None]] = None):
    """W+ codes [B, num_ws, w_dim] of crops ``x`` [B, 1, S, S] (in [-1, 1]): E(x), then ``steps``
    Adam steps on the objective above (0 steps: the encoder alone). G, E and D stay frozen."""
    import torch

    with torch.no_grad():
        w0 = E(x)
    if steps <= 0:
        return w0
    params = [p for net in (G, E, D) if net is not None for p in net.parameters()]
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        ws = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([ws], lr=weights.lr)
        with torch.enable_grad():
            for i in range(steps):
                terms, _ = inversion_loss(G, E, x, ws, roi, weights, D)
                opt.zero_grad(set_to_none=True)
                terms["loss"].sum().backward()
                opt.step()
                if progress is not None:
                    progress((i + 1) / steps)
        return ws.detach()
    finally:
        for p, r in zip(params, was):
            p.requires_grad_(r)
