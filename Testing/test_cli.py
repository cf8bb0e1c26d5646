"""The command line end to end, and every bad-input case (exit 2, one line, nothing written)."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from CardiacReconstructionLib.core import io
from CardiacReconstructionLib.cli import main
from CardiacReconstructionLib.core.geometry import Volume
from conftest import write_phantom_case


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A degraded phantom stack written to files, with its truth and a 4-chamber view."""
    folder = tmp_path_factory.mktemp("sim")
    case = write_phantom_case(folder, 4, "sax.seg.nrrd", 100)
    io.write_segmentation(case.truth, folder / "truth.seg.nrrd")
    return folder, case


@pytest.mark.slow
def test_demo_writes_everything(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    for method in ("nearest", "linear", "shape_interp", "centroid_shape_interp"):
        assert method in printed
        assert {f"{method}_labels.seg.nrrd", f"{method}_displacements.csv", f"{method}_surface_LV.vtp"} <= names
    assert {"input_sax.seg.nrrd", "truth.seg.nrrd", "input_lax_4ch.seg.nrrd", "summary.md", "demo.png"} <= names
    assert "dice_LV" in (out / "summary.md").read_text()
    assert (out / "demo.png").read_bytes()[:4] == b"\x89PNG"


def test_run_with_lax_and_image(simulated, tmp_path):
    folder, case = simulated
    out = tmp_path / "run"
    rc = main(["run", "--input", str(folder / "sax.seg.nrrd"), "--lax", str(folder / "lax_4ch.nii.gz"),
               "--image", str(folder / "image.nii.gz"), "--method", "centroid_shape_interp",
               "--option", "fit_degree=2", "--slice-spacing", "2", "--output", str(out)])
    assert rc == 0
    labels = io.read_volume(out / "labels.seg.nrrd")
    assert labels.shape[0] == case.n_slices * 5
    rows = list(csv.DictReader(open(out / "displacements.csv")))
    assert len(rows) == case.n_slices and set(rows[0]) == {"slice", "dx_mm", "dy_mm", "estimated"}
    corrected = io.read_volume(out / "corrected_image.nii.gz")
    assert corrected.shape == case.sax.shape
    info = json.loads((out / "run.json").read_text())
    assert info["diagnostics"]["options"] == {"fit_degree": 2}
    assert {p.name for p in out.iterdir()} >= {"surface_LV.vtp", "surface_MYO.vtp", "surface_RV.vtp"}


def test_degrade_then_evaluate(simulated, tmp_path, capsys):
    folder, _ = simulated
    out = tmp_path / "deg"
    assert main(["degrade", "--input", str(folder / "truth.seg.nrrd"), "--preset", "severe", "--seed", "2",
                 "--lax", "4ch", "--output", str(out)]) == 0
    written = {"sax.seg.nrrd", "truth.seg.nrrd", "true_displacements.csv", "lax_4ch.seg.nrrd"}
    assert {p.name for p in out.iterdir()} == written | {"run.json"}
    assert set(json.loads((out / "run.json").read_text())["files"]) == written
    capsys.readouterr()
    assert main(["evaluate", "--result", str(folder / "truth.seg.nrrd"), "--truth", str(folder / "truth.seg.nrrd"),
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["dice_LV"] == 1.0 and metrics["assd_mean"] == 0.0


@pytest.mark.slow
def test_bench_small(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--cases", "1", "--presets", "none,severe", "--seeds", "0",
                 "--methods", "nearest,centroid_shape_interp", "--output", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "cases.csv")))
    assert len(rows) == 4 and {r["method"] for r in rows} == {"nearest", "centroid_shape_interp"}
    summary = (out / "summary.md").read_text()
    assert "preset `severe`" in summary and "time / nearest" in summary
    assert (out / "dice_mean.png").exists()


@pytest.mark.slow
def test_bench_shift_search_is_reported_apart_from_plain_dice(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--cases", "1", "--presets", "normal", "--seeds", "0", "--methods", "nearest",
                 "--shift-search", "3", "--output", str(out)]) == 0
    row, = csv.DictReader(open(out / "cases.csv"))
    plain, searched = float(row["dice_mean"]), float(row["dice_shift_searched_mean"])
    assert searched >= plain - 1e-9 and max(abs(float(row["shift_searched_di_px"])),
                                           abs(float(row["shift_searched_dj_px"]))) <= 3
    summary = (out / "summary.md").read_text()
    assert "dice_shift_searched_mean" in summary and "NOT plain Dice" in summary


def test_methods_and_help(capsys):
    assert main(["methods"]) == 0
    assert "centroid_shape_interp" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0 and "examples" in capsys.readouterr().out


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "CardiacReconstructionLib", "--version"], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "cardiac-recon" in proc.stdout


