"""Every shipped model card (Resources/Weights/*.md), and every card the training commands write,
says what the weights are for (not clinical decisions), under which licence they and their data
are, which split chose them, on which device they were trained, and how to reproduce them with a
command the project ships."""

import re
import shlex
from pathlib import Path

import pytest

from CardiacReconstructionLib.training.cards import SECTIONS

WEIGHTS = Path(__file__).resolve().parents[1] / "CardiacReconstruction" / "Resources" / "Weights"
CARDS = sorted(WEIGHTS.glob("*.md"))


def section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    start = text.index(heading) + len(heading)
    nxt = re.search(r"^#{1,2} ", text[start:], flags=re.M)
    return text[start:start + nxt.start()] if nxt else text[start:]


def assert_card_complete(text: str) -> None:
    """The sections of :data:`.cards.SECTIONS` with what each must say; the reproducing command
    is a ``cardiac-recon train`` command line that the shipped CLI parses."""
    from CardiacReconstructionLib.cli import build_parser

    for heading in SECTIONS:
        assert heading in text, f"missing section {heading!r}"
    use = section(text, "## Intended use")
    assert "research" in use.lower() and "not for diagnosis" in use and "clinical decision" in use
    terms = section(text, "## Licence and data terms")
    assert "Apache-2.0" in terms
    assert ("Rodero" in terms and "2021" in terms) or "ACDC" in terms, "no training data named"
    if "ACDC" in text:
        assert "Bernard" in terms and "research use only" in terms and "2018" in terms
    assert section(text, "## Selection of these weights").strip()
    reproducing = section(text, "## Reproducing")
    assert re.search(r"^\* Device: \S+", reproducing, flags=re.M), "no device"
    commands = re.findall(r"`(cardiac-recon train [^`]+)`", reproducing)
    assert commands, "no reproducing command"
    for command in commands:
        argv = shlex.split(command)[1:]
        args = build_parser().parse_args(argv)  # SystemExit on an option the CLI does not have
        assert args.command == "train" and args.device in ("cpu", "cuda"), command
    for machine_path in ("/tmp/", "/work/", "/home/", "/root/", "/Users/"):
        assert machine_path not in text, f"machine path {machine_path} in the card"


def test_every_shipped_network_has_its_card():
    assert {p.stem for p in CARDS} == {"asv", "dsl", "lo_vae", "m2s_ldm", "m2s_vqvae", "mcsr", "deeprecon_g",
                                       "deeprecon_d", "deeprecon_e", "deeprecon_seg", "deeprecon_directseg"}


@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.stem)
def test_shipped_card_has_the_required_sections(card):
    assert_card_complete(card.read_text(encoding="utf-8"))


def test_cards_that_were_chosen_on_validation_data_say_so():
    """The LO prior and the Mask2Surface refinement networks were chosen among runs on held-out
    validation data: their cards must say it plainly."""
    for name in ("lo_vae", "m2s_vqvae", "m2s_ldm"):
        selection = section((WEIGHTS / f"{name}.md").read_text(encoding="utf-8"), "## Selection of these weights")
        assert "validation" in selection and "chose" in selection.lower(), name
