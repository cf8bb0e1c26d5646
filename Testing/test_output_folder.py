"""What `cardiac-recon` writes, and where it refuses to: the output folder is checked before any
computation (writable; empty unless --overwrite, which replaces only an earlier run's own files),
Ctrl-C and filesystem errors end in one line with nothing written, and the same input and seed
give byte-identical files."""

import json
import os
import stat

import pytest

from CardiacReconstructionLib import methods
from CardiacReconstructionLib.cli import main
from CardiacReconstructionLib.core import io
from conftest import ring_stack


@pytest.fixture
def sax(tmp_path):
    return io.write_segmentation(ring_stack(n_slices=6, size=32), tmp_path / "sax.seg.nrrd")


def _run(sax, out, *extra):
    return main(["run", "--input", str(sax), "--method", "shape_interp", "--output", str(out), *extra])


@pytest.fixture
def no_method_runs(monkeypatch):
    """Fail loudly if a refused command got as far as computing."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the method ran although the output folder was refused")
    monkeypatch.setattr(methods, "run", forbidden)


def _one_line_error(capsys, *fragments):
    """One error line (after any label-mapping notes of the inputs read before it)."""
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("SAX: ")]
    assert len(err) == 1 and err[0].startswith("cardiac-recon run: error:"), err
    for fragment in fragments:
        assert fragment in err[0], err[0]


def test_output_that_is_a_file_is_refused_before_any_work(sax, tmp_path, capsys, no_method_runs):
    (tmp_path / "out").write_text("x")
    assert _run(sax, tmp_path / "out") == 2
    _one_line_error(capsys, "is a file, not a folder")


def test_output_below_a_file_is_refused(sax, tmp_path, capsys, no_method_runs):
    (tmp_path / "parent").write_text("x")
    assert _run(sax, tmp_path / "parent" / "out") == 2
    _one_line_error(capsys, "is a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_parent_is_refused(sax, tmp_path, capsys, no_method_runs):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert _run(sax, parent / "out") == 2
    finally:
        parent.chmod(stat.S_IRWXU)
    _one_line_error(capsys, "not writable")


def test_read_only_output_parent_is_refused_even_as_root(sax, tmp_path, capsys, monkeypatch, no_method_runs):
    """As root os.access says yes; the check still asks it, so simulate the answer a user gets."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(tmp_path) else real(path, mode))
    assert _run(sax, tmp_path / "out") == 2
    _one_line_error(capsys, "not writable", "permission denied")


def test_an_earlier_run_is_replaced_only_with_overwrite(sax, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(sax, out) == 0
    first = json.loads((out / "run.json").read_text())
    assert set(first["files"]) == {p.name for p in out.iterdir()} - {"run.json"}
    (out / "surface_stale_from_an_older_version.vtp").write_text("x")  # not in run.json: not ours
    capsys.readouterr()
    assert _run(sax, out, "--no-surfaces") == 2
    _one_line_error(capsys, "not empty", "--overwrite")
    assert _run(sax, out, "--no-surfaces", "--overwrite") == 2
    _one_line_error(capsys, "did not write", "surface_stale_from_an_older_version.vtp")
    (out / "surface_stale_from_an_older_version.vtp").unlink()
    assert _run(sax, out, "--no-surfaces", "--overwrite") == 0
    names = {p.name for p in out.iterdir()}
    assert not any(n.startswith("surface_") for n in names)  # the earlier run's surfaces are gone
    assert names == set(json.loads((out / "run.json").read_text())["files"]) | {"run.json"}


def test_overwrite_refuses_a_folder_without_a_run_record(sax, tmp_path, capsys, no_method_runs):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _run(sax, out, "--overwrite") == 2
    _one_line_error(capsys, "no run.json")
    assert (out / "notes.txt").read_text() == "mine"


def test_ctrl_c_is_one_line_and_writes_nothing(sax, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(methods, "run", interrupted)
    assert _run(sax, tmp_path / "out") == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "cardiac-recon run: interrupted; nothing written"
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sax.seg.nrrd"]  # no staging folder left


def test_a_filesystem_error_while_writing_is_one_line(sax, tmp_path, capsys, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "labels.seg.nrrd"))
    monkeypatch.setattr(io, "write_segmentation", full_disk)
    assert _run(sax, tmp_path / "out") == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("cardiac-recon run: error: cannot write") and "labels.seg.nrrd: No space left" in err
    assert not (tmp_path / "out").exists()


def test_the_same_input_and_seed_give_byte_identical_outputs(sax, tmp_path):
    assert _run(sax, tmp_path / "a") == 0
    assert _run(sax, tmp_path / "b") == 0
    for name in ("labels.seg.nrrd", "displacements.csv", "surface_LV.vtp"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    header = (tmp_path / "a" / "labels.seg.nrrd").read_bytes()[:400]
    assert b"# on " not in header  # pynrrd's timestamp comment is dropped


def test_a_run_that_cannot_fit_in_memory_is_refused_before_it_starts(sax, tmp_path, capsys):
    """--slice-spacing 0.001 once ran until the kernel killed it at 23.7 GB."""
    assert _run(sax, tmp_path / "out", "--slice-spacing", "0.00001") == 2
    _one_line_error(capsys, "would need about", "GiB", "this machine has available", "use a larger --slice-spacing")
    assert _run(sax, tmp_path / "out", "--max-memory", "0.001") == 2
    _one_line_error(capsys, "--max-memory")
    assert not (tmp_path / "out").exists()


def test_the_memory_estimate_covers_the_measured_peak():
    """The guard's figures are not a guess: a real run's peak stays below the estimate."""
    from CardiacReconstructionLib.core.api import check_memory
    from CardiacReconstructionLib.core.case import Case
    from CardiacReconstructionLib.evaluation.bench import PeakMemory

    case = Case(sax=ring_stack(n_slices=6, size=64))
    for name in ("shape_interp", "centroid_shape_interp"):
        grid = methods.output_geometry(case.sax.geometry, 0.5)
        with PeakMemory() as mem:
            methods.run(name, case, slice_spacing=0.5)
        assert mem.peak_mib < check_memory(methods.get(name), grid), name
