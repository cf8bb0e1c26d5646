"""Weights a user passes (`--option weights=FILE`) are validated like shipped ones and traced:
a file that is not a checkpoint of the method's network is refused in one line (it once gave a
38-line torch unpickler traceback), and a run records the SHA-256 of the file it used."""

import json
import shutil

import pytest

from CardiacReconstructionLib import methods
from CardiacReconstructionLib.cli import main
from CardiacReconstructionLib.core import io
from CardiacReconstructionLib.networks import weights
from conftest import ring_stack


@pytest.fixture
def sax(tmp_path):
    return io.write_segmentation(ring_stack(n_slices=6, size=32), tmp_path / "sax.seg.nrrd")


def _lo(sax, out, weights_file):
    fast = [a for name, value in methods.get("latent_optimisation").test_options.items()
            for a in ("--option", f"{name}={value}")]
    return main(["run", "--input", str(sax), "--method", "latent_optimisation", "--device", "cpu", "--no-surfaces",
                 "--option", f"weights={weights_file}", *fast, "--output", str(out)])


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"PK\x03\x04 broken zip"])
def test_a_file_that_is_not_a_checkpoint_is_one_line(sax, tmp_path, capsys, content):
    bad = tmp_path / "some.pt"
    bad.write_bytes(content)
    assert _lo(sax, tmp_path / "out", bad) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("SAX: ")]
    assert len(err) == 1 and err[0].startswith("cardiac-recon run: error:") and "some.pt" in err[0]
    assert not (tmp_path / "out").exists()


def test_another_networks_checkpoint_is_refused(sax, tmp_path, capsys):
    other = shutil.copy(weights.verify("dsl"), tmp_path / "dsl_copy.pt")
    assert _lo(sax, tmp_path / "out", other) == 2
    assert "'dsl' network, expected 'vae'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_run_records_the_sha256_of_user_weights(sax, tmp_path):
    mine = shutil.copy(weights.verify("lo_vae"), tmp_path / "my_prior.pt")
    assert _lo(sax, tmp_path / "out", mine) == 0
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["weights_sha256"] == {"weights": weights.sha256(mine)}
