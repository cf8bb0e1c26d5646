"""Signed distance grids (C-SDG) of masks and label maps, and their zero level sets.

Analytic references: a voxelised sphere (its marching-cubes mesh lies within half the largest
voxel size of the true sphere) and a voxel box (its flat faces lie exactly half a voxel beyond
the outer voxel centres), on oblique, anisotropic grids.
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from vtkmodules.util.numpy_support import vtk_to_numpy

from CardiacReconstructionLib.core import sdf
from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.geometry import Geometry, Volume, make_ijk_to_ras
from CardiacReconstructionLib.core.surfaces import enclosed_volume, open_edge_count, polydata_points

RADIUS = 15.0
MASK_SPACING = (1.25, 1.25, 2.0)
MASK_MATRIX = make_ijk_to_ras(MASK_SPACING, (10.0, -20.0, 5.0),
                              Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix())
MASK_SHAPE = (30, 40, 40)
CENTRE_IJK = (19.3, 20.6, 14.2)


def sphere_mask():
    k, j, i = np.meshgrid(*(np.arange(n) for n in MASK_SHAPE), indexing="ij")
    d2 = sum(((c - c0) * s) ** 2 for c, c0, s in zip((i, j, k), CENTRE_IJK, MASK_SPACING))
    return d2 <= RADIUS ** 2


def centre_ras():
    return Geometry(MASK_SHAPE, MASK_MATRIX).index_to_ras(CENTRE_IJK)


def target_grid(shape=(24, 32, 30), spacing=(2.0, 1.8, 2.6)):
    """Another oblique, anisotropic grid around the sphere."""
    direction = Rotation.from_euler("zyx", [-30, 15, 70], degrees=True).as_matrix()
    extent = np.asarray(spacing) * (np.array(shape[::-1]) - 1)
    origin = centre_ras() - direction @ (extent / 2) + np.array([1.1, -0.7, 0.4])
    return Geometry(shape, make_ijk_to_ras(spacing, origin, direction))


def analytic_sphere(geometry):
    return np.linalg.norm(sdf.voxel_centres(geometry) - centre_ras(), axis=1).reshape(geometry.shape) - RADIUS


@pytest.fixture(scope="module")
def sphere_sdg():
    return sdf.mask_sdg(sphere_mask(), MASK_MATRIX, target_grid())


def test_sphere_matches_analytic_signed_distance(sphere_sdg):
    truth = analytic_sphere(target_grid())
    band = np.abs(truth) < sdf.SDG_CLIP_MM - 2
    # Magnitude: the mesh of the mask's staircase is within half the largest voxel size (1 mm)
    # of the sphere, and the distance errs by at most DISTANCE_TOLERANCE_MM.
    magnitude_error = np.abs(np.abs(sphere_sdg) - np.abs(truth))[band]
    assert magnitude_error.max() < 1.0 + sdf.DISTANCE_TOLERANCE_MM
    # The sign comes from the nearest mask voxel, which is right beyond the voxel half-diagonal
    # (1.34 mm); there the signed value meets the same bound.
    sure = band & (np.abs(truth) > 1.35)
    assert np.abs(sphere_sdg - truth)[sure].max() < 1.0 + sdf.DISTANCE_TOLERANCE_MM
    assert sphere_sdg.dtype == np.float32 and sphere_sdg.shape == target_grid().shape


def test_sign_is_negative_inside_positive_outside(sphere_sdg):
    truth = analytic_sphere(target_grid())
    assert np.all(sphere_sdg[truth < -1.35] < 0)  # beyond the mask's voxel half-diagonal
    assert np.all(sphere_sdg[truth > 1.35] > 0)


def test_values_are_clipped(sphere_sdg):
    assert sphere_sdg.max() == pytest.approx(sdf.SDG_CLIP_MM)
    small = sdf.mask_sdg(sphere_mask(), MASK_MATRIX, target_grid(), clip_mm=4.0)
    assert small.min() == pytest.approx(-4.0) and small.max() == pytest.approx(4.0)
    inner = np.abs(sphere_sdg) < 3.5
    np.testing.assert_allclose(small[inner], sphere_sdg[inner], atol=1e-5)


def test_box_face_distance_is_hand_computable():
    """A 1 mm voxel box i, j, k in [10, 19]: its meshed face lies at i = 19.5, so the voxel
    centre at i = 25 opposite the face's middle is 5.5 mm out; i = 14 is 5.5 mm in."""
    mask = np.zeros((30, 30, 40), bool)
    mask[10:20, 10:20, 10:20] = True
    matrix = make_ijk_to_ras((1.0, 1.0, 1.0), (3.0, 2.0, 1.0))
    grid = Geometry(mask.shape, matrix)
    out = sdf.mask_sdg(mask, matrix, grid)
    assert out[15, 15, 25] == pytest.approx(5.5, abs=1e-4)
    assert out[15, 15, 14] == pytest.approx(-4.5, abs=1e-4)  # nearest face i = 9.5
    assert out[15, 15, 0] == pytest.approx(9.5, abs=1e-4)


def test_empty_mask_is_clip_everywhere():
    out = sdf.mask_sdg(np.zeros(MASK_SHAPE, bool), MASK_MATRIX, target_grid(), clip_mm=7.0)
    assert np.all(out == 7.0)


def test_mask_outside_its_grid_counts_as_outside():
    """Target voxels beyond the mask's grid are positive even next to a mask touching its border."""
    mask = np.ones((4, 4, 4), bool)
    matrix = make_ijk_to_ras((1.0, 1.0, 1.0))
    grid = Geometry((12, 12, 12), make_ijk_to_ras((1.0, 1.0, 1.0), (-4.0, -4.0, -4.0)))
    out = sdf.mask_sdg(mask, matrix, grid)
    assert out[5, 5, 5] < 0 and out[0, 0, 0] > 0 and out[11, 11, 11] > 0
    assert out[5, 5, 3] == pytest.approx(0.5, abs=1e-4)  # face at i = -0.5 in mask space


