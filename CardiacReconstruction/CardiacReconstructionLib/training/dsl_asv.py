"""Training of the DeepWHR networks: ``cardiac-recon train dsl_asv {dsl,asv,finetune}``.

* ``dsl``: "CT pre-training" of the DSL autoencoder on the whole-heart CT cohort's training split
  (15 real hearts; the validation subjects and the PCA shapes, which saw them, are left out).
  Each heart is resliced into its SAX frame with random augmentation (:func:`.cohort.load_subject`:
  scale, long-axis scale, tilt and spin of the cutting planes, elastic field), biventricular
  (valve-cut) or whole heart (uncut, a longer k extent). A small pool of augmented hearts is kept
  in memory and refreshed one heart at a time; every training pair is a fresh
  :func:`.degrade.degrade` of a pool heart with random motion (none, SRHeart-normal to 4x severe
  magnitudes, STACOM-like per-axis shifts with plane tilt and end-slice dropout), in-plane slice
  rotations, label noise and a random slice spacing, cropped to the slices around the heart, and
  canonicalised exactly as at inference (:func:`..anatomy.canonical.canonical_geometry`). Input:
  the degraded stack; target: the motion-free stack (``Degraded.lr_truth``) on the same grid.
* ``asv``: ASV on motion-free (or slightly shifted) LR stacks of the same hearts resliced at 1 mm
  through-plane, with random LR spacing (6-12 mm) and factor (x1.5-x6, non-integer), random
  in-plane crops; target: the HR labels at the target slice positions.
* ``finetune``: "MRI fine-tuning" of the DSL encoder (decoder frozen) on a folder of corrected
  label stacks, with inputs made by shifting their slices at random (or, when given, the
  matching uncorrected stacks).

Every command is resumable: a checkpoint (weights, optimiser, step, elapsed time) is written
atomically every few minutes and ``--resume`` continues from it; the time budget (``--minutes``)
counts the time already spent. All randomness is seeded.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.errors import InputError
from ..networks.checkpoint import load_network, save_network, save_torch

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass
class BudgetConfig:
    """What every time-budgeted, resumable trainer (:func:`_train_loop`) is given; each trainer's
    config extends it (overriding a default where its network needs another). The command-line
    twin is :func:`add_budget_arguments` / :func:`budget_from_arguments`."""
    seed: int = 0
    minutes: float = 10.0
    max_steps: int = 100000
    lr: float = 1e-3
    checkpoint_minutes: float = 3.0
    threads: int = 1


@dataclass
class DSLTrainConfig(BudgetConfig):
    minutes: float = 20.0
    accumulate: int = 4  # samples per optimiser step (stacks differ in slice count)
    pool_biventricular: int = 30  # augmented hearts kept in memory
    pool_wholeheart: int = 15
    refresh_every: int = 8  # steps between replacing one pool heart by a new augmentation
    hr_inplane_mm: Tuple[float, float] = (1.25, 2.0)
    slice_spacing_mm: Tuple[float, float] = (7.0, 11.5)
    inplane_size: int = 64
    channels: Tuple[int, int, int] = (16, 32, 64)
    data_root: Optional[str] = None
    subjects: Optional[Tuple[str, ...]] = None  # default: the cohort's training split


@dataclass
class ASVTrainConfig(BudgetConfig):
    minutes: float = 12.0
    batch: int = 2
    crop: int = 32
    pool_biventricular: int = 20
    pool_wholeheart: int = 10
    refresh_every: int = 10
    slice_spacing_mm: Tuple[float, float] = (6.0, 12.0)
    factor: Tuple[float, float] = (1.5, 6.0)
    residual_shift_mm: float = 1.0  # mean residual misalignment of the LR input
    dice_weight: float = 1.0
    data_root: Optional[str] = None
    subjects: Optional[Tuple[str, ...]] = None


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

#: HR grids (k, j, i) per mode along a 2 mm (DSL) k axis; the whole heart reaches ~70 mm above
#: the mitral valve, beyond the 128 mm slab that suits the ventricles.
_K_EXTENT_MM = {"biventricular": 128.0, "wholeheart": 240.0}
_INPLANE_EXTENT_MM = 160.0


def _cohort_paths(root, subjects) -> Tuple[Path, ...]:
    from .cohort import split, subject_path

    if subjects:
        return tuple(subject_path(s, root) for s in subjects)
    return split(root, "train", include_pca=False)


def _load_hr(path, mode: str, inplane_mm: float, k_mm: float, rng: np.random.Generator):
    from .cohort import load_subject

    n_i = int(round(_INPLANE_EXTENT_MM / inplane_mm))
    n_k = int(round(_K_EXTENT_MM[mode] / k_mm))
    return load_subject(path, grid_shape=(n_k, n_i, n_i), spacing=(inplane_mm, inplane_mm, k_mm), mode=mode,
                        augment=rng)


class HeartPool:
    """Augmented HR hearts kept in memory, one replaced by a fresh augmentation on request."""

    def __init__(self, paths, n_biv: int, n_wh: int, inplane_mm, k_mm: float, rng: np.random.Generator,
                 log=print):
        self.paths, self.inplane_mm, self.k_mm, self.rng = paths, inplane_mm, k_mm, rng
        self.modes = ["biventricular"] * n_biv + ["wholeheart"] * n_wh
        t0 = time.perf_counter()
        self.hearts = [self._new(m) for m in self.modes]
        log(f"pool of {len(self.hearts)} augmented hearts in {time.perf_counter() - t0:.0f} s")

    def _new(self, mode: str):
        path = self.paths[int(self.rng.integers(len(self.paths)))]
        lo, hi = self.inplane_mm if isinstance(self.inplane_mm, tuple) else (self.inplane_mm, self.inplane_mm)
        return _load_hr(path, mode, float(self.rng.uniform(lo, hi)), self.k_mm, self.rng)

    def refresh(self) -> None:
        i = int(self.rng.integers(len(self.hearts)))
        self.hearts[i] = self._new(self.modes[i])

    def pick(self):
        return self.hearts[int(self.rng.integers(len(self.hearts)))]


def random_motion(rng: np.random.Generator) -> Tuple[str, Dict]:
    """A degradation preset and overrides spanning no motion to beyond SRHeart's 'severe'."""
    u = rng.random()
    extra = dict(rotation_deg_sd=float(rng.uniform(0, 4)),
                 label_noise=float(rng.uniform(0, 0.2)) if rng.random() < 0.5 else 0.0)
    if u < 0.12:
        return "none", extra
    if u < 0.7:
        mean = float(rng.uniform(1.0, 12.0))
        return "normal", dict(extra, displacement_mean_mm=mean, displacement_sd_mm=0.38 * mean)
    return "stacom", dict(extra, displacement_sd_mm=float(rng.uniform(1.0, 6.0)),
                          tilt_deg_range=(0.0, float(rng.uniform(0.0, 10.0))),
                          basal_dropout_probability=0.3, apical_dropout_probability=0.3)


