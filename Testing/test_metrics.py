"""Tests of the evaluation metrics against hand-computable cases."""

import math

import numpy as np
import pytest

from CardiacReconstructionLib.core import indices
from CardiacReconstructionLib.evaluation import metrics
from CardiacReconstructionLib.core.case import LaxView
from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.geometry import Geometry, Volume, make_ijk_to_ras

ANISO = (0.8, 1.0, 1.5)  # spacing i, j, k in mm


def _ball_distance(shape, spacing, centre_ijk=None):
    """Distance in mm of every voxel centre (array [k, j, i]) from a centre given in i, j, k voxels."""
    k, j, i = np.indices(shape, dtype=float)
    if centre_ijk is None:
        centre_ijk = ((shape[2] - 1) / 2, (shape[1] - 1) / 2, (shape[0] - 1) / 2)
    ci, cj, ck = centre_ijk
    si, sj, sk = spacing
    return np.sqrt(((i - ci) * si) ** 2 + ((j - cj) * sj) ** 2 + ((k - ck) * sk) ** 2)


def _volume(array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None):
    return Volume(np.asarray(array, dtype=np.uint8), make_ijk_to_ras(spacing, origin, direction))


def _box(shape, k, j, i, label=1):
    arr = np.zeros(shape, np.uint8)
    arr[k[0]:k[1], j[0]:j[1], i[0]:i[1]] = label
    return arr


# ------------------------------------------------------------------------------------- Dice

def test_dice_of_cube_shifted_by_one_voxel_is_exactly_n_minus_1_over_n():
    n = 8
    truth = _volume(_box((12, 12, 12), (2, 2 + n), (2, 2 + n), (2, 2 + n)))
    result = _volume(_box((12, 12, 12), (2, 2 + n), (2, 2 + n), (3, 3 + n)))
    assert metrics.dice(result, truth, 1)[1] == pytest.approx((n - 1) / n, abs=1e-12)


def test_dice_of_two_offset_spheres_matches_the_lens_volume():
    r, t = 10.0, 4.0
    shape = (36, 36, 40)
    a = _ball_distance(shape, (1, 1, 1), (17.5, 17.5, 17.5)) <= r
    b = _ball_distance(shape, (1, 1, 1), (17.5 + t, 17.5, 17.5)) <= r
    lens = math.pi * (4 * r + t) * (2 * r - t) ** 2 / 12
    expected = lens / (4 / 3 * math.pi * r ** 3)  # 2 V_lens / (2 V_sphere)
    assert metrics.dice(_volume(a), _volume(b), 1)[1] == pytest.approx(expected, abs=0.02)


def test_dice_empty_rules_and_identical_masks():
    truth = _volume(_box((6, 6, 6), (1, 4), (1, 4), (1, 4), label=1))
    d = metrics.dice(truth, truth, (1, 2))
    assert d[1] == 1.0
    assert math.isnan(d[2])  # both empty: undefined, not a perfect score
    assert metrics.dice(_volume(np.zeros((6, 6, 6))), truth, 1)[1] == 0.0


def test_dice_resamples_a_finer_result_onto_the_truth_grid():
    coarse = _box((6, 8, 10), (1, 4), (2, 6), (3, 8))
    truth = _volume(coarse, spacing=(2, 2, 2), origin=(10, 20, 30))
    fine = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)  # 2x finer, same physical box
    result = _volume(fine, spacing=(1, 1, 1), origin=(9.5, 19.5, 29.5))
    assert metrics.dice(result, truth, 1)[1] == 1.0
    assert metrics.hd95(result, truth, 1)[1] == 0.0


def test_result_outside_its_field_of_view_counts_as_background():
    truth = _volume(_box((10, 10, 30), (2, 8), (2, 8), (10, 22)))  # i = 10..21, 6x6x12 voxels
    half = truth.array[:, :, :16]  # the result grid covers only i < 16
    result = Volume(half, truth.ijk_to_ras)
    inside = np.count_nonzero(half)  # i = 10..15: 6x6x6
    assert metrics.dice(result, truth, 1)[1] == pytest.approx(2 * inside / (inside + 6 * 6 * 12))


# ------------------------------------------------------------------------------------- surface distances

@pytest.mark.parametrize("r1, r2", [(20.0, 16.0), (21.0, 13.0)])
def test_concentric_spheres_have_hd95_and_assd_equal_to_the_radius_gap(r1, r2):
    dist = _ball_distance((40, 60, 72), ANISO)
    a, b = _volume(dist <= r1, ANISO), _volume(dist <= r2, ANISO)
    tol = max(ANISO) / 2  # surface voxels sit within half a voxel of the true spheres
    assert metrics.hd95(a, b, 1)[1] == pytest.approx(r1 - r2, abs=tol)
    assert metrics.assd(a, b, 1)[1] == pytest.approx(r1 - r2, abs=tol)
    assert metrics.hd95(a, b, 1)[1] == pytest.approx(metrics.hd95(b, a, 1)[1])  # symmetric


