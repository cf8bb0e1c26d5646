"""The one array/geometry convention and its conversions (SimpleITK, slicerio, files)."""

import numpy as np
import pytest
import SimpleITK as sitk

from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.geometry import (LPS_TO_RAS, Geometry, Volume, from_sitk, from_slicerio_voxels,
                                                    resample, to_sitk, to_slicerio_voxels)


def _labels(shape=(5, 7, 9), seed=0):
    return np.random.default_rng(seed).integers(0, 4, size=shape).astype(np.uint8)


def test_geometry_properties(oblique):
    g = Geometry((5, 7, 9), oblique)
    np.testing.assert_allclose(g.spacing, [1.5, 1.4, 8.0])
    np.testing.assert_allclose(g.direction.T @ g.direction, np.eye(3), atol=1e-12)
    ijk = np.array([[3.0, 2.0, 1.0], [0, 0, 0]])
    np.testing.assert_allclose(g.ras_to_index(g.index_to_ras(ijk)), ijk, atol=1e-9)
    np.testing.assert_allclose(g.index_to_ras([0, 0, 0]), [-40.0, 25.0, 12.5])


def test_sitk_round_trip_is_exact_and_lps(oblique):
    vol = Volume(_labels(), oblique)
    img = to_sitk(vol)
    assert img.GetSize() == (9, 7, 5)  # ITK sizes are i, j, k
    # physical point of voxel (i, j, k) = (2, 3, 4) in LPS is the RAS point with x, y negated
    ras = vol.geometry.index_to_ras([2, 3, 4])
    np.testing.assert_allclose(img.TransformIndexToPhysicalPoint((2, 3, 4)), ras * [-1, -1, 1], atol=1e-9)
    back = from_sitk(img)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.ijk_to_ras, vol.ijk_to_ras, atol=1e-12)


def test_slicerio_round_trip(oblique):
    vol = Volume(_labels(), oblique)
    voxels, ijk_to_lps = to_slicerio_voxels(vol)
    assert voxels.shape == (9, 7, 5)
    assert voxels[8, 6, 4] == vol.array[4, 6, 8]
    np.testing.assert_allclose(ijk_to_lps, LPS_TO_RAS @ vol.ijk_to_ras)
    back = from_slicerio_voxels(voxels, ijk_to_lps)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.ijk_to_ras, vol.ijk_to_ras)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".seg.nrrd"])
def test_file_round_trip_oblique(tmp_path, oblique, suffix):
    from CardiacReconstructionLib.core.io import read_volume, write_segmentation

    vol = Volume(_labels(), oblique)
    path = write_segmentation(vol, tmp_path / f"x{suffix}")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.ijk_to_ras, vol.ijk_to_ras, atol=1e-5)


def test_resample_identity_and_shift(oblique):
    vol = Volume(_labels((4, 6, 8)), oblique)
    same = resample(vol, vol.geometry)
    np.testing.assert_array_equal(same.array, vol.array)
    # a grid moved by one voxel along i reads the next column
    m = vol.ijk_to_ras.copy()
    m[:3, 3] += m[:3, 0]
    moved = resample(vol, Geometry((4, 6, 7), m))
    np.testing.assert_array_equal(moved.array, vol.array[:, :, 1:])


def test_with_slices_keeps_in_plane_grid(oblique):
    g = Geometry((10, 7, 9), oblique)
    h = g.with_slices(40, 2.0, first_slice_offset_mm=-3.0)
    np.testing.assert_allclose(h.spacing, [1.5, 1.4, 2.0])
    np.testing.assert_allclose(h.direction, g.direction, atol=1e-12)
    np.testing.assert_allclose(h.origin, g.origin - 3.0 * g.direction[:, 2])


@pytest.mark.parametrize("matrix, message", [
    (np.full((4, 4), np.nan), "non-finite"),
    (np.zeros((4, 4)), "degenerate"),
    (np.eye(3), "4x4"),
])
def test_bad_geometry_is_reported(matrix, message):
    with pytest.raises(InputError, match=message):
        Volume(np.zeros((2, 3, 3), np.uint8), matrix)


def test_2d_image_becomes_single_slice():
    img = sitk.GetImageFromArray(np.ones((6, 5), np.uint8))
    img.SetSpacing((0.5, 0.7))
    vol = from_sitk(img)
    assert vol.shape == (1, 6, 5)
    np.testing.assert_allclose(vol.spacing[:2], [0.5, 0.7])