def crop_to_heart(deg, rng: np.random.Generator, margin_max: int = 1):
    """Keep the slices around the heart (0..margin_max empty slices beyond each end), as clinical
    stacks start near the base and end near the apex; returns (sax, lr_truth) Volumes and the
    kept slice range of ``deg``'s stack."""
    from ..core.geometry import Volume

    have = np.flatnonzero(deg.sax.array.any(axis=(1, 2)) | deg.lr_truth.array.any(axis=(1, 2)))
    n = deg.sax.shape[0]
    lo = max(0, int(have[0]) - int(rng.integers(0, margin_max + 1)))
    hi = min(n, int(have[-1]) + 1 + int(rng.integers(0, margin_max + 1)))
    if hi - lo < 2:
        lo, hi = max(0, min(lo, n - 2)), min(n, max(hi, lo + 2))
    g = deg.sax.geometry
    sub = g.with_slices(hi - lo, float(g.spacing[2]), lo * float(g.spacing[2]))
    return Volume.on(sub, deg.sax.array[lo:hi]), Volume.on(sub, deg.lr_truth.array[lo:hi]), slice(lo, hi)


def dsl_pair(pool: HeartPool, cfg: DSLTrainConfig, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """One (degraded, clean) canonical LR pair, uint8 [k, j, i] each."""
    from ..simulation.degrade import degrade
    from ..anatomy.canonical import canonical_geometry, to_canonical_labels

    hr = pool.pick()
    preset, overrides = random_motion(rng)
    spacing = float(rng.uniform(*cfg.slice_spacing_mm))
    deg = degrade(hr, preset, slice_spacing=spacing, seed=int(rng.integers(2 ** 31)), **overrides)
    sax, clean, _ = crop_to_heart(deg, rng)
    if not sax.array.any():
        return dsl_pair(pool, cfg, rng)
    grid = canonical_geometry(sax, cfg.inplane_size)
    return to_canonical_labels(sax, grid), to_canonical_labels(clean, grid)


def asv_sample(pool: HeartPool, cfg: ASVTrainConfig, rng: np.random.Generator):
    """(LR labels [k, j, i], target positions z, cell size, HR target labels [z, j, i]), cropped
    in-plane to ``cfg.crop`` around a random point of the heart."""
    from ..simulation.degrade import degrade
    from ..core.geometry import resample
    from ..methods import output_geometry

    hr = pool.pick()
    s_lr = float(rng.uniform(*cfg.slice_spacing_mm))
    factor = float(min(rng.uniform(*cfg.factor), s_lr / float(hr.spacing[2])))
    mean = float(rng.uniform(0, 2 * cfg.residual_shift_mm))
    deg = degrade(hr, "normal", slice_spacing=s_lr, seed=int(rng.integers(2 ** 31)), displacement_mean_mm=mean,
                  displacement_sd_mm=0.38 * mean, label_noise=float(rng.uniform(0, 0.1)))
    sax, _, _ = crop_to_heart(deg, rng)
    out = output_geometry(sax.geometry, slice_spacing=s_lr / factor)
    target = resample(hr, out, "nearest").array
    s_eff = float(out.spacing[2])
    z = (np.arange(out.n_slices) + 0.5) * s_eff / s_lr - 0.5  # LR slice units, 0 = first LR centre
    fg = np.argwhere(sax.array.any(axis=0))
    cj, ci = fg[int(rng.integers(len(fg)))]
    n = sax.shape[1]
    c = cfg.crop
    j0 = int(np.clip(cj - c // 2 + rng.integers(-4, 5), 0, n - c))
    i0 = int(np.clip(ci - c // 2 + rng.integers(-4, 5), 0, sax.shape[2] - c))
    return (sax.array[:, j0:j0 + c, i0:i0 + c], z.astype(np.float32), s_eff / s_lr,
            target[:, j0:j0 + c, i0:i0 + c])


# ---------------------------------------------------------------------------------------------
# Losses, checkpoints, weights files
# ---------------------------------------------------------------------------------------------

def dsl_loss(logits, target, n_classes: int):
    """Cross-entropy + (1 - soft multi-class Dice over the classes present)."""
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target.long())
    prob = F.softmax(logits, dim=1)
    onehot = F.one_hot(target.long(), n_classes).permute(0, 4, 1, 2, 3).to(prob.dtype)
    dims = (0, 2, 3, 4)
    inter, denom = (prob * onehot).sum(dims), prob.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    dice = (2 * inter + 1e-3) / (denom + 1e-3)
    return ce + (1 - dice[present].mean())


def _checkpoint_path(output: Path) -> Path:
    return Path(output).with_suffix(".ckpt")


class _Clock:
    """Training time budget that survives resumes (elapsed time is stored in checkpoints)."""

    def __init__(self, minutes: float, already_s: float = 0.0):
        self.budget_s, self.already_s, self.t0 = 60 * minutes, already_s, time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return self.already_s + time.perf_counter() - self.t0

    def done(self) -> bool:
        return self.elapsed_s >= self.budget_s


def _lr_at(base: float, fraction: float) -> float:
    """Cosine decay to 5 % of the base rate over the time budget (time-based, so a resumed or
    slower run follows the same schedule per minute)."""
    fraction = min(max(fraction, 0.0), 1.0)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * fraction)))


# ---------------------------------------------------------------------------------------------
# Training loops
# ---------------------------------------------------------------------------------------------

def _onehot_t(labels: np.ndarray, n: int):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(labels)).long()
    return torch.nn.functional.one_hot(t, n).permute(3, 0, 1, 2).float()[None]


