"""Tests of the long-axis planes and view extraction (CardiacReconstructionLib.lax)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from CardiacReconstructionLib.simulation import lax as L
from CardiacReconstructionLib.core.case import LaxView
from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.geometry import Volume, make_ijk_to_ras

# An oblique long axis and two directions perpendicular to it (RAS).
AXIS = np.array([1.0, -0.6, -0.8]) / np.linalg.norm([1.0, -0.6, -0.8])
E = np.cross(AXIS, [0.0, 0.0, 1.0])
E /= np.linalg.norm(E)
F = np.cos(np.radians(130)) * E + np.sin(np.radians(130)) * np.cross(AXIS, E)
MITRAL = np.array([5.0, 20.0, 10.0])
APEX = MITRAL + 70.0 * AXIS
LANDMARKS = {
    "mitral_valve_centre": MITRAL,
    "lv_apex": APEX,
    "tricuspid_valve_centre": MITRAL + 28.0 * E + 5.0 * AXIS,
    "aortic_valve_centre": MITRAL + 12.0 * F - 3.0 * AXIS,
    "pulmonary_valve_centre": MITRAL + 20.0 * F + 15.0 * E - 10.0 * AXIS,
}
GRID_DIRECTION = Rotation.from_euler("zyx", [30, 15, -20], degrees=True).as_matrix()


def synthetic_heart(spacing=1.75, n=64, la=True, aorta=True):
    """Bullet LV (1) in a 4 mm myocardium (2) along AXIS from MITRAL to APEX; RV (3) on the +E side,
    LA (4) beyond the base, aorta (6) towards F; on an oblique grid centred on the heart."""
    centre = MITRAL + 19.0 * AXIS
    origin = centre - GRID_DIRECTION @ np.full(3, spacing * (n - 1) / 2)
    m = make_ijk_to_ras((spacing,) * 3, origin, GRID_DIRECTION)
    k, j, i = np.meshgrid(*(np.arange(n, dtype=float),) * 3, indexing="ij")
    p = np.stack([i, j, k], axis=-1) @ m[:3, :3].T + m[:3, 3]
    rel = p - MITRAL
    t = rel @ AXIS
    rho = np.linalg.norm(rel - t[..., None] * AXIS, axis=-1)
    radius = np.where((t >= 0) & (t <= 70), 22.0 * np.sqrt(np.clip(1 - (t / 70.0) ** 2, 0, 1)), -1.0)
    labels = np.zeros((n, n, n), np.uint8)
    rv = rel - 30.0 * AXIS - 25.0 * E
    labels[((rv @ E) / 15) ** 2 + ((rv @ np.cross(AXIS, E)) / 12) ** 2 + ((rv @ AXIS) / 30) ** 2 < 1] = 3
    if la:
        labels[np.linalg.norm(rel + 17.0 * AXIS, axis=-1) < 15.0] = 4
    if aorta:
        labels[np.linalg.norm(rel - 12.0 * F + 5.0 * AXIS, axis=-1) < 8.0] = 6
    labels[rho < radius] = 2
    labels[rho < radius - 4.0] = 1
    return Volume(labels, m)


@pytest.fixture(scope="module")
def hr():
    return synthetic_heart()


def distance_to_plane(point, origin, normal):
    return abs((np.asarray(point) - origin) @ normal)


# ---------------------------------------------------------------------------------------------
# Planes from landmarks
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("view, landmark", [("4ch", "tricuspid_valve_centre"), ("3ch", "aortic_valve_centre"),
                                            ("2ch", None)])
def test_landmark_planes_contain_the_long_axis_and_their_landmark(view, landmark):
    origin, normal, axes = L.lax_plane(view, LANDMARKS)
    for key in ("mitral_valve_centre", "lv_apex") + ((landmark,) if landmark else ()):
        assert distance_to_plane(LANDMARKS[key], origin, normal) < 1e-9
    np.testing.assert_allclose(origin, (MITRAL + APEX) / 2)
    np.testing.assert_allclose(axes[1], AXIS, atol=1e-12)  # v runs base -> apex
    if landmark:  # u points from the axis towards the defining landmark
        assert axes[0] @ (LANDMARKS[landmark] - MITRAL) > 0


@pytest.mark.parametrize("view", ["2ch", "3ch", "4ch"])
def test_plane_frames_are_right_handed_and_orthonormal(view):
    _, normal, (u, v) = L.lax_plane(view, LANDMARKS)
    frame = np.stack([u, v, normal], axis=1)
    np.testing.assert_allclose(frame.T @ frame, np.eye(3), atol=1e-12)
    assert np.linalg.det(frame) == pytest.approx(1.0)


def test_2ch_is_perpendicular_to_4ch_and_faces_the_aortic_valve():
    _, n4, _ = L.lax_plane("4ch", LANDMARKS)
    _, n2, (u2, _) = L.lax_plane("2ch", LANDMARKS)
    assert abs(n2 @ n4) < 1e-12
    np.testing.assert_allclose(abs(u2 @ n4), 1.0)  # the 4ch normal lies in the 2ch plane
    assert u2 @ (LANDMARKS["aortic_valve_centre"] - MITRAL) > 0


def test_cohort_json_layout_is_accepted():
    wrapped = {"landmarks_mm": {k: list(v) for k, v in LANDMARKS.items()}, "spacing_mm": 1.0}
    for view in ("2ch", "3ch", "4ch"):
        for a, b in zip(L.lax_plane(view, wrapped), L.lax_plane(view, LANDMARKS)):
            np.testing.assert_allclose(a, b)


# ---------------------------------------------------------------------------------------------
# Planes from labels
# ---------------------------------------------------------------------------------------------

def test_label_proxies_recover_the_long_axis_and_its_direction(hr):
    proxies = L.landmarks_from_labels(hr)
    axis = proxies["lv_apex"] - proxies["mitral_valve_centre"]
    assert np.degrees(np.arccos(axis @ AXIS / np.linalg.norm(axis))) < 0.25  # measured 0.027 deg; margin 0.22
    assert np.linalg.norm(axis) == pytest.approx(70.0 + 4.0, abs=6.0)  # LV+MYO length incl. the apical wall


@pytest.mark.parametrize("view", ["2ch", "3ch", "4ch"])
def test_label_derived_planes_match_the_landmark_planes(hr, view):
    # The RV and aorta centres lie in the landmark 4ch and 3ch planes by construction.
    _, n_lab, (_, v_lab) = L.lax_plane(view, labels=hr)
    _, n_ref, _ = L.lax_plane(view, LANDMARKS)
    assert abs(n_lab @ n_ref) > np.cos(np.radians(4.0))
    assert v_lab @ AXIS > np.cos(np.radians(3.0))


def test_base_is_found_without_an_atrium():
    no_la = synthetic_heart(la=False)
    proxies = L.landmarks_from_labels(no_la)
    assert (proxies["lv_apex"] - proxies["mitral_valve_centre"]) @ AXIS > 60.0


def test_round_lv_falls_back_to_the_volume_k_axis():
    n, spacing = 40, 1.5
    k, j, i = np.meshgrid(*(np.arange(n, dtype=float),) * 3, indexing="ij")
    r = np.sqrt((i - 20) ** 2 + (j - 20) ** 2 + (k - 20) ** 2) * spacing
    labels = np.where(r < 15, 1, np.where(r < 18, 2, 0)).astype(np.uint8)
    labels[(np.abs(i - 32) < 4) & (np.abs(j - 20) < 4) & (np.abs(k - 20) < 8)] = 3
    vol = Volume(labels, make_ijk_to_ras((spacing,) * 3, (0.0, 0.0, 0.0), GRID_DIRECTION))
    _, _, (_, v) = L.lax_plane("4ch", labels=vol)
    assert abs(v @ GRID_DIRECTION[:, 2]) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("view", ["2ch", "3ch", "4ch"])
def test_extracted_view_is_a_single_oblique_slice_with_lv(hr, view):
    out = L.extract_lax(hr, view, LANDMARKS)
    assert isinstance(out, LaxView) and out.view == view
    vol = out.labels
    assert vol.shape[0] == 1 and vol.array.dtype == np.uint8
    assert np.isin(vol.array, (1,)).sum() > 200 and np.isin(vol.array, (2,)).sum() > 100
    geo = vol.geometry
    np.testing.assert_allclose(geo.direction.T @ geo.direction, np.eye(3), atol=1e-12)
    assert np.linalg.det(geo.direction) == pytest.approx(1.0)
    np.testing.assert_allclose(geo.spacing, [L.DEFAULT_LAX_SPACING_MM] * 3)
    origin, normal, _ = L.lax_plane(view, LANDMARKS)
    np.testing.assert_allclose(geo.direction[:, 2], normal, atol=1e-12)
    centre = geo.index_to_ras([(vol.shape[2] - 1) / 2, (vol.shape[1] - 1) / 2, 0.0])
    np.testing.assert_allclose(centre, origin, atol=1e-9)
    corners = geo.index_to_ras([[0, 0, 0], [vol.shape[2] - 1, vol.shape[1] - 1, 0]])
    assert max(distance_to_plane(c, origin, normal) for c in corners) < 1e-9


def test_4ch_view_shows_the_rv_and_the_atrium(hr):
    values = np.unique(L.extract_lax(hr, "4ch", LANDMARKS).labels.array)
    assert {1, 2, 3, 4} <= set(values.tolist())


def test_extracted_pixels_are_the_nearest_hr_voxels(hr):
    vol = L.extract_lax(hr, "4ch", LANDMARKS, spacing=2.0).labels
    jj, ii = np.meshgrid(np.arange(vol.shape[1]), np.arange(vol.shape[2]), indexing="ij")
    ras = vol.geometry.index_to_ras(np.stack([ii, jj, np.zeros_like(ii)], axis=-1).astype(float))
    idx = np.rint(hr.geometry.ras_to_index(ras)).astype(int)
    inside = np.all((idx >= 0) & (idx < np.array(hr.shape[::-1])), axis=-1)
    expected = np.zeros(vol.shape[1:], np.uint8)
    expected[inside] = hr.array[idx[inside][:, 2], idx[inside][:, 1], idx[inside][:, 0]]
    assert (vol.array[0] == expected).mean() > 0.999  # measured 1.0 (all pixels); margin 0.001


def test_shift_moves_the_view_content_by_plus_d(hr):
    spacing = 0.5
    plain = L.extract_lax(hr, "4ch", LANDMARKS, spacing=spacing, size_mm=(120, 120)).labels.array[0]
    moved = L.extract_lax(hr, "4ch", LANDMARKS, spacing=spacing, size_mm=(120, 120),
                          shift_mm=(3.0, -2.0)).labels.array[0]
    assert plain.shape == (240, 240)

    def centroid(a):
        jj, ii = np.nonzero(np.isin(a, (1, 2)))
        return np.array([ii.mean(), jj.mean()]) * spacing

    np.testing.assert_allclose(centroid(moved) - centroid(plain), [3.0, -2.0], atol=0.3)


def test_seeded_shift_is_the_documented_random_shift(hr):
    shift = L.random_lax_shift(5)
    assert shift.shape == (2,) and 0 < np.linalg.norm(shift) < 8
    np.testing.assert_array_equal(L.random_lax_shift(5), shift)
    a = L.extract_lax(hr, "2ch", LANDMARKS, seed=5).labels.array
    b = L.extract_lax(hr, "2ch", LANDMARKS, shift_mm=shift).labels.array
    np.testing.assert_array_equal(a, b)


def test_extraction_from_labels_alone(hr):
    out = L.extract_lax(hr, "4ch")
    assert np.isin(out.labels.array, (1,)).any() and np.isin(out.labels.array, (3,)).any()


def test_bad_inputs_raise_clear_input_errors(hr):
    with pytest.raises(InputError, match="view"):
        L.lax_plane("5ch", LANDMARKS)
    with pytest.raises(InputError, match="tricuspid_valve_centre"):
        L.lax_plane("4ch", {k: v for k, v in LANDMARKS.items() if k != "tricuspid_valve_centre"})
    with pytest.raises(InputError, match="landmarks or a label volume"):
        L.lax_plane("4ch")
    with pytest.raises(InputError, match="distinct"):
        L.lax_plane("4ch", {**LANDMARKS, "lv_apex": MITRAL})
    with pytest.raises(InputError, match="on the LV long axis"):
        L.lax_plane("3ch", {**LANDMARKS, "aortic_valve_centre": MITRAL + 10 * AXIS})
    with pytest.raises(InputError, match="aorta"):
        L.lax_plane("3ch", labels=synthetic_heart(aorta=False))
    with pytest.raises(InputError, match="no LV"):
        L.lax_plane("4ch", labels=Volume(np.where(hr.array == 3, 3, 0).astype(np.uint8), hr.ijk_to_ras))
    with pytest.raises(InputError, match="spacing"):
        L.extract_lax(hr, "4ch", LANDMARKS, spacing=0.0)
    with pytest.raises(InputError, match="shift"):
        L.extract_lax(hr, "4ch", LANDMARKS, shift_mm=(1.0,))
    with pytest.raises(InputError, match="label map"):
        L.extract_lax(Volume(hr.array.astype(float), hr.ijk_to_ras), "4ch", LANDMARKS)