def test_hd95_is_the_max_of_directed_95th_percentiles():
    # Truth: a 30x30 square; result: the same square plus a 3x3 blob ~34 mm away. The blob is
    # 8 of the result's 124 contour pixels (> 5%), so P95(result -> truth) sees it, while the
    # truth -> result distances are all 0. Pooling both directions (MedPy) would give 0 here.
    truth = _box((1, 40, 80), (0, 1), (5, 35), (5, 35))
    result = truth.copy()
    result[0, 19:22, 68:71] = 1
    d = metrics.hd95(_volume(result), _volume(truth), 1)[1]
    assert d > 30.0
    assert metrics.hd95(_volume(truth), _volume(result), 1)[1] == d  # symmetric
    # the mean dilutes the blob: measured 1.167 (7/6); margin 0.33
    assert metrics.assd(_volume(result), _volume(truth), 1)[1] < 1.5


def test_identical_masks_have_zero_distances_and_empty_rules():
    mask = _ball_distance((20, 20, 20), ANISO) <= 6
    vol = _volume(mask, ANISO)
    assert metrics.hd95(vol, vol, 1)[1] == 0.0
    assert metrics.assd(vol, vol, 1)[1] == 0.0
    empty = _volume(np.zeros((20, 20, 20)), ANISO)
    assert math.isinf(metrics.hd95(empty, vol, 1)[1])
    assert math.isinf(metrics.assd(vol, empty, 1)[1])
    assert math.isnan(metrics.hd95(empty, empty, 1)[1])


def test_single_slice_volumes_are_measured_as_2d_contours():
    dist = _ball_distance((1, 64, 64), (1.0, 1.0, 1.0))
    a, b = _volume(dist <= 20), _volume(dist <= 15)
    # a thin slice is not "all surface": the contour gap of two concentric discs is 5 mm
    assert metrics.assd(a, b, 1)[1] == pytest.approx(5.0, abs=0.5)


# ------------------------------------------------------------------------------------- Chamfer

def test_chamfer_of_point_sets_is_the_mean_of_the_two_directed_means():
    a = np.array([[0.0, 0.0, 0.0]])
    b = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]])
    # a->B: 1; B->a: (5 + 1) / 2 = 3; symmetric mean: 2
    assert metrics.chamfer_distance(a, b) == pytest.approx(2.0)
    assert metrics.chamfer_distance(b, a) == pytest.approx(2.0)
    assert math.isinf(metrics.chamfer_distance(a, np.zeros((0, 3))))


def _sphere(radius, resolution):
    import vtk

    src = vtk.vtkSphereSource()
    src.SetRadius(radius)
    src.SetThetaResolution(resolution)
    src.SetPhiResolution(resolution)
    src.Update()
    return src.GetOutput()


def test_chamfer_of_concentric_sphere_meshes():
    # same tessellation: every vertex has a radial partner exactly 2 mm away
    assert metrics.chamfer_distance(_sphere(10, 32), _sphere(12, 32)) == pytest.approx(2.0, abs=1e-6)
    assert metrics.chamfer_distance(_sphere(10, 32), _sphere(12, 32), to_surface=True) == pytest.approx(2.0, abs=0.1)
    # one sphere, two tessellations: vertex distances see the mesh spacing, point-to-surface does not
    coarse, fine = _sphere(10, 12), _sphere(10, 48)
    to_vertices = metrics.chamfer_distance(coarse, fine)
    to_mesh = metrics.chamfer_distance(coarse, fine, to_surface=True)
    assert to_mesh < 0.2 < to_vertices


def test_point_to_surface_chamfer_needs_meshes():
    with pytest.raises(InputError):
        metrics.chamfer_distance(np.zeros((3, 3)), _sphere(5, 8), to_surface=True)
    with pytest.raises(InputError):
        metrics.chamfer_distance(np.zeros((3, 2)), np.zeros((3, 3)))


# ------------------------------------------------------------------------------------- shape descriptors

def test_surface_to_volume_of_a_cube_is_6_over_n_s():
    n, s = 6, 1.5
    vol = _volume(_box((10, 10, 10), (2, 2 + n), (2, 2 + n), (2, 2 + n), label=2), spacing=(s, s, s))
    assert indices.surface_to_volume(vol)[2] == pytest.approx(6 / (n * s), rel=1e-12)


