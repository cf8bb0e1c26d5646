"""Tests of the degradation simulator (CardiacReconstructionLib.degrade)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from CardiacReconstructionLib.simulation import degrade as D
from CardiacReconstructionLib.simulation.cases import make_case
from CardiacReconstructionLib.core.case import Case
from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.geometry import Volume, make_ijk_to_ras
from CardiacReconstructionLib.methods import output_geometry

OBLIQUE = Rotation.from_euler("xyz", [25, -40, 70], degrees=True).as_matrix()  # det +1


def heart(shape=(60, 64, 64), spacing=(1.0, 1.0, 2.0), direction=OBLIQUE, origin=(10.0, -20.0, 5.0),
          base_at_start=True):
    """A bullet-shaped LV (blood pool 1 in a 3 mm myocardium 2) along k, widest at the base, with
    an RV (3) beside it on the +i side; k, j, i array in a SAX frame of the given pose."""
    k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    x = (i - (shape[2] - 1) / 2) * spacing[0]
    y = (j - (shape[1] - 1) / 2) * spacing[1]
    depth = shape[0] * spacing[2]
    z = k * spacing[2] if base_at_start else (shape[0] - 1 - k) * spacing[2]
    base, length = 0.1 * depth, 0.75 * depth
    u = np.clip((z - base) / length, 0.0, None)
    radius = np.where((z >= base) & (u <= 1), 20.0 * np.sqrt(np.clip(1 - u ** 2, 0, 1)), -1.0)
    r = np.hypot(x + 4.0, y)
    labels = np.zeros(shape, np.uint8)
    labels[np.hypot(x - 20.0, y) < 0.7 * radius] = 3
    labels[r < radius] = 2
    labels[r < radius - 3.0] = 1
    return Volume(labels, make_ijk_to_ras(spacing, origin, direction))


def lv_centroid_mm(slice_2d, spacing):
    """LV+MYO centroid of a (j, i) slice in mm along i and j."""
    jj, ii = np.nonzero(np.isin(slice_2d, (1, 2)))
    return np.array([ii.mean() * spacing[0], jj.mean() * spacing[1]])


@pytest.fixture(scope="module")
def hr():
    return heart()


# ---------------------------------------------------------------------------------------------
# Grid and point sampling
# ---------------------------------------------------------------------------------------------

def test_none_point_sampling_takes_the_middle_hr_slice_of_each_slab(hr):
    deg = D.degrade(hr, "none", factor=5)
    assert deg.sax.shape == (12, 64, 64)
    np.testing.assert_array_equal(deg.sax.array, hr.array[2::5])
    np.testing.assert_array_equal(deg.lr_truth.array, hr.array[2::5])
    assert deg.sax.array.dtype == np.uint8
    np.testing.assert_array_equal(deg.displacements, np.zeros((12, 2)))
    np.testing.assert_array_equal(deg.kept_slices, np.arange(12))


def test_even_factor_breaks_the_tie_towards_plus_k(hr):
    # With factor 2 each LR centre lies half-way between HR slices 2m and 2m+1.
    deg = D.degrade(hr, "none", factor=2)
    np.testing.assert_array_equal(deg.sax.array, hr.array[1::2])


def test_lr_stack_geometry_spacing_and_origin(hr):
    deg = D.degrade(hr, "none", slice_spacing=10.0)
    geo = deg.sax.geometry
    np.testing.assert_allclose(geo.spacing, [1.0, 1.0, 10.0])
    np.testing.assert_allclose(geo.direction, hr.geometry.direction, atol=1e-12)
    k_dir = hr.geometry.direction[:, 2]
    # first LR centre = z0 - s_hr/2 + S/2 = z0 + 4 mm along k
    np.testing.assert_allclose(geo.origin, hr.geometry.origin + 4.0 * k_dir, atol=1e-9)


def test_truth_is_the_hr_grid_that_reconstruction_at_hr_spacing_gives():
    long = heart(shape=(63, 32, 32))  # 126 mm: 12 slabs of 10 mm, 3 HR slices left over
    deg = D.degrade(long, "none", slice_spacing=10.0)
    assert deg.sax.shape[0] == 12
    assert deg.truth.geometry.same_as(output_geometry(deg.sax.geometry, slice_spacing=2.0))
    assert deg.truth.geometry.same_as(long.geometry.with_slices(60, 2.0))
    np.testing.assert_array_equal(deg.truth.array, long.array[:60])


def test_non_integer_ratio_truth_is_resampled_onto_the_output_grid():
    vol = heart(shape=(35, 24, 24), spacing=(1.0, 1.0, 3.0))  # 105 mm -> 10 slices of 10 mm
    deg = D.degrade(vol, "none", slice_spacing=10.0)
    grid = output_geometry(deg.sax.geometry, slice_spacing=3.0)
    assert deg.sax.shape[0] == 10 and deg.truth.geometry.same_as(grid)
    assert grid.n_slices == 33


def test_thickness_averaging_is_a_majority_over_the_slab():
    spacing = (1.0, 1.0, 2.0)
    labels = np.zeros((10, 4, 4), np.uint8)
    labels[0:3, :, 0] = 1  # LV in 3 of the 5 HR slices of slab 0 -> LV
    labels[0:2, :, 1] = 1  # in 2 of 5 -> background
    labels[2, :, 2] = 1  # only in the centre slice: point sampling sees it, 10 mm averaging does not
    labels[1:3, :, 3] = 1  # 4 mm slab = 1/4 of slice 1 + 1/2 of slice 2 + 1/4 of slice 3 -> 0.75 LV
    vol = Volume(labels, make_ijk_to_ras(spacing))
    point = D.degrade(vol, "none", slice_spacing=10.0)
    slab10 = D.degrade(vol, "none", slice_spacing=10.0, thickness=10.0)
    slab4 = D.degrade(vol, "none", slice_spacing=10.0, thickness=4.0)
    np.testing.assert_array_equal(point.sax.array[0, 0], [1, 0, 1, 1])
    np.testing.assert_array_equal(slab10.sax.array[0, 0], [1, 0, 0, 0])
    # column 2 in the 4 mm slab is half LV, half background: ties go to the lower label
    np.testing.assert_array_equal(slab4.sax.array[0, 0], [1, 0, 0, 1])
    np.testing.assert_array_equal(slab10.lr_truth.array, slab10.sax.array)


# ---------------------------------------------------------------------------------------------
# Motion
# ---------------------------------------------------------------------------------------------

def test_same_seed_same_output_and_different_seed_differs(hr):
    a = D.degrade(hr, "stacom", seed=7, rotation_deg_sd=2.0, label_noise=0.1)
    b = D.degrade(hr, "stacom", seed=7, rotation_deg_sd=2.0, label_noise=0.1)
    c = D.degrade(hr, "stacom", seed=8, rotation_deg_sd=2.0, label_noise=0.1)
    np.testing.assert_array_equal(a.sax.array, b.sax.array)
    np.testing.assert_array_equal(a.displacements, b.displacements)
    np.testing.assert_array_equal(a.tilts_deg, b.tilts_deg)
    assert a.sax.geometry.same_as(b.sax.geometry)
    assert not np.allclose(a.displacements[:2], c.displacements[:2])


def test_effects_draw_from_independent_streams(hr):
    plain = D.degrade(hr, "normal", seed=3)
    rotated = D.degrade(hr, "normal", seed=3, rotation_deg_sd=5.0, label_noise=0.2)
    np.testing.assert_array_equal(plain.displacements, rotated.displacements)


def test_input_volume_is_not_modified(hr):
    before = hr.array.copy()
    D.degrade(hr, "severe", seed=1, label_noise=0.3, rotation_deg_sd=4.0)
    np.testing.assert_array_equal(hr.array, before)


def _mean_magnitude_per_axis_abs_normal(mean, sd):
    """E sqrt(X^2 + Y^2) for X, Y iid |N(mean, sd)| by Gauss-Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(60)
    a = np.abs(mean + sd * x)
    w = w / w.sum()
    return float((w[:, None] * w[None, :] * np.hypot(a[:, None], a[None, :])).sum())


