"""The procedural phantom: deterministic, anatomically plausible, correctly posed in RAS."""

import time

import numpy as np
import pytest

from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.labels import LV, MYO, RV, WHOLE_HEART
from CardiacReconstructionLib.simulation.phantom import LANDMARK_KEYS, make_phantom, phantom_truth

SEEDS = (0, 1, 2, 3)
MYOCARDIUM_DENSITY_G_PER_ML = 1.05


@pytest.fixture(scope="module")
def phantoms():
    return {seed: make_phantom(seed) for seed in SEEDS}


@pytest.fixture(scope="module")
def wholeheart():
    return make_phantom(0, mode="wholeheart", vessel_lumen=True)


def volume_ml(volume, label):
    return float((volume.array == label).sum() * np.prod(volume.spacing) / 1000.0)


def slices_with(array, label):
    return np.nonzero((array == label).any(axis=(1, 2)))[0]


def in_plane_area_mm2(volume, k, label):
    return float((volume.array[k] == label).sum() * volume.spacing[0] * volume.spacing[1])


def in_plane_neighbours(mask):
    """Labels of the 4-connected in-plane neighbours of every voxel of ``mask``."""
    out = []
    for axis in (1, 2):
        for shift in (1, -1):
            out.append(np.roll(mask, shift, axis=axis))
    return out


def test_same_seed_gives_the_same_phantom():
    a, b = make_phantom(7), make_phantom(7)
    np.testing.assert_array_equal(a.truth.array, b.truth.array)
    np.testing.assert_array_equal(a.truth.ijk_to_ras, b.truth.ijk_to_ras)
    for key in LANDMARK_KEYS:
        np.testing.assert_array_equal(a.landmarks[key], b.landmarks[key])
    assert a.params == b.params


def test_different_seeds_give_different_anatomy_and_pose(phantoms):
    a, b = phantoms[0], phantoms[1]
    assert a.truth.array.shape == b.truth.array.shape
    lv_a, lv_b = a.truth.array == LV, b.truth.array == LV
    dice = 2 * (lv_a & lv_b).sum() / (lv_a.sum() + lv_b.sum())
    assert dice < 0.97
    assert not np.allclose(a.truth.ijk_to_ras, b.truth.ijk_to_ras)
    assert a.params["lv_volume_ml"] != b.params["lv_volume_ml"]


def test_default_grid_type_and_labels(phantoms):
    truth = phantoms[0].truth
    assert truth.array.shape == (64, 128, 128)
    assert truth.array.dtype == np.uint8
    np.testing.assert_allclose(truth.spacing, (1.25, 1.25, 2.0))
    assert set(np.unique(truth.array)) == {0, LV, MYO, RV}


@pytest.mark.parametrize("seed", SEEDS)
def test_volumes_are_those_of_an_adult_heart_at_end_diastole(phantoms, seed):
    truth = phantoms[seed].truth
    assert 120.0 <= volume_ml(truth, LV) <= 160.0
    assert 100.0 <= volume_ml(truth, MYO) * MYOCARDIUM_DENSITY_G_PER_ML <= 150.0
    assert 130.0 <= volume_ml(truth, RV) <= 180.0


