"""`cardiac-recon check`: what was understood of the files, before anything runs."""

import pytest

from CardiacReconstructionLib.check import anatomical
from CardiacReconstructionLib.cli import main
from CardiacReconstructionLib.core import axes
from conftest import write_phantom_case


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A phantom case stored with its slices along the file's i axis, a 4-chamber view and an image."""
    folder = tmp_path_factory.mktemp("check")
    order = axes.order_with_slices_last(0)
    case = write_phantom_case(folder, 1, "sax.nii.gz", 50, lambda volume: axes.restore_axes(volume, order))
    return folder, case


def test_check_reports_axis_order_views_image_and_memory(files, capsys, tmp_path):
    folder, case = files
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(["check", "--input", str(folder / "sax.nii.gz"), "--lax", str(folder / "lax_4ch.nii.gz"),
                 "--image", str(folder / "image.nii.gz")]) == 0
    out = capsys.readouterr().out
    assert f"{case.n_slices} slices along the file's i axis" in out
    assert "slice order: base to apex" in out  # the phantom is degraded base first
    assert "LV to RV: right" in out  # the phantom's RV lies to the patient's right of the LV
    assert "label convention: canonical" in out and "4ch view: its plane is" in out
    assert "image: on the same grid as the labels" in out
    for method in ("nearest", "latent_optimisation", "mask2surface"):
        assert f"  {method}: about " in out
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # inputs untouched, nothing written
    assert list(tmp_path.iterdir()) == []


def test_check_refuses_like_run(files, capsys, tmp_path):
    bad = tmp_path / "notes.nii.gz"
    bad.write_text("not an image")
    assert main(["check", "--input", str(bad)]) == 2
    assert capsys.readouterr().err.strip().startswith("cardiac-recon check: error:")


def test_directions_in_words():
    assert anatomical([1, 0, 0]).startswith("right (R 1.00")
    assert anatomical([0, -1, -1]).startswith("posterior-inferior")
