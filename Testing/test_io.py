"""Reading and writing segmentations, LAX views, cases; nothing half-written."""

import numpy as np
import pytest
import slicerio

from CardiacReconstructionLib.core import io
from CardiacReconstructionLib.core.case import LaxView
from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.geometry import Volume, make_ijk_to_ras
from CardiacReconstructionLib.core.labels import STRUCTURES
from conftest import oblique_matrix, ring_stack


def test_seg_nrrd_names_colours_terminology(tmp_path):
    vol = ring_stack(matrix=oblique_matrix())
    path = io.write_segmentation(vol, tmp_path / "out.seg.nrrd")
    seg = slicerio.read_segmentation(str(path))
    by_name = {s["name"]: s for s in seg["segments"]}
    assert set(by_name) == {"LV blood pool", "LV myocardium", "RV blood pool"}
    np.testing.assert_allclose(by_name["RV blood pool"]["color"], STRUCTURES[3].color, atol=1e-5)
    assert by_name["LV blood pool"]["terminology"]["type"][1] == "87878005"
    back, message = io.read_segmentation(path)
    assert "segment name" in message
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.ijk_to_ras, vol.ijk_to_ras, atol=1e-5)


def test_seg_nrrd_mapped_by_foreign_names_and_values(tmp_path):
    """A Slicer-made segmentation with other names and label values maps by name."""
    base = ring_stack().array
    voxels = np.select([base == 1, base == 2, base == 3], [7, 5, 9], 0).astype(np.uint8).transpose(2, 1, 0)
    seg = {"voxels": voxels, "ijkToLPS": np.diag([-1.5, -1.5, 10, 1.0]), "segments": [
        {"id": "a", "name": "Left ventricle", "labelValue": 7, "layer": 0, "color": [1, 0, 0]},
        {"id": "b", "name": "Myocardium", "labelValue": 5, "layer": 0, "color": [0, 1, 0]},
        {"id": "c", "name": "RV cavity", "labelValue": 9, "layer": 0, "color": [0, 0, 1]}]}
    slicerio.write_segmentation(str(tmp_path / "s.seg.nrrd"), seg)
    vol, _ = io.read_segmentation(tmp_path / "s.seg.nrrd")
    np.testing.assert_array_equal(vol.array, base)


def test_nifti_with_acdc_convention(tmp_path):
    base = ring_stack()
    acdc = base.with_array(np.select([base.array == 1, base.array == 3], [np.uint8(3), np.uint8(1)], base.array))
    io.write_segmentation(acdc, tmp_path / "acdc.nii.gz")
    vol, message = io.read_segmentation(tmp_path / "acdc.nii.gz", "auto")
    assert "acdc" in message
    np.testing.assert_array_equal(vol.array, base.array)


def test_lax_single_slice_axis_is_moved_to_k(tmp_path):
    """A 2D view stored with its thin axis first (i) still becomes a (1, j, i) LaxView with
    the same physical voxel positions."""
    arr = np.zeros((12, 10, 1), np.uint8)  # k, j, i with one voxel along i
    arr[3:8, 2:6, 0] = 1
    m = oblique_matrix((1.0, 1.2, 1.3))
    vol = Volume(arr, m)
    io.write_segmentation(vol, tmp_path / "view_4ch.nii.gz")
    lax, message = io.read_lax(tmp_path / "view_4ch.nii.gz")
    assert lax.view == "4ch" and lax.labels.shape[0] == 1
    assert np.linalg.det(lax.labels.ijk_to_ras[:3, :3]) > 0
    pts_in = vol.geometry.index_to_ras(np.argwhere(arr == 1)[:, ::-1])
    pts_out = lax.labels.geometry.index_to_ras(np.argwhere(lax.labels.array == 1)[:, ::-1])
    np.testing.assert_allclose(np.sort(pts_in, axis=0), np.sort(pts_out, axis=0), atol=1e-6)


def test_lax_view_name_required(tmp_path):
    io.write_segmentation(Volume(np.ones((1, 4, 4), np.uint8), np.eye(4)), tmp_path / "lax.nii.gz")
    with pytest.raises(InputError, match="Cannot tell the long-axis view"):
        io.read_lax(tmp_path / "lax.nii.gz")


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "File not found"),
    (lambda p: p.write_text("not an image"), "cannot be read"),
])
def test_unreadable_files(tmp_path, make, message):
    path = tmp_path / "x.nii.gz"
    make(path)
    with pytest.raises(InputError, match=message):
        io.read_segmentation(path)


def test_image_instead_of_labels(tmp_path):
    img = Volume(np.random.default_rng(0).normal(100, 20, (4, 8, 8)).astype(np.float32), np.eye(4))
    io.write_volume(img, tmp_path / "img.nii.gz")
    with pytest.raises(InputError, match="not a label map"):
        io.read_segmentation(tmp_path / "img.nii.gz")


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with io.staged_folder(target) as out:
            io.write_segmentation(ring_stack(), out / "a.seg.nrrd")
            raise RuntimeError("boom")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with io.staged_folder(target) as out:
        io.write_segmentation(ring_stack(), out / "a.seg.nrrd")
    assert [p.name for p in target.iterdir()] == ["a.seg.nrrd"] and len(list(tmp_path.iterdir())) == 1


def test_displacement_csv(tmp_path):
    path = io.write_displacements(np.array([[1.0, -2.0], [0.5, 0.25]]), tmp_path / "d.csv")
    assert path.read_text().splitlines() == ["slice,dx_mm,dy_mm", "0,1.0000,-2.0000", "1,0.5000,0.2500"]


def test_read_case_with_image_and_lax(tmp_path):
    sax = ring_stack(n_slices=6)
    io.write_segmentation(sax, tmp_path / "sax.seg.nrrd")
    io.write_volume(sax.with_array(sax.array.astype(np.float32) * 10), tmp_path / "img.nii.gz")
    # a 4-chamber-like plane containing the stack's k axis: i along the stack's i, j along k
    lax = np.zeros((1, 40, 48), np.uint8)
    lax[0, 5:35, 14:34] = 1
    m = make_ijk_to_ras()
    m[:3, :3] = np.array([[1.5, 0, 0], [0, 0, -1.0], [0, 1.5, 0]])
    m[:3, 3] = (0, 36.0, 0)
    io.write_segmentation(Volume(lax, m), tmp_path / "lax.nii.gz")
    case, messages = io.read_case(tmp_path / "sax.seg.nrrd", [("4ch", tmp_path / "lax.nii.gz")],
                                  tmp_path / "img.nii.gz")
    assert case.n_slices == 6 and case.lax[0].view == "4ch" and case.image.shape == sax.shape
    assert len(messages) == 2


def test_mismatched_lax_pose_is_rejected():
    from CardiacReconstructionLib.core.case import Case

    sax = ring_stack(n_slices=6)
    parallel = LaxView("4ch", Volume(np.ones((1, 48, 48), np.uint8), sax.ijk_to_ras))
    with pytest.raises(InputError, match="nearly parallel"):
        Case(sax=sax, lax=[parallel])
    m = make_ijk_to_ras((1.5, 1.5, 1.0), (500.0, 500.0, 500.0), np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0.0]]))
    far = LaxView("2ch", Volume(np.ones((1, 20, 20), np.uint8), m))
    with pytest.raises(InputError, match="does not overlap"):
        Case(sax=sax, lax=[far])