def test_surface_to_volume_of_an_anisotropic_box_touching_the_border():
    spacing = (0.8, 1.0, 1.5)  # i, j, k
    arr = np.ones((4, 5, 7), np.uint8)  # fills the whole array: the border counts as outside
    li, lj, lk = 7 * 0.8, 5 * 1.0, 4 * 1.5
    expected = 2 * (li * lj + lj * lk + li * lk) / (li * lj * lk)
    assert indices.surface_to_volume(_volume(arr, spacing), 1)[1] == pytest.approx(expected, rel=1e-12)
    assert indices.surface_area_mm2(_volume(arr, spacing), 1)[1] == pytest.approx(2 * (li * lj + lj * lk + li * lk))
    assert math.isnan(indices.surface_to_volume(_volume(arr, spacing), 3)[3])


def test_staircase_raises_surface_to_volume_and_relative_change_reports_it():
    smooth = _box((8, 20, 20), (0, 8), (5, 15), (5, 15))
    stair = np.zeros_like(smooth)
    for k in range(8):  # the same slices, each shifted in-plane like breath-hold motion
        stair[k] = np.roll(smooth[k], (k % 2) * 3, axis=1)
    sv_smooth = indices.surface_to_volume(_volume(smooth))
    sv_stair = indices.surface_to_volume(_volume(stair))
    assert sv_stair[1] > sv_smooth[1]
    change = indices.relative_change(sv_stair, sv_smooth)
    assert change[1] == pytest.approx((sv_smooth[1] - sv_stair[1]) / sv_stair[1]) and change[1] < 0
    assert indices.relative_change(0.5, 0.4) == pytest.approx(-0.2)
    assert math.isnan(indices.relative_change(0.0, 1.0))


def test_volumes_and_myocardial_mass():
    arr = _box((12, 12, 12), (1, 11), (1, 11), (1, 11), label=2)
    arr[5, 5, 5] = 1
    rotation = np.array([[0.0, -1.0, 0.0], [0.6, 0.0, 0.8], [-0.8, 0.0, 0.6]])  # oblique, orthonormal
    vol = _volume(arr, spacing=(1.0, 1.5, 2.0), direction=rotation)
    v = indices.volumes_ml(vol)
    assert v[2] == pytest.approx((1000 - 1) * 3.0 / 1000)
    assert v[1] == pytest.approx(3.0 / 1000)
    assert indices.myocardial_mass_g(vol) == pytest.approx(v[2] * 1.05)
    assert indices.volumes_ml(vol, 3) == {3: 0.0}


# ------------------------------------------------------------------------------------- motion

def test_displacement_error_with_and_without_mean_removal():
    true = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, -2.0]])
    shifted = true + [3.0, 4.0]  # right up to a common 5 mm shift
    plain = metrics.displacement_error(shifted, true)
    assert plain["mean_mm"] == pytest.approx(5.0)
    assert np.allclose(plain["per_slice"], 5.0)
    assert metrics.displacement_error(shifted, true, remove_mean=True)["mean_mm"] == pytest.approx(0.0, abs=1e-12)

    est, tru = np.zeros((2, 2)), np.array([[3.0, 4.0], [0.0, 0.0]])
    assert np.allclose(metrics.displacement_error(est, tru)["per_slice"], [5.0, 0.0])
    # centred truth: (+-1.5, +-2): each slice 2.5 mm off
    assert np.allclose(metrics.displacement_error(est, tru, remove_mean=True)["per_slice"], [2.5, 2.5])


