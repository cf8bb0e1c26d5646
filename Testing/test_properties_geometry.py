"""Property-based tests of the one array/geometry convention (core/geometry.py) and of the file
round trips through core/io.py, on random oblique grids.

The hand-written tests in test_geometry.py check one fixed oblique matrix; these draw the
rotation, the reflection (left-handed grids are legal in ITK, NIfTI and NRRD), the anisotropic
spacing, the origin and the array shape, so that a transposition, a sign flip of the LPS <-> RAS
conversion or a lost axis shows up on whichever grid exposes it.

Generated examples per test (hypothesis ``max_examples``; ``deadline=None`` because the first
SimpleITK/slicerio call of a run is slow):

* test_lps_ras_flip_is_an_involution_on_points ........... 60
* test_sitk_round_trip_is_exact_and_lps .................. 40
* test_slicerio_round_trip_transposes_and_flips .......... 40
* test_index_ras_round_trip_on_oblique_grids ............. 60
* test_file_round_trip[.nii.gz / .nrrd / .seg.nrrd] ...... 12 each (36 files of at most 6^3 voxels)
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from CardiacReconstructionLib.core import io
from CardiacReconstructionLib.core.geometry import (LPS_TO_RAS, Geometry, Volume, from_sitk, from_slicerio_voxels,
                                                    make_ijk_to_ras, to_sitk, to_slicerio_voxels)

FAST = settings(max_examples=60, deadline=None)
MEDIUM = settings(max_examples=40, deadline=None)
FILES = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

angle = st.floats(-np.pi, np.pi, allow_nan=False)
spacing = st.tuples(*[st.floats(0.2, 12.0, allow_nan=False)] * 3)
origin = st.tuples(*[st.floats(-500.0, 500.0, allow_nan=False)] * 3)
shape = st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6))


@st.composite
def directions(draw):
    """An orthonormal direction matrix: a random rotation, optionally with one axis reversed
    (a left-handed grid)."""
    d = Rotation.from_euler("zyx", [draw(angle), draw(angle), draw(angle)]).as_matrix()
    if draw(st.booleans()):
        d[:, draw(st.integers(0, 2))] *= -1
    return d


@st.composite
def matrices(draw):
    return make_ijk_to_ras(draw(spacing), draw(origin), draw(directions()))


@st.composite
def label_volumes(draw, max_label=3):
    """A small random label stack on a random oblique grid."""
    k, j, i = draw(shape)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    arr = np.random.default_rng(seed).integers(0, max_label + 1, size=(k, j, i)).astype(np.uint8)
    return Volume(arr, draw(matrices()))


def _points(seed, n=5, scale=10.0):
    return np.random.default_rng(seed).uniform(-scale, scale, size=(n, 3))


@FAST
@given(m=matrices(), seed=st.integers(0, 2 ** 32 - 1))
def test_lps_ras_flip_is_an_involution_on_points(m, seed):
    """LPS <-> RAS negates x and y and nothing else, and applying it twice is the identity."""
    np.testing.assert_array_equal(LPS_TO_RAS @ LPS_TO_RAS, np.eye(4))
    np.testing.assert_array_equal(LPS_TO_RAS @ (LPS_TO_RAS @ m), m)
    ijk1 = np.c_[_points(seed), np.ones(5)]
    ras = ijk1 @ m.T
    lps = ijk1 @ (LPS_TO_RAS @ m).T
    np.testing.assert_array_equal(lps[:, :2], -ras[:, :2])
    np.testing.assert_array_equal(lps[:, 2:], ras[:, 2:])


@MEDIUM
@given(vol=label_volumes(), seed=st.integers(0, 2 ** 32 - 1))
def test_sitk_round_trip_is_exact_and_lps(vol, seed):
    """to_sitk keeps the [k, j, i] array as ITK's (i, j, k) pixels, puts every voxel at its RAS
    position with x and y negated, and from_sitk restores the volume."""
    img = to_sitk(vol)
    k, j, i = vol.shape
    assert img.GetSize() == (i, j, k)
    rng = np.random.default_rng(seed)
    ii, jj, kk = int(rng.integers(i)), int(rng.integers(j)), int(rng.integers(k))
    assert img.GetPixel(ii, jj, kk) == vol.array[kk, jj, ii]
    for p in _points(seed, n=3):
        lps = np.array(img.TransformContinuousIndexToPhysicalPoint([float(v) for v in p]))
        np.testing.assert_allclose(lps, vol.geometry.index_to_ras(p) * [-1, -1, 1], atol=1e-9)
    back = from_sitk(img)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.array.dtype == vol.array.dtype
    np.testing.assert_allclose(back.ijk_to_ras, vol.ijk_to_ras, atol=1e-9)


@MEDIUM
@given(vol=label_volumes())
def test_slicerio_round_trip_transposes_and_flips(vol):
    """slicerio's voxels are [i, j, k] with an ijkToLPS matrix; the round trip is exact."""
    voxels, ijk_to_lps = to_slicerio_voxels(vol)
    assert voxels.shape == vol.shape[::-1]
    np.testing.assert_array_equal(voxels, vol.array.transpose(2, 1, 0))
    np.testing.assert_array_equal(ijk_to_lps, LPS_TO_RAS @ vol.ijk_to_ras)
    back = from_slicerio_voxels(voxels, ijk_to_lps)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_array_equal(back.ijk_to_ras, vol.ijk_to_ras)