@pytest.mark.parametrize("seed", SEEDS)
def test_lv_dimensions(phantoms, seed):
    truth = phantoms[seed].truth
    ks = slices_with(truth.array, LV)
    length = len(ks) * truth.spacing[2]
    assert 80.0 <= length <= 95.0
    mid = ks[len(ks) // 3]  # a mid-ventricular slice (the middle third starts a third down)
    cavity = in_plane_area_mm2(truth, mid, LV)
    outer = cavity + in_plane_area_mm2(truth, mid, MYO)
    r_endo, r_epi = np.sqrt(cavity / np.pi), np.sqrt(outer / np.pi)
    assert 45.0 <= 2 * r_endo <= 55.0
    assert 7.5 <= r_epi - r_endo <= 11.0  # mean wall thickness from equivalent radii


@pytest.mark.parametrize("seed", SEEDS)
def test_myocardium_encloses_the_cavity_in_every_slice(phantoms, seed):
    a = phantoms[seed].truth.array
    lv = a == LV
    for neighbour in in_plane_neighbours(a):
        assert set(np.unique(neighbour[lv])) <= {LV, MYO}


@pytest.mark.parametrize("seed", SEEDS)
def test_base_is_cut_flat_and_apex_is_closed_by_myocardium(phantoms, seed):
    truth = phantoms[seed].truth
    lv, myo, rv = (slices_with(truth.array, lab) for lab in (LV, MYO, RV))
    assert lv[0] == myo[0] == rv[0]  # one basal plane for all ventricular structures
    areas = [in_plane_area_mm2(truth, k, LV) for k in lv]
    assert areas[0] >= 0.8 * max(areas)  # the first slice is a full basal section, not a tip
    assert myo[-1] >= lv[-1] + 2  # at least 2 slices (4 mm) of apical myocardium
    apex_slice = truth.array[myo[-1]]
    assert not (apex_slice == LV).any()


@pytest.mark.parametrize("seed", SEEDS)
def test_rv_is_a_crescent_on_one_side_that_stops_short_of_the_apex(phantoms, seed):
    a = phantoms[seed].truth.array
    lv_slices, rv_slices = slices_with(a, LV), slices_with(a, RV)
    assert rv_slices[-1] <= lv_slices[-1] - 3
    directions = []
    for k in rv_slices[: len(rv_slices) * 3 // 4]:
        lv_centre = np.argwhere(a[k] == LV).mean(axis=0)
        rv_points = np.argwhere(a[k] == RV) - lv_centre
        direction = rv_points.mean(axis=0) / np.linalg.norm(rv_points.mean(axis=0))
        assert (rv_points @ direction > 0).mean() > 0.95
        directions.append(direction)
    assert min(d @ directions[0] for d in directions) > 0.9  # the same side in every slice


def test_landmarks_sit_on_the_anatomy(phantoms):
    ph = phantoms[0]
    truth, geo = ph.truth, ph.truth.geometry
    assert set(ph.landmarks) == set(LANDMARK_KEYS)
    idx = {key: geo.ras_to_index(p) for key, p in ph.landmarks.items()}  # continuous (i, j, k)
    lv, myo = slices_with(truth.array, LV), slices_with(truth.array, MYO)
    # Apex: at the last myocardial slice, on the LV axis; the mitral valve on the basal plane.
    assert abs(idx["lv_apex"][2] - myo[-1]) <= 1.0
    assert lv[0] - 1.0 <= idx["mitral_valve_centre"][2] <= lv[0]
    basal_centre = np.argwhere(truth.array[lv[0]] == LV).mean(axis=0)[::-1]  # (i, j)
    assert np.linalg.norm((idx["mitral_valve_centre"][:2] - basal_centre) * truth.spacing[:2]) < 4.0
    # The mitral -> apex line is the k axis (base -> apex).
    axis = ph.landmarks["lv_apex"] - ph.landmarks["mitral_valve_centre"]
    k_dir = geo.direction[:, 2]
    assert np.degrees(np.arccos(axis @ k_dir / np.linalg.norm(axis))) < 5.0
    assert 85.0 <= np.linalg.norm(axis) <= 110.0
    # Tricuspid valve over the RV base; outflow valves above the base.
    i, j, _ = np.round(idx["tricuspid_valve_centre"]).astype(int)
    assert truth.array[lv[0], j, i] == RV
    assert idx["aortic_valve_centre"][2] < lv[0] and idx["pulmonary_valve_centre"][2] < lv[0]


def test_oblique_pose_is_a_rotation_and_can_be_switched_off(phantoms):
    geo = phantoms[0].truth.geometry
    d = geo.direction
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-9)
    assert np.linalg.det(d) == pytest.approx(1.0)
    assert np.abs(d - np.eye(3)).max() > 0.3  # genuinely oblique
    # The long axis (k) points to the patient's left, anterior and inferior, within the jitter.
    assert d[0, 2] < 0 and d[1, 2] > 0 and d[2, 2] < 0
    straight = make_phantom(0, oblique=False)
    np.testing.assert_allclose(straight.truth.geometry.direction, np.eye(3))
    centre = straight.truth.geometry.index_to_ras((np.array(straight.truth.shape[::-1]) - 1) / 2.0)
    np.testing.assert_allclose(centre, 0.0, atol=1e-9)
    np.testing.assert_array_equal(straight.truth.array, phantoms[0].truth.array)  # same anatomy, other pose


def test_heart_is_centred_with_a_margin(phantoms):
    truth = phantoms[0].truth
    spacing_kji = truth.spacing[::-1]
    for axis in range(3):
        occupied = np.nonzero(np.moveaxis(truth.array, axis, 0).any(axis=(1, 2)))[0]
        before, after = occupied[0], truth.shape[axis] - 1 - occupied[-1]
        assert min(before, after) * spacing_kji[axis] >= 6.0  # phantom.MARGIN_MM
        assert abs(before - after) * spacing_kji[axis] <= 7.0  # centred to within the 3 mm coarse pass


def test_wholeheart_adds_atria_and_great_vessels_above_the_base(wholeheart):
    a = wholeheart.truth.array
    assert set(np.unique(a)) == {0, *WHOLE_HEART}
    first_ventricular = slices_with(a, LV)[0]
    for label in (4, 5, 6, 7):
        assert slices_with(a, label)[-1] < first_ventricular
    assert 35.0 <= volume_ml(wholeheart.truth, 4) <= 80.0  # LA
    assert 35.0 <= volume_ml(wholeheart.truth, 5) <= 90.0  # RA
    geo = wholeheart.truth.geometry
    for key, label in (("aortic_valve_centre", 6), ("pulmonary_valve_centre", 7)):
        i, j, k = np.round(geo.ras_to_index(wholeheart.landmarks[key])).astype(int)
        assert (a[k - 2:k + 1, j - 1:j + 2, i - 1:i + 2] == label).any()


def test_wholeheart_vessels_are_walls_by_default():
    walls = make_phantom(0, mode="wholeheart").truth
    filled = make_phantom(0, mode="wholeheart", vessel_lumen=True).truth
    for label in (6, 7):
        assert volume_ml(walls, label) < 0.6 * volume_ml(filled, label)
    np.testing.assert_array_equal(walls.array == LV, filled.array == LV)


def test_volumes_do_not_depend_on_the_grid(phantoms):
    """Implicit shapes on the physical grid: an isotropic 1.5 mm grid measures the same heart."""
    fine = make_phantom(0, spacing=(1.5, 1.5, 1.5), shape=(84, 106, 106)).truth
    for label in (LV, MYO, RV):
        assert volume_ml(fine, label) == pytest.approx(volume_ml(phantoms[0].truth, label), rel=0.05)


def test_phantom_truth_and_speed():
    start = time.perf_counter()
    truth = phantom_truth(5)
    assert time.perf_counter() - start < 1.0
    np.testing.assert_array_equal(truth.array, make_phantom(5).truth.array)


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "fourchamber"}, "mode"),
    ({"shape": (20, 40, 40)}, "grid"),
    ({"spacing": (1.0, -1.0, 2.0)}, "spacing"),
    ({"spacing": (1.0, 2.0)}, "spacing"),
])
def test_bad_arguments_raise_input_error(kwargs, match):
    with pytest.raises(InputError, match=match):
        make_phantom(0, **kwargs)
