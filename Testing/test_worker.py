"""The out-of-process runner the Slicer module uses, with real worker processes."""

import json
import sys
import time

import numpy as np
import pytest

from CardiacReconstructionLib import methods, worker
from CardiacReconstructionLib.core.case import Case
from CardiacReconstructionLib.cli import build_parser
from CardiacReconstructionLib.core.errors import InputError
from conftest import oblique_matrix, ring_stack


@pytest.fixture(scope="module")
def case():
    """A small oblique stack with shifted slices and a fake image on its grid."""
    shifts = [(0, 0), (2, -1), (-1, 2), (1, 1), (0, -2), (-2, 0)]
    sax = ring_stack(n_slices=6, size=40, shifts_px=shifts, matrix=oblique_matrix((1.5, 1.5, 10.0)))
    image = sax.with_array(sax.array.astype(np.float32) * 100 + 7)
    return Case(sax=sax, image=image, name="rings")


def _follow(process: worker.WorkerProcess, timeout: float = 60.0):
    """Poll like the Slicer module's timer does; returns all progress updates and log lines."""
    updates, lines = [], []
    deadline = time.monotonic() + timeout
    while not process.finished:
        assert time.monotonic() < deadline, "the worker did not finish"
        new_updates, new_lines = process.poll()
        updates += new_updates
        lines += new_lines
        time.sleep(0.05)
    return updates, lines


def test_progress_lines_round_trip():
    line = worker.format_progress(0.25, "slices\naligned  on the fit")
    assert line == "PROGRESS 0.250 slices aligned on the fit"
    assert worker.parse_progress(line) == (0.25, "slices aligned on the fit")
    assert worker.parse_progress("PROGRESS 1.5") == (1.0, "")  # clamped, message optional
    for other in ("SAX: label mapping by segment name", "PROGRESS x y", "progress 0.5 a", ""):
        assert worker.parse_progress(other) is None


def test_run_arguments_are_accepted_by_the_cli(tmp_path):
    inputs = worker.RunInputs(sax=tmp_path / "sax.seg.nrrd", lax={"4ch": tmp_path / "l4.seg.nrrd"},
                              image=tmp_path / "image.nrrd")
    args = worker.run_arguments(inputs, tmp_path / "out", "centroid_shape_interp", device="cpu", slice_spacing=1.5,
                                options={"fit_degree": 2}, cancel_file=tmp_path / "CANCEL")
    parsed = build_parser().parse_args(args)
    assert parsed.command == "run" and parsed.method == "centroid_shape_interp"
    assert parsed.input == str(inputs.sax) and parsed.image == str(inputs.image)
    assert parsed.lax == [f"4ch={inputs.lax['4ch']}"]
    assert parsed.slice_spacing == 1.5 and parsed.device == "cpu" and parsed.option == ["fit_degree=2"]
    assert parsed.progress_format == "lines" and parsed.cancel_file == str(tmp_path / "CANCEL")
    assert not parsed.no_surfaces
    assert worker.worker_command("/py", ["run"]) == ["/py", "-m", "CardiacReconstructionLib", "run"]


def test_worker_environment_puts_the_module_folder_first(tmp_path):
    env = worker.worker_environment(tmp_path, {"PYTHONPATH": f"/a{worker.os.pathsep}{tmp_path}"})
    assert env == {"PYTHONPATH": worker.os.pathsep.join([str(tmp_path.resolve()), "/a"])}
    assert worker.worker_environment(tmp_path, {}) == {"PYTHONPATH": str(tmp_path.resolve())}


def test_worker_run_matches_the_in_process_result(case, tmp_path):
    inputs = worker.write_inputs(case, tmp_path / "in")
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["image.nrrd", "sax.seg.nrrd"]
    out = tmp_path / "out"
    args = worker.run_arguments(inputs, out, "centroid_shape_interp", device="cpu", slice_spacing=2.5,
                                options={"fit_degree": 1})
    process = worker.WorkerProcess.start(worker.worker_command(sys.executable, args))
    updates, lines = _follow(process)
    assert process.returncode == 0, process.log
    fractions = [f for f, _ in updates]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert any("label mapping by segment name" in line for line in lines)  # ordinary output is kept as log

    result = worker.read_run_folder(out)
    expected = methods.run("centroid_shape_interp", case, slice_spacing=2.5, device="cpu", fit_degree=1)
    assert result.method == "centroid_shape_interp"
    assert result.labels.geometry.same_as(expected.labels.geometry)
    np.testing.assert_array_equal(result.labels.array, expected.labels.array)
    np.testing.assert_allclose(result.displacements, expected.displacements, atol=1e-4)
    assert set(result.surfaces) == {"LV", "MYO", "RV"}
    assert all(s.GetNumberOfPoints() > 0 for s in result.surfaces.values())
    assert result.timings["total_s"] > 0 and result.diagnostics["options"] == {"fit_degree": 1}
    assert (out / "corrected_image.nii.gz").is_file()  # the image went through as well