def _write_bad_inputs(folder, simulated_folder):
    """Each bad input as a file; returns {name: (path, expected message fragment, extra args)}."""
    rng = np.random.default_rng(0)
    eye = np.diag([1.5, 1.5, 10.0, 1.0])
    io.write_volume(Volume(rng.normal(300, 50, (8, 32, 32)).astype(np.float32), eye), folder / "image.nii.gz")
    io.write_segmentation(Volume(np.zeros((8, 32, 32), np.uint8), eye), folder / "empty.nii.gz")
    unknown = np.zeros((8, 32, 32), np.uint8)
    unknown[:, 10:20, 10:20] = 9
    unknown[:, 12:14, 12:14] = 2
    io.write_segmentation(Volume(unknown, eye), folder / "unknown.nii.gz")
    single = np.zeros((1, 32, 32), np.uint8)
    single[0, 10:20, 10:20] = 1
    io.write_segmentation(Volume(single, eye), folder / "single.nii.gz")
    header = ("NRRD0004\ntype: uint8\ndimension: 3\nspace: left-posterior-superior\nsizes: 8 8 4\n"
              "space directions: (nan,nan,nan) (0,1,0) (0,0,10)\nkinds: domain domain domain\nendian: little\n"
              "encoding: raw\nspace origin: (0,0,0)\n\n")
    voxels = np.zeros((4, 8, 8), np.uint8)
    voxels[1:3, 2:5, 2:5] = 1
    (folder / "nan.nrrd").write_bytes(header.encode() + voxels.tobytes())
    parallel = io.read_volume(simulated_folder / "sax.seg.nrrd")
    io.write_segmentation(Volume(parallel.array[3:4], parallel.ijk_to_ras), folder / "lax_4ch_bad.nii.gz")
    sax = str(simulated_folder / "sax.seg.nrrd")
    return {
        "missing file": (["--input", str(folder / "nope.nii.gz")], "File not found"),
        "not a label map": (["--input", str(folder / "image.nii.gz")], "not a label map"),
        "empty labels": (["--input", str(folder / "empty.nii.gz")], "empty"),
        "unknown labels": (["--input", str(folder / "unknown.nii.gz")], "label values"),
        "single slice": (["--input", str(folder / "single.nii.gz")], "at least 2 slices"),
        "non-finite geometry": (["--input", str(folder / "nan.nrrd")], "non-finite"),
        "mismatched LAX pose": (["--input", sax, "--lax", str(folder / "lax_4ch_bad.nii.gz")], "parallel"),
    }


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(simulated, tmp_path, capsys):
    bad_folder = tmp_path / "bad"
    bad_folder.mkdir()
    cases = _write_bad_inputs(bad_folder, simulated[0])
    before = {p: p.read_bytes() for p in simulated[0].iterdir()}
    for what, (args, fragment) in cases.items():
        out = tmp_path / f"out_{what.replace(' ', '_')}"
        rc = main(["run", *args, "--method", "nearest", "--output", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, what
        assert len(err) == 1 and fragment.lower() in err[0].lower() and "Traceback" not in err[0], (what, err)
        assert not out.exists(), what
    assert {p: p.read_bytes() for p in simulated[0].iterdir()} == before  # inputs untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]  # no staging folder left behind


def test_bad_option_values(simulated, tmp_path, capsys):
    sax = str(simulated[0] / "sax.seg.nrrd")
    assert main(["run", "--input", sax, "--method", "nope", "--output", str(tmp_path / "o")]) == 2
    assert "Unknown method" in capsys.readouterr().err
    assert main(["run", "--input", sax, "--method", "nearest", "--option", "x", "--output", str(tmp_path / "o")]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert main(["run", "--input", sax, "--method", "nearest", "--slice-spacing", "0",
                 "--output", str(tmp_path / "o")]) == 2
    assert "positive" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_run_progress_lines_for_a_calling_process(simulated, tmp_path):
    """--progress-format lines: a real child process prints flushed 'PROGRESS <fraction> <message>'
    lines on stderr (what the Slicer module parses) and no progress bar; a cancel file stops it
    with status 130 and nothing written."""
    folder, case = simulated
    out = tmp_path / "run"
    base = [sys.executable, "-m", "CardiacReconstructionLib", "run", "--input", str(folder / "sax.seg.nrrd"),
            "--method", "centroid_shape_interp", "--progress-format", "lines"]
    done = subprocess.run(base + ["--output", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    progress = [line.split(" ", 2) for line in done.stderr.splitlines() if line.startswith("PROGRESS ")]
    fractions = [float(p[1]) for p in progress]
    assert len(progress) >= 3 and fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert all(len(p) == 3 and p[2] for p in progress)  # every line carries a message
    assert "%|" not in done.stderr  # no tqdm bar mixed in
    assert (out / "labels.seg.nrrd").is_file()

    cancel = tmp_path / "CANCEL"
    cancel.touch()
    stopped = subprocess.run(base + ["--cancel-file", str(cancel), "--output", str(tmp_path / "cancelled")],
                             capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 130 and "Cancelled" in stopped.stderr
    assert not (tmp_path / "cancelled").exists()
