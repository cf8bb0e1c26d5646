"""Surface meshes from labels: closed, outward-facing, in the right place in RAS; surface files."""

import os

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation
from vtkmodules.vtkCommonDataModel import vtkPolyData
from vtkmodules.vtkFiltersSources import vtkSphereSource
from vtkmodules.vtkIOGeometry import vtkSTLWriter
from vtkmodules.vtkIOLegacy import vtkPolyDataReader

from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.geometry import Geometry, Volume, make_ijk_to_ras
from CardiacReconstructionLib.simulation.phantom import make_phantom
from CardiacReconstructionLib.core.surfaces import (SURFACE_EXTENSIONS, enclosed_volume, label_surfaces, mask_surface,
                                               open_edge_count, polydata_points, read_surface, write_surface)
from vtkmodules.util.numpy_support import vtk_to_numpy

RADIUS_MM = 20.0
SPACING = (1.25, 1.25, 2.0)


def oblique_matrix(handedness=1):
    direction = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
    if handedness < 0:
        direction = direction @ np.diag([1.0, 1.0, -1.0])
    return make_ijk_to_ras(SPACING, (10.0, -20.0, 5.0), direction)


def sphere_mask(shape=(36, 48, 56), centre_ijk=(27.3, 23.6, 17.7), radius=RADIUS_MM, spacing=SPACING):
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    d2 = sum(((c - c0) * s) ** 2 for c, c0, s in zip((i, j, k), centre_ijk, spacing))
    return d2 <= radius ** 2


def outward_fraction(polydata, centre):
    """Fraction of point normals that point away from ``centre`` (1.0 for a convex shape)."""
    normals = vtk_to_numpy(polydata.GetPointData().GetNormals())
    return float(((polydata_points(polydata) - centre) * normals).sum(axis=1).__gt__(0).mean())


@pytest.fixture(scope="module")
def sphere():
    mask = sphere_mask()
    m = oblique_matrix()
    return mask, m, mask_surface(mask, m)


def test_sphere_surface_is_watertight_with_the_right_volume(sphere):
    mask, _, surface = sphere
    assert surface.GetNumberOfPolys() > 1000
    assert open_edge_count(surface) == 0
    analytic = 4.0 / 3.0 * np.pi * RADIUS_MM ** 3
    assert enclosed_volume(surface) == pytest.approx(analytic, rel=0.005)  # measured 1.6e-4; margin 0.005


def test_sphere_surface_lies_at_the_mask_position_in_ras(sphere):
    mask, m, surface = sphere
    centre = Geometry(mask.shape, m).index_to_ras(np.argwhere(mask)[:, ::-1]).mean(axis=0)
    points = polydata_points(surface)
    np.testing.assert_allclose(points.mean(axis=0), centre, atol=0.3)
    radii = np.linalg.norm(points - centre, axis=1)
    assert np.abs(radii - RADIUS_MM).max() < 1.5  # smooth: within about a voxel of the true sphere
    assert outward_fraction(surface, centre) == 1.0


def test_left_handed_matrix_still_gives_outward_normals():
    mask, m = sphere_mask(), oblique_matrix(handedness=-1)
    surface = mask_surface(mask, m)
    centre = Geometry(mask.shape, m).index_to_ras(np.argwhere(mask)[:, ::-1]).mean(axis=0)
    assert open_edge_count(surface) == 0
    assert outward_fraction(surface, centre) == 1.0
    assert enclosed_volume(surface) > 0


def test_mask_touching_the_grid_border_is_closed():
    mask = np.zeros((10, 12, 14), bool)
    mask[:, :6, :] = True  # touches five faces of the grid
    surface = mask_surface(mask, make_ijk_to_ras((1.0, 1.0, 1.0)), smoothing_iterations=0)
    assert open_edge_count(surface) == 0
    # Without smoothing the faces run half a voxel outside the outer voxel centres (marching
    # cubes only bevels the box's edges, by 1/8 mm^3 per mm of edge).
    assert enclosed_volume(surface) == pytest.approx(mask.sum(), rel=0.02)
    lo, hi = polydata_points(surface).min(axis=0), polydata_points(surface).max(axis=0)
    np.testing.assert_allclose(lo, (-0.5, -0.5, -0.5))
    np.testing.assert_allclose(hi, (13.5, 5.5, 9.5))


def test_decimation_reduces_triangles_and_keeps_the_surface_closed():
    mask, m = sphere_mask(), oblique_matrix()
    full, reduced = mask_surface(mask, m), mask_surface(mask, m, decimate=0.75)
    assert reduced.GetNumberOfPolys() < 0.35 * full.GetNumberOfPolys()
    assert open_edge_count(reduced) == 0
    assert enclosed_volume(reduced) == pytest.approx(enclosed_volume(full), rel=0.005)  # measured 1.0e-3; margin 0.004


@pytest.mark.parametrize("decimate", [None, 0.5])
def test_ragged_masks_give_watertight_surfaces(decimate):
    """Random voxels touch along edges and corners, the hardest case for a closed mesh."""
    mask = np.random.default_rng(0).random((12, 14, 16)) < 0.3
    surface = mask_surface(mask, oblique_matrix(), decimate=decimate)
    assert open_edge_count(surface) == 0
    assert enclosed_volume(surface) > 0