def test_input_error_in_the_worker_is_one_line_for_the_user(case, tmp_path):
    inputs = worker.write_inputs(case, tmp_path / "in")
    args = worker.run_arguments(inputs, tmp_path / "out", "centroid_shape_interp", options={"fit_degree": 7})
    process = worker.WorkerProcess.start(worker.worker_command(sys.executable, args))
    _follow(process)
    assert process.returncode == worker.INPUT_ERROR_STATUS
    assert process.error_message() == "Option 'fit_degree' must be one of [1, 2], got 7."
    assert not (tmp_path / "out").exists()


def test_cancel_file_stops_the_worker_before_anything_is_written(case, tmp_path):
    inputs = worker.write_inputs(case, tmp_path / "in")
    cancel_file = tmp_path / "CANCEL"
    cancel_file.touch()
    args = worker.run_arguments(inputs, tmp_path / "out", "nearest", cancel_file=cancel_file)
    process = worker.WorkerProcess.start(worker.worker_command(sys.executable, args), cancel_file=cancel_file)
    _follow(process)
    assert process.returncode == worker.CANCELLED_STATUS
    assert process.error_message() == "Cancelled by the user."
    assert not (tmp_path / "out").exists()


def test_cancel_kills_a_busy_process_at_once(tmp_path):
    busy = [sys.executable, "-c", "import time; print('PROGRESS 0.1 working', flush=True); time.sleep(60)"]
    process = worker.WorkerProcess.start(busy, cancel_file=tmp_path / "sub" / "CANCEL")
    deadline = time.monotonic() + 30
    while process.progress[0] == 0.0:
        assert time.monotonic() < deadline
        process.poll()
        time.sleep(0.02)
    assert process.progress == (0.1, "working") and not process.finished
    t0 = time.monotonic()
    process.cancel()
    _follow(process, timeout=10)
    assert time.monotonic() - t0 < 10
    assert process.returncode != 0 and process.cancelled
    assert (tmp_path / "sub" / "CANCEL").exists()
    assert process.error_message() == "Cancelled by the user."


def test_read_displacements_with_residuals_and_bad_files(tmp_path):
    from CardiacReconstructionLib.core.io import write_displacements

    d = np.array([[0.5, -1.25], [2.0, 0.0], [-0.125, 3.5]])
    write_displacements(d, tmp_path / "d.csv", residuals=np.array([0.1, 0.2, 0.3]))
    got, residuals = worker.read_displacements(tmp_path / "d.csv")
    np.testing.assert_allclose(got, d)
    np.testing.assert_allclose(residuals, [0.1, 0.2, 0.3])
    (tmp_path / "bad.csv").write_text("slice,x\n0,1\n")
    with pytest.raises(InputError, match="expected columns slice, dx_mm, dy_mm"):
        worker.read_displacements(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="did not finish"):
        worker.read_run_folder(tmp_path)


def test_method_options_json():
    assert worker.method_options("", "centroid_shape_interp") == {"fit_degree": 1}
    text = worker.set_method_option("", "centroid_shape_interp", "fit_degree", "2")
    assert json.loads(text) == {"centroid_shape_interp": {"fit_degree": 2}}
    assert worker.method_options(text, "centroid_shape_interp") == {"fit_degree": 2}
    assert worker.method_options(text, "nearest") == {}
    # stale or broken stored values fall back to the defaults instead of breaking a run
    stale = json.dumps({"centroid_shape_interp": {"fit_degree": 9, "gone": 1}})
    assert worker.method_options(stale, "centroid_shape_interp") == {"fit_degree": 1}
    assert worker.method_options("{not json", "centroid_shape_interp") == {"fit_degree": 1}
    with pytest.raises(InputError, match="no option 'iterations'"):
        worker.set_method_option(text, "centroid_shape_interp", "iterations", 3)
    with pytest.raises(InputError, match="must be one of"):
        worker.set_method_option(text, "centroid_shape_interp", "fit_degree", 5)


def test_option_widget_kind_for_every_option_type():
    kind = worker.option_widget_kind
    assert kind(methods.Option("a", int, 1, "", choices=(1, 2))) == "combobox"
    assert kind(methods.Option("b", bool, True, "")) == "checkbox"
    assert kind(methods.Option("c", int, 3, "", minimum=1)) == "spinbox"
    assert kind(methods.Option("d", float, 0.5, "")) == "doublespinbox"
    assert kind(methods.Option("e", str, "x", "")) == "lineedit"
    for method in methods.available():  # every registered option gets an editor
        for option in method.options:
            assert kind(option) in ("combobox", "checkbox", "spinbox", "doublespinbox", "lineedit")


def test_spin_box_format_keeps_small_values_visible():
    fmt = worker.spin_box_format
    assert fmt(methods.Option("a", float, 0.05, "", minimum=1e-05, maximum=10.0)) == (7, 0.01)
    assert fmt(methods.Option("b", float, 5.0, "", minimum=0.1)) == (3, 1.0)
    assert fmt(methods.Option("c", float, 0.0, "")) == (3, 0.1)
    assert fmt(methods.Option("d", float, 0.005, "", minimum=0.0)) == (5, 0.001)
    for method in methods.available():
        for option in method.options:
            if worker.option_widget_kind(option) == "doublespinbox":
                decimals, step = fmt(option)
                for value in (option.default, option.minimum):
                    if value:  # shown without rounding to zero
                        assert round(value, decimals) != 0
