"""Images in: a cine SAX image given alone (segmented first, then any method), DeepRecon's synthetic
image among the outputs, bad images refused in one line, and ``adapt-motion``, end to end through
the CLI (and the worker and MRML paths the Slicer module uses), on cases the project makes itself:
phantom labels rendered as bSSFP-like cines (simulation.mr_render)."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from CardiacReconstructionLib import cli, methods, worker
from CardiacReconstructionLib.cli import main
from CardiacReconstructionLib.core import io
from CardiacReconstructionLib.core.axes import permute, restore_axes
from CardiacReconstructionLib.core.case import Case
from CardiacReconstructionLib.core.geometry import Volume
from CardiacReconstructionLib.core.labels import LV, MYO
from CardiacReconstructionLib.methods import deeprecon
from CardiacReconstructionLib.simulation.cases import make_case
from CardiacReconstructionLib.simulation.mr_render import render_cine
from CardiacReconstructionLib.simulation.phantom import make_phantom

#: Slices along i: the file layout of some research pipelines (results go back out that way).
SLICES_ALONG_I = (2, 0, 1)
FAST = ["--option", "steps=2"]


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def cine(tmp_path_factory):
    """A phantom SAX stack (normal motion, 10 mm slices) and its rendered cine, as files: the cine
    with the slices along k (``cine.nii.gz``) and along i (``cine_i.nii.gz``), the labels
    (``sax.seg.nrrd``)."""
    folder = tmp_path_factory.mktemp("cine")
    case = make_case(make_phantom(seed=0).truth, "normal", seed=0, slice_spacing=10.0)
    image = render_cine(case.sax, seed=0)
    io.write_volume(image, folder / "cine.nii.gz")
    io.write_volume(permute(image, SLICES_ALONG_I), folder / "cine_i.nii.gz")
    io.write_segmentation(case.sax, folder / "sax.seg.nrrd")
    return folder, case, io.read_volume(folder / "cine.nii.gz")


def test_constants_copied_from_the_engine_agree():
    assert tuple(worker.SEGMENTERS) == tuple(deeprecon.SEGMENTERS)
    assert cli.SEGMENT_STEPS == deeprecon.DEFAULT_STEPS


def test_image_alone_deeprecon_writes_everything_in_the_files_axis_order(cine, tmp_path, capsys):
    """--image alone, --method deeprecon: segmented by DirectSeg, reconstructed; labels, the
    synthetic image and the input segmentation come back in the file's own axis order (slices
    along i here), the synthetic image on the labels' grid; run.json says where the segmentation
    came from."""
    folder, case, image = cine
    out = tmp_path / "out"
    assert main(["run", "--image", str(folder / "cine_i.nii.gz"), "--method", "deeprecon", *FAST,
                 "--slice-spacing", "2", "--output", str(out)]) == 0
    written = {p.name for p in out.iterdir()}
    assert written == {"labels.seg.nrrd", worker.RESULT_IMAGE, worker.RESULT_INPUT_SEGMENTATION, "displacements.csv",
                       "corrected_image.nii.gz", "run.json"} | {f"surface_{k}.vtp" for k in ("LV", "MYO", "RV")}

    labels = io.read_volume(out / "labels.seg.nrrd")
    synthetic = io.read_volume(out / worker.RESULT_IMAGE)
    assert labels.shape == (128, 128, 5 * case.n_slices)  # k, j, i: the slices along i, as in the file
    assert np.allclose(labels.spacing, [2.0, 1.25, 1.25])
    assert synthetic.geometry.same_as(labels.geometry, atol=1e-3)
    assert synthetic.array.dtype == np.float32 and not synthetic.is_label
    lo, hi = np.percentile(image.array, [0.5, 99.5])  # painted in the input's intensity window
    assert lo - 1e-3 <= synthetic.array.min() < synthetic.array.max() <= hi + 1e-3

    computed = io.read_volume(out / worker.RESULT_INPUT_SEGMENTATION)
    file_grid = io.read_volume(folder / "cine_i.nii.gz")
    assert computed.geometry.same_as(file_grid.geometry, atol=1e-3)
    expected = deeprecon.segment_image(image, "directseg")  # the same segmentation, in the working order
    np.testing.assert_array_equal(restore_axes(computed, SLICES_ALONG_I).array, expected.array)

    info = json.loads((out / "run.json").read_text())
    assert info["input"] is None and info["image"].endswith("cine_i.nii.gz")
    assert info["segmentation"] == {"source": "directseg"}
    assert info["method"] == "deeprecon" and info["diagnostics"]["options"]["steps"] == 2
    assert info["timings"]["segmentation_s"] > 0 and set(info["files"]) == written - {"run.json"}
    assert "segmented from the image by directseg" in capsys.readouterr().err


def test_image_alone_segmented_then_any_method_matches_the_in_process_run(cine, tmp_path):
    """--segment directseg --method centroid_shape_interp: the labels are what the method gives
    on DirectSeg's segmentation of the image (computed here in process)."""
    folder, case, image = cine
    out = tmp_path / "out"
    assert main(["run", "--image", str(folder / "cine.nii.gz"), "--segment", "directseg",
                 "--method", "centroid_shape_interp", "--no-surfaces", "--output", str(out)]) == 0
    segmentation = deeprecon.segment_image(image, "directseg")
    expected = methods.run("centroid_shape_interp", Case(sax=segmentation, image=image), device="cpu")
    labels = io.read_volume(out / "labels.seg.nrrd")
    assert labels.geometry.same_as(expected.labels.geometry, atol=1e-3)
    np.testing.assert_array_equal(labels.array, expected.labels.array)
    rows = list(csv.DictReader(open(out / "displacements.csv")))
    assert len(rows) == case.n_slices
    measured = [r for r in rows if r["estimated"] == "1"]
    np.testing.assert_allclose([[float(r["dx_mm"]), float(r["dy_mm"])] for r in measured],
                               expected.displacements[expected.estimated], atol=1e-4)
    np.testing.assert_array_equal(io.read_volume(out / worker.RESULT_INPUT_SEGMENTATION).array, segmentation.array)
    assert not (out / worker.RESULT_IMAGE).exists()  # a label-domain method paints no image


