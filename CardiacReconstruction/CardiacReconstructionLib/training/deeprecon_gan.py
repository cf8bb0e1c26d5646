"""``cardiac-recon train stylegan``: DeepRecon's generator G of cine SAX crops, trained adversarially.

The StyleGAN2 recipe at a size a 2-core CPU trains in hours: non-saturating logistic loss, lazy
R1 on the real images (every ``r1_every`` D steps), lazy path-length regularisation (every
``pl_every`` G steps), style mixing, an exponential moving average of G (the exported weights),
and adaptive differentiable augmentation (ADA's heuristic: raise the augmentation probability
while the discriminator's sign on real images exceeds ``ada_target``) through kornia, because
~1,300 training slices are far too few for an unaugmented GAN. The same command trains the full
size on a GPU (``--preset gpu``: 128 x 128 at 1.25 mm).

Two networks and two optimisers, so this has its own loop instead of :class:`.trainer.Trainer`;
it shares the checkpoint format, the budget semantics (minutes and steps, resumed time counts)
and the device handling.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..networks.checkpoint import save_network, save_torch
from .trainer import BudgetConfig, plain, resume_state, started

#: Generator sizes: 'cpu' trains on two cores in a few hours; 'gpu' is the paper-like size.
PRESETS = {"cpu": dict(size=64, pixel_mm=2.5, channels=(128, 96, 64, 32, 16), mapping_layers=4, batch=16),
           "gpu": dict(size=128, pixel_mm=1.25, channels=(256, 256, 256, 128, 64, 32), mapping_layers=8, batch=32)}


@dataclass
class GANConfig(BudgetConfig):
    preset: str = "cpu"
    minutes: float = 120.0
    lr: float = 0.0025
    batch: int = 0  # 0: the preset's
    r1_gamma: float = 0.5
    r1_every: int = 16
    pl_weight: float = 2.0
    pl_every: int = 8
    mixing: float = 0.5
    ema_kimg: float = 5.0
    ada_target: float = 0.6
    ada_kimg: float = 20.0  # images over which p can move from 0 to 1
    extra: Dict = field(default_factory=dict)


class AdaptiveAugment:
    """Differentiable augmentation applied alike to real and generated images before D: small
    affine (rotation, translation, scale), brightness/contrast and cutout, each with probability
    ``p`` (kornia), ``p`` adapted from the sign of D on real images (Karras et al. 2020, ADA)."""

    def __init__(self, p: float = 0.0):
        import kornia.augmentation as K

        self.p = p
        self._make = lambda q: K.AugmentationSequential(
            K.RandomAffine(degrees=10.0, translate=(0.08, 0.08), scale=(0.9, 1.1), p=q, padding_mode="zeros"),
            K.RandomBrightness(brightness=(0.8, 1.2), p=q), K.RandomContrast(contrast=(0.7, 1.3), p=q),
            K.RandomErasing(scale=(0.02, 0.1), p=q))

    def __call__(self, img):
        if self.p <= 0:
            return img
        return self._make(self.p)((img + 1) / 2) * 2 - 1

    def update(self, sign_real: float, images: int, target: float, kimg: float) -> None:
        self.p = float(np.clip(self.p + np.sign(sign_real - target) * images / (kimg * 1000), 0.0, 1.0))


def _sample_ws(G, batch: int, mixing: float, device: str):
    import torch

    z = torch.randn(batch, G.config.z_dim, device=device)
    ws = G.map(z)
    if mixing > 0 and np.random.rand() < mixing:
        cut = int(np.random.randint(1, G.num_ws))
        ws2 = G.map(torch.randn(batch, G.config.z_dim, device=device))
        ws = torch.cat([ws[:, :cut], ws2[:, cut:]], dim=1)
    return ws


def train_generator(output, cfg: Optional[GANConfig] = None, resume: bool = False, root=None, log=print) -> Path:
    """Train G (and D) on the training patients' crops; write G's EMA to ``output`` (kind
    'stylegan') and D beside it (``<output stem>_d.pt``, kind 'stylegan_d', the perceptual features
    of the inversion)."""
    import torch
    import torch.nn.functional as F

    from ..networks.stylegan import StyleDiscriminator, StyleGANConfig, StyleGenerator
    from .deeprecon_data import slice_set

    cfg = started(cfg or GANConfig())
    preset = dict(PRESETS[cfg.preset])
    batch = cfg.batch or preset.pop("batch")
    preset.pop("batch", None)
    gcfg = StyleGANConfig(**preset)
    dev = cfg.device
    data = torch.as_tensor(slice_set("train", gcfg.size, gcfg.pixel_mm, root).images)[:, None]
    log(f"stylegan: {len(data)} training crops of {gcfg.size} px at {gcfg.pixel_mm} mm, batch {batch}, on {dev}")
    G, D = StyleGenerator(gcfg).to(dev), StyleDiscriminator(gcfg).to(dev)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    # lazy regularisation: scale the Adam settings by the interval (StyleGAN2 appendix B)
    g_ratio, d_ratio = cfg.pl_every / (cfg.pl_every + 1), cfg.r1_every / (cfg.r1_every + 1)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr * g_ratio, betas=(0.0, 0.99 ** g_ratio))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr * d_ratio, betas=(0.0, 0.99 ** d_ratio))
    augment = AdaptiveAugment()
    ckpt = Path(output).with_suffix(".ckpt")
    state = resume_state(ckpt, resume)
    step, elapsed, history, pl_mean = 0, 0.0, [], torch.zeros((), device=dev)
    if state is not None:
        G.load_state_dict(state["G"]), D.load_state_dict(state["D"]), G_ema.load_state_dict(state["G_ema"])
        opt_g.load_state_dict(state["opt_g"]), opt_d.load_state_dict(state["opt_d"])
        step, elapsed, history, augment.p = int(state["step"]), float(state["elapsed_s"]), list(state["history"]), \
            float(state["ada_p"])
        pl_mean = state["pl_mean"].to(dev)
        log(f"resumed stylegan at step {step} ({elapsed / 60:.1f} min done, ada p {augment.p:.2f})")

    def save_state():
        save_torch({"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(), "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(), "step": step, "elapsed_s": elapsed, "history": history,
                    "ada_p": augment.p, "pl_mean": pl_mean.cpu(), "config": plain(asdict(cfg)),
                    "device": dev}, ckpt)

    budget_s = 60 * cfg.minutes if cfg.minutes > 0 else math.inf
    t0 = last_ckpt = time.perf_counter()
    already = elapsed
    running: Dict[str, list] = {}
    signs = []
    while step < cfg.max_steps:
        real = data[torch.randint(len(data), (batch,))].to(dev)
        # discriminator
        with torch.no_grad():
            fake = G(_sample_ws(G, batch, cfg.mixing, dev), "random")
        real_score, fake_score = D(augment(real)), D(augment(fake))
        loss_d = F.softplus(fake_score).mean() + F.softplus(-real_score).mean()
        signs.append(float(real_score.detach().sign().mean()))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if step % cfg.r1_every == 0:
            real_r = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(augment(real_r)).sum(), real_r, create_graph=True)
            r1 = grad.pow(2).sum(dim=(1, 2, 3)).mean()
            opt_d.zero_grad(set_to_none=True)
            (r1 * cfg.r1_gamma / 2 * cfg.r1_every).backward()
            opt_d.step()
            running.setdefault("r1", []).append(float(r1.detach()))
        # generator
        fake = G(_sample_ws(G, batch, cfg.mixing, dev), "random")
        loss_g = F.softplus(-D(augment(fake))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if cfg.pl_weight > 0 and step % cfg.pl_every == 0:
            ws = _sample_ws(G, max(2, batch // 2), 0.0, dev).requires_grad_(True)
            img = G(ws, "random")
            noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grad.pow(2).sum(dim=2).mean(dim=1).sqrt()
            pl_mean = pl_mean.lerp(lengths.mean().detach(), 0.01)
            opt_g.zero_grad(set_to_none=True)
            ((lengths - pl_mean).pow(2).mean() * cfg.pl_weight * cfg.pl_every).backward()
            opt_g.step()
        # EMA of G and of the mean w
        with torch.no_grad():
            nimg = (step + 1) * batch
            beta = 0.5 ** (batch / max(min(cfg.ema_kimg * 1000, nimg * 0.05), 1e-8))
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.lerp_(p, 1 - beta)
            G.w_avg.lerp_(G.mapping(torch.randn(64, gcfg.z_dim, device=dev)).mean(0), 0.005)
            G_ema.w_avg.copy_(G.w_avg)
        if len(signs) == 4:
            augment.update(float(np.mean(signs)), 4 * batch, cfg.ada_target, cfg.ada_kimg)
            signs = []
        step += 1
        elapsed = already + time.perf_counter() - t0
        running.setdefault("loss_d", []).append(float(loss_d))
        running.setdefault("loss_g", []).append(float(loss_g))
        if step % 100 == 0:
            means = {k: float(np.mean(v)) for k, v in running.items()}
            running = {}
            history.append({"step": step, "elapsed_s": round(elapsed, 1), "ada_p": round(augment.p, 3), **means})
            log(f"stylegan step {step} {elapsed / 60:.1f} min ada p {augment.p:.2f} "
                + " ".join(f"{k} {v:.3f}" for k, v in means.items()))
        if time.perf_counter() - last_ckpt > 60 * cfg.checkpoint_minutes:
            save_state()
            last_ckpt = time.perf_counter()
        if elapsed >= budget_s:
            log(f"stylegan: stopping at step {step}, the {cfg.minutes:g}-minute budget is spent")
            break
    save_state()
    meta = {"train_config": plain(asdict(cfg)), "steps": step, "images_seen": step * batch,
            "train_minutes": elapsed / 60, "device": dev, "threads": torch.get_num_threads(),
            "history": history[-10:], "ada_p": augment.p, "torch": str(torch.__version__),
            "training_crops": int(len(data))}
    save_network(G_ema, output, "stylegan", meta)
    save_network(D, Path(output).with_name(Path(output).stem + "_d.pt"), "stylegan_d", meta)
    log(f"stylegan trained: {step} steps in {elapsed / 60:.1f} min -> {output}")
    return Path(output)
