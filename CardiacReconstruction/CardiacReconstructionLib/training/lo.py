"""Training the shape prior of latent optimisation: ``cardiac-recon train lo``.

Data: the training split of the whole-heart CT cohort (:func:`.cohort.split`, 15 real subjects,
valve-cut biventricular labels, no PCA shapes: those leak the validation subjects), each shape
resliced straight onto the prior's grid in its SAX frame by :func:`.cohort.load_subject` with
augmentation (scale, long-axis scale, tilt, spin, elastic) in one SimpleITK pass.

Why a cache: one augmented resampling costs ~0.2 s of CPU, more than a training step per sample,
so ``augmentations`` draws per subject are made once (seeded by ``(seed, subject, draw)``, in
``workers`` processes) and kept in ``cache_dir``; every step then adds a random integer
translation (``translate_voxels``) so that the prior tolerates the error of the grid centre
estimated from a stack at inference. Optional ``acdc`` adds MRI-shaped pseudo high-resolution
shapes (:func:`.cohort.acdc_pseudo_hr` on the ACDC training split) mapped onto the prior grid
exactly as inference maps a stack (:func:`..methods.latent_optimisation.prior_frame_from_stack`).

Validation: the 4 held-out CT subjects, un-augmented; reconstruction Dice per structure of
``argmax(decode(mu))`` and the KL (nats) the code carries.

Resumable and exact: every step draws its batch, translations and reparameterisation noise from
generators seeded by ``(seed, step)``, and the one loop of :mod:`.trainer` checkpoints every
``checkpoint_every`` steps.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.device import resolve_device
from ..core.errors import InputError
from ..core.io import atomic_path
from ..networks.checkpoint import save_network
from .cards import ACDC_CITATION, CT_CITATION, DEFAULT_SELECTION, add_selection_argument
from .trainer import Trainer, add_run_arguments, cosine_lr, plain as _plain, resume_state

SRHEART_CITATION = ("Wang S. et al., 'Joint motion correction and super resolution for cardiac segmentation via "
                    "latent optimisation', MICCAI 2021.")


@dataclass
class TrainConfig:
    """Training settings (saved in every checkpoint and in the exported weights' metadata)."""

    grid_shape: Tuple[int, int, int] = (32, 64, 64)
    spacing: Tuple[float, float, float] = (2.5, 2.5, 4.0)
    latent_dim: int = 64
    channels: Tuple[int, ...] = (16, 32, 64, 128)
    beta: float = 1e-3
    free_bits: float = 2.0
    epochs: int = 30
    batch_size: int = 8
    learning_rate: float = 1e-3
    final_learning_rate: float = 1e-4
    augmentations: int = 48
    translate_voxels: Tuple[int, int, int] = (1, 2, 2)  # max |shift| along k, j, i
    acdc: bool = False
    acdc_copies: int = 2  # each ACDC shape enters the training set this many times
    subjects: int = 0  # use only the first N CT training subjects (0: all; for tests and quick runs)
    seed: int = 0
    checkpoint_every: int = 100
    validate_every: int = 200
    log_every: int = 20
    workers: int = 2
    max_minutes: float = 0.0  # stop (checkpoint and export) after this wall time; 0: no limit
    device: str = "auto"
    data_root: Optional[str] = None
    cache_dir: str = os.path.join(tempfile.gettempdir(), "cardiac-recon-cache")  # augmented shapes

    def vae_config(self):
        from ..networks.vae import VAEConfig

        return VAEConfig(grid_shape=self.grid_shape, spacing=self.spacing, latent_dim=self.latent_dim,
                         channels=self.channels, beta=self.beta, free_bits=self.free_bits)


def _one_ct_sample(job) -> np.ndarray:
    """Worker: one (augmented) CT shape on the prior grid, uint8 labels [k, j, i]."""
    path, grid_shape, spacing, seed_seq = job
    import SimpleITK as sitk

    from .cohort import load_subject

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    augment = None if seed_seq is None else np.random.default_rng(seed_seq)
    return load_subject(path, grid_shape, spacing, augment=augment).array.astype(np.uint8)


def _map_jobs(jobs: List, workers: int) -> List[np.ndarray]:
    if workers <= 1 or len(jobs) < 4:
        return [_one_ct_sample(j) for j in jobs]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        return pool.map(_one_ct_sample, jobs, chunksize=4)


def _cached(cfg: TrainConfig, what: str, names: Sequence[str], label: str, make, log) -> np.ndarray:
    """``make()`` (uint8 shapes [N, k, j, i]), kept in ``cfg.cache_dir`` under a key of the grid,
    the augmentations, the seed and ``names``: same config -> same file, written atomically."""
    text = json.dumps([what, list(cfg.grid_shape), list(cfg.spacing), cfg.augmentations, cfg.seed, list(names)])
    cache = Path(cfg.cache_dir) / f"lo_{what}_{hashlib.sha256(text.encode()).hexdigest()[:16]}.npy"
    if cache.is_file():
        log(f"{label}: {cache} (cached)")
        return np.load(cache)
    t0 = time.perf_counter()
    data = make()
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.save(f, data)
    log(f"{label}: {len(data)} shapes in {time.perf_counter() - t0:.0f} s -> {cache}")
    return data


def ct_training_set(cfg: TrainConfig, log=print) -> np.ndarray:
    """``augmentations`` augmented draws of every CT training subject on the prior grid,
    uint8 [N, k, j, i], cached on disk."""
    from .cohort import split

    paths = split(cfg.data_root, "train")
    paths = paths[:cfg.subjects] if cfg.subjects > 0 else paths
    jobs = [(str(p), cfg.grid_shape, cfg.spacing, [cfg.seed, s, a])
            for s, p in enumerate(paths) for a in range(cfg.augmentations)]

    def make():
        log(f"training set: resampling {len(jobs)} augmented CT shapes ({len(paths)} subjects x "
            f"{cfg.augmentations}) with {cfg.workers} workers...")
        return np.stack(_map_jobs(jobs, cfg.workers))

    return _cached(cfg, "ct", [p.stem for p in paths], "training set", make, log)


def validation_set(cfg: TrainConfig) -> Tuple[List[str], np.ndarray]:
    """The held-out CT subjects on the prior grid, un-augmented: names and uint8 [4, k, j, i]."""
    from .cohort import split

    paths = split(cfg.data_root, "val")
    data = np.stack(_map_jobs([(str(p), cfg.grid_shape, cfg.spacing, None) for p in paths], 1))
    return [p.stem for p in paths], data


def acdc_training_set(cfg: TrainConfig, log=print) -> np.ndarray:
    """Pseudo high-resolution ACDC shapes (training patients, both frames) on the prior grid,
    placed by the same stack-derived frame that inference uses; uint8 [N, k, j, i], cached."""
    from .cohort import acdc_pseudo_hr, acdc_split, load_acdc
    from ..methods.latent_optimisation import labels_on_prior_grid

    keys = acdc_split(cfg.data_root, "train")

    def make():
        out = []
        for key in keys:
            sax = load_acdc(cfg.data_root, key)
            try:
                out.append(labels_on_prior_grid(acdc_pseudo_hr(sax), sax, cfg.vae_config()))
            except InputError as exc:  # a stack without LV or RV cannot be placed; skip it
                log(f"ACDC set: skipping {key}: {exc}")
        return np.stack(out).astype(np.uint8)

    return _cached(cfg, "acdc", keys, "ACDC set", make, log)


def translate(batch, shifts: np.ndarray):
    """Shift every sample of a class-index batch [B, k, j, i] by integer voxels (zero fill)."""
    import torch

    out = torch.zeros_like(batch)
    for b, (dk, dj, di) in enumerate(np.asarray(shifts, int)):
        src = [slice(max(0, -d), n - max(0, d)) for d, n in zip((dk, dj, di), batch.shape[1:])]
        dst = [slice(max(0, d), n - max(0, -d)) for d, n in zip((dk, dj, di), batch.shape[1:])]
        out[(b, *dst)] = batch[(b, *src)]
    return out


def dice_per_class(pred, truth, n_classes: int) -> np.ndarray:
    """Dice of classes 1..n-1 between two class-index arrays (NaN where both are empty)."""
    out = []
    for c in range(1, n_classes):
        a, b = pred == c, truth == c
        s = a.sum() + b.sum()
        out.append(float(2 * (a & b).sum() / s) if s else float("nan"))
    return np.asarray(out)


def validate(model, data: np.ndarray) -> Dict[str, object]:
    """Encode-decode Dice (LV, MYO, RV) of every validation shape with z = mu, and the KL (nats)."""
    import torch

    from ..networks.vae import kl_per_dimension, onehot

    with torch.no_grad():
        x = onehot(data).to(next(model.parameters()).device)
        mu, log_var = model.encode(x)
        pred = model.decode(mu).argmax(1).cpu().numpy()
        kl = float(kl_per_dimension(mu, log_var).sum())
    dice = np.stack([dice_per_class(p, t, model.config.n_classes) for p, t in zip(pred, data)])
    return {"dice_LV": float(dice[:, 0].mean()), "dice_MYO": float(dice[:, 1].mean()),
            "dice_RV": float(dice[:, 2].mean()), "dice_mean": float(np.nanmean(dice)), "kl_nats": kl,
            "dice_per_subject": dice.round(4).tolist()}


def initial_state(init: str, cfg: TrainConfig) -> Dict:
    """Weights to start a new run from (``--init``): a name in the weights manifest (e.g. the
    shipped ``lo_vae``, SHA-256 verified) or a ``.pt`` checkpoint of kind ``vae`` (:mod:`..networks.checkpoint`).
    Their network must be the one ``cfg`` describes (grid, spacing, latent size, channels), or
    the one a level coarser (:func:`..networks.vae.refined`: half the grid, one level fewer), which
    is then grown to ``cfg``'s grid, starting out as its own trilinearly upsampled output."""
    from ..networks.vae import refined, refined_config
    from ..methods.latent_optimisation import load_prior

    model = load_prior(init)  # same name-or-path rule and checksum verification as inference
    want = cfg.vae_config()
    fields = ("grid_shape", "spacing", "latent_dim", "channels")

    def differing(have):
        return [k for k in fields if tuple(np.ravel(getattr(have, k))) != tuple(np.ravel(getattr(want, k)))]

    mismatched = differing(model.config)
    if mismatched and not differing(refined_config(model.config)):
        model = refined(model)  # InputError if its first level is too narrow to grow
        mismatched = []
    if mismatched:
        raise InputError(f"--init {init}: its network differs from the requested one in {', '.join(mismatched)} "
                         f"({', '.join(f'{k}={getattr(model.config, k)}' for k in mismatched)}); pass the same "
                         "--grid, --spacing, --latent and --channels, or twice its grid at half its spacing with "
                         "one more level of channels[0] // 2 channels first (grown from it).")
    return model.state_dict()


def train(cfg: TrainConfig, output: Path, resume: bool = False, log=print, init: Optional[str] = None) -> Path:
    """Train (or resume) and export ``output/lo_vae.pt``; returns its path. ``init`` starts a new
    run from existing weights (:func:`initial_state`; fine-tuning) with a fresh optimiser and the
    learning-rate schedule of ``cfg``."""
    import torch

    from ..networks.vae import LabelVAE, vae_loss

    if resume and init:
        raise InputError("--resume continues a checkpoint and --init starts a new run from weights: use one.")
    device = resolve_device(cfg.device)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    ckpt_path = output / "checkpoint.pt"
    init_record = init
    state = resume_state(ckpt_path, resume, required=True)
    if state is not None:
        cfg = TrainConfig(**{**state["config"], "epochs": cfg.epochs, "max_minutes": cfg.max_minutes, "acdc": cfg.acdc,
                             "workers": cfg.workers, "data_root": cfg.data_root, "cache_dir": cfg.cache_dir})
        init_record = state.get("init")
    cfg = replace(cfg, device=device)
    # checked before the (minutes-long) preparation of the training set: a wrong --init fails at once
    start = initial_state(init, cfg) if init else None
    torch.manual_seed(cfg.seed)
    data = ct_training_set(cfg, log)
    if cfg.acdc:
        data = np.concatenate([data] + [acdc_training_set(cfg, log)] * cfg.acdc_copies)
    val_names, val_data = validation_set(cfg)
    model = LabelVAE(cfg.vae_config())
    if start is not None:
        model.load_state_dict(start)
        log(f"starting from the weights {init}")
    model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    run = Trainer("vae", model, optimiser, ckpt_path, asdict(cfg), device, state, {"init": init_record}, log)
    steps_per_epoch = max(1, len(data) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    log(f"training: {len(data)} shapes, grid {cfg.grid_shape} at {cfg.spacing} mm, {steps_per_epoch} steps/epoch, "
        f"{cfg.epochs} epochs = {total} steps, {torch.get_num_threads()} threads")
    data_t = torch.from_numpy(data)
    limits = np.asarray(cfg.translate_voxels)

    def sample_loss(step):
        rng = np.random.default_rng([cfg.seed, step])
        torch.manual_seed(int(rng.integers(2 ** 62)))
        idx = rng.integers(0, len(data), cfg.batch_size)
        shifts = rng.integers(-limits, limits + 1, size=(cfg.batch_size, 3))
        target = translate(data_t[idx].long(), shifts).to(device)
        x = torch.nn.functional.one_hot(target, model.config.n_classes).movedim(-1, 1).float()
        logits, mu, log_var = model(x)
        losses = vae_loss(logits, target, mu, log_var, model.config)
        return {k: losses[k] for k in ("loss", "ce", "kl")}

    def validation(step):
        if step % cfg.validate_every and step != total:
            return None
        model.eval()
        v = validate(model, val_data)
        model.train()
        log(f"  validation: Dice LV {v['dice_LV']:.3f} MYO {v['dice_MYO']:.3f} RV {v['dice_RV']:.3f} "
            f"KL {v['kl_nats']:.1f} nats")
        return {k: v[k] for k in ("dice_LV", "dice_MYO", "dice_RV", "kl_nats")}

    run.run(sample_loss, total, cfg.max_minutes,
            lambda step, fraction: cosine_lr(cfg.learning_rate, cfg.final_learning_rate, step / max(1, total)),
            log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every, after_step=validation)
    final = validate(model, val_data)
    meta = {**run.meta(), "samples": run.step * cfg.batch_size, "epochs_done": run.step / steps_per_epoch,
            "training_shapes": int(len(data)), "elapsed_s": round(run.elapsed_s, 1),
            "validation": {"subjects": val_names, **final},
            "history": run.history, "init": init_record,
            "data": [CT_CITATION] + ([ACDC_CITATION] if cfg.acdc else []), "method": SRHEART_CITATION}
    out = output / "lo_vae.pt"
    save_network(model, out, "vae", _plain(meta))
    (output / "lo_vae.json").write_text(json.dumps(meta, indent=2))
    log(f"exported {out}: validation Dice LV {final['dice_LV']:.3f} MYO {final['dice_MYO']:.3f} "
        f"RV {final['dice_RV']:.3f}, KL {final['kl_nats']:.1f} nats, {run.elapsed_s / 60:.1f} min")
    return out


#: ``train lo`` flags of the network and data settings, for the card's command line.
_CARD_FLAGS = (("--grid", "grid_shape"), ("--spacing", "spacing"), ("--channels", "channels"),
               ("--latent", "latent_dim"), ("--augmentations", "augmentations"))


def _network_options(cfg: Dict) -> str:
    """The flags of :data:`_CARD_FLAGS` whose values differ from the defaults (a grown or
    differently sized prior is only reproduced with them)."""
    defaults = asdict(TrainConfig())
    out = ""
    for flag, key in _CARD_FLAGS:
        value, default = cfg[key], defaults[key]
        if np.ravel(value).tolist() != np.ravel(default).tolist():
            out += f" {flag} {','.join(f'{v:g}' for v in np.ravel(value))}"
    return out


def model_card(meta: Dict, sha256: str, name: str = "lo_vae", selection: str = DEFAULT_SELECTION) -> str:
    """Markdown model card of exported weights from their metadata (``lo_vae.json``; :mod:`.cards`)."""
    from .cards import Card, device_line, render
    from .cohort import DEFAULT_GRID_SHAPE as SRHEART_GRID_SHAPE  # the cohort's SAX grid is SRHeart's

    cfg, val = meta["train_config"], meta["validation"]
    grid, sp = cfg["grid_shape"], cfg["spacing"]
    fov = [n * s for n, s in zip(grid[::-1], sp)]
    per_subject = "\n".join(f"| {n} | {d[0]:.3f} | {d[1]:.3f} | {d[2]:.3f} |"
                             for n, d in zip(val["subjects"], val["dice_per_subject"]))
    acdc = (f", plus {cfg.get('acdc_copies', 2)} copies of the ACDC pseudo-HR shapes (centroid alignment + "
            "shape-based interpolation of the real stacks, ED and ES) of the ACDC training patients, placed "
            "on the grid by the stack-derived frame that inference uses") if cfg.get("acdc") else ""
    population = ("healthy adult end-diastolic CT anatomy (19 people in the source model) and the ACDC "
                  "training patients (five diagnostic groups, ED and ES)") if cfg.get("acdc") else \
        "end-diastolic CT anatomy of healthy adults (19 people in the source model)"
    options = (f"{_network_options(cfg)}{' --acdc' if cfg.get('acdc') else ''} --epochs {cfg['epochs']} "
               f"--lr {cfg['learning_rate']:g} --seed {cfg['seed']} --threads {meta['threads']} "
               f"--device {cfg.get('device', 'cpu')}{' --init ' + Path(meta['init']).name if meta.get('init') else ''}")
    reduced = ("This is a REDUCED grid (the SRHeart default is 64 x 128 x 128 at 2 x 1.25 x 1.25 mm) so that "
               "training and inference fit a 2-core CPU; a") if list(grid) != list(SRHEART_GRID_SHAPE) else "A"
    summary = f"""A 3D beta-VAE over one-hot biventricular label maps (background, LV blood pool, LV myocardium,
RV blood pool), the prior of the `latent_optimisation` method.

- **File**: `{name}.pt`, a checkpoint of kind `vae` (`networks.checkpoint`: the network/grid config,
  the tensors and this metadata), loadable with `torch.load(weights_only=True)`.
  SHA-256 `{sha256}`.
- **Grid**: {grid[0]} x {grid[1]} x {grid[2]} voxels (k, j, i) at {sp[0]:g} x {sp[1]:g} x {sp[2]:g} mm (i, j, k), a
  {fov[0]:g} x {fov[1]:g} x {fov[2]:g} mm box (the SRHeart field of view) in the short-axis frame of the CT cohort:
  k from base to apex (mitral valve centre -> LV apex), i from the LV towards the RV (mitral -> tricuspid
  valve centre), centred on the ventricles in-plane and on the mitral-apex midpoint along k.
  {reduced} model trained at another grid drops in unchanged (the grid is stored with the weights).
- **Network**: latent size {cfg['latent_dim']}, encoder channels {cfg['channels']} (strided 4x4x4 convolutions,
  one residual block), mirrored transposed-convolution decoder, no normalisation layers.
- **Loss**: cross-entropy (mean over voxels) + beta x KL with free bits; beta = {cfg['beta']:g},
  {cfg['free_bits']:g} free nats per latent dimension."""
    validation = f"""## Validation (the 4 held-out CT subjects, never trained on)

Encode -> decode with z = mu, Dice on the prior grid: LV {val['dice_LV']:.3f}, MYO {val['dice_MYO']:.3f}, RV
{val['dice_RV']:.3f} (mean {val['dice_mean']:.3f}); the code carries {val['kl_nats']:.0f} nats (KL to the prior).

| subject | Dice LV | Dice MYO | Dice RV |
|---|---|---|---|
{per_subject}"""
    return render(Card(
        title=f"Model card: `{name}` (shape prior of latent optimisation)", summary=summary,
        use=f"As the shape prior of `latent_optimisation`. It has seen {population}, at a reduced resolution: "
            "unusual anatomy is pulled towards the shapes it knows, so check the per-slice residuals that the "
            "method reports.",
        method=f"SRHeart: {meta['method']} Re-implemented from the paper.",
        data=("ct", "acdc") if cfg.get("acdc") else ("ct",),
        data_used=f"the training split of the whole-heart CT cohort (15 real subjects; the PCA shapes were left out "
                  "because they leak the validation subjects), valve-plane cut, resliced straight onto the grid with "
                  f"augmentation (scale +-15 %, long-axis scale, tilt, spin, elastic), {cfg['augmentations']} draws "
                  f"per subject{acdc}; {meta['training_shapes']} shapes in all, plus random translations of up to "
                  f"{cfg['translate_voxels']} voxels (k, j, i) per step.",
        command=f"cardiac-recon train lo --output OUT{options} --register {name}", device=device_line(meta),
        sha256=sha256, selection=selection, validation=validation,
        training=[f"{meta['steps']} steps ({meta['epochs_done']:.1f} epochs) of batch {cfg['batch_size']}, Adam, "
                  f"learning rate {cfg['learning_rate']:g} -> {cfg['final_learning_rate']:g} (cosine over the steps), "
                  f"seed {cfg['seed']}; {meta['elapsed_s'] / 60:.0f} minutes."],
        notes=("Resumed runs add `--resume`. The schedule follows the steps and every step is seeded by (seed, "
               "step): the same command on the same device and thread count gives the same weights.",)))


def register_weights(output: Path, name: str = "lo_vae", directory=None, selection: str = DEFAULT_SELECTION) -> Dict:
    """Install ``output/lo_vae.pt`` with its model card into the weights folder (manifest entry)."""
    from ..networks import weights

    output = Path(output)
    meta = json.loads((output / "lo_vae.json").read_text())
    path = output / "lo_vae.pt"
    return weights.register(name, path, model_card(meta, weights.sha256(path), name, selection), directory=directory)


#: ``train lo`` options that set the :class:`TrainConfig` field ``key`` (of its type and default): (flag, key, help).
_FIELD_OPTIONS = (("--epochs", "epochs", "passes over the cached training set"),
                  ("--latent", "latent_dim", "latent size"),
                  ("--beta", "beta", "KL weight"),
                  ("--free-bits", "free_bits", "free nats per latent dimension"),
                  ("--batch-size", "batch_size", "shapes per optimiser step"),
                  ("--augmentations", "augmentations", "augmented draws per CT subject"),
                  ("--subjects", "subjects", "use only the first N CT training subjects (0: all)"),
                  ("--checkpoint-every", "checkpoint_every", "steps between checkpoints"),
                  ("--validate-every", "validate_every", "steps between validations"),
                  ("--log-every", "log_every", "steps between log lines"),
                  ("--workers", "workers", "processes that build the training set"),
                  ("--max-minutes", "max_minutes", "stop after this wall time (0: none)"),
                  ("--cache-dir", "cache_dir", "where the resampled training set is cached"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--output", required=True, help="folder for checkpoint.pt, lo_vae.pt and lo_vae.json")
    add_run_arguments(p, "continue from OUTPUT/checkpoint.pt", threads=0)
    p.add_argument("--init", metavar="WEIGHTS", default=None,
                   help="start a new run from these weights (a manifest name such as lo_vae, or a .pt file): "
                        "fine-tuning with a fresh optimiser")
    p.add_argument("--grid", default=",".join(map(str, d.grid_shape)), help="prior grid k,j,i (default: %(default)s)")
    p.add_argument("--spacing", default=",".join(map(str, d.spacing)),
                   help="prior spacing i,j,k mm (default: %(default)s)")
    p.add_argument("--channels", default=",".join(map(str, d.channels)), help="encoder channels per level")
    p.add_argument("--lr", type=float, default=d.learning_rate, help="initial Adam learning rate (cosine decay)")
    p.add_argument("--acdc", action="store_true", help="also train on ACDC pseudo-HR shapes (training patients)")
    for flag, key, text in _FIELD_OPTIONS:
        default = getattr(d, key)
        p.add_argument(flag, dest=key, type=type(default), default=default, help=f"{text} (default: %(default)s)")
    p.add_argument("--register", metavar="NAME", default=None,
                   help="install the result as the shipped weights NAME (e.g. lo_vae) with its model card")
    add_selection_argument(p)


def _numbers(text: str, what: str, kind=int) -> Tuple:
    try:
        return tuple(kind(t) for t in text.split(","))
    except ValueError:
        raise InputError(f"{what} must be comma-separated {'integers' if kind is int else 'numbers'}, "
                         f"got {text!r}.") from None


def config_from_args(args) -> TrainConfig:
    if args.epochs < 1 or args.batch_size < 1:
        raise InputError("--epochs and --batch-size must be at least 1.")
    cfg = TrainConfig(grid_shape=_numbers(args.grid, "--grid"), spacing=_numbers(args.spacing, "--spacing", float),
                      channels=_numbers(args.channels, "--channels"), learning_rate=args.lr,
                      final_learning_rate=args.lr / 10, acdc=args.acdc, seed=args.seed, device=args.device,
                      data_root=args.data, **{key: getattr(args, key) for _, key, _ in _FIELD_OPTIONS})
    cfg.vae_config()  # validates the grid and the network
    return cfg


def main(args) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    train(config_from_args(args), Path(args.output), resume=args.resume,
          log=lambda m: print(m, flush=True), init=args.init)
    if args.register:
        entry = register_weights(Path(args.output), args.register, selection=args.selection)
        print(f"registered {args.register}: {entry}")
    return 0