def test_mesh_distance_error_bound():
    rng = np.random.default_rng(0)
    vertices, faces = sdf.mask_mesh(sphere_mask(), MASK_MATRIX)
    points = centre_ras() + rng.uniform(-30, 30, (3000, 3))
    approx = sdf.mesh_distance(vertices, faces, points, clip_mm=50.0)
    exact = sdf._exact_distance(vertices, faces, points)
    assert np.all(approx >= exact - 1e-6)
    assert np.all(approx <= exact + sdf.DISTANCE_TOLERANCE_MM + 1e-6)


def test_label_sdgs_channel_order():
    """Channel c is negative exactly on SURFACE_KEYS[c]'s inside mask (target = label grid)."""
    k, j, i = np.mgrid[0:16, 0:32, 0:32]
    labels = np.zeros((16, 32, 32), np.uint8)
    r = np.hypot(i - 12, j - 16)
    labels[(r < 8) & (k > 2) & (k < 13)] = 2
    labels[(r < 4) & (k > 2) & (k < 13)] = 1
    labels[(np.hypot(i - 25, j - 16) < 4) & (k > 4) & (k < 11)] = 3
    volume = Volume(labels, make_ijk_to_ras((1.5, 1.5, 3.0), (5.0, 0.0, 0.0)))
    out = sdf.label_sdgs(volume, volume.geometry)
    assert out.shape == (4, 16, 32, 32) and out.dtype == np.float32
    expected = [labels == 2, labels == 1, (labels == 1) | (labels == 2), labels == 3]
    for channel, inside in zip(out, expected):
        np.testing.assert_array_equal(channel < 0, inside)


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError):
        sdf.mask_sdg(np.zeros((4, 4), bool), np.eye(4), target_grid())
    with pytest.raises(InputError):
        sdf.mask_sdg(sphere_mask(), MASK_MATRIX, target_grid(), clip_mm=0)
    with pytest.raises(InputError):
        sdf.label_sdgs(Volume(np.zeros((3, 3, 3), np.float32), np.eye(4)), target_grid())
    with pytest.raises(InputError):
        sdf.sdg_surface(np.zeros((3, 3, 3)), target_grid())


# ---------------------------------------------------------------------------------------------
# Zero level sets
# ---------------------------------------------------------------------------------------------

def test_analytic_sphere_surface_is_closed_with_the_right_volume():
    grid = target_grid((40, 40, 40), (1.0, 1.1, 1.3))
    surface = sdf.sdg_surface(analytic_sphere(grid), grid)
    assert open_edge_count(surface) == 0
    # measured 0.0034; margin 0.0016
    assert enclosed_volume(surface) == pytest.approx(4 / 3 * np.pi * RADIUS ** 3, rel=0.005)
    radii = np.linalg.norm(polydata_points(surface) - centre_ras(), axis=1)
    # linear interpolation of an exact distance field: measured 0.0138 mm; margin 0.016
    assert np.abs(radii - RADIUS).max() < 0.03


def test_surface_normals_point_outwards():
    grid = target_grid((40, 40, 40), (1.0, 1.1, 1.3))
    surface = sdf.sdg_surface(analytic_sphere(grid), grid)
    normals = vtk_to_numpy(surface.GetPointData().GetNormals())
    outward = np.einsum("ij,ij->i", normals, polydata_points(surface) - centre_ras())
    assert np.mean(outward > 0) > 0.99


def test_surface_is_closed_where_the_inside_touches_the_border():
    grid = target_grid((20, 40, 40), (1.0, 1.0, 1.0))  # the sphere is cut by the k border
    field = analytic_sphere(grid)
    assert (field[0] < 0).any()
    surface = sdf.sdg_surface(field, grid, smoothing_iterations=10)
    assert surface.GetNumberOfPolys() > 0 and open_edge_count(surface) == 0


def test_mask_sdg_surface_volume_matches_the_sphere(sphere_sdg):
    surface = sdf.sdg_surface(sphere_sdg, target_grid())
    assert open_edge_count(surface) == 0
    # measured 0.0118; margin 0.008
    assert enclosed_volume(surface) == pytest.approx(4 / 3 * np.pi * RADIUS ** 3, rel=0.02)


def test_empty_field_gives_empty_surface():
    grid = target_grid((5, 5, 5))
    assert sdf.sdg_surface(np.full(grid.shape, 3.0), grid).GetNumberOfPolys() == 0


def test_label_truth_surfaces_are_closed_and_keyed():
    labels = np.zeros((20, 40, 40), np.uint8)
    k, j, i = np.mgrid[0:20, 0:40, 0:40]
    labels[(np.hypot(i - 20, j - 20) < 10) & (k > 1) & (k < 18)] = 2
    labels[(np.hypot(i - 20, j - 20) < 6) & (k > 1) & (k < 18)] = 1
    volume = Volume(labels, make_ijk_to_ras((1.25, 1.25, 2.5), (0.0, 0.0, 0.0)))
    surfaces = sdf.label_truth_surfaces(volume, spacing_mm=1.0)
    assert set(surfaces) == {"LV_myocardium", "LV_endocardium", "LV_epicardium"}  # no RV
    for surface in surfaces.values():
        assert open_edge_count(surface) == 0
    voxel_ml = np.prod(volume.spacing) / 1000
    epi = enclosed_volume(surfaces["LV_epicardium"]) / 1000
    # measured 0.0057; margin 0.014
    assert epi == pytest.approx(((labels == 1) | (labels == 2)).sum() * voxel_ml, rel=0.02)