EXPECTED_MEAN_MAGNITUDE = {
    "normal": 2.3,
    "severe": 9.2,
    "mcsr": 2.5,
    "mask2surface": _mean_magnitude_per_axis_abs_normal(3.45, 1.305),  # about 5.1 mm
    "stacom": 3.5 * np.sqrt(np.pi / 2),  # Rayleigh mean of two N(0, 3.5) axes
}


@pytest.fixture(scope="module")
def long_thin():
    labels = np.ones((400, 4, 4), np.uint8)  # 400 mm of 1 mm slices -> 200 LR slices of 2 mm
    return Volume(labels, make_ijk_to_ras((1.0, 1.0, 1.0)))


@pytest.mark.parametrize("preset", sorted(EXPECTED_MEAN_MAGNITUDE))
def test_displacement_magnitude_statistics(long_thin, preset):
    d = np.concatenate([D.degrade(long_thin, preset, slice_spacing=2.0, seed=s).displacements for s in range(2)])
    assert len(d) >= 380
    magnitude = np.linalg.norm(d, axis=1)
    assert magnitude.mean() == pytest.approx(EXPECTED_MEAN_MAGNITUDE[preset], rel=0.10)
    angle = np.arctan2(d[:, 1], d[:, 0])
    assert (angle > 0).mean() == pytest.approx(0.5, abs=0.1)  # no preferred direction
    if preset == "mcsr":
        assert magnitude.max() <= 5.0
    if preset == "mask2surface":
        assert np.abs(d).mean() == pytest.approx(3.45, rel=0.1)


