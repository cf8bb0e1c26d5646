"""Slices that show no heart have no measured displacement: NaN (an empty CSV field), never a 0
that looks like a measurement; an ``estimated`` column says which slices were measured, and the
metrics skip the rest."""

import csv
import json

import numpy as np

from CardiacReconstructionLib import methods
from CardiacReconstructionLib.cli import main
from CardiacReconstructionLib.core import io
from CardiacReconstructionLib.core.case import Case
from CardiacReconstructionLib.evaluation.metrics import displacement_error
from CardiacReconstructionLib.worker import read_run_folder
from conftest import ring_stack


def _stack_with_empty_ends():
    sax = ring_stack(n_slices=7, size=32)
    array = sax.array.copy()
    array[0] = 0
    array[-1] = 0
    return sax.with_array(array)


def test_run_marks_empty_slices_unmeasured():
    sax = _stack_with_empty_ends()
    result = methods.run("centroid_shape_interp", Case(sax=sax), slice_spacing=5.0)
    assert np.isnan(result.displacements[[0, -1]]).all()
    assert np.isfinite(result.displacements[1:-1]).all()
    assert result.estimated.tolist() == [False] + [True] * 5 + [False]
    nearest = methods.run("nearest", Case(sax=sax), slice_spacing=5.0)  # no estimate at all
    assert not nearest.estimated.any() and (nearest.displacements[1:-1] == 0).all()


def test_csv_table_and_run_json_say_it(tmp_path):
    path = io.write_segmentation(_stack_with_empty_ends(), tmp_path / "sax.seg.nrrd")
    out = tmp_path / "out"
    assert main(["run", "--input", str(path), "--method", "centroid_shape_interp", "--no-surfaces",
                 "--output", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "displacements.csv")))
    assert (rows[0]["dx_mm"], rows[0]["dy_mm"], rows[0]["estimated"]) == ("", "", "0")
    assert rows[3]["dx_mm"] != "" and rows[3]["estimated"] == "1"
    info = json.loads((out / "run.json").read_text())
    assert info["displacements_mm"][0] == [None, None] and info["displacement_estimated"][0] is False
    back = read_run_folder(out)  # what the Slicer module reads after a background run
    assert np.isnan(back.displacements[0]).all() and back.estimated.tolist()[:2] == [False, True]


def test_metrics_skip_unmeasured_slices():
    true = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    estimated = np.array([[np.nan, np.nan], [2.0, 0.0], [4.0, 0.0]])
    error = displacement_error(estimated, true)
    assert error["mean_mm"] == 0.5 and np.isnan(error["per_slice"][0])
    centred = displacement_error(estimated, true, remove_mean=True)
    assert np.isclose(centred["mean_mm"], 0.5)
