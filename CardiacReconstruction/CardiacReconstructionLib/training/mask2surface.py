"""Training of the Mask2Surface networks: ``cardiac-recon train mask2surface {mcsr,pairs,vqvae,ldm,...}``.

Three stages, in this order (each resumable: ``--resume`` continues from ``<output>.ckpt``; the
time budget counts the time already spent; all randomness seeded):

* ``mcsr``: MCSR-Net end to end on the CT cohort's training split (15 real hearts; validation
  subjects and PCA shapes left out). Every sample is a fresh degradation of an augmented heart
  of the :mod:`.pool` (its motion mix, 7-11.5 mm slices), canonicalised exactly as at inference.
  Targets: the true per-slice translations centred on their mean over the labelled slices; the
  motion-free stack and the HR labels, both moved by that mean (a common shift is invisible, so
  the targets are what a perfect correction of *this* stack shows). Losses: L1 on the
  translations + soft Dice on the corrected LR stack + cross-entropy and soft Dice on the HR
  output (the SR loss of MCSR plus CE for stable early training), equal weights.
* ``pairs``: the SDG data set. Per sample, an augmented training heart (affine augmentation only,
  so its template-registered meshes can follow exactly), degraded with ``normal``,
  ``mask2surface`` or ``severe`` motion at 8-10 mm, corrected and super-resolved by the trained
  MCSR-Net; stored: the C-SDG of the MCSR output (the condition) and the ground-truth SDG from the
  meshes (:mod:`..evaluation.surface_truth`) on the same surface grid, moved by the mean displacement like
  the MCSR targets. ``--source acdc`` makes MRI-shaped pairs the same way from the pseudo-HR
  shapes of the ACDC training patients (ED and ES; target: the shape's own C-SDG), because the
  15 healthy end-diastolic CT hearts alone leave real MRI stacks out of the prior's domain.
* ``vqvae``: the VQ-VAE on the ground-truth SDGs (L1 reconstruction + MONAI's codebook and
  commitment losses); ``ldm``: the latent denoiser on (condition latent, target latent) pairs
  with MONAI's DDPM scheduler (1000 steps, linear betas 0.0015-0.0195).

The networks are trained by the one loop of :mod:`.trainer` (``--device``, ``--resume``, time budget).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from ..networks import weights
from ..core.device import resolve_device
from ..core.errors import InputError
from .cards import DEFAULT_SELECTION, add_selection_argument
from .pool import HeartPool, cohort_paths, crop_to_heart, degraded_sample, heart_crop
from .trainer import (BudgetConfig, add_budget_arguments, budget_from_arguments, budgeted_trainer, onehot_tensor,
                      start_torch, started, to_device)

NEAR_SURFACE_MM = 3.0  # the VQ-VAE's L1 weighs errors within a few mm of a surface up to 4x


@dataclass
class MCSRTrainConfig(BudgetConfig):
    minutes: float = 20.0
    accumulate: int = 2
    crop: int = 40  # in-plane SR crop (voxels) around the heart; MC always sees the whole plane
    pool_biventricular: int = 24
    refresh_every: int = 6
    hr_inplane_mm: Tuple[float, float] = (1.25, 2.0)
    slice_spacing_mm: Tuple[float, float] = (7.0, 11.5)
    inplane_size: int = 64
    data_root: Optional[str] = None
    subjects: Optional[Tuple[str, ...]] = None


def shifted(geometry, offset_ras: np.ndarray):
    """``geometry`` moved by ``-offset_ras``: resampling a volume onto it and reading the array on
    the unmoved grid gives the volume translated by ``+offset_ras``."""
    from ..core.geometry import Geometry

    m = geometry.ijk_to_ras.copy()
    m[:3, 3] -= offset_ras
    return Geometry(geometry.shape, m)


def split_common_shift(displacements_mm, grid, sax, labelled: np.ndarray):
    """True displacements (input order, mm) -> (translations centred on the ``labelled`` slices,
    canonical voxels, zero on unlabelled slices; the common shift removed, as RAS mm). The common
    shift is invisible in the stack, so every target is moved by it."""
    from ..anatomy.canonical import input_mm_to_canonical

    d = input_mm_to_canonical(displacements_mm, grid, sax)
    mean = d[labelled].mean(axis=0) if labelled.any() else np.zeros(2)
    return np.where(labelled[:, None], d - mean, 0.0), grid.geometry.ijk_to_ras[:3, :2] @ mean


def mcsr_targets(sax, clean, hr, displacements_mm, inplane_size: int, hr_slice_spacing_mm: float):
    """Canonical input and targets of one degraded stack: (input labels [K, J, I], centred
    translations [K, 2] canonical voxels, corrected-LR target [K, J, I], HR slice positions z (LR
    units), HR target [Z, J, I], the canonical grid)."""
    from ..core.geometry import resample
    from ..methods import output_geometry
    from ..anatomy.canonical import CanonicalGrid, canonical_geometry, to_canonical_labels

    grid = canonical_geometry(sax, inplane_size)
    x = to_canonical_labels(sax, grid)
    centred, offset = split_common_shift(displacements_mm, grid, sax, x.any(axis=(1, 2)))
    lr_target = to_canonical_labels(clean, CanonicalGrid(shifted(grid.geometry, offset), grid.reversed))
    hr_geometry = output_geometry(grid.geometry, slice_spacing=hr_slice_spacing_mm)
    z = grid.geometry.ras_to_index(hr_geometry.slice_centres())[:, 2]
    hr_target = resample(hr, shifted(hr_geometry, offset), "nearest").array.astype(np.uint8)
    return x, centred.astype(np.float32), lr_target, z.astype(np.float32), hr_target, grid


def mcsr_loss(model, x, shifts_true, lr_target, z, hr_target, crop: Tuple[slice, slice]):
    """L1 on the centred translations (voxels, labelled slices) + soft Dice of the corrected LR
    stack + CE and soft Dice of the HR output (on an in-plane crop, for speed)."""
    from .losses import ce_dice_loss, soft_dice_loss

    device = next(model.parameters()).device
    n = model.config.n_classes
    shifts, corrected = model.correct(onehot_tensor(x, n, device))
    labelled = to_device(device, x.any(axis=(1, 2)))
    l1 = (shifts[0][labelled] - to_device(device, shifts_true)[labelled]).abs().mean() if labelled.any() else 0.0
    dice_lr = soft_dice_loss(corrected, onehot_tensor(lr_target, n, device))
    cj, ci = crop
    logits = model.sr(corrected[..., cj, ci], to_device(device, z))
    hr = ce_dice_loss(logits, to_device(device, hr_target[:, cj, ci])[None], n)
    return l1 + dice_lr + hr


def train_mcsr(cfg: MCSRTrainConfig, output: Path, resume: bool = False, log=print) -> Path:
    from ..networks.mcsr import MCSRConfig, MCSRNet

    cfg = started(cfg)
    model = MCSRNet(MCSRConfig(inplane_size=cfg.inplane_size))
    run = budgeted_trainer("mcsr", cfg, model, output, resume, log)
    rng = np.random.default_rng([cfg.seed, run.step, 2])
    pool = HeartPool(cohort_paths(cfg.data_root, cfg.subjects), cfg.pool_biventricular, 0,
                     tuple(cfg.hr_inplane_mm), 2.0, rng, log)
    hr_mm = model.config.hr_slice_spacing_mm

    def sample_loss(step):
        hr, deg, sax, clean, kept = degraded_sample(pool, cfg.slice_spacing_mm, rng)
        x, shifts, lr_target, z, hr_target, _ = mcsr_targets(sax, clean, hr, deg.displacements[kept], cfg.inplane_size,
                                                             hr_mm)
        crop = heart_crop(hr_target, min(cfg.crop, x.shape[1]), rng)
        return mcsr_loss(model, x, shifts, lr_target, z, hr_target, crop)

    return run.run_budget(cfg, sample_loss, cfg.accumulate, pool.refresher(cfg.refresh_every)).export(output)


PAIR_PRESETS = ("normal", "mask2surface", "severe")
_BENCH_GRID = ((64, 128, 128), (1.25, 1.25, 2.0))  # the benchmark's HR grid (k, j, i), spacing (i, j, k)


def degraded_condition(hr, rng: np.random.Generator, mcsr, vq_config, device: str = "cpu"):
    """One training degradation of the HR labels ``hr`` (motion preset and 8-10 mm slices drawn
    from ``rng``), corrected and super-resolved by MCSR-Net: (condition C-SDG [S, k, j, i] mm, the
    grid on which the ground truth must be sampled: the surface grid moved by the common shift,
    which the stack cannot show)."""
    from ..simulation.degrade import degrade
    from ..methods.mask2surface import run_mcsr, surface_grid
    from ..core.sdf import label_sdgs

    preset = PAIR_PRESETS[int(rng.integers(len(PAIR_PRESETS)))]
    deg = degrade(hr, preset, slice_spacing=float(rng.uniform(8.0, 10.0)), seed=int(rng.integers(2 ** 31)))
    sax, _, kept = crop_to_heart(deg, rng)
    out = run_mcsr(mcsr, sax, device)
    labels = out.hr_labels()
    sgrid = surface_grid(labels, vq_config.grid_shape, vq_config.spacing_mm)
    condition = label_sdgs(labels, sgrid, vq_config.clip_mm)
    labelled = out.grid.to_canonical_order(sax.array.any(axis=(1, 2)))
    _, offset = split_common_shift(deg.displacements[kept], out.grid, sax, labelled)
    return condition.astype(np.float32), shifted(sgrid, offset)


def surface_pair(path, seed: int, mcsr, vq_config, device: str = "cpu") -> Tuple[np.ndarray, np.ndarray]:
    """(condition C-SDG, ground-truth SDG), float32 [S, k, j, i] in mm, for one augmented heart
    (affine augmentation drawn from ``seed``) and one degradation (see the module docstring)."""
    from .cohort import AugmentationRanges, draw_augmentation, load_subject
    from ..evaluation.surface_truth import truth_sdgs

    ranges = AugmentationRanges(elastic_mm=0.0)
    aug = draw_augmentation(np.random.default_rng(seed), ranges)
    hr = load_subject(path, *_BENCH_GRID, augment=seed, ranges=ranges)
    condition, truth_grid = degraded_condition(hr, np.random.default_rng([seed, 3]), mcsr, vq_config, device)
    truth = truth_sdgs(path, truth_grid, augmentation=aug, clip_mm=vq_config.clip_mm)
    return condition, truth.astype(np.float32)


def acdc_surface_pair(key: str, seed: int, mcsr, vq_config, data_root=None,
                      device: str = "cpu") -> Tuple[np.ndarray, np.ndarray]:
    """(condition C-SDG, target SDG) for one MRI-shaped heart: the pseudo high-resolution shape
    of a real ACDC stack (:func:`.cohort.acdc_pseudo_hr`) degraded and corrected like
    :func:`surface_pair`; the target is the C-SDG of that shape. Why: the CT cohort alone is 15
    healthy end-diastolic hearts, and the CT-only VQ-VAE reconstructed the C-SDGs of real MRI stacks (ACDC)
    1.3-2.8 x worse near the surface than those of held-out CT hearts, so a CT-only prior pulls MRI shapes
    towards CT anatomy. The pseudo-HR shape is an approximation (interpolated between 10 mm slices), used
    for its shape family only, never to score."""
    from .cohort import acdc_pseudo_hr, load_acdc
    from ..core.sdf import label_sdgs

    hr = acdc_pseudo_hr(load_acdc(data_root, key))
    condition, truth_grid = degraded_condition(hr, np.random.default_rng([seed, 3]), mcsr, vq_config, device)
    return condition, label_sdgs(hr, truth_grid, vq_config.clip_mm)


PAIR_SOURCES = ("ct", "acdc")


def make_pairs(output, mcsr_weights, n_per_subject: int = 10, subjects=None, data_root=None, seed: int = 0,
               threads: int = 1, source: str = "ct", device: str = "auto", log=print) -> Path:
    """Write the SDG pairs to ``output`` (.npz, float16 mm): ``condition``, ``truth`` [N, S, k, j, i]
    and ``subject`` names. ``source`` 'ct': the CT training subjects (:func:`surface_pair`);
    'acdc': the ACDC training patients' pseudo-HR shapes, ED and ES (:func:`acdc_surface_pair`).
    Resumable: ``<output>.part.npz`` holds the pairs made so far. MCSR-Net runs on ``device``."""
    from ..networks.latent_diffusion import VQVAEConfig
    from ..networks.checkpoint import load_network

    if source not in PAIR_SOURCES:
        raise InputError(f"Unknown pairs source {source!r}; expected one of {', '.join(PAIR_SOURCES)}.")
    device = start_torch(seed, threads, device)
    output = Path(output)
    part = output.with_suffix(".part.npz")
    mcsr = load_network(mcsr_weights, "mcsr").to(device)
    if source == "acdc":
        from .cohort import acdc_split

        shapes = subjects or acdc_split(data_root, "train")
        make = lambda key, s: acdc_surface_pair(key, s, mcsr, VQVAEConfig(), data_root, device)  # noqa: E731
    else:
        shapes = cohort_paths(data_root, subjects)
        make = lambda path, s: surface_pair(path, s, mcsr, VQVAEConfig(), device)  # noqa: E731
    jobs = [(p, seed * 100003 + 1000 * i + r) for r in range(n_per_subject) for i, p in enumerate(shapes)]
    done = dict(np.load(part)) if part.is_file() else {}
    cond, truth, names = (list(done.get(key, [])) for key in ("condition", "truth", "subject"))
    t0 = time.perf_counter()
    for n, (path, s) in enumerate(jobs[len(cond):], start=len(cond)):
        c, t = make(path, s)
        cond.append(c.astype(np.float16))
        truth.append(t.astype(np.float16))
        names.append(Path(path).stem)
        if (n + 1) % 10 == 0:
            np.savez(part, condition=np.stack(cond), truth=np.stack(truth), subject=np.array(names))
            log(f"pairs {n + 1}/{len(jobs)} in {time.perf_counter() - t0:.0f} s")
    np.savez(output, condition=np.stack(cond), truth=np.stack(truth), subject=np.array(names))
    part.unlink(missing_ok=True)
    log(f"{len(cond)} SDG pairs -> {output}")
    return output


@dataclass
class SDGTrainConfig(BudgetConfig):
    lr: float = 5e-4
    batch: int = 2
    pairs: str = ""
    bend_mm: float = 0.0  # ldm: amplitude of the smooth long-axis bend augmentation (:func:`bend_latents`)
    init: str = ""  # ldm: the weights the run started from (recorded for the model card)


def _load_pairs(paths, clip_mm: float):
    """(conditions, truths) of one pairs file or several (comma-separated), clipped and scaled."""
    import torch

    files = [f for f in str(paths).split(",") if f]
    data = [np.load(f) for f in files]
    norm = lambda key: torch.from_numpy(np.clip(np.concatenate([d[key].astype(np.float32) for d in data]),  # noqa: E731
                                                -clip_mm, clip_mm) / clip_mm)
    return norm("condition"), norm("truth")


def pair_sources(paths) -> Tuple[str, ...]:
    """The data sets ('ct', 'acdc') the pairs files were made from, read from their subject names
    (ACDC keys start with 'patient'): the model card names their terms."""
    names = [str(s) for f in str(paths).split(",") if f for s in np.load(f)["subject"]]
    return tuple(sorted({"acdc" if s.startswith("patient") else "ct" for s in names}, key=PAIR_SOURCES.index))


def train_vqvae(cfg: SDGTrainConfig, output: Path, resume: bool = False, log=print) -> Path:
    """VQ-VAE on the SDGs of the pairs, ground truths and conditions alike (its encoder encodes
    both at inference): L1, weighted up to 4x near the surfaces (the zero level set is what
    matters), + MONAI's quantisation (codebook/commitment) loss. Random in-plane
    translations of a few voxels augment the fixed pairs."""
    import torch

    from ..networks.latent_diffusion import SDGAutoencoder, VQVAEConfig

    cfg = started(cfg)
    model = SDGAutoencoder(VQVAEConfig())
    truth = torch.cat(_load_pairs(cfg.pairs, model.config.clip_mm))
    run = budgeted_trainer("vqvae", cfg, model, output, resume, log)
    gen = torch.Generator().manual_seed(cfg.seed + run.step)

    def sample_loss(step):
        idx = torch.randint(len(truth), (cfg.batch,), generator=gen)
        x = torch.stack([torch.roll(truth[i], tuple(torch.randint(-3, 4, (2,), generator=gen).tolist()), dims=(2, 3))
                         for i in idx]).to(cfg.device)
        recon, q_loss = model(x)
        weight = 1.0 + 3.0 * torch.exp(-x.abs() * (model.config.clip_mm / NEAR_SURFACE_MM))
        return (weight * (recon - x).abs()).mean() + q_loss.mean()

    return run.run_budget(cfg, sample_loss).export(output, samples=run.step * cfg.batch, data=pair_sources(cfg.pairs))


def encode_pairs(vqvae, pairs, batch: int = 8):
    """(condition latents, truth latents) of every pair with the trained VQ-VAE (a loaded network,
    on its device; the latents come back on the CPU)."""
    import torch

    device = next(vqvae.parameters()).device
    cond, truth = _load_pairs(pairs, vqvae.config.clip_mm)
    with torch.no_grad():
        enc = lambda a: torch.cat([vqvae.encode(a[i:i + batch].to(device)).cpu()  # noqa: E731
                                   for i in range(0, len(a), batch)])
        return enc(cond), enc(truth)


def bend_latents(latents, shifts_vox):
    """Latents [B, C, K, J, I] with latent slice k moved in-plane by ``shifts_vox`` [B, K, 2] (j, i;
    latent voxels, bilinear, border values continued)."""
    import torch

    b, c, k, j, i = latents.shape
    flat = latents.permute(0, 2, 1, 3, 4).reshape(b * k, c, j, i)
    theta = torch.zeros(b * k, 2, 3, dtype=latents.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    shifts = shifts_vox.reshape(b * k, 2).to(latents.dtype)
    theta[:, 0, 2] = -2.0 * shifts[:, 1] / i  # grid x runs along i; sampling at x - d moves content by +d
    theta[:, 1, 2] = -2.0 * shifts[:, 0] / j
    grid = torch.nn.functional.affine_grid(theta, (b * k, c, j, i), align_corners=False)
    out = torch.nn.functional.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(b, k, c, j, i).permute(0, 2, 1, 3, 4)


def random_bends(batch: int, n_slices: int, amplitude_vox: float, generator):
    """[batch, n_slices, 2] smooth in-plane shifts along the long axis: a tilt and a bow per
    in-plane axis (``a s + b (s^2 - 1/3)``, ``s`` in [-1, 1] over the slices, ``a``, ``b`` uniform in
    +-amplitude)."""
    import torch

    s = torch.linspace(-1.0, 1.0, n_slices)
    a, b = (torch.rand(2, batch, 1, 2, generator=generator) * 2 - 1) * amplitude_vox
    return a * s[None, :, None] + b * (s[None, :, None] ** 2 - 1.0 / 3.0)


def train_ldm(cfg: SDGTrainConfig, vqvae_weights, output: Path, resume: bool = False, log=print,
              init: Optional[str] = None) -> Path:
    """The latent denoiser: DDPM training (random step, noise the target latent, predict it back
    from the noisy latent and the condition latent; MSE). Pairs are shifted together in-plane by
    up to one latent voxel (augmentation). ``init``: start from these denoiser weights (fine-tuning;
    their latent scale is kept). ``cfg.bend_mm`` > 0 bends condition and target alike along the
    long axis (:func:`random_bends`): a bend shared by condition and target is anatomy, which the
    denoiser must keep, while per-slice jitter is motion to remove. Measured against the same
    fine-tune without bends (``m2s_ldm`` model card): 4 mm bends improved held-out CT and
    MRI-shaped hearts and made the procedural phantom worse."""
    import torch

    from ..networks.latent_diffusion import LatentDenoiser, LDMConfig, ddpm_scheduler
    from ..networks.checkpoint import load_network

    cfg = started(cfg)
    if init and resume:
        raise InputError("--resume continues a checkpoint and --init starts a new run from weights: use one.")
    if init:
        cfg = replace(cfg, init=str(init))
    start = load_network(weights.resolve(init), "ldm") if init else None
    vqvae = load_network(vqvae_weights, "vqvae").to(cfg.device)
    cond, truth = encode_pairs(vqvae, cfg.pairs)
    model = LatentDenoiser(start.config if start is not None else LDMConfig(latent_scale=float(truth.std())))
    scale = model.config.latent_scale
    if start is not None:
        model.load_state_dict(start.state_dict())
        log(f"starting from the denoiser {init}")
    scheduler = ddpm_scheduler(model.config)
    cond, truth = cond / scale, truth / scale
    run = budgeted_trainer("ldm", cfg, model, output, resume, log)
    gen = torch.Generator().manual_seed(cfg.seed + run.step)
    n_t = model.config.num_train_timesteps
    latent_mm = float(vqvae.config.spacing_mm[0]) * vqvae.config.downsampling  # in-plane size of a latent voxel

    def sample_loss(step):
        idx = torch.randint(len(truth), (cfg.batch,), generator=gen)
        roll = tuple(torch.randint(-1, 2, (2,), generator=gen).tolist())  # one latent voxel = 4 SDG voxels
        x0, c = torch.roll(truth[idx], roll, dims=(3, 4)), torch.roll(cond[idx], roll, dims=(3, 4))
        if cfg.bend_mm > 0:
            bends = random_bends(cfg.batch, x0.shape[2], cfg.bend_mm / latent_mm, gen)
            x0, c = bend_latents(x0, bends), bend_latents(c, bends)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, n_t, (cfg.batch,), generator=gen)
        x0, c, noise, t = to_device(cfg.device, x0, c, noise, t)  # drawn on the CPU: the same samples on any device
        pred = model(scheduler.add_noise(x0, noise, t), t, c)
        target = x0 if model.config.prediction_type == "sample" else noise
        return torch.nn.functional.mse_loss(pred, target)

    return run.run_budget(cfg, sample_loss).export(output, samples=run.step * cfg.batch, data=pair_sources(cfg.pairs))


METHOD = ('Zhang et al., "Mask2Surface" (MCSR-Net + coarse signed distance grids + VQ-VAE latent diffusion; '
          "`shared/papers/001`), MCSR-Net after Chen et al. 2024, MCSR-ETE. Re-implemented from the papers; no peer "
          "code used. Networks from MONAI (`UNet`, `VQVAE`, `DiffusionModelUNet`, `DDPMScheduler`, `DDIMScheduler`).")
DATA_USED = {"ct": "the CT cohort's 15 training subjects (subject_00-14) only; subject_15-18 are held out for "
                   "validation and the PCA shapes (which saw every subject) are not used. Ground-truth SDGs from the "
                   "subjects' template-registered meshes.",
             "acdc": "MRI-shaped pairs from the ACDC training patients: the pseudo high-resolution shapes (centroid "
                     "alignment + shape-based interpolation) of their ED/ES label stacks, re-degraded and corrected "
                     "by MCSR-Net; target = the shape's own C-SDG. The ACDC validation patients are held out."}
USE = {"mcsr": "As stage 1 of the `mask2surface` method (motion correction and super-resolution of the stack).",
       "vqvae": "As the signed-distance autoencoder of the `mask2surface` method's refinement.",
       "ldm": "As the latent denoiser of the `mask2surface` method's refinement."}

_CARD_TEXT = {
    "mcsr": ("MCSR-Net (Mask2Surface stage 1)",
             "Per-slice in-plane translation (MC-Net, bilinear slice warp) and through-plane super-resolution "
             "to 2 mm (SR-Net, MONAI UNet with (1, 2, 2) strides) of a biventricular SAX label stack on the "
             "canonical 64 x 64 x 2.5 mm grid.",
             "cardiac-recon train mask2surface mcsr --output mcsr.pt"),
    "vqvae": ("Mask2Surface VQ-VAE over signed distance grids",
              "MONAI VQVAE (codebook 1024, latent dimension 8, downsampling x2) over 4-channel SDGs (LV "
              "myocardium, LV endocardium, LV epicardium, RV endocardium; mm / 20, clipped) on a 32 x 64 x 64 "
              "grid of 2.5 x 2.5 x 4 mm. Its encoder also encodes the condition (the C-SDG of MCSR-Net's output).",
              "cardiac-recon train mask2surface vqvae --pairs {pairs} --output m2s_vqvae.pt"),
    "ldm": ("Mask2Surface latent denoiser",
            "MONAI DiffusionModelUNet on [noisy latent, condition latent] (8 + 8 channels at 16 x 32 x 32); DDPM "
            "training with 1000 steps and linear betas 0.0015-0.0195, clean-latent (x0) prediction as the "
            "condition latent plus the UNet's output (condition residual); DDIM sampling with 10 steps at "
            "inference; the pipeline adds the decoded change to the C-SDG (residual decoding).",
            "cardiac-recon train mask2surface ldm --pairs {pairs} --vqvae m2s_vqvae.pt --output m2s_ldm.pt"),
}


def _sdg_options(train: Dict) -> str:
    """The VQ-VAE's or denoiser's options that are not the defaults (--init and --bend-mm: ldm only)."""
    default_lr = SDGTrainConfig.lr
    out = f" --lr {train['lr']:g}" if train.get("lr", default_lr) != default_lr else ""
    out += f" --init {Path(train['init']).name}" if train.get("init") else ""
    return out + (f" --bend-mm {train['bend_mm']:g}" if train.get("bend_mm") else "")


def model_card(kind: str, weights_path, metrics: Dict[str, float], pairs_note: str = "",
               selection: str = DEFAULT_SELECTION) -> str:
    """Markdown model card of a trained weights file (:mod:`.cards`)."""
    from .cards import Card, budget_note, budget_options, metrics_table, render, weights_facts

    meta, cfg, train, facts = weights_facts(weights_path, "each a freshly degraded, augmented heart" if kind == "mcsr"
                                            else "SDG pairs drawn at random, shifted in-plane")
    if pairs_note and kind != "mcsr":
        facts["training"].append(pairs_note)
    title, what, command = _CARD_TEXT[kind]
    data = tuple(meta.get("data", ("ct",)))
    pairs = ",".join(Path(f).name for f in str(train.get("pairs", "pairs.npz")).split(","))
    command = command.format(pairs=pairs) + budget_options(train) + ("" if kind == "mcsr" else _sdg_options(train))
    validation = metrics_table(
        "## Validation (held-out CT hearts subject_15-18, 3 seeds)",
        "Measured through the `mask2surface` pipeline by `cardiac-recon train mask2surface validate`; Chamfer "
        "distance (mm, symmetric, exact point-to-mesh) to the ground-truth surfaces from the meshes, mean over LV "
        "myocardium, LV endo-, LV epi- and RV endocardium; plain myocardium Dice of the voxelised surfaces; "
        "displacement error per slice with the means removed; presets normal and mask2surface.", metrics)
    return render(Card(
        title=title, summary=what, use=USE[kind], method=METHOD, data=data,
        data_used=" ".join(DATA_USED[d] for d in data), command=command, validation=validation,
        selection=selection, notes=(budget_note(train),),
        limits=("End-diastolic CT anatomy of 15 healthy adults with affine (MCSR: also elastic) augmentation; "
                "small networks trained for minutes. A common shift of all slices is invisible in a SAX stack: "
                "displacements are centred on the labelled slices.",), **facts))


def validate(root=None, seeds=(0, 1, 2), presets=("normal", "mask2surface"), log=print,
             device: str = "auto") -> Dict[str, float]:
    """Mean plain myocardium Dice, displacement error and Chamfer distance (mm) of ``mask2surface``
    and of MCSR-Net alone on the held-out hearts (the numbers of the model cards)."""
    from ..evaluation.bench import benchmark, cohort_anatomies

    rows = benchmark(cohort_anatomies(root), presets, ["mask2surface"], seeds,
                     method_options={"mask2surface": {}}, surface_metrics=True,
                     progress=lambda m: log(f"validate {m}"), device=device)
    out = {}
    for key in ("dice_MYO", "displacement_error_mean_removed_mm", "chamfer_mean_mm", "chamfer_LV_myocardium_mm"):
        vals = [r[key] for r in rows if key in r and np.isfinite(r[key])]
        if vals:
            out[key] = float(np.mean(vals))
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stage", choices=("mcsr", "pairs", "vqvae", "ldm", "validate", "install"),
                   help="mcsr: MCSR-Net; pairs: the SDG data set (needs --mcsr); vqvae: the VQ-VAE (needs "
                        "--pairs); ldm: the latent denoiser (needs --pairs, --vqvae); validate: metrics on the "
                        "held-out CT hearts (shipped weights, or --mcsr/--vqvae/--ldm); install: validate, then "
                        "register the three files with model cards")
    p.add_argument("--output", help="file to write (.pt weights or .npz pairs); checkpoint <output>.ckpt")
    add_budget_arguments(p, "default: 20 mcsr, 10 vqvae, 10 ldm",
                         "continue from <output>.ckpt (pairs: <output>.part.npz)")
    p.add_argument("--per-subject", type=int, default=10, help="pairs: augmented samples per subject")
    p.add_argument("--pairs", help="vqvae/ldm: the SDG pairs file(s) made by the 'pairs' stage (comma-separated)")
    p.add_argument("--source", choices=PAIR_SOURCES, default="ct",
                   help="pairs: 'ct' (CT training subjects' meshes) or 'acdc' (pseudo-HR shapes of the ACDC "
                        "training patients, MRI-shaped)")
    p.add_argument("--mcsr", help="pairs/validate/install: MCSR-Net weights")
    p.add_argument("--vqvae", help="ldm/validate/install: VQ-VAE weights")
    p.add_argument("--ldm", help="validate/install: latent denoiser weights")
    p.add_argument("--init", metavar="WEIGHTS", help="ldm: start from these denoiser weights (a file, or a name in "
                   "the weights manifest such as m2s_ldm): fine-tuning with a fresh optimiser")
    p.add_argument("--lr", type=float, help=f"vqvae/ldm: initial Adam learning rate (cosine decay; default "
                   f"{SDGTrainConfig.lr:g})")
    p.add_argument("--bend-mm", type=float, default=0.0,
                   help="ldm: amplitude (mm) of the smooth long-axis bend shared by condition and target "
                        "(augmentation; 0: off)")
    add_selection_argument(p)


def main(args) -> int:
    args.device = resolve_device(args.device)  # a CUDA request without CUDA fails here, before any data is read
    subjects = tuple(s.strip() for s in args.subjects.split(",")) if args.subjects else None
    if args.stage in ("validate", "install"):
        from ..methods.mask2surface import LDM_WEIGHTS, MCSR_WEIGHTS, VQVAE_WEIGHTS, using_weights

        if args.stage == "install" and not (args.mcsr and args.vqvae and args.ldm):
            raise InputError("install needs --mcsr, --vqvae and --ldm weights files.")
        with using_weights(mcsr=args.mcsr, vqvae=args.vqvae, ldm=args.ldm):
            metrics = validate(args.data, device=args.device)
        print(json.dumps(metrics, indent=2))
        if args.stage == "install":
            note = f"SDG pairs: {args.per_subject} per training subject" if args.per_subject else ""
            for kind, name in (("mcsr", MCSR_WEIGHTS), ("vqvae", VQVAE_WEIGHTS), ("ldm", LDM_WEIGHTS)):
                path = getattr(args, kind)
                entry = weights.register(name, path, model_card(kind, path, metrics, note, args.selection))
                print(f"installed {name}: {entry}")
        return 0
    if not args.output:
        raise InputError(f"train mask2surface {args.stage} needs --output FILE.")
    output = Path(args.output)
    if args.stage == "mcsr":
        cfg = MCSRTrainConfig(**budget_from_arguments(args), data_root=args.data, subjects=subjects)
        train_mcsr(cfg, output, args.resume)
    elif args.stage == "pairs":
        if not args.mcsr:
            raise InputError("train mask2surface pairs needs --mcsr MCSR.pt (a trained MCSR-Net).")
        if not args.resume:
            output.with_suffix(".part.npz").unlink(missing_ok=True)
        make_pairs(output, args.mcsr, args.per_subject, subjects, args.data, args.seed, args.threads, args.source,
                   args.device)
    else:
        if not args.pairs:
            raise InputError(f"train mask2surface {args.stage} needs --pairs PAIRS.npz.")
        if args.stage == "vqvae" and (args.init or args.bend_mm):
            raise InputError("--init and --bend-mm are options of the ldm stage.")
        cfg = SDGTrainConfig(**budget_from_arguments(args), pairs=args.pairs, batch=2 if args.stage == "vqvae" else 8,
                             bend_mm=args.bend_mm, **({"lr": args.lr} if args.lr else {}))
        if args.stage == "vqvae":
            train_vqvae(cfg, output, args.resume)
        else:
            if not args.vqvae:
                raise InputError("train mask2surface ldm needs --vqvae VQVAE.pt.")
            train_ldm(cfg, args.vqvae, output, args.resume, init=args.init)
    return 0