def test_known_shift_moves_the_anatomy_by_plus_d():
    spacing = (0.5, 0.5, 2.0)
    vol = heart(shape=(50, 128, 128), spacing=spacing)
    deg = D.degrade(vol, "severe", seed=4)
    moved = 0
    for k in range(deg.sax.shape[0]):
        if not np.isin(deg.lr_truth.array[k], (1, 2)).any():
            continue
        shift = lv_centroid_mm(deg.sax.array[k], spacing) - lv_centroid_mm(deg.lr_truth.array[k], spacing)
        np.testing.assert_allclose(shift, deg.displacements[k], atol=0.3)
        moved += 1
    assert moved >= 6


def test_oblique_pose_does_not_change_the_sampled_arrays():
    axis_aligned = heart(direction=np.eye(3), origin=(0.0, 0.0, 0.0))
    oblique = heart()
    a = D.degrade(axis_aligned, "normal", seed=2, rotation_deg_sd=3.0)
    b = D.degrade(oblique, "normal", seed=2, rotation_deg_sd=3.0)
    np.testing.assert_array_equal(a.sax.array, b.sax.array)
    np.testing.assert_allclose(b.sax.geometry.direction, OBLIQUE, atol=1e-12)


def test_rotation_turns_the_slice_about_the_lv_centroid():
    spacing = (0.5, 0.5, 2.0)
    vol = heart(shape=(50, 128, 128), spacing=spacing)
    deg = D.degrade(vol, "none", seed=5, rotation_deg_sd=20.0)
    k = 3
    truth, seen = deg.lr_truth.array[k], deg.sax.array[k]
    np.testing.assert_allclose(lv_centroid_mm(seen, spacing), lv_centroid_mm(truth, spacing), atol=0.3)

    def rv_angle(s):
        jj, ii = np.nonzero(s == 3)
        c = lv_centroid_mm(truth, spacing)
        return np.degrees(np.arctan2(jj.mean() * spacing[1] - c[1], ii.mean() * spacing[0] - c[0]))

    assert abs(deg.rotations_deg[k]) > 1.0
    # right-handed about +k: i turns towards j
    assert rv_angle(seen) - rv_angle(truth) == pytest.approx(deg.rotations_deg[k], abs=1.5)


def test_tilt_cuts_across_a_plane_interface():
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[:22] = 1  # LV up to 21.5 mm along k; LR slice centres at 4.5, 14.5, 24.5, 34.5 mm
    vol = Volume(labels, make_ijk_to_ras((1.0, 1.0, 1.0)))
    flat = D.degrade(vol, "none", slice_spacing=10.0)
    tilted = D.degrade(vol, "none", slice_spacing=10.0, tilt_deg_range=(10.0, 10.0), seed=1)
    np.testing.assert_allclose(tilted.tilts_deg, 10.0)
    np.testing.assert_allclose(np.linalg.norm(tilted.tilt_axes, axis=1), 1.0)
    assert set(np.unique(flat.sax.array[2])) == {0}  # 3 mm beyond the interface
    # tilted by 10 degrees about any in-plane axis, the 40 mm wide plane reaches at least
    # 19.5 sin(10) = 3.4 mm and at most 27.6 sin(10) = 4.8 mm out of plane: part of it enters the LV
    assert set(np.unique(tilted.sax.array[2])) == {0, 1}
    assert set(np.unique(tilted.sax.array[1])) == {1} and set(np.unique(tilted.sax.array[3])) == {0}


def test_label_noise_flips_a_fraction_of_boundary_voxels_to_neighbour_labels(hr):
    deg = D.degrade(hr, "none", label_noise=0.5, seed=2)
    truth, noisy = deg.lr_truth.array, deg.sax.array
    padded = np.pad(truth, ((0, 0), (1, 1), (1, 1)), mode="edge")
    neighbours = np.stack([padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]])
    boundary = (neighbours != truth).any(axis=0)
    changed = noisy != truth
    assert not (changed & ~boundary).any()
    assert changed.sum() == round(0.5 * boundary.sum())
    assert (neighbours == noisy[None]).any(axis=0)[changed].all()


