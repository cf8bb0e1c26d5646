"""The one model-card writer of the training commands (``install`` stages, ``train lo --register``).

Why one: every shipped weights file must say the same things in the same places, whichever
trainer made it: what it is for (and that it is not for clinical decisions), the licence of the
weights and the terms of the data they were trained on, which data split chose them, the device,
and a ``cardiac-recon train ...`` command that reproduces them. :func:`render` lays out a
:class:`Card` in that order; ``Testing/test_model_cards.py`` checks that every shipped card
(written by this module, or edited by hand after it) has the sections of :data:`SECTIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Tuple

WEIGHTS_LICENCE = "Apache-2.0"

CT_CITATION = ("Rodero C. et al., 'Linking statistical shape models and simulated function in the healthy adult "
               "human heart', PLOS Computational Biology 17(4):e1008851 (2021).")
ACDC_CITATION = ("Bernard O. et al., 'Deep learning techniques for automatic MRI cardiac multi-structures "
                 "segmentation and diagnosis: is the problem solved?', IEEE TMI 37(11):2514-2525 (2018).")

#: Data set -> (what it is with its citation, its terms as the project received it).
DATA_TERMS = {
    "ct": (f"the whole-heart CT cohort (19 healthy adults, end-diastole): {CT_CITATION}",
           "third-party data, neither shipped with the project nor contained in the weights; the copy the "
           "project trains on states no licence beyond citing the paper, which every use of these weights must do"),
    "acdc": (f"the ACDC challenge training set (short-axis MRI labels): {ACDC_CITATION}",
             "research use only; cite the paper; not shipped with the project"),
}

INTENDED_USE = ("Research use only: reconstructing cardiac short-axis label stacks in the CardiacReconstruction "
                "3D Slicer extension and its `cardiac-recon` command. Not a medical device and not clinically "
                "validated: not for diagnosis, treatment or any other clinical decision.")

DEFAULT_SELECTION = ("The final weights of the training run above, not chosen among runs; the held-out validation "
                     "split was used only to measure the figures below.")

#: The headings every shipped card carries (the test of the shipped cards reads them).
SECTIONS = ("## Intended use", "## Licence and data terms", "## Selection of these weights", "## Reproducing")


@dataclass
class Card:
    """What a model card says; :func:`render` writes it."""
    title: str
    summary: str  # what the network is
    use: str  # what it does in its method (the intended use, with :data:`INTENDED_USE`)
    method: str  # the method's citation and how it was implemented
    data: Tuple[str, ...]  # keys of DATA_TERMS
    data_used: str  # which part of the data (split) trained it
    command: str  # the shipped `cardiac-recon train ...` command line that reproduces the weights
    device: str
    sha256: str
    training: Sequence[str] = ()  # bullets: configuration, steps, time
    validation: str = ""  # markdown, with its own heading
    limits: Sequence[str] = ()
    selection: str = DEFAULT_SELECTION
    notes: Sequence[str] = field(default_factory=tuple)  # extra reproduction notes


def render(card: Card) -> str:
    """The card's markdown."""
    bullets = lambda items: [f"* {b}" for b in items]  # noqa: E731
    lines = [f"# {card.title}", "", card.summary, "",
             SECTIONS[0], "", f"{card.use} {INTENDED_USE}", "",
             SECTIONS[1], "",
             f"* Weights: {WEIGHTS_LICENCE}, the project's licence.",
             f"* Method: {card.method}",
             *(f"* Training data: {DATA_TERMS[k][0]} Terms: {DATA_TERMS[k][1]}." for k in card.data),
             f"* Used: {card.data_used}", "",
             "## Training", "", *bullets(card.training), "",
             SECTIONS[2], "", card.selection, "",
             SECTIONS[3], "",
             f"* Device: {card.device}.",
             f"* Command: `{card.command}`", *bullets(card.notes), ""]
    if card.validation:
        lines += [card.validation, ""]
    if card.limits:
        lines += ["## Limits", "", *bullets(card.limits), ""]
    lines += [f"SHA-256 of the weights file: `{card.sha256}`", ""]
    return "\n".join(lines)


def budget_note(train) -> str:
    """How far the command reproduces a budgeted run: by time (in kind) or by steps (exactly)."""
    if train.get("minutes", 1) > 0:
        return ("A time-budgeted run (`--minutes`): its learning rate follows the minutes spent, so the same command "
                "makes as many steps as the machine manages and reproduces these weights in kind, not bit for bit. "
                "`--minutes 0 --max-steps N` trains by steps instead, the same bit for bit for the same seed, device "
                "and thread count.")
    return ("Trained by steps (`--minutes 0`): the learning rate follows the steps, so the command repeats these "
            "weights bit for bit for the same seed, device and thread count.")


def device_line(meta) -> str:
    """'cpu, 1 CPU thread, torch 2.x' from a weights file's meta (:meth:`.trainer.Trainer.meta`)."""
    n = meta.get("threads", 1)
    return f"{meta.get('device', 'cpu')}, {n} CPU thread{'s' if n != 1 else ''}, torch {meta.get('torch', '?')}"


def budget_options(train, default_max_steps: int = 100000) -> str:
    """The options of :func:`.trainer.add_budget_arguments` that reproduce a run from its
    ``train_config``."""
    out = (f" --minutes {train.get('minutes', 0):g} --threads {train.get('threads', 1)} --seed {train.get('seed', 0)} "
           f"--device {train.get('device', 'cpu')}")
    if train.get("max_steps", default_max_steps) != default_max_steps:
        out += f" --max-steps {train['max_steps']}"
    return out + (f" --subjects {','.join(train['subjects'])}" if train.get("subjects") else "")


def weights_facts(path, samples_note: str):
    """What a card reads from a weights file of a budgeted trainer: (meta, network config,
    training config, the :class:`Card` fields device, sha256 and training: time, steps and samples
    (``samples_note`` says what a sample is), the network and training configurations, files named
    without a machine's folders)."""
    import json

    import numpy as np
    import torch

    from ..networks.weights import sha256

    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    meta, cfg = obj.get("meta", {}), obj["config"]
    train = meta.get("train_config", {})
    shown = {**train, **{k: ",".join(Path(f).name for f in str(v).split(",")) for k, v in train.items()
                         if k in ("pairs", "data_root", "init") and v}}
    n_params = sum(int(np.prod(v.shape)) for v in obj["state_dict"].values())
    training = [f"{meta.get('train_minutes', 0):.1f} min, {meta.get('steps', 0)} optimiser steps, "
                f"{meta.get('samples', 0)} training samples ({samples_note}).",
                f"Network configuration: `{json.dumps(cfg)}` ({n_params} parameters).",
                f"Training configuration: `{json.dumps(shown)}`."]
    return meta, cfg, train, dict(device=device_line(meta), sha256=sha256(path), training=training)


def metrics_table(heading: str, text: str, metrics) -> str:
    """A validation section: heading, what was measured, and a metric | value table."""
    rows = "\n".join(f"| {k} | {v:.3f} |" for k, v in metrics.items())
    return f"{heading}\n\n{text}\n\n| metric | value |\n|---|---|\n{rows}"


def add_selection_argument(p) -> None:
    """``--selection``: what the card says chose the weights (the command cannot know)."""
    p.add_argument("--selection", default=DEFAULT_SELECTION,
                   help="install / --register: how these weights were chosen, for the model card; say which data "
                        "split chose them (default: the final weights of one run, not chosen among runs)")