def test_displacement_error_rejects_bad_shapes():
    with pytest.raises(InputError):
        metrics.displacement_error(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(InputError):
        metrics.displacement_error(np.zeros((3, 3)), np.zeros((3, 3)))


# ------------------------------------------------------------------------------------- shift-searched Dice

def test_shift_searched_dice_recovers_a_known_shift():
    truth = _box((4, 30, 30), (0, 4), (8, 20), (10, 18), label=1)
    truth[:, 20:23, 10:18] = 2
    result = np.roll(truth, (-3, 2), axis=(1, 2))  # content moved by +2 along i, -3 along j
    t, r = _volume(truth, spacing=(1.25, 1.5, 8.0)), _volume(result, spacing=(1.25, 1.5, 8.0))
    assert metrics.dice(r, t, (1, 2))[1] < 0.8
    searched = metrics.shift_searched_dice(r, t, (1, 2), max_shift_px=5)
    assert searched["shift_px"] == (-2, 3)
    assert searched["shift_mm"] == pytest.approx((-2.5, 4.5))
    assert searched["dice"] == {1: 1.0, 2: 1.0}
    # identical volumes keep the zero shift (ties go to the smallest shift)
    assert metrics.shift_searched_dice(t, t, (1, 2))["shift_px"] == (0, 0)


# ------------------------------------------------------------------------------------- LAX

def _oblique_lax_view(disc_labels_fn, h=5.0):
    """A 1 mm single-slice view on an oblique plane at distance ``h`` mm from the RAS origin."""
    u = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    v = np.array([-1.0, 1.0, 2.0]) / np.sqrt(6)
    normal = np.cross(u, v)
    n = 61
    origin = h * normal - 30.0 * u - 30.0 * v
    geo = Geometry((1, n, n), make_ijk_to_ras((1.0, 1.0, 6.0), origin, np.stack([u, v, normal], axis=1)))
    _, j, i = np.indices(geo.shape, dtype=float)
    ras = geo.index_to_ras(np.stack([i, j, np.zeros_like(i)], axis=-1))
    return LaxView("4ch", Volume.on(geo, disc_labels_fn(np.linalg.norm(ras, axis=-1)).astype(np.uint8)))


def test_lax_dice_on_an_oblique_single_slice_view():
    spacing = (1.25, 1.25, 2.0)
    shape = (30, 48, 48)
    origin = -np.array([(shape[2] - 1) * spacing[0], (shape[1] - 1) * spacing[1], (shape[0] - 1) * spacing[2]]) / 2
    r = _ball_distance(shape, spacing)  # centred on the RAS origin
    result = _volume(np.where(r <= 20, 1, np.where(r <= 25, 2, 0)), spacing, origin)

    def exact(dist):
        return np.where(dist <= 20, 1, np.where(dist <= 25, 2, 0))

    d = metrics.lax_dice(result, _oblique_lax_view(exact), (1, 2))
    assert d[1] > 0.95 and d[2] > 0.85

    # a LAX contour of the LV disc with a smaller radius: Dice of concentric discs
    rho = math.sqrt(20 ** 2 - 5 ** 2)
    rho_small = math.sqrt(15 ** 2 - 5 ** 2)
    d_small = metrics.lax_dice(result, _oblique_lax_view(lambda dist: dist <= 15), 1)[1]
    assert d_small == pytest.approx(2 * rho_small ** 2 / (rho ** 2 + rho_small ** 2), abs=0.03)


# ------------------------------------------------------------------------------------- evaluate & inputs

def test_evaluate_returns_a_flat_dict_consistent_with_the_single_metrics():
    truth_arr = _box((10, 20, 20), (2, 8), (4, 14), (4, 14), label=2)
    truth_arr[3:7, 6:12, 6:12] = 1
    result_arr = np.roll(truth_arr, 1, axis=2)
    truth, result = _volume(truth_arr, ANISO), _volume(result_arr, ANISO)
    before = result_arr.copy()
    lax = LaxView("2ch", Volume(truth_arr[5:6], make_ijk_to_ras(ANISO, truth.geometry.index_to_ras([0, 0, 5]))))
    est, tru = np.zeros((10, 2)), np.ones((10, 2))
    out = metrics.evaluate(result, truth, estimated_displacements=est, true_displacements=tru,
                           lax_views=[lax], shift_search_px=2)

    d = metrics.dice(result, truth, (1, 2))
    assert out["dice_LV"] == d[1] and out["dice_MYO"] == d[2]
    assert out["dice_mean"] == pytest.approx((d[1] + d[2]) / 2)
    assert out["hd95_MYO"] == metrics.hd95(result, truth, 2)[2]
    assert out["assd_LV"] == metrics.assd(result, truth, 1)[1]
    assert out["sv_LV"] == indices.surface_to_volume(result, 1)[1]
    assert out["vol_truth_ml_MYO"] == pytest.approx(indices.volumes_ml(truth)[2])
    assert out["myo_mass_g"] == pytest.approx(indices.volumes_ml(result)[2] * 1.05)
    assert out["displacement_error_mm"] == pytest.approx(math.sqrt(2))
    assert out["displacement_error_mean_removed_mm"] == pytest.approx(0.0)
    assert out["lax_dice_2ch_LV"] == pytest.approx(metrics.dice(result, lax.labels, 1)[1])
    assert out["dice_shift_searched_LV"] == 1.0 and out["shift_searched_di_px"] == -1.0
    assert "dice_RV" not in out  # only structures present in the truth by default
    assert all(isinstance(v, float) for v in out.values())
    assert np.array_equal(result.array, before)  # inputs untouched


def test_metrics_reject_non_label_inputs():
    truth = _volume(np.ones((3, 3, 3)))
    with pytest.raises(InputError):
        metrics.dice(Volume(np.ones((3, 3, 3), np.float32), truth.ijk_to_ras), truth)
    with pytest.raises(InputError):
        metrics.hd95(np.ones((3, 3, 3)), truth)
    with pytest.raises(InputError):
        metrics.lax_dice(truth, truth)
    with pytest.raises(InputError):
        metrics.evaluate(truth, truth, estimated_displacements=np.zeros((3, 2)))