@FAST
@given(sp=spacing, org=origin, d=directions(), shp=shape, seed=st.integers(0, 2 ** 32 - 1))
def test_index_ras_round_trip_on_oblique_grids(sp, org, d, shp, seed):
    """A Geometry recovers the spacing, direction (handedness included) and origin it was built
    from, and index -> RAS -> index is the identity on continuous indices."""
    g = Geometry(shp, make_ijk_to_ras(sp, org, d))
    np.testing.assert_allclose(g.spacing, sp, rtol=1e-12)
    np.testing.assert_allclose(g.direction, d, atol=1e-12)
    np.testing.assert_allclose(g.origin, org, atol=1e-12)
    assert np.sign(np.linalg.det(g.direction)) == np.sign(np.linalg.det(d))
    ijk = _points(seed, n=7, scale=20.0)
    ras = g.index_to_ras(ijk)
    # the step of one voxel along an axis is that axis' direction times its spacing
    np.testing.assert_allclose(g.index_to_ras(ijk + [0, 0, 1]) - ras, np.tile(d[:, 2] * sp[2], (7, 1)), atol=1e-9)
    np.testing.assert_allclose(g.ras_to_index(ras), ijk, atol=1e-8)
    np.testing.assert_allclose(g.index_to_ras(g.ras_to_index(ras)), ras, atol=1e-8)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".seg.nrrd"])
def test_file_round_trip(tmp_path, suffix):
    """write_segmentation -> read_volume keeps every label and the oblique geometry (files store
    LPS; NIfTI keeps its matrix in float32, hence the 1e-4 mm / 1e-5 tolerance)."""
    counter = iter(range(10 ** 6))

    @FILES
    @given(vol=label_volumes(max_label=7))  # the whole-heart labels, each with its segment
    def check(vol):
        path = io.write_segmentation(vol, tmp_path / f"x{next(counter)}{suffix}")
        back = io.read_volume(path)
        assert back.shape == vol.shape
        np.testing.assert_array_equal(back.array, vol.array)
        np.testing.assert_allclose(back.spacing, vol.spacing, rtol=1e-5)
        np.testing.assert_allclose(back.geometry.direction, vol.geometry.direction, atol=1e-5)
        np.testing.assert_allclose(back.geometry.origin, vol.geometry.origin, atol=1e-4)
        path.unlink()

    check()
