"""``cardiac-recon train deeprecon-encoder``: the encoder E (image -> W+) of a trained generator.

Trained on two kinds of batches each step, with G (and D, for the perceptual term) frozen:
* G's own samples, whose codes are known: ||E(G(w)) - w||^2 plus the image they repaint,
  ||G(E(G(w))) - G(w)||^2 (style-mixed codes, so E learns W+, not only W);
* the real training crops: ||G(E(x)) - x||^2, local NCC and the discriminator-feature distance
  (the same terms the hybrid inversion then minimises per image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .trainer import BudgetConfig, budgeted_trainer, started


@dataclass
class EncoderTrainConfig(BudgetConfig):
    minutes: float = 15.0
    lr: float = 5e-4
    batch: int = 8


def train_encoder(output, generator, discriminator=None, cfg: Optional[EncoderTrainConfig] = None,
                  resume: bool = False, root=None, log=print) -> Path:
    """Train E for the generator weights ``generator`` (a path or name); write it to ``output``."""
    import torch

    from ..networks.checkpoint import load_network
    from ..networks.inversion import InversionWeights, inversion_loss
    from ..networks.stylegan import EncoderConfig, StyleEncoder
    from ..networks.weights import resolve
    from .deeprecon_data import slice_set
    from .deeprecon_gan import _sample_ws

    cfg = started(cfg or EncoderTrainConfig())
    dev = cfg.device
    G = load_network(resolve(generator), "stylegan").to(dev).requires_grad_(False)
    D = load_network(resolve(discriminator), "stylegan_d").to(dev).requires_grad_(False) if discriminator else None
    gcfg = G.config
    E = StyleEncoder(EncoderConfig(size=gcfg.size, num_ws=G.num_ws, w_dim=gcfg.w_dim))
    E.w_avg.copy_(G.w_avg.cpu())
    E.net.requires_grad_(True)
    real = torch.as_tensor(slice_set("train", gcfg.size, gcfg.pixel_mm, root).images)[:, None]
    trainer = budgeted_trainer("stylegan_encoder", cfg, E, output, resume, log=log, params=E.net.parameters())
    weights = InversionWeights(domain=0.0)
    rng = np.random.default_rng(cfg.seed)

    def sample_loss(step):
        with torch.no_grad():
            ws = _sample_ws(G, cfg.batch, 0.5, dev)
            fake = G(ws, "const")
        w_hat = E(fake)
        loss_w = (w_hat - ws).pow(2).mean()
        loss_fake = (G(w_hat, "const") - fake).pow(2).mean()
        x = real[rng.integers(len(real), size=cfg.batch)].to(dev)
        terms, _ = inversion_loss(G, E, x, E(x), None, weights, D)
        loss_real = terms["loss"].mean()
        return {"loss": loss_w + loss_fake + loss_real, "w": loss_w, "fake_img": loss_fake, "real": loss_real}

    trainer.run_budget(cfg, sample_loss)
    return trainer.export(output, generator=Path(str(generator)).name, training_crops=int(len(real)))
