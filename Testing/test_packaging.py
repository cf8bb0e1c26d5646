"""pip packaging: every engine subpackage and the shipped weights are part of the distribution
(setuptools' explicit package list silently drops anything not named)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "CardiacReconstruction" / "CardiacReconstructionLib"

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")


def _setuptools_config():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_subpackage_is_listed():
    packages = set(_setuptools_config()["packages"])
    found = {".".join(("CardiacReconstructionLib",) + p.parent.relative_to(LIB).parts)
             for p in LIB.rglob("__init__.py")}
    assert found <= packages, sorted(found - packages)


def test_weights_travel_with_pip_installs():
    config = _setuptools_config()
    assert config["package-dir"]["CardiacReconstructionWeights"] == "CardiacReconstruction/Resources/Weights"
    patterns = config["package-data"]["CardiacReconstructionWeights"]
    shipped = {p.suffix for p in (ROOT / "CardiacReconstruction" / "Resources" / "Weights").iterdir()}
    assert shipped <= {pat.lstrip("*") for pat in patterns}
