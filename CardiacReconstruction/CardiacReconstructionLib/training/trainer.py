"""The one training loop of every ``cardiac-recon train`` command, and the helpers it shares.

Why one loop: each network (the LO prior, DSL, ASV, MCSR-Net, the VQ-VAE, the latent denoiser,
the DSL fine-tune) must be trained the same way, so that a budget, a seed, a resume and a device
mean the same thing everywhere. :class:`Trainer` owns

* the budget: at most ``max_steps`` optimiser steps and ``minutes`` of training time, the minutes
  counting the time already spent before a resume (checked after every step, so every call makes
  at least one step);
* the learning rate, set before every step from a schedule of (step, spent fraction of the time);
* gradient accumulation over ``micro_batches`` calls of the trainer's ``sample_loss``;
* periodic logs and a history of the mean losses, atomic checkpoints
  (:func:`..networks.checkpoint.save_torch`: model, optimiser, step, elapsed time, history, config,
  device) every N steps or M minutes and at the end, and ``--resume`` from them;
* the device (``--device auto|cpu|cuda``): the model lives there and ``sample_loss`` puts its
  batches there (:func:`to_device`); the device is recorded in the checkpoint and the weights' meta.

A trainer only says what one sample's loss is and what happens between steps (``after_step``:
refresh a heart pool, validate).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from ..core.device import DEVICE_CHOICES, resolve_device
from ..core.errors import InputError
from ..networks.checkpoint import save_network, save_torch


@dataclass
class BudgetConfig:
    """What every time-budgeted trainer is given; each trainer's config extends it (overriding a
    default where its network needs another). The command-line twin is
    :func:`add_budget_arguments` / :func:`budget_from_arguments`."""
    seed: int = 0
    minutes: float = 10.0
    max_steps: int = 100000
    lr: float = 1e-3
    checkpoint_minutes: float = 3.0
    threads: int = 1
    device: str = "auto"


def cosine_lr(start: float, end: float, fraction: float) -> float:
    """Cosine decay from ``start`` to ``end`` as ``fraction`` goes from 0 to 1 (clipped)."""
    fraction = min(max(fraction, 0.0), 1.0)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * fraction))


def budget_cosine(base: float, minutes: float, max_steps: int) -> Callable[[int, float], float]:
    """The schedule of the budgeted trainers: cosine decay to 5 % of ``base`` over the time budget
    (so a resumed or slower run follows the same schedule per minute), or, without one
    (``minutes`` <= 0), over the ``max_steps``: a run that does not depend on the clock, the same
    bit for bit for the same seed, device and thread count."""
    if minutes > 0:
        return lambda step, fraction: cosine_lr(base, 0.05 * base, fraction)
    return lambda step, fraction: cosine_lr(base, 0.05 * base, step / max(1, max_steps))


def started(cfg):
    """``cfg`` (a :class:`BudgetConfig`) with its device resolved, after seeding torch and setting
    its CPU threads (:func:`start_torch`): the first thing a trainer does, so that the network's
    initial weights depend on the seed alone."""
    return replace(cfg, device=start_torch(cfg.seed, cfg.threads, cfg.device))


def start_torch(seed: int, threads: int, device: str) -> str:
    """Resolve ``device`` (InputError for CUDA without one), set the CPU threads (0: torch's
    default) and seed torch; returns the device."""
    import torch

    device = resolve_device(device)
    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return device


def to_device(device: str, *arrays):
    """Tensors of ``arrays`` (numpy arrays or tensors) on ``device``, in order (one: itself)."""
    import torch

    out = [torch.as_tensor(np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a).to(device) for a in arrays]
    return out[0] if len(out) == 1 else out


def onehot_tensor(labels: np.ndarray, n: int, device: str = "cpu"):
    """Class-index labels [k, j, i] -> one-hot float tensor [1, n, k, j, i] on ``device``."""
    import torch

    t = to_device(device, labels).long()
    return torch.nn.functional.one_hot(t, n).permute(3, 0, 1, 2).float()[None]


def plain(d):
    """JSON-able copy of a config dict (tuples -> lists, anything else -> str): what checkpoints and
    meta store, so that they load with ``torch.load(weights_only=True)``."""
    return json.loads(json.dumps(d, default=str))


def resume_state(ckpt: Path, resume: bool, required: bool = False) -> Optional[Dict]:
    """The checkpoint to continue from (``--resume``), or None for a fresh start; a missing one is
    an InputError where ``required``, else a fresh start."""
    import torch

    if not (resume and (Path(ckpt).is_file() or required)):
        return None
    if not Path(ckpt).is_file():
        raise InputError(f"Nothing to resume: no checkpoint at {ckpt}.")
    return torch.load(str(ckpt), map_location="cpu", weights_only=True)


class Trainer:
    """One training run of ``model`` with ``opt`` on ``device``: step, elapsed time and history,
    restored from ``state`` (:func:`resume_state`) when resuming; checkpoints go to ``ckpt``.
    ``config`` (the trainer's settings) and ``extra`` (e.g. the weights a fine-tune started from)
    are stored in every checkpoint."""

    def __init__(self, kind: str, model, opt, ckpt, config: Dict, device: str = "cpu", state: Optional[Dict] = None,
                 extra: Optional[Dict] = None, log=print):
        self.kind, self.model, self.opt, self.ckpt = kind, model.to(device), opt, Path(ckpt)
        self.config, self.device, self.extra, self.log = plain(config), device, dict(extra or {}), log
        self.step, self.elapsed_s, self.history = 0, 0.0, []  # type: int, float, List[Dict]
        self.micro_batches = 1
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            self.step, self.elapsed_s, self.history = (int(state["step"]), float(state["elapsed_s"]),
                                                       list(state["history"]))
            log(f"resumed {kind.upper()} at step {self.step} ({self.elapsed_s / 60:.1f} min done)")

    def checkpoint(self) -> None:
        save_torch({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
                    "elapsed_s": self.elapsed_s, "history": self.history, "config": self.config,
                    "device": self.device, **self.extra}, self.ckpt)

    def run(self, sample_loss: Callable, max_steps: int, minutes: float, lr_at: Callable[[int, float], float],
            micro_batches: int = 1, log_every: int = 20, checkpoint_every: int = 0, checkpoint_minutes: float = 0.0,
            after_step: Optional[Callable[[int], Optional[Dict]]] = None) -> "Trainer":
        """Train until ``max_steps`` or the time budget; each step draws ``micro_batches`` losses
        from ``sample_loss(step)`` (a tensor, or a dict of tensors with the total under 'loss'; the
        others are logged), after it ``after_step(step)`` may return values for the history.
        Checkpoints every ``checkpoint_every`` steps / ``checkpoint_minutes`` (0: off) and at the end."""
        budget_s = 60 * minutes if minutes > 0 else math.inf  # 0 minutes: no limit
        t0 = last_ckpt = time.perf_counter()
        already_s = self.elapsed_s  # the time spent before a resume counts
        elapsed_s = lambda: already_s + time.perf_counter() - t0  # noqa: E731
        self.micro_batches = micro_batches
        running: Dict[str, List[float]] = {}
        self.model.train()
        while self.step < max_steps:
            for group in self.opt.param_groups:
                group["lr"] = lr_at(self.step, elapsed_s() / budget_s)
            self.opt.zero_grad()
            totals: Dict[str, float] = {}
            for _ in range(micro_batches):
                out = sample_loss(self.step)
                terms = out if isinstance(out, dict) else {"loss": out}
                (terms["loss"] / micro_batches).backward()
                for name, value in terms.items():
                    totals[name] = totals.get(name, 0.0) + float(value.detach()) / micro_batches
            self.opt.step()
            self.step += 1
            self.elapsed_s = elapsed_s()
            for name, value in totals.items():
                running.setdefault(name, []).append(value)
            record = (after_step(self.step) if after_step else None) or {}
            out_of_time = self.elapsed_s >= budget_s
            if self.step % log_every == 0 or self.step == max_steps or out_of_time:
                means = {k: float(np.mean(v)) for k, v in running.items()}
                running = {}
                self.log(f"{self.kind} step {self.step} {self.elapsed_s / 60:.1f} min lr "
                         f"{self.opt.param_groups[0]['lr']:.2e} " + " ".join(f"{k} {v:.4f}" for k, v in means.items()))
                record = {**means, **record}
            if record:
                self.history.append({"step": self.step, "elapsed_s": round(self.elapsed_s, 1), **record})
            if (checkpoint_every and self.step % checkpoint_every == 0) or \
                    (checkpoint_minutes and time.perf_counter() - last_ckpt > 60 * checkpoint_minutes):
                self.checkpoint()
                last_ckpt = time.perf_counter()
            if out_of_time:
                if self.step < max_steps:
                    self.log(f"{self.kind}: stopping at step {self.step}, the {minutes:g}-minute budget is spent")
                break
        self.elapsed_s = elapsed_s()
        self.checkpoint()
        self.model.eval()
        return self

    def run_budget(self, cfg: BudgetConfig, sample_loss: Callable, micro_batches: int = 1,
                   after_step: Optional[Callable[[int], Optional[Dict]]] = None,
                   lr_at: Optional[Callable[[int, float], float]] = None) -> "Trainer":
        """:meth:`run` within ``cfg``'s steps and minutes, checkpointing every
        ``cfg.checkpoint_minutes``, on :func:`budget_cosine` of ``cfg.lr`` unless ``lr_at`` is given."""
        lr_at = lr_at or budget_cosine(cfg.lr, cfg.minutes, cfg.max_steps)
        return self.run(sample_loss, cfg.max_steps, cfg.minutes, lr_at, micro_batches,
                        checkpoint_minutes=cfg.checkpoint_minutes, after_step=after_step)

    def meta(self) -> Dict:
        """What the weights' meta records of the run (the model card reads it; a GPU with its name)."""
        import torch

        gpu = f" ({torch.cuda.get_device_name(torch.device(self.device))})" if self.device.startswith("cuda") else ""
        return {"train_config": self.config, "steps": self.step, "samples": self.step * self.micro_batches,
                "train_minutes": self.elapsed_s / 60, "device": self.device + gpu,
                "threads": torch.get_num_threads(), "history": self.history[-10:], "torch": str(torch.__version__)}

    def export(self, output, **meta) -> Path:
        """Write the trained network with :meth:`meta` (and ``meta``) in the checkpoint format."""
        save_network(self.model, output, self.kind, {**self.meta(), **plain(meta)})
        self.log(f"{self.kind.upper()} trained: {self.step} steps in {self.elapsed_s / 60:.1f} min -> {output}")
        return Path(output)


def budgeted_trainer(kind: str, cfg: BudgetConfig, model, output, resume: bool, log=print, params=None) -> Trainer:
    """The :class:`Trainer` of a :class:`BudgetConfig` run (``cfg`` from :func:`started`) that
    writes ``output``: the model on ``cfg.device``, Adam at ``cfg.lr`` over ``params`` (default: all
    the model's), checkpoint ``<output>.ckpt``, continued from it when ``resume``."""
    import torch

    model.to(cfg.device)  # before the optimiser takes its parameters
    opt = torch.optim.Adam(model.parameters() if params is None else params, lr=cfg.lr)
    ckpt = Path(output).with_suffix(".ckpt")
    return Trainer(kind, model, opt, ckpt, asdict(cfg), cfg.device, resume_state(ckpt, resume), log=log)


def add_run_arguments(p: argparse.ArgumentParser, resume_help: str, threads: int = 1) -> None:
    """The options of every trainer: seed, CPU threads, device, data folder and resume."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=threads, help="torch CPU threads (0: torch's default; "
                   "default: %(default)s)")
    p.add_argument("--device", default="auto", choices=list(DEVICE_CHOICES),
                   help="torch device of the training (auto: CUDA when available; default: %(default)s)")
    p.add_argument("--data", help="shared data folder holding wholeheart_ct/ (default: $CARDIAC_RECON_DATA)")
    p.add_argument("--resume", action="store_true", help=resume_help)


def add_budget_arguments(p: argparse.ArgumentParser, minutes_default: str, resume_help: str) -> None:
    """The options every time-budgeted, resumable trainer shares."""
    p.add_argument("--minutes", type=float, help=f"training time budget ({minutes_default}; 0: none, the learning "
                   "rate then decays over --max-steps and a run is reproducible bit for bit)")
    p.add_argument("--max-steps", type=int, default=100000, help="stop after this many optimiser steps")
    add_run_arguments(p, resume_help)
    p.add_argument("--subjects", help="comma-separated CT subjects (mask2surface pairs --source acdc: ACDC keys; "
                   "default: the training split)")


def budget_from_arguments(args) -> Dict[str, object]:
    """:class:`BudgetConfig` fields from :func:`add_budget_arguments`' options (no ``--minutes``:
    the trainer config's own default)."""
    out = dict(seed=args.seed, max_steps=args.max_steps, threads=args.threads, device=args.device)
    if args.minutes is not None:
        out["minutes"] = args.minutes
    return out