def _resume(model, opt, ckpt: Path, resume: bool, kind: str, log):
    """(step, elapsed seconds, history) of a checkpoint to resume from, or a fresh start."""
    import torch

    if not (resume and ckpt.is_file()):
        return 0, 0.0, []
    state = torch.load(str(ckpt), map_location="cpu", weights_only=False)  # our own checkpoint
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    log(f"resumed {kind.upper()} at step {state['step']} ({state['elapsed_s'] / 60:.1f} min done)")
    return state["step"], state["elapsed_s"], state["history"]


def _train_loop(kind: str, model, opt, cfg, pool, micro_batches: int, sample_loss, output: Path, ckpt: Path,
                step: int, already: float, history: list, log) -> Path:
    """The loop DSL and ASV share: time-budgeted steps of ``micro_batches`` accumulated samples
    (``sample_loss()`` draws one and returns its loss), cosine learning rate over the budget,
    pool refreshes, periodic logs and atomic checkpoints; then the weights with their metadata."""
    import torch

    clock = _Clock(cfg.minutes, already)
    last_ckpt = time.perf_counter()

    def checkpoint():
        save_torch({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                      "elapsed_s": clock.elapsed_s, "history": history, "config": asdict(cfg)}, ckpt)

    running = []
    model.train()
    while not clock.done() and step < cfg.max_steps:
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg.lr, clock.elapsed_s / clock.budget_s)
        opt.zero_grad()
        total = 0.0
        for _ in range(micro_batches):
            loss = sample_loss() / micro_batches
            loss.backward()
            total += float(loss.detach())
        opt.step()
        step += 1
        running.append(total)
        if step % cfg.refresh_every == 0:
            pool.refresh()
        if step % 20 == 0:
            history.append((step, clock.elapsed_s, float(np.mean(running))))
            log(f"{kind} step {step} {clock.elapsed_s / 60:.1f} min loss {np.mean(running):.4f}")
            running = []
        if time.perf_counter() - last_ckpt > 60 * cfg.checkpoint_minutes:
            checkpoint()
            last_ckpt = time.perf_counter()
    checkpoint()
    meta = {"train_config": _plain(asdict(cfg)), "steps": step, "samples": step * micro_batches,
            "train_minutes": clock.elapsed_s / 60, "device": f"cpu ({cfg.threads} thread)",
            "history": history[-10:], "torch": str(torch.__version__)}
    save_network(model, output, kind, meta)
    log(f"{kind.upper()} trained: {step} steps in {clock.elapsed_s / 60:.1f} min -> {output}")
    return Path(output)