def test_image_segmented_by_deeprecon_then_latent_optimisation(cine, tmp_path):
    folder, case, _ = cine
    out = tmp_path / "out"
    options = [f"{k}={v}" for k, v in methods.get("latent_optimisation").test_options.items()]
    assert main(["run", "--image", str(folder / "cine.nii.gz"), "--segment", "deeprecon", "--segment-steps", "2",
                 "--method", "latent_optimisation", *sum((["--option", o] for o in options), []),
                 "--no-surfaces", "--output", str(out)]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["segmentation"] == {"source": "deeprecon", "steps": 2} and info["method"] == "latent_optimisation"
    computed = io.read_volume(out / worker.RESULT_INPUT_SEGMENTATION)
    assert computed.shape == case.sax.shape and computed.array.any()
    assert io.read_volume(out / "labels.seg.nrrd").shape[0] == 5 * case.n_slices


def test_deeprecon_with_a_given_segmentation_writes_no_input_segmentation(cine, tmp_path):
    folder, case, _ = cine
    out = tmp_path / "out"
    assert main(["run", "--input", str(folder / "sax.seg.nrrd"), "--image", str(folder / "cine.nii.gz"),
                 "--method", "deeprecon", *FAST, "--no-surfaces", "--output", str(out)]) == 0
    assert (out / worker.RESULT_IMAGE).is_file() and not (out / worker.RESULT_INPUT_SEGMENTATION).exists()
    info = json.loads((out / "run.json").read_text())
    assert info["segmentation"] == {"source": "file", "path": str(folder / "sax.seg.nrrd")}


def _bad_images(folder: Path, case, image: Volume):
    """Each bad image input as files: {what: (run arguments, expected message fragment)}."""
    io.write_volume(case.sax, folder / "labels_as_image.nii.gz")  # uint8 labels passed as the image
    io.write_volume(case.sax.with_array(case.sax.array.astype(np.float32)), folder / "float_labels.nii.gz")
    io.write_volume(Volume(image.array[5:6], image.ijk_to_ras), folder / "one_slice.nii.gz")
    import SimpleITK as sitk

    flat = sitk.GetImageFromArray(image.array[5])  # a genuine 2-D file
    flat.SetSpacing((1.25, 1.25))
    sitk.WriteImage(flat, str(folder / "flat.nii.gz"))
    io.write_volume(Volume(image.array[:, 8:, :], image.ijk_to_ras), folder / "cropped.nii.gz")
    moved = image.ijk_to_ras.copy()
    moved[:3, 3] += [5.0, 0.0, 0.0]
    io.write_volume(Volume(image.array, moved), folder / "moved.nii.gz")
    return {
        "label map as the image (uint8)": (["--image", str(folder / "labels_as_image.nii.gz")], "like a label map"),
        "label map as the image (float)": (["--image", str(folder / "float_labels.nii.gz")], "like a label map"),
        "one slice": (["--image", str(folder / "one_slice.nii.gz")], "single 2D slice"),
        "2-D file": (["--image", str(folder / "flat.nii.gz")], "single 2D slice"),
        "grid size mismatch": (["--image", str(folder / "cropped.nii.gz")], "share one grid"),
        "grid pose mismatch": (["--image", str(folder / "moved.nii.gz")], "same pose"),
    }


def test_bad_images_exit_2_with_one_line_and_write_nothing(cine, tmp_path, capsys):
    folder, case, image = cine
    bad = tmp_path / "bad"
    bad.mkdir()
    cases = _bad_images(bad, case, image)
    sax = str(folder / "sax.seg.nrrd")
    for what, (args, fragment) in cases.items():
        with_input = ["--input", sax] if what.startswith("grid") else []
        out = tmp_path / f"out_{len(what)}_{what.split()[0]}"
        rc = main(["run", *with_input, *args, "--method", "deeprecon", *FAST, "--output", str(out)])
        line = _one_line_error(capsys)
        assert rc == 2 and fragment in line, (what, line)
        assert not out.exists(), what
    cine_file = str(folder / "cine.nii.gz")
    for extra, fragment in ((["--option", "stepz=2"], "has no option"), (["--option", "steps=-1"], "must lie in"),
                            (["--slice-spacing", "0"], "positive"), (["--max-memory", "0.001"], "would need")):
        # refused before the image is segmented: no 'segmented from the image' line before the error
        rc = main(["run", "--image", cine_file, "--method", "deeprecon", *extra, "--output", str(tmp_path / "o")])
        assert rc == 2
        assert fragment in _one_line_error(capsys), extra
    assert main(["run", "--method", "nearest", "--output", str(tmp_path / "o")]) == 2
    line = _one_line_error(capsys)
    assert "--input" in line and "--image" in line
    assert main(["run", "--input", sax, "--image", str(folder / "cine.nii.gz"), "--segment", "directseg",
                 "--method", "nearest", "--output", str(tmp_path / "o")]) == 2
    assert "--segment" in _one_line_error(capsys)
    assert main(["run", "--input", sax, "--method", "deeprecon", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err  # methods.run refuses before the method starts, after the label mapping
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith(
        "error: Method 'deeprecon' reconstructs from the SAX images: give the cine image (--image) on the "
        "segmentation's grid, or the image alone.")
    assert not (tmp_path / "o").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]  # no staging folder left behind


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """A source subject's ED cine (phantom seed 0) and a target subject's ED and 'ES' frames
    (phantom seed 1; its ES labels: the LV blood pool eroded by 3 pixels per slice, the ring
    it loses becoming myocardium), with the target's segmentations; no motion, 10 mm slices."""
    folder = tmp_path_factory.mktemp("frames")
    source = make_case(make_phantom(seed=0).truth, "none", seed=0, slice_spacing=10.0).sax
    ed = make_case(make_phantom(seed=1).truth, "none", seed=1, slice_spacing=10.0).sax
    es = ed.array.copy()
    lv = es == LV
    es[lv & ~np.stack([ndimage.binary_erosion(m, iterations=3) for m in lv])] = MYO
    io.write_volume(render_cine(source, seed=0), folder / "source_ed.nii.gz")
    for name, labels in (("ed", ed), ("es", ed.with_array(es))):
        io.write_volume(render_cine(labels, seed=1), folder / f"target_{name}.nii.gz")
        io.write_segmentation(labels, folder / f"target_{name}.seg.nrrd")
    return folder, source


def test_adapt_motion_writes_the_sequence_volumes_curve_and_record(frames, tmp_path, capsys):
    import SimpleITK as sitk

    folder, source = frames
    out = tmp_path / "adapted"
    assert main(["adapt-motion", "--source", str(folder / "source_ed.nii.gz"),
                 "--target", str(folder / "target_ed.nii.gz"), "--target", str(folder / "target_es.nii.gz"),
                 "--target-seg", str(folder / "target_ed.seg.nrrd"), "--target-seg", str(folder / "target_es.seg.nrrd"),
                 "--between", "1", "--steps", "2", "--device", "cpu", "--output", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"adapted_image.nii.gz", "adapted_labels.nii.gz", "volumes.csv",
                                               "volume_curve.png", "run.json"}
    info = json.loads((out / "run.json").read_text())
    frame = info["crop_frame"]
    size, pixel, slice_mm = frame["size_px"], frame["pixel_mm"], frame["slice_mm"]
    assert slice_mm == pytest.approx(10.0) and pixel > 0
    phases = 3  # ED, one between, the second frame
    for name in ("adapted_image.nii.gz", "adapted_labels.nii.gz"):
        sequence = sitk.ReadImage(str(out / name))
        assert sequence.GetSize() == (size, size, source.shape[0], phases), name
        assert np.allclose(sequence.GetSpacing()[:3], (pixel, pixel, slice_mm)), name
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "adapted_labels.nii.gz")))
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 3}

    rows = list(csv.DictReader(open(out / "volumes.csv")))
    assert [float(r["phase"]) for r in rows] == [0.0, 0.5, 1.0]
    lv = np.array([float(r["lv_ml"]) for r in rows])
    np.testing.assert_allclose(lv, info["lv_ml"], atol=1e-3)
    voxel_ml = pixel * pixel * slice_mm / 1000.0
    np.testing.assert_allclose(lv, (labels == LV).sum(axis=(1, 2, 3)) * voxel_ml, atol=1e-3)  # the written labels
    assert info["edv_ml"] == pytest.approx(lv[0], abs=1e-3) and info["esv_ml"] == pytest.approx(lv.min(), abs=1e-3)
    if info["edv_ml"] > 0:
        assert info["ef"] == pytest.approx((info["edv_ml"] - info["esv_ml"]) / info["edv_ml"], abs=1e-6)
    assert (out / "volume_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert f"EDV {info['edv_ml']:.1f} ml" in capsys.readouterr().out
    assert info["target_segmentations"] == [str(folder / "target_ed.seg.nrrd"), str(folder / "target_es.seg.nrrd")]
    assert info["source_segmentation"] == "directseg"


def test_adapt_motion_bad_inputs_one_line(frames, tmp_path, capsys):
    folder, _ = frames
    src, ed = str(folder / "source_ed.nii.gz"), str(folder / "target_ed.nii.gz")
    out = str(tmp_path / "o")
    assert main(["adapt-motion", "--source", src, "--target", ed, "--output", out]) == 2
    assert "at least twice" in _one_line_error(capsys)
    assert main(["adapt-motion", "--source", src, "--target", ed, "--target", ed, "--target-seg",
                 str(folder / "target_ed.seg.nrrd"), "--output", out]) == 2
    assert "one --target-seg per --target" in _one_line_error(capsys)
    assert main(["adapt-motion", "--source", str(folder / "target_ed.seg.nrrd"), "--target", ed, "--target", ed,
                 "--output", out]) == 2
    assert "like a label map" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_crop_frame_is_centred_on_the_mean_heart_centre(oblique):
    """Crop pixel ((S-1)/2, (S-1)/2) of slice k lies at the source's mean heart centre on slice k;
    rows and columns run along the source's j and i axes in steps of the crop's pixel size."""
    source = Volume(np.zeros((6, 40, 50), np.float32), oblique)
    centres = np.array([[20.0, 25.0], [22.0, 23.0]] * 3)  # (j, i); mean (21, 24)
    frame = cli.crop_frame_geometry(source, centres, 16, 2.5, 8.0)
    assert frame.shape == (6, 16, 16)
    np.testing.assert_allclose(frame.spacing, [2.5, 2.5, 8.0])
    np.testing.assert_allclose(frame.direction, source.geometry.direction, atol=1e-12)
    for k in (0, 5):
        np.testing.assert_allclose(frame.index_to_ras([7.5, 7.5, k]), source.geometry.index_to_ras([24.0, 21.0, k]),
                                   atol=1e-9)


def test_worker_runs_an_image_alone_and_reads_everything_back(cine, tmp_path):
    """The Slicer module's background path: the image (and no segmentation) written for a worker
    process, which segments it (DirectSeg) and reconstructs; the run folder reads back the result
    and the segmentation it computed."""
    folder, case, image = cine
    inputs = worker.write_image_inputs(image, tmp_path / "in")
    assert inputs.sax is None and inputs.segmenter == "directseg"
    args = worker.run_arguments(inputs, tmp_path / "out", "centroid_shape_interp", device="cpu")
    parsed = cli.build_parser().parse_args(args)
    assert parsed.input is None and parsed.segment == "directseg" and parsed.image == str(inputs.image)
    process = worker.WorkerProcess.start(worker.worker_command(sys.executable, args))
    process.wait(300)
    while not process.finished:
        process.poll()
    assert process.returncode == 0, process.log
    result = worker.read_run_folder(tmp_path / "out")
    computed = worker.read_input_segmentation(tmp_path / "out")
    np.testing.assert_array_equal(computed.array, deeprecon.segment_image(image, "directseg").array)
    assert computed.geometry.same_as(image.geometry, atol=1e-3)  # what mrml.segmented_case asks of it
    assert result.image is None and result.labels.shape[0] == 5 * case.n_slices
    assert worker.read_input_segmentation(folder) is None  # a folder of a run given its segmentation
    with pytest.raises(Exception, match="Unknown segmenter"):
        worker.write_image_inputs(image, tmp_path / "in2", segmenter="nope")


def test_run_folder_reads_back_the_synthetic_image(cine, tmp_path):
    folder, _, _ = cine
    out = tmp_path / "out"
    assert main(["run", "--input", str(folder / "sax.seg.nrrd"), "--image", str(folder / "cine.nii.gz"),
                 "--method", "deeprecon", *FAST, "--no-surfaces", "--output", str(out)]) == 0
    result = worker.read_run_folder(out)
    assert result.image is not None and result.image.geometry.same_as(result.labels.geometry, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# MRML (slicer-core): an image node alone, the synthetic image and the input segmentation nodes
# ---------------------------------------------------------------------------------------------

def _mrml():
    slicer = pytest.importorskip("slicer")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("this 'slicer' module has no MRML (slicer-core or the Slicer application is needed)")
    from CardiacReconstructionLib import mrml

    return slicer, mrml


def test_mrml_image_alone_to_nodes(cine, scene):
    slicer, mrml = _mrml()
    _, case, image = cine
    node = slicer.util.addVolumeFromArray(image.array, image.ijk_to_ras, "cine")
    stack, order, messages = mrml.image_stack_from_node(node)
    assert order == (0, 1, 2) and messages == [] and stack.array.dtype == np.float32
    np.testing.assert_array_equal(stack.array, image.array)
    labels = deeprecon.segment_image(stack, "directseg")
    segmented = mrml.segmented_case(labels, stack, order, node.GetName(), segmenter="directseg")
    result = methods.run("deeprecon", segmented, device="cpu", steps=2, surfaces=True)
    nodes = mrml.result_to_nodes(result, segmented, image_node=node, scene=scene, input_segmentation=True)
    painted = nodes["image"]
    assert painted.GetName() == "cine DeepRecon image" and painted.IsA("vtkMRMLScalarVolumeNode")
    np.testing.assert_allclose(slicer.util.arrayFromVolume(painted), result.image.array)
    computed = nodes["input_segmentation"]
    assert computed.GetName() == "cine DirectSeg segmentation"
    np.testing.assert_array_equal(mrml.volume_from_node(computed)[0].array, labels.array)
    again = mrml.result_to_nodes(result, segmented, image_node=node, scene=scene, input_segmentation=True)
    assert again["image"] is painted and again["input_segmentation"] is computed  # reused, not piled up
    assert mrml.result_to_nodes(result, segmented, scene=scene)["input_segmentation"] is None


def test_mrml_refuses_bad_images_alone(cine, scene):
    slicer, mrml = _mrml()
    from CardiacReconstructionLib.core.errors import InputError

    _, case, image = cine
    labels = slicer.util.addVolumeFromArray(case.sax.array, case.sax.ijk_to_ras, "labels",
                                            nodeClassName="vtkMRMLScalarVolumeNode")
    with pytest.raises(InputError, match="like a label map"):
        mrml.image_stack_from_node(labels)
    flat = slicer.util.addVolumeFromArray(image.array[4:5], image.ijk_to_ras, "flat")
    with pytest.raises(InputError, match="single 2D slice"):
        mrml.image_stack_from_node(flat)
    with pytest.raises(InputError, match="SAX image alone"):
        mrml.case_from_nodes(None, image_node=flat)
