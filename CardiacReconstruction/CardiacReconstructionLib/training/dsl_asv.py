"""Training of the DeepWHR networks: ``cardiac-recon train dsl_asv {dsl,asv,finetune}``.

* ``dsl``: "CT pre-training" of the DSL autoencoder on the whole-heart CT cohort's training split
  (15 real hearts; the validation subjects and the PCA shapes, which saw them, are left out),
  biventricular (valve-cut) or whole heart (uncut, a longer k extent). Every training pair is a
  fresh degradation of an augmented heart of the :mod:`.pool` (its motion mix, in-plane slice
  rotations, label noise, a random slice spacing, cut to the slices around the heart),
  canonicalised exactly as at inference (:func:`..anatomy.canonical.canonical_geometry`). Input:
  the degraded stack; target: the motion-free stack (``Degraded.lr_truth``) on the same grid.
* ``asv``: ASV on motion-free (or slightly shifted) LR stacks of the same hearts resliced at 1 mm
  through-plane, with random LR spacing (6-12 mm) and factor (x1.5-x6, non-integer), random
  in-plane crops; target: the HR labels at the target slice positions.
* ``finetune``: "MRI fine-tuning" of the DSL encoder (decoder frozen) on a folder of corrected
  label stacks, with inputs made by shifting their slices at random (or, when given, the
  matching uncorrected stacks).

Every command runs the one loop of :mod:`.trainer` (``--resume``, ``--minutes``, ``--device``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.device import resolve_device
from ..core.errors import InputError
from ..networks.checkpoint import load_network, save_network
from .cards import DEFAULT_SELECTION, add_selection_argument
from .pool import HeartPool, cohort_paths, crop_to_heart, degraded_sample, heart_crop
from .trainer import (BudgetConfig, add_budget_arguments, budget_from_arguments, budgeted_trainer, onehot_tensor,
                      started, to_device)


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


def dsl_pair(pool: HeartPool, cfg: DSLTrainConfig, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """One (degraded, clean) canonical LR pair, uint8 [k, j, i] each."""
    from ..anatomy.canonical import canonical_geometry, to_canonical_labels

    _, _, sax, clean, _ = degraded_sample(pool, cfg.slice_spacing_mm, rng)
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
    rows, cols = heart_crop(sax.array, cfg.crop, rng)
    return sax.array[:, rows, cols], z.astype(np.float32), s_eff / s_lr, target[:, rows, cols]


def train_dsl(cfg: DSLTrainConfig, output: Path, resume: bool = False, log=print) -> Path:
    """Train DSL (see the module docstring); writes ``output`` (weights) and its checkpoint."""
    from ..networks.dsl import DSLConfig, DSLNet
    from .losses import ce_dice_loss

    cfg = started(cfg)
    model = DSLNet(DSLConfig(channels=tuple(cfg.channels), inplane_size=cfg.inplane_size))
    run = budgeted_trainer("dsl", cfg, model, output, resume, log)
    rng = np.random.default_rng([cfg.seed, run.step])
    pool = HeartPool(cohort_paths(cfg.data_root, cfg.subjects), cfg.pool_biventricular, cfg.pool_wholeheart,
                     tuple(cfg.hr_inplane_mm), 2.0, rng, log)
    n = model.config.n_classes

    def sample_loss(step):
        x, y = dsl_pair(pool, cfg, rng)
        return ce_dice_loss(model(onehot_tensor(x, n, cfg.device)), to_device(cfg.device, y)[None], n)

    return run.run_budget(cfg, sample_loss, cfg.accumulate, pool.refresher(cfg.refresh_every)).export(output)


def train_asv(cfg: ASVTrainConfig, output: Path, resume: bool = False, log=print) -> Path:
    """Train ASV (see the module docstring)."""
    from ..networks.asv import ASVConfig, ASVNet
    from .losses import asv_loss

    cfg = started(cfg)
    model = ASVNet(ASVConfig(factor_range=tuple(cfg.factor)))
    run = budgeted_trainer("asv", cfg, model, output, resume, log)
    rng = np.random.default_rng([cfg.seed, run.step, 1])
    pool = HeartPool(cohort_paths(cfg.data_root, cfg.subjects), cfg.pool_biventricular, cfg.pool_wholeheart,
                     2.5, 1.0, rng, log)
    n = model.config.n_classes

    def sample_loss(step):
        lr_labels, z, cell, target = asv_sample(pool, cfg, rng)
        logits = model(onehot_tensor(lr_labels, n, cfg.device), to_device(cfg.device, z), cell)
        return asv_loss(logits, to_device(cfg.device, target)[None], n, cfg.dice_weight)

    return run.run_budget(cfg, sample_loss, cfg.batch, pool.refresher(cfg.refresh_every)).export(output)


def validate(dsl_weights=None, asv_weights=None, root=None, seeds=(0, 1, 2), log=print,
             device: str = "auto") -> Dict[str, float]:
    """Metrics of the networks on the cohort's validation hearts (never trained on), 10 mm stacks:

    * DSL: mean per-slice displacement error (mean removed, mm) under the ``normal`` and
      ``severe`` presets, against estimating no motion;
    * ASV: mean Dice (LV, MYO, RV) of super-resolution without motion (``correction='none'``)
      to 2 mm (x5) and 3 mm (x3.33, non-integer), against linear interpolation of the labels.
    """
    from ..evaluation.bench import cohort_anatomies
    from ..evaluation.metrics import dice, displacement_error
    from ..methods import dsl_asv as pipe, run
    from ..simulation.cases import make_case

    out: Dict[str, List[float]] = {}

    def add(key: str, value: float) -> None:
        out.setdefault(key, []).append(value)

    def mean_dice(result, truth) -> float:
        return float(np.mean(list(dice(result.labels, truth).values())))

    with pipe.using_weights(dsl_weights, asv_weights):
        for anatomy in cohort_anatomies(root):
            for preset in ("normal", "severe"):
                for seed in seeds:
                    case = make_case(anatomy.truth, preset, seed=seed, slice_spacing=10.0)
                    res, true = run("dsl_asv", case, slice_spacing=2.0, device=device), case.true_displacements
                    add(f"dsl_displacement_error_{preset}_mm",
                        displacement_error(res.displacements, true, remove_mean=True)["mean_mm"])
                    add(f"no_correction_displacement_error_{preset}_mm",
                        displacement_error(np.zeros_like(true), true, remove_mean=True)["mean_mm"])
                    add(f"dice_mean_{preset}", mean_dice(res, case.truth))
            case = make_case(anatomy.truth, "none", seed=0, slice_spacing=10.0)
            for spacing in (2.0, 3.0):
                tag = f"x{10.0 / spacing:.3g}"
                add(f"asv_dice_{tag}", mean_dice(run("dsl_asv", case, slice_spacing=spacing, correction="none",
                                                     device=device), case.truth))
                add(f"linear_dice_{tag}", mean_dice(run("linear", case, slice_spacing=spacing), case.truth))
            log(f"validated {anatomy.name}")
    return {k: float(np.mean(v)) for k, v in out.items()}


METHOD = ('Dong J., Ke W., Ding W., Huang L., Yang M. "Cross-Modality Whole-Heart MRI Reconstruction with Deep '
          'Motion Correction and Super-Resolution" (DeepWHR). Re-implemented from the paper; no code of the authors '
          'was used (none is public).')
DATA_USED = ("the CT cohort's 15 training subjects (subject_00-subject_14) only; the 4 validation subjects and the "
             "PCA shapes (drawn from a model that saw them) were not used.")

_CARD_TEXT = {
    "dsl": ("DSL: latent-volume-map motion-correction autoencoder",
            "A 3D convolutional autoencoder on one-hot label stacks (8 classes: background + LV, MYO, RV, LA, "
            "RA, aorta, pulmonary artery) on the canonical LR grid of the `dsl_asv` pipeline (64 x 64 voxels of "
            "2.5 mm in-plane = 160 mm, one row per input slice, +i from LV to RV, +k base to apex). Max "
            "pooling with kernel and stride (1, 2, 2) twice, a 64-channel latent volume map with residual "
            "3x3x3 blocks dilated along the slice axis, a mirrored decoder with (1, 2, 2) upsampling. "
            "Trained to map degraded stacks to the motion-free stack on the same grid (cross-entropy + soft "
            "Dice). The pipeline derives per-slice displacements from its correction.",
            "the motion-correction network of the `dsl_asv` method (DeepWHR).",
            "cardiac-recon train dsl_asv dsl --output dsl.pt"),
    "asv": ("ASV: arbitrary-scale through-plane super-resolution (implicit neural representation)",
            "Coarse LR features sampled at the two LR slices around each target slice + the local coordinate "
            "and the cell size (target / LR spacing) -> coordinate-conditioned MLP -> continuous features, fused "
            "with the linearly interpolated LR probabilities by a shallow encoder-decoder at the target "
            "resolution (in-plane grid kept). Loss: L2 to one-hot + multi-class soft Dice. One model for every "
            "output spacing: trained over factors x{f0:g} to x{f1:g} (non-integer) and LR spacings 6-12 mm.",
            "the through-plane super-resolution network of the `dsl_asv` method (DeepWHR).",
            "cardiac-recon train dsl_asv asv --output asv.pt"),
}


def model_card(kind: str, weights_path, metrics: Dict[str, float], selection: str = DEFAULT_SELECTION) -> str:
    """Markdown model card of a trained weights file (:mod:`.cards`)."""
    from ..methods.dsl_asv import DEFAULT_ITERATIONS
    from .cards import Card, budget_note, budget_options, metrics_table, render, weights_facts

    meta, cfg, train, facts = weights_facts(weights_path, "each a freshly degraded, augmented heart")
    title, what, use, command = _CARD_TEXT[kind]
    factor = cfg.get("factor_range", (1.5, 6.0))
    validation = metrics_table(
        "## Validation (4 held-out CT hearts, 10 mm stacks, 3 motion seeds)",
        "Measured through the `dsl_asv` pipeline with its defaults (correction 'shift', "
        f"{DEFAULT_ITERATIONS} DSL passes) by `cardiac-recon train dsl_asv validate`, on subject_15-subject_18 "
        "resliced on the benchmark grid (128 x 128 x 64 at 1.25 x 1.25 x 2 mm, valve-cut), reconstructed at 2 mm. "
        "Displacement errors: mean per-slice Euclidean error (mm) after removing each set's mean, over all slices "
        "(slices without anatomy count with an estimate of zero). Dice: mean over LV, MYO, RV. ASV rows: no "
        "motion, no correction, super-resolution to 2 mm (x5) and 3 mm (x3.33) against linear interpolation of "
        "the one-hot labels.",
        {k: v for k, v in metrics.items() if (kind == "dsl") != k.startswith(("asv_", "linear_"))})
    return render(Card(
        title=title, summary=what.format(f0=factor[0], f1=factor[1]), use=f"As {use}", method=METHOD, data=("ct",),
        data_used=DATA_USED, command=command + budget_options(train), validation=validation, selection=selection,
        notes=(budget_note(train),), **facts,
        limits=("Trained on end-diastolic CT anatomy of 15 healthy adults (with scale, tilt, spin and elastic "
                "augmentation): hearts far outside that range (congenital disease, severe dilation) are "
                "extrapolation. No MRI fine-tuning: no corrected MRI ships with the project "
                "(`cardiac-recon train dsl_asv finetune` adapts the encoder to a folder of corrected stacks).",
                "The common shift of all slices cannot be seen in a SAX stack: displacements are centred "
                "on their mean.")))


SEGMENTATION_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")  # the stacks a fine-tune reads


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
                 resume: bool = False, lr: float = 1e-4, accumulate: int = 2, device: str = "auto",
                 log=print) -> Path:
    """MRI fine-tuning (DeepWHR sec. 3.1.3): update the DSL encoder on corrected label stacks
    with the decoder frozen, so the CT-learned shape manifold of the decoder is kept. A constant
    learning rate ``lr``: a small correction of trained weights, not a schedule from scratch."""
    import torch

    from ..core.io import read_segmentation
    from .losses import ce_dice_loss

    cfg = started(BudgetConfig(seed=seed, minutes=minutes, max_steps=max_steps, lr=lr, threads=threads, device=device))
    folder = Path(corrected_dir)
    if not folder.is_dir():
        raise InputError(f"Fine-tuning folder not found: {folder}.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(SEGMENTATION_SUFFIXES))
    if not files:
        raise InputError(f"No label stacks ({', '.join(SEGMENTATION_SUFFIXES)}) in {folder}.")
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
    decoder_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    run = budgeted_trainer("dsl", cfg, model, output, resume, log,
                           params=[p for p in model.encoder_parameters() if p.requires_grad])
    rng = np.random.default_rng([seed, run.step, 2])
    n = model.config.n_classes

    def sample_loss(step):
        x, y = finetune_pairs(targets, sources, rng, model.config.inplane_size, model.config.inplane_spacing_mm)
        return ce_dice_loss(model(onehot_tensor(x, n, cfg.device)), to_device(cfg.device, y)[None], n)

    run.run_budget(cfg, sample_loss, accumulate, lr_at=lambda step, fraction: lr)
    unchanged = all(torch.equal(v, model.decoder.state_dict()[k].cpu()) for k, v in decoder_before.items())
    meta = dict(start.get("meta", {}))
    meta.update(finetuned={"stacks": [f.name for f in files], "paired": sources is not None, "steps": run.step,
                           "minutes": run.elapsed_s / 60, "lr": lr, "decoder_frozen": unchanged,
                           "device": run.meta()["device"],
                           "final_loss": run.history[-1]["loss"] if run.history else None})
    save_network(model, output, "dsl", meta)
    log(f"DSL encoder fine-tuned on {len(files)} stacks: {run.step} steps -> {output}")
    return Path(output)


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
    add_selection_argument(p)


def main(args) -> int:
    args.device = resolve_device(args.device)  # a CUDA request without CUDA fails here, before any data is read
    subjects = tuple(s.strip() for s in args.subjects.split(",")) if args.subjects else None
    if args.stage in ("validate", "install"):
        if args.stage == "install" and not (args.weights and args.asv_weights):
            raise InputError("install needs --weights DSL.pt and --asv-weights ASV.pt.")
        metrics = validate(args.weights, args.asv_weights, args.data, device=args.device)
        print(json.dumps(metrics, indent=2))
        if args.stage == "install":
            from ..networks import weights

            for name, path in (("dsl", args.weights), ("asv", args.asv_weights)):
                entry = weights.register(name, path, model_card(name, path, metrics, args.selection))
                print(f"installed {name}: {entry}")
        return 0
    if not args.output:
        raise InputError(f"train dsl_asv {args.stage} needs --output FILE.pt.")
    output = Path(args.output)
    data = dict(budget_from_arguments(args), data_root=args.data, subjects=subjects)
    tiny = dict(pool_biventricular=1, pool_wholeheart=1) if args.small else {}  # --small: smoke tests
    if args.stage == "dsl":
        small = dict(tiny, accumulate=1, inplane_size=32, channels=(8, 8, 16), hr_inplane_mm=(2.5, 2.5)) if tiny else {}
        train_dsl(DSLTrainConfig(**data, **small), output, args.resume)
    elif args.stage == "asv":
        small = dict(tiny, batch=1, crop=16) if tiny else {}
        train_asv(ASVTrainConfig(**data, **small), output, args.resume)
    else:
        if not args.corrected:
            raise InputError("finetune needs --corrected FOLDER with corrected SAX label stacks.")
        finetune_dsl(args.corrected, output, weights=args.weights, uncorrected=args.uncorrected,
                     convention=args.convention, resume=args.resume, **budget_from_arguments(args))
    return 0