def train_dsl(cfg: DSLTrainConfig, output: Path, resume: bool = False, log=print) -> Path:
    """Train DSL (see the module docstring); writes ``output`` (weights) and its checkpoint."""
    import torch

    from ..networks.dsl import DSLConfig, DSLNet

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = DSLNet(DSLConfig(channels=tuple(cfg.channels), inplane_size=cfg.inplane_size))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ckpt = _checkpoint_path(output)
    step, already, history = _resume(model, opt, ckpt, resume, "dsl", log)
    rng = np.random.default_rng([cfg.seed, step])
    pool = HeartPool(_cohort_paths(cfg.data_root, cfg.subjects), cfg.pool_biventricular, cfg.pool_wholeheart,
                     tuple(cfg.hr_inplane_mm), 2.0, rng, log)
    n = model.config.n_classes

    def sample_loss():
        x, y = dsl_pair(pool, cfg, rng)
        return dsl_loss(model(_onehot_t(x, n)), torch.from_numpy(y)[None], n)

    return _train_loop("dsl", model, opt, cfg, pool, cfg.accumulate, sample_loss, output, ckpt, step, already,
                       history, log)


def train_asv(cfg: ASVTrainConfig, output: Path, resume: bool = False, log=print) -> Path:
    """Train ASV (see the module docstring)."""
    import torch

    from ..networks.asv import ASVConfig, ASVNet, asv_loss

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = ASVNet(ASVConfig(factor_range=tuple(cfg.factor)))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ckpt = _checkpoint_path(output)
    step, already, history = _resume(model, opt, ckpt, resume, "asv", log)
    rng = np.random.default_rng([cfg.seed, step, 1])
    pool = HeartPool(_cohort_paths(cfg.data_root, cfg.subjects), cfg.pool_biventricular, cfg.pool_wholeheart,
                     2.5, 1.0, rng, log)
    n = model.config.n_classes

    def sample_loss():
        lr_labels, z, cell, target = asv_sample(pool, cfg, rng)
        logits = model(_onehot_t(lr_labels, n), torch.from_numpy(z), cell)
        return asv_loss(logits, torch.from_numpy(target)[None], n, cfg.dice_weight)

    return _train_loop("asv", model, opt, cfg, pool, cfg.batch, sample_loss, output, ckpt, step, already,
                       history, log)


# ---------------------------------------------------------------------------------------------
# Validation on the held-out CT hearts (the numbers of the model cards)
# ---------------------------------------------------------------------------------------------