def test_empty_mask_gives_an_empty_surface_and_bad_options_raise():
    assert mask_surface(np.zeros((4, 5, 6), bool), np.eye(4)).GetNumberOfPoints() == 0
    with pytest.raises(InputError):
        mask_surface(np.ones((5, 6), bool), np.eye(4))
    with pytest.raises(InputError):
        mask_surface(np.ones((4, 5, 6), bool), np.eye(4), decimate=1.5)
    with pytest.raises(InputError):
        mask_surface(np.ones((4, 5, 6), bool), np.eye(4), pass_band=0.0)


def test_label_surfaces_of_the_phantom_are_closed_and_match_voxel_volumes():
    truth = make_phantom(0).truth
    surfaces = label_surfaces(truth)
    assert list(surfaces) == ["LV", "MYO", "RV"]
    voxel_volume = np.prod(truth.spacing)
    for label, key in ((1, "LV"), (2, "MYO"), (3, "RV")):
        assert open_edge_count(surfaces[key]) == 0
        # measured <= 1.9e-3 (LV, MYO, RV); margin 0.003
        assert enclosed_volume(surfaces[key]) == pytest.approx((truth.array == label).sum() * voxel_volume, rel=0.005)
    only_lv = label_surfaces(truth, labels=[1, 5])  # absent structures are left out
    assert list(only_lv) == ["LV"]
    with pytest.raises(InputError):
        label_surfaces(truth, labels=[9])
    with pytest.raises(InputError):
        label_surfaces(Volume(truth.array.astype(np.float32), truth.ijk_to_ras))


def test_label_surfaces_leave_the_input_untouched():
    truth = make_phantom(1).truth
    before = truth.array.copy()
    label_surfaces(truth, labels=[1])
    np.testing.assert_array_equal(truth.array, before)


@pytest.mark.parametrize("ext", SURFACE_EXTENSIONS)
@pytest.mark.parametrize("space", ["LPS", "RAS"])
def test_write_read_round_trip(tmp_path, sphere, ext, space):
    surface = sphere[2]
    path = tmp_path / f"sphere{ext}"
    assert write_surface(surface, path, coordinate_system=space) == str(path)
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind
    back = read_surface(path)
    assert back.GetNumberOfPolys() == surface.GetNumberOfPolys()
    assert open_edge_count(back) == 0
    # STL stores triangles with their own vertices (merged again on reading), so compare point sets.
    distance, _ = cKDTree(polydata_points(surface)).query(polydata_points(back))
    assert distance.max() < 1e-3
    assert enclosed_volume(back) == pytest.approx(enclosed_volume(surface), rel=1e-4)


def test_lps_files_hold_lps_coordinates_and_untagged_files_are_read_as_lps(tmp_path, sphere):
    surface = sphere[2]
    path = tmp_path / "sphere.vtk"
    write_surface(surface, path)  # LPS by default, like Slicer
    raw = vtkPolyDataReader()
    raw.SetFileName(str(path))
    raw.Update()
    assert "SPACE=LPS" in raw.GetHeader()
    np.testing.assert_allclose(polydata_points(raw.GetOutput()), polydata_points(surface) * [-1, -1, 1], atol=1e-4)

    source = vtkSphereSource()
    source.SetCenter(10.0, 20.0, 30.0)
    source.Update()
    untagged = tmp_path / "plain.stl"
    writer = vtkSTLWriter()
    writer.SetInputData(source.GetOutput())
    writer.SetFileName(str(untagged))
    writer.Write()
    centre = polydata_points(read_surface(untagged)).mean(axis=0)
    np.testing.assert_allclose(centre, (-10.0, -20.0, 30.0), atol=0.05)


def test_file_errors_are_input_errors(tmp_path, sphere):
    surface = sphere[2]
    with pytest.raises(InputError, match="extension"):
        write_surface(surface, tmp_path / "sphere.ply")
    with pytest.raises(InputError, match="extension"):
        read_surface(tmp_path / "sphere.txt")
    with pytest.raises(InputError, match="does not exist"):
        write_surface(surface, tmp_path / "missing" / "sphere.vtp")
    with pytest.raises(InputError, match="does not exist"):
        read_surface(tmp_path / "missing.vtp")
    with pytest.raises(InputError):
        write_surface(np.zeros((3, 3)), tmp_path / "sphere.vtp")
    with pytest.raises(InputError):
        write_surface(surface, tmp_path / "sphere.vtp", coordinate_system="XYZ")
    assert list(tmp_path.iterdir()) == []


def test_polydata_points_of_empty_polydata():
    assert polydata_points(vtkPolyData()).shape == (0, 3)


def test_written_files_follow_the_umask(tmp_path):
    """Outputs are ordinary files of the user's (mkstemp alone makes them 0600)."""
    import stat

    from CardiacReconstructionLib.core.io import write_segmentation
    from conftest import ring_stack

    volume = ring_stack(n_slices=3, size=16)
    surface = next(iter(label_surfaces(volume).values()))
    previous = os.umask(0o027)
    try:
        write_surface(surface, tmp_path / "s.vtp")
        write_segmentation(volume, tmp_path / "l.seg.nrrd")
    finally:
        os.umask(previous)
    for name in ("s.vtp", "l.seg.nrrd"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