# ---------------------------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("base_at_start", [True, False])
def test_basal_dropout_removes_the_wide_end(base_at_start):
    vol = heart(base_at_start=base_at_start)
    full = D.degrade(vol, "none")
    deg = D.degrade(vol, "normal", seed=0, basal_dropout_probability=1.0, dropout_max_slices=1)
    n = full.sax.shape[0]
    expected = np.arange(1, n) if base_at_start else np.arange(0, n - 1)
    np.testing.assert_array_equal(deg.kept_slices, expected)
    assert deg.sax.shape[0] == deg.lr_truth.shape[0] == deg.displacements.shape[0] == n - 1
    k_dir = vol.geometry.direction[:, 2]
    np.testing.assert_allclose(deg.sax.geometry.origin, full.sax.geometry.origin + 10.0 * expected[0] * k_dir,
                               atol=1e-9)
    np.testing.assert_array_equal(deg.lr_truth.array, full.lr_truth.array[expected])
    assert deg.truth.geometry.same_as(full.truth.geometry)  # truth covers the pre-dropout slab


def test_dropout_at_both_ends_keeps_at_least_two_slices(hr):
    for seed in range(5):
        deg = D.degrade(hr, "stacom", seed=seed, basal_dropout_probability=1.0, apical_dropout_probability=1.0,
                        dropout_max_slices=3)
        assert 12 - 6 <= deg.sax.shape[0] <= 12 - 2
        assert np.all(np.diff(deg.kept_slices) == 1)
    short = heart(shape=(15, 32, 32))  # 3 LR slices
    deg = D.degrade(short, "none", basal_dropout_probability=1.0, apical_dropout_probability=1.0,
                    dropout_max_slices=5)
    assert deg.sax.shape[0] == 2


# ---------------------------------------------------------------------------------------------
# Presets, case and errors
# ---------------------------------------------------------------------------------------------

def test_every_preset_is_documented_and_defaults_to_10_mm(hr):
    assert set(D.PRESETS) == set(D.PRESET_REFERENCES) == {"none", "normal", "severe", "mcsr", "mask2surface",
                                                           "stacom"}
    for name in D.PRESETS:
        deg = D.degrade(hr, name, seed=1)
        assert deg.sax.spacing[2] == pytest.approx(10.0)
        assert deg.preset == name and deg.seed == 1


def test_make_case_builds_a_case_with_truth_displacements_and_lax(hr):
    landmarks = {"mitral_valve_centre": hr.geometry.index_to_ras([29.5, 31.5, 3.0]),
                 "lv_apex": hr.geometry.index_to_ras([29.5, 31.5, 50.0]),
                 "tricuspid_valve_centre": hr.geometry.index_to_ras([55.0, 31.5, 6.0])}
    case = make_case(hr, "normal", seed=3, lax_views=("4ch", "2ch"), landmarks=landmarks, lax_shift=True)
    deg = D.degrade(hr, "normal", seed=3)
    assert isinstance(case, Case)
    np.testing.assert_array_equal(case.sax.array, deg.sax.array)
    np.testing.assert_array_equal(case.true_displacements, deg.displacements)
    assert case.truth.geometry.same_as(deg.truth.geometry)
    assert [v.view for v in case.lax] == ["4ch", "2ch"]
    assert all(np.isin(v.labels.array, (1, 2)).any() for v in case.lax)
    assert set(case.info["lax_shifts_mm"]) == {"4ch", "2ch"}


def test_bad_inputs_raise_clear_input_errors(hr):
    with pytest.raises(InputError, match="label map"):
        D.degrade(Volume(hr.array.astype(np.float32), hr.ijk_to_ras))
    with pytest.raises(InputError, match="preset"):
        D.degrade(hr, "gentle")
    with pytest.raises(InputError, match="valid keys are .*rotation_deg_sd"):
        D.degrade(hr, "normal", rotation_sd=2.0)
    with pytest.raises(InputError, match="2 LR slices"):
        D.degrade(hr, "none", slice_spacing=70.0)
    with pytest.raises(InputError, match="not both"):
        D.degrade(hr, slice_spacing=10.0, factor=5)
    with pytest.raises(InputError, match="factor"):
        D.degrade(hr, factor=0.5)
    with pytest.raises(InputError, match="seed"):
        D.degrade(hr, seed=-1)
    with pytest.raises(InputError, match="non-canonical"):
        D.degrade(Volume((hr.array * 100).astype(np.int32), hr.ijk_to_ras))
    with pytest.raises(InputError, match="empty"):
        D.degrade(Volume(np.zeros_like(hr.array), hr.ijk_to_ras))
    with pytest.raises(InputError, match="thickness"):
        D.degrade(hr, thickness=-1.0)
    with pytest.raises(InputError, match="label_noise"):
        D.degrade(hr, label_noise=2.0)
    with pytest.raises(InputError, match="tilt_deg_range"):
        D.degrade(hr, tilt_deg_range=(10.0, 3.0))
    with pytest.raises(InputError, match="Volume"):
        D.degrade(hr.array)