def validate(dsl_weights=None, asv_weights=None, root=None, seeds=(0, 1, 2), log=print) -> Dict[str, float]:
    """Metrics of the networks on the cohort's validation hearts (never trained on), 10 mm stacks:

    * DSL: mean per-slice displacement error (mean removed, mm) under the ``normal`` and
      ``severe`` presets, against estimating no motion;
    * ASV: mean Dice (LV, MYO, RV) of super-resolution without motion (``correction='none'``)
      to 2 mm (x5) and 3 mm (x3.33, non-integer), against linear interpolation of the labels.
    """
    from ..methods import dsl_asv as pipe

    with pipe.using_weights(dsl_weights, asv_weights):
        return _validate(root, seeds, log)


def _validate(root, seeds, log) -> Dict[str, float]:
    from ..evaluation.bench import cohort_anatomies
    from ..simulation.cases import make_case
    from ..methods import run
    from ..evaluation.metrics import dice, displacement_error

    out: Dict[str, List[float]] = {}
    for anatomy in cohort_anatomies(root):
        for preset in ("normal", "severe"):
            for seed in seeds:
                case = make_case(anatomy.truth, preset, seed=seed, slice_spacing=10.0)
                res = run("dsl_asv", case, slice_spacing=2.0)
                err = displacement_error(res.displacements, case.true_displacements, remove_mean=True)["mean_mm"]
                zero = displacement_error(np.zeros_like(case.true_displacements), case.true_displacements,
                                          remove_mean=True)["mean_mm"]
                out.setdefault(f"dsl_displacement_error_{preset}_mm", []).append(err)
                out.setdefault(f"no_correction_displacement_error_{preset}_mm", []).append(zero)
                dice_mean = float(np.mean(list(dice(res.labels, case.truth).values())))
                out.setdefault(f"dice_mean_{preset}", []).append(dice_mean)
        case = make_case(anatomy.truth, "none", seed=0, slice_spacing=10.0)
        for spacing in (2.0, 3.0):
            tag = f"x{10.0 / spacing:.3g}"
            res = run("dsl_asv", case, slice_spacing=spacing, correction="none")
            lin = run("linear", case, slice_spacing=spacing)
            truth = case.truth
            out.setdefault(f"asv_dice_{tag}", []).append(float(np.mean(list(dice(res.labels, truth).values()))))
            out.setdefault(f"linear_dice_{tag}", []).append(float(np.mean(list(dice(lin.labels, truth).values()))))
        log(f"validated {anatomy.name}")
    return {k: float(np.mean(v)) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# Model cards and installation into Resources/Weights
# ---------------------------------------------------------------------------------------------

CITATIONS = """* Method: Dong J., Ke W., Ding W., Huang L., Yang M. "Cross-Modality Whole-Heart MRI Reconstruction
  with Deep Motion Correction and Super-Resolution" (DeepWHR). Re-implemented from the paper; no
  code of the authors was used (none is public).
* Training data: the whole-heart CT cohort of Rodero C. et al., "Linking statistical shape models and
  simulated function in the healthy adult human heart", PLOS Computational Biology 17(4):e1008851
  (2021): the 15 training subjects (subject_00-subject_14) only; the 4 validation subjects and the
  PCA shapes (drawn from a model that saw them) were not used. The data are not shipped."""

_CARD_TEXT = {
    "dsl": ("DSL: latent-volume-map motion-correction autoencoder",
            "A 3D convolutional autoencoder on one-hot label stacks (8 classes: background + LV, MYO, RV, LA, "
            "RA, aorta, pulmonary artery) on the canonical LR grid of the `dsl_asv` pipeline (64 x 64 voxels of "
            "2.5 mm in-plane = 160 mm, one row per input slice, +i from LV to RV, +k base to apex). Max "
            "pooling with kernel and stride (1, 2, 2) twice, a 64-channel latent volume map with residual "
            "3x3x3 blocks dilated along the slice axis, a mirrored decoder with (1, 2, 2) upsampling. "
            "Trained to map degraded stacks to the motion-free stack on the same grid (cross-entropy + soft "
            "Dice). The pipeline derives per-slice displacements from its correction.",
            "cardiac-recon train dsl_asv dsl --output dsl.pt --minutes {minutes:.0f} --threads {threads}"),
    "asv": ("ASV: arbitrary-scale through-plane super-resolution (implicit neural representation)",
            "Coarse LR features sampled at the two LR slices around each target slice + the local coordinate "
            "and the cell size (target / LR spacing) -> coordinate-conditioned MLP -> continuous features, fused "
            "with the linearly interpolated LR probabilities by a shallow encoder-decoder at the target "
            "resolution (in-plane grid kept). Loss: L2 to one-hot + multi-class soft Dice. One model for every "
            "output spacing: trained over factors x{f0:g} to x{f1:g} (non-integer) and LR spacings 6-12 mm.",
            "cardiac-recon train dsl_asv asv --output asv.pt --minutes {minutes:.0f} --threads {threads}"),
}


def _default_iterations() -> int:
    from ..methods.dsl_asv import DEFAULT_ITERATIONS

    return DEFAULT_ITERATIONS


def model_card(kind: str, weights_path, metrics: Dict[str, float]) -> str:
    """Markdown model card of a trained weights file (data and citation, configuration, training
    time and device, validation metrics, SHA-256)."""
    import torch

    from ..networks.weights import sha256

    obj = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    meta, cfg = obj.get("meta", {}), obj["config"]
    train = meta.get("train_config", {})
    title, what, command = _CARD_TEXT[kind]
    factor = cfg.get("factor_range", (1.5, 6.0))
    n_params = sum(int(np.prod(v.shape)) for v in obj["state_dict"].values())
    lines = [f"# {title}", "", what.format(f0=factor[0], f1=factor[1]), "",
             "## Data and citation", "", CITATIONS, "",
             "## Training", "",
             f"* Command: `{command.format(minutes=train.get('minutes', 0), threads=train.get('threads', 1))}`",
             f"* Device: {meta.get('device', 'cpu')}, torch {meta.get('torch', '?')}; "
             f"{meta.get('train_minutes', 0):.1f} min, {meta.get('steps', 0)} optimiser steps, "
             f"{meta.get('samples', 0)} training samples (each a freshly degraded, augmented heart; "
             "the compute budget of a 2-core CPU shared with other jobs, far below the paper's 1000 GPU epochs).",
             f"* Network configuration: `{json.dumps(cfg)}` ({n_params} parameters).",
             f"* Training configuration: `{json.dumps(train)}`.", "",
             "## Validation (4 held-out CT hearts, 10 mm stacks, 3 motion seeds)", "",
             "Measured through the `dsl_asv` pipeline with its defaults (correction 'shift', "
             f"{_default_iterations()} DSL passes) "
             "by `cardiac-recon train dsl_asv validate`, on subject_15-subject_18 resliced on the benchmark "
             "grid (128 x 128 x 64 at 1.25 x 1.25 x 2 mm, valve-cut), reconstructed at 2 mm. Displacement "
             "errors: mean per-slice Euclidean error (mm) after removing each set's mean, over all slices "
             "(slices without anatomy count with an estimate of zero). Dice: mean over LV, MYO, RV. "
             "ASV rows: no motion, no correction, super-resolution to 2 mm (x5) and 3 mm (x3.33) against "
             "linear interpolation of the one-hot labels.", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in metrics.items()
              if (kind == "dsl") != k.startswith(("asv_", "linear_"))]
    lines += ["", "## Limits", "",
              "* Trained on end-diastolic CT anatomy of 15 healthy adults (with scale, tilt, spin and elastic "
              "augmentation): hearts far outside that range (congenital disease, severe dilation) are "
              "extrapolation. No MRI fine-tuning: no corrected MRI ships with the project "
              "(`cardiac-recon train dsl_asv finetune` adapts the encoder to a folder of corrected stacks).",
              "* The common shift of all slices cannot be seen in a SAX stack: displacements are centred "
              "on their mean.", "",
              f"SHA-256 of the weights file: `{sha256(weights_path)}`", ""]
    return "\n".join(lines)


def install_weights(dsl_path, asv_path, metrics: Dict[str, float], directory=None, log=print) -> None:
    """Register both weights files with their model cards in the weights folder (manifest)."""
    from ..networks import weights

    for name, path in (("dsl", dsl_path), ("asv", asv_path)):
        entry = weights.register(name, path, model_card(name, path, metrics), directory)
        log(f"installed {name}: {entry}")


# ---------------------------------------------------------------------------------------------
# MRI fine-tuning (encoder only, decoder frozen)
# ---------------------------------------------------------------------------------------------

SEGMENTATION_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")


def _segmentation_files(folder) -> List[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"Fine-tuning folder not found: {folder}.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(SEGMENTATION_SUFFIXES))
    if not files:
        raise InputError(f"No label stacks ({', '.join(SEGMENTATION_SUFFIXES)}) in {folder}.")
    return files


def finetune_pairs(corrected: Sequence, uncorrected: Optional[Sequence], rng: np.random.Generator,
                   inplane_size: int, spacing_mm: float):
    """One canonical (input, target) pair: a corrected stack and either its uncorrected twin or
    a copy with random per-slice shifts (SRHeart-normal to severe magnitudes) as input."""
    from ..anatomy.canonical import canonical_geometry, to_canonical_labels
    from ..core.stack import shift_slices

    i = int(rng.integers(len(corrected)))
    target = corrected[i]
    if uncorrected is not None:
        source = uncorrected[i]
    else:
        n = target.shape[0]
        magnitude = np.maximum(rng.normal(1.0, 0.38, n), 0) * float(rng.uniform(1.0, 9.2))
        angle = rng.uniform(0, 2 * np.pi, n)
        shifts = magnitude[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
        source = shift_slices(target, shifts, order=0)
    grid = canonical_geometry(source, inplane_size, spacing_mm)
    return to_canonical_labels(source, grid), to_canonical_labels(target, grid)


def finetune_dsl(corrected_dir, output, weights=None, uncorrected=None, minutes: float = 5.0,
                 max_steps: int = 100000, seed: int = 0, threads: int = 1, convention: str = "auto",
                 resume: bool = False, lr: float = 1e-4, accumulate: int = 2, log=print) -> Path:
    """MRI fine-tuning (DeepWHR sec. 3.1.3): update the DSL encoder on corrected label stacks
    with the decoder frozen, so the CT-learned shape manifold of the decoder is kept."""
    import torch

    from ..core.io import read_segmentation

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    files = _segmentation_files(corrected_dir)
    targets = [read_segmentation(f, convention)[0] for f in files]
    sources = None
    if uncorrected is not None:
        sources = []
        for f, t in zip(files, targets):
            twin = Path(uncorrected) / f.name
            if not twin.is_file():
                raise InputError(f"No uncorrected stack {twin} for the corrected stack {f.name}.")
            s = read_segmentation(twin, convention)[0]
            if s.shape != t.shape or not np.allclose(s.ijk_to_ras, t.ijk_to_ras, atol=1e-3):
                raise InputError(f"The uncorrected stack {twin.name} is not on the grid of its corrected twin.")
            sources.append(s)
    if weights is None:
        from ..networks import weights as shipped

        start = shipped.load_state_dict("dsl", map_location="cpu")
    else:
        start = torch.load(str(weights), map_location="cpu", weights_only=True)
    model = load_network(start, "dsl")
    model.freeze_decoder()
    opt = torch.optim.Adam([p for p in model.encoder_parameters() if p.requires_grad], lr=lr)
    decoder_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    step, already = 0, 0.0
    ckpt = _checkpoint_path(output)
    if resume and ckpt.is_file():
        state = torch.load(str(ckpt), map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, already = state["step"], state["elapsed_s"]
        log(f"resumed fine-tuning at step {step}")
    rng = np.random.default_rng([seed, step, 2])
    clock = _Clock(minutes, already)
    n = model.config.n_classes
    model.train()
    losses = []
    while not clock.done() and step < max_steps:
        opt.zero_grad()
        total = 0.0
        for _ in range(accumulate):
            x, y = finetune_pairs(targets, sources, rng, model.config.inplane_size, model.config.inplane_spacing_mm)
            loss = dsl_loss(model(_onehot_t(x, n)), torch.from_numpy(y)[None], n) / accumulate
            loss.backward()
            total += float(loss.detach())
        opt.step()
        step += 1
        losses.append(total)
    save_torch({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                  "elapsed_s": clock.elapsed_s, "history": [], "config": {}}, ckpt)
    unchanged = all(torch.equal(v, model.decoder.state_dict()[k]) for k, v in decoder_before.items())
    meta = dict(start.get("meta", {}))
    meta.update(finetuned={"stacks": [f.name for f in files], "paired": sources is not None, "steps": step,
                           "minutes": clock.elapsed_s / 60, "lr": lr, "decoder_frozen": unchanged,
                           "final_loss": float(np.mean(losses[-10:])) if losses else None})
    save_network(model.eval(), output, "dsl", meta)
    log(f"DSL encoder fine-tuned on {len(files)} stacks: {step} steps -> {output}")
    return Path(output)


def _plain(d):
    return json.loads(json.dumps(d, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def budget_from_arguments(args) -> Dict[str, object]:
    """:class:`BudgetConfig` fields from :func:`add_budget_arguments`' options (no ``--minutes``:
    the trainer config's own default)."""
    out = dict(seed=args.seed, max_steps=args.max_steps, threads=args.threads)
    if args.minutes:
        out["minutes"] = args.minutes
    return out


def add_budget_arguments(p: argparse.ArgumentParser, minutes_default: str, resume_help: str) -> None:
    """The options every time-budgeted, resumable trainer (:func:`_train_loop`) shares."""
    p.add_argument("--minutes", type=float, help=f"training time budget ({minutes_default})")
    p.add_argument("--max-steps", type=int, default=100000, help="stop after this many optimiser steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--data", help="shared data folder holding wholeheart_ct/ (default: $CARDIAC_RECON_DATA)")
    p.add_argument("--subjects", help="comma-separated CT subjects (mask2surface pairs --source acdc: ACDC keys; "
                   "default: the training split)")
    p.add_argument("--resume", action="store_true", help=resume_help)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stage", choices=("dsl", "asv", "finetune", "validate", "install"),
                   help="dsl: CT pre-training of the motion-correction autoencoder; asv: the super-resolution "
                        "network; finetune: MRI fine-tuning of the DSL encoder on corrected label stacks; "
                        "validate: metrics on the held-out CT hearts (--weights DSL --asv-weights ASV); install: "
                        "validate, then register both files with model cards in the weights folder")
    p.add_argument("--output", help="weights file to write (.pt); its checkpoint is <output>.ckpt")
    p.add_argument("--asv-weights", help="validate: the ASV weights (default: the shipped asv.pt)")
    add_budget_arguments(p, "default: 20 dsl, 12 asv, 5 finetune", "continue from <output>.ckpt")
    p.add_argument("--small", action="store_true", help="tiny pools and grid (smoke tests)")
    p.add_argument("--weights", help="finetune: the DSL weights to start from (default: the shipped dsl.pt)")
    p.add_argument("--corrected", help="finetune: folder of corrected SAX label stacks")
    p.add_argument("--uncorrected", help="finetune: optional folder of the matching uncorrected stacks "
                                         "(same file names); default: random slice shifts of the corrected ones")
    p.add_argument("--convention", default="auto", help="finetune: label convention of the stacks")


def main(args) -> int:
    subjects = tuple(s.strip() for s in args.subjects.split(",")) if args.subjects else None
    if args.stage in ("validate", "install"):
        metrics = validate(args.weights, args.asv_weights, args.data)
        print(json.dumps(metrics, indent=2))
        if args.stage == "install":
            if not (args.weights and args.asv_weights):
                raise InputError("install needs --weights DSL.pt and --asv-weights ASV.pt.")
            install_weights(args.weights, args.asv_weights, metrics)
        return 0
    if not args.output:
        raise InputError(f"train dsl_asv {args.stage} needs --output FILE.pt.")
    output = Path(args.output)
    if args.stage == "dsl":
        cfg = DSLTrainConfig(**budget_from_arguments(args), data_root=args.data, subjects=subjects)
        if args.small:
            cfg = DSLTrainConfig(**{**asdict(cfg), "pool_biventricular": 1, "pool_wholeheart": 1, "accumulate": 1,
                                    "inplane_size": 32, "channels": (8, 8, 16), "hr_inplane_mm": (2.5, 2.5)})
        train_dsl(cfg, output, args.resume)
    elif args.stage == "asv":
        cfg = ASVTrainConfig(**budget_from_arguments(args), data_root=args.data, subjects=subjects)
        if args.small:
            cfg = ASVTrainConfig(**{**asdict(cfg), "pool_biventricular": 1, "pool_wholeheart": 1, "batch": 1,
                                    "crop": 16})
        train_asv(cfg, output, args.resume)
    else:
        if not args.corrected:
            raise InputError("finetune needs --corrected FOLDER with corrected SAX label stacks.")
        finetune_dsl(args.corrected, output, weights=args.weights, uncorrected=args.uncorrected,
                     minutes=args.minutes or 5.0, max_steps=args.max_steps, seed=args.seed, threads=args.threads,
                     convention=args.convention, resume=args.resume)
    return 0


if __name__ == "__main__":
    import sys

    parser = argparse.ArgumentParser(prog="python -m CardiacReconstructionLib.training.dsl_asv")
    add_arguments(parser)
    try:
        sys.exit(main(parser.parse_args()))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
