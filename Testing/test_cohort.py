"""Tests of the training-data loaders (whole-heart CT cohort and ACDC) on the real shared data.

The data lives beside the repository (../shared/data, or $CARDIAC_RECON_DATA); the data tests
skip when it is absent. Grids are reduced (32 x 64 x 64 at 2.5 x 2.5 x 4 mm, same 160 x 160 x
128 mm field as the default) to keep the file fast.
"""


import numpy as np
import pytest
from scipy import ndimage

from CardiacReconstructionLib.anatomy import frame as frame_mod
from CardiacReconstructionLib.training import cohort
from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.geometry import Volume, make_ijk_to_ras
from CardiacReconstructionLib.core.labels import detect_convention
from conftest import DATA, needs_acdc, needs_ct

SMALL = dict(grid_shape=(32, 64, 64), spacing=(2.5, 2.5, 4.0))
SQRT3 = float(np.sqrt(3.0))  # farthest a 1 mm source voxel centre used by linear interpolation can be


def ml(volume, label):
    return float((volume.array == label).sum() * np.prod(volume.spacing) / 1000.0)


def voxel_centres_of(volume, mask):
    return volume.geometry.index_to_ras(np.argwhere(mask)[:, ::-1].astype(float))


def first_half_area_slice(volume, label=1):
    """Slices from the first slice holding ``label`` to the first with >= half its largest area."""
    area = (volume.array == label).sum(axis=(1, 2))
    return int(np.argmax(area >= 0.5 * area.max()) - np.nonzero(area)[0][0])


@pytest.fixture(scope="module")
def s00():
    return cohort.subject_path("subject_00")


@pytest.fixture(scope="module")
def s00_uncut(s00):
    return cohort.load_subject(s00, cut_valve_planes=False, **SMALL)


@pytest.fixture(scope="module")
def s00_cut(s00):
    return cohort.load_subject(s00, **SMALL)


# ---------------------------------------------------------------------------------------------
# Data root
# ---------------------------------------------------------------------------------------------

def test_missing_data_root_names_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match="nowhere"):
        cohort.data_root(missing)
    monkeypatch.setenv(cohort.DATA_ENV, str(missing))
    assert cohort.default_data_root() == missing
    with pytest.raises(InputError, match="nowhere"):
        cohort.list_subjects()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="wholeheart_ct"):
        cohort.list_subjects(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------
# Split
# ---------------------------------------------------------------------------------------------

@needs_ct
def test_split_is_fixed_disjoint_and_pca_free_by_default():
    subjects = cohort.list_subjects()
    assert subjects == tuple(f"subject_{i:02d}" for i in range(19))
    train = [p.stem for p in cohort.split(which="train")]
    val = [p.stem for p in cohort.split(which="val")]
    assert tuple(val) == cohort.VALIDATION_SUBJECTS == ("subject_15", "subject_16", "subject_17", "subject_18")
    assert len(train) == 15 and not set(train) & set(val)
    assert sorted(train + val) == list(subjects)
    assert not any(n.startswith("pca") for n in train + val)
    with_pca = [p.stem for p in cohort.split(which="train", include_pca=True)]
    assert len(with_pca) == 15 + 28 and set(train) < set(with_pca)
    assert [p.stem for p in cohort.split(which="val", include_pca=True)] == val  # never in validation
    # The data root may also be the wholeheart_ct folder itself.
    assert [p.stem for p in cohort.split(DATA / cohort.CT_DIR, "val")] == val
    with pytest.raises(InputError, match="'train' or 'val'"):
        cohort.split(which="test")
    with pytest.raises(InputError, match="subject_99"):
        cohort.subject_path("subject_99")


# ---------------------------------------------------------------------------------------------
# SAX frame and valve planes (hand-computed)
# ---------------------------------------------------------------------------------------------

TOY_LANDMARKS = {"mitral_valve_centre": [0, 0, 0], "lv_apex": [0, 0, 90], "tricuspid_valve_centre": [30, 0, 10],
                 "aortic_valve_centre": [10, 0, 0], "pulmonary_valve_centre": [40, 0, 10]}


def test_sax_frame_on_hand_made_landmarks():
    frame = frame_mod.sax_frame(TOY_LANDMARKS)
    np.testing.assert_allclose(frame.axes, np.eye(3), atol=1e-12)  # i=x (to RV), j=z x x=y, k=z
    np.testing.assert_allclose(frame.centre, [0, 0, 45])  # mitral-apex midpoint without labels
    labels = np.zeros((5, 5, 5), np.uint8)
    labels[4, 2, 0] = 1  # one LV voxel at x=4, y=2, z=0 (x, y, z index order)
    frame = frame_mod.sax_frame(TOY_LANDMARKS, labels, origin=(10, 20, 30), spacing=2.0)
    # In-plane: the centroid (18, 24, 30); along the long axis: the midpoint (z=45).
    np.testing.assert_allclose(frame.centre, [18, 24, 45])
    geo = frame.geometry((3, 4, 5), (1.0, 2.0, 3.0))
    np.testing.assert_allclose(geo.origin, [18 - 2, 24 - 3, 45 - 3])
    np.testing.assert_allclose(geo.index_to_ras([2, 1.5, 1]), frame.centre)
    with pytest.raises(InputError, match="lv_apex"):
        frame_mod.sax_frame({"mitral_valve_centre": [0, 0, 0]})
    with pytest.raises(InputError, match="labels 1-3"):
        frame_mod.sax_frame(TOY_LANDMARKS, np.zeros((3, 3, 3), np.uint8))


def test_valve_plane_normal_is_closest_to_the_long_axis():
    k = np.array([0.0, 0.0, 1.0])
    flat = frame_mod.valve_plane(np.zeros(3), np.array([10.0, 0, 0]), k)
    np.testing.assert_allclose(flat.normal, k)
    tilted = frame_mod.valve_plane(np.zeros(3), np.array([10.0, 0, -10]), k)  # valve line at 45 degrees
    np.testing.assert_allclose(tilted.normal, np.array([1, 0, 1]) / np.sqrt(2))
    assert tilted.signed_distance([10, 0, -10]) == pytest.approx(0)  # both centres lie in the plane
    assert tilted.signed_distance([0, 0, 5]) > 0  # apical side is positive


def test_cut_at_valve_planes_on_a_hand_made_volume():
    arr = np.zeros((11, 3, 3), np.uint8)  # z = k - 5 runs -5..5
    arr[:, 0, :] = 1
    arr[:, 1, :] = 3
    arr[:, 2, 0] = 2
    arr[:, 2, 1:] = 5
    vol = Volume(arr, make_ijk_to_ras(origin=(0, 0, -5)))
    before = arr.copy()
    landmarks = dict(TOY_LANDMARKS, tricuspid_valve_centre=[30, 0, 2], pulmonary_valve_centre=[40, 0, 2])
    cut = frame_mod.cut_at_valve_planes(vol, landmarks)
    np.testing.assert_array_equal(vol.array, before)  # input untouched
    z = np.arange(11) - 5
    for label, plane_z in ((1, 0), (2, 0), (3, 2)):  # mitral-aortic plane z = 0, right plane z = 2
        kept = (cut.array == label).any(axis=(1, 2))
        np.testing.assert_array_equal(kept, z >= plane_z)
    np.testing.assert_array_equal(cut.array == 5, arr == 5)  # other labels untouched


def test_right_plane_follows_the_tricuspid():
    planes = frame_mod.valve_planes(TOY_LANDMARKS)
    np.testing.assert_allclose(planes["right"].normal, [0, 0, 1])
    assert planes["right"].signed_distance([0, 0, 10]) == pytest.approx(0)
    assert planes["left"].signed_distance([0, 0, 0]) == pytest.approx(0)


@needs_ct
def test_real_sax_frame_is_orthonormal_right_handed_base_to_apex(s00):
    shape = cohort.read_shape(s00)
    lm = shape.landmarks
    frame = frame_mod.sax_frame(lm, shape.labels_xyz, shape.origin, shape.spacing)
    R = frame.axes
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0)
    long_axis = lm["lv_apex"] - lm["mitral_valve_centre"]
    assert R[:, 2] @ long_axis == pytest.approx(np.linalg.norm(long_axis))  # k from mitral to apex
    assert R[:, 0] @ (lm["tricuspid_valve_centre"] - lm["mitral_valve_centre"]) > 20  # i towards the RV
    local = frame.to_local([lm["mitral_valve_centre"], lm["lv_apex"]])
    assert local[0, 2] == pytest.approx(-local[1, 2])  # centred between base and apex along k


# ---------------------------------------------------------------------------------------------
# Loading a subject
# ---------------------------------------------------------------------------------------------

@needs_ct
def test_loaded_volume_matches_the_json_volumes(s00, s00_uncut):
    vol = s00_uncut
    shape = cohort.read_shape(s00)
    assert vol.shape == (32, 64, 64) and vol.array.dtype == np.uint8
    np.testing.assert_allclose(vol.spacing, [2.5, 2.5, 4.0])
    frame = frame_mod.sax_frame(shape.landmarks, shape.labels_xyz, shape.origin, shape.spacing)
    np.testing.assert_allclose(vol.geometry.direction, frame.axes, atol=1e-9)
    assert set(np.unique(vol.array)) == {0, 1, 2, 3}
    for label in (1, 2, 3):  # 2.5 x 2.5 x 4 mm voxels: partial volume only at the boundary
        assert ml(vol, label) == pytest.approx(shape.volumes_ml[label], rel=0.01)  # measured <= 0.0031; margin 0.007
    assert 80 < ml(vol, 1) < 200 and 80 < ml(vol, 3) < 250  # plausible adult end-diastolic volumes
    # Ventricles centred: nothing touches the grid's border.
    body = vol.array > 0
    borders = (body[0], body[-1], body[:, 0], body[:, -1], body[:, :, 0], body[:, :, -1])
    assert not any(face.any() for face in borders)


@needs_ct
def test_npz_axis_order_is_xyz(s00):
    """A voxel of the raw array [x, y, z] lands where its world position says in the Volume."""
    shape = cohort.read_shape(s00)
    vol = shape.volume()
    x, y, z = np.argwhere(shape.labels_xyz == 9)[0]  # an aortic wall voxel
    assert vol.array[z, y, x] == 9
    np.testing.assert_allclose(vol.geometry.index_to_ras([x, y, z]), shape.origin + [x, y, z])
    assert read_only(shape.labels_xyz) and cohort.read_shape(s00) is shape  # cached, not copied


def read_only(array):
    return not array.flags.writeable


@needs_ct
def test_wholeheart_mode_keeps_canonical_whole_heart_labels(s00):
    vol = cohort.load_subject(s00, mode="wholeheart", **SMALL)
    assert set(np.unique(vol.array)) == {0, 1, 2, 3, 4, 5, 6, 7}
    with pytest.raises(InputError, match="mode"):
        cohort.load_subject(s00, mode="atria", **SMALL)


@needs_ct
def test_valve_cut_removes_the_basal_rim_and_leaves_a_flat_base(s00, s00_uncut, s00_cut):
    lm = cohort.read_shape(s00).landmarks
    planes = frame_mod.valve_planes(lm)
    for label in (1, 2, 3):
        assert ml(s00_cut, label) < ml(s00_uncut, label)
    assert ml(s00_uncut, 2) - ml(s00_cut, 2) > 2  # the basal myocardial rim is several ml
    # No LV / myocardium on the atrial side of the mitral-aortic plane, no RV beyond the
    # tricuspid-pulmonary plane, up to the reach of linear interpolation on the 1 mm source.
    lv = voxel_centres_of(s00_cut, np.isin(s00_cut.array, (1, 2)))
    rv = voxel_centres_of(s00_cut, s00_cut.array == 3)
    assert planes["left"].signed_distance(lv).min() >= -SQRT3
    assert planes["right"].signed_distance(rv).min() >= -SQRT3
    assert planes["left"].signed_distance(voxel_centres_of(s00_uncut, s00_uncut.array == 2)).min() < -5  # rim ~1 cm
    # Flat base: the LV reaches half its largest cross-section within one 4 mm slice of its first
    # slice once cut, against three slices of tapering rim and valve stub without the cut.
    assert first_half_area_slice(s00_cut) <= 1 < first_half_area_slice(s00_uncut)


# ---------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------

def test_drawn_augmentations_respect_their_ranges():
    ranges = cohort.AugmentationRanges()
    rng = np.random.default_rng(0)
    draws = [cohort.draw_augmentation(rng, ranges) for _ in range(200)]
    scale = np.array([a.scale for a in draws])
    assert 0.85 <= scale.min() and scale.max() <= 1.15 and scale.std() > 0.05
    assert all(0.85 <= a.long_axis_scale <= 1.15 for a in draws)
    assert all(0 <= a.tilt_deg <= 10 and abs(a.spin_deg) <= 15 for a in draws)
    assert cohort.draw_augmentation(np.random.default_rng(5)) == cohort.draw_augmentation(np.random.default_rng(5))


def test_augmentation_affine_scales_about_the_centre_along_the_long_axis():
    frame = frame_mod.sax_frame(TOY_LANDMARKS)
    aug = cohort.Augmentation(scale=1.1, long_axis_scale=1.2)
    m = cohort.augmentation_affine(aug, frame)
    c = frame.centre
    np.testing.assert_allclose(m[:3, :3] @ c + m[:3, 3], c)  # the centre stays
    # Output point 13.2 mm apical of the centre shows the source 13.2 / (1.1 * 1.2) = 10 mm apical.
    np.testing.assert_allclose(m[:3, :3] @ (c + [0, 0, 13.2]) + m[:3, 3], c + [0, 0, 10])
    np.testing.assert_allclose(m[:3, :3] @ (c + [11, 0, 0]) + m[:3, 3], c + [10, 0, 0])
    tilted = cohort.augmentation_affine(cohort.Augmentation(tilt_deg=10, tilt_azimuth_deg=90), frame)
    k_out = tilted[:3, :3] @ [0, 0, 1.0]
    assert np.degrees(np.arccos(k_out @ [0, 0, 1])) == pytest.approx(10)


def test_elastic_field_is_bounded_and_smooth():
    frame = frame_mod.sax_frame(TOY_LANDMARKS)
    reference = frame.geometry(**SMALL)
    aug = cohort.Augmentation(elastic_mm=3.0, elastic_seed=7)
    transform = cohort.augmentation_transform(aug, frame, reference)
    rng = np.random.default_rng(0)
    ijk = rng.uniform(0, 1, (500, 3)) * (np.array(reference.shape[::-1]) - 1)
    lps = reference.index_to_ras(ijk) * [-1, -1, 1]
    moved = np.array([transform.TransformPoint(tuple(map(float, p))) for p in lps])
    d = moved - lps
    assert np.abs(d).max() <= 3.0 + 1e-6  # convex combination of offsets in +-3 mm
    assert np.abs(d).max() > 1.0  # it does deform
    near = lps + [1.0, 0, 0]
    d_near = np.array([transform.TransformPoint(tuple(map(float, p))) for p in near]) - near
    assert np.abs(d_near - d).max() < 0.5  # smooth: < 0.5 mm change over 1 mm


@needs_ct
def test_augmentation_is_seeded_and_changes_volumes_as_drawn(s00, s00_cut):
    a = cohort.load_subject(s00, augment=3, **SMALL)
    b = cohort.load_subject(s00, augment=np.random.default_rng(3), **SMALL)
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_array_equal(a.ijk_to_ras, s00_cut.ijk_to_ras)  # same output grid
    c = cohort.load_subject(s00, augment=4, **SMALL)
    assert (a.array != c.array).mean() > 0.01
    for seed, vol in ((3, a), (4, c)):
        factor = cohort.draw_augmentation(np.random.default_rng(seed)).volume_factor
        assert abs(factor - 1) > 0.04  # these seeds really rescale
        for label in (1, 2, 3):
            # measured <= 0.0156; margin 0.01
            assert ml(vol, label) / ml(s00_cut, label) == pytest.approx(factor, rel=0.025)
    with pytest.raises(InputError, match="seed"):
        cohort.load_subject(s00, augment=True, **SMALL)


# ---------------------------------------------------------------------------------------------
# ACDC
# ---------------------------------------------------------------------------------------------

@needs_acdc
def test_acdc_keys_and_split_by_patient():
    keys = cohort.acdc_keys()
    assert len(keys) == 160 and keys[0] == "patient002_frame01"
    train, val = cohort.acdc_split(which="train"), cohort.acdc_split(which="val")
    assert sorted(train + val) == sorted(keys)
    train_patients = {cohort.acdc_patient(k) for k in train}
    val_patients = {cohort.acdc_patient(k) for k in val}
    assert not train_patients & val_patients and all(p % 5 == 0 for p in val_patients)
    assert len(val_patients) == 17 and len(val) == 34


@needs_acdc
def test_acdc_loader_canonical_labels_and_assumed_spacing():
    vol = cohort.load_acdc(key="patient002_frame01")
    assert vol.shape == (10, 256, 232)
    np.testing.assert_allclose(vol.spacing, [1.5, 1.5, 10.0])
    np.testing.assert_allclose(vol.geometry.direction, np.eye(3))
    assert set(np.unique(vol.array)) == {0, 1, 2, 3}
    assert detect_convention(vol.array)[0] == "canonical"
    # Canonical LV (1) is ringed by myocardium (2) in-plane; the RV (3) is not.
    footprint = np.zeros((1, 3, 3), bool)
    footprint[0, 1, :] = footprint[0, :, 1] = True
    for label, low, high in ((1, 0.9, 1.0), (3, 0.0, 0.6)):
        mask = vol.array == label
        ring = ndimage.binary_dilation(mask, footprint) & ~mask
        assert low <= (vol.array[ring] == 2).mean() <= high
    with pytest.raises(InputError, match="patient999"):
        cohort.load_acdc(key="patient999_frame01")


@needs_acdc
def test_acdc_pseudo_hr_through_the_baseline():
    sax = cohort.load_acdc(key="patient002_frame01")
    hr = cohort.acdc_pseudo_hr(sax, slice_spacing=2.0)
    assert hr.spacing[2] == pytest.approx(2.0)
    assert hr.shape[0] * 2.0 == pytest.approx(sax.shape[0] * 10.0)  # the same slab
    for label in (1, 2, 3):
        assert ml(hr, label) == pytest.approx(ml(sax, label), rel=0.06)  # measured <= 0.033 (RV); margin 0.027


def test_acdc_anatomies_are_pseudo_hr_validation_stacks():
    from CardiacReconstructionLib.evaluation.bench import acdc_anatomies

    val = cohort.acdc_split(which="val")
    anatomies = acdc_anatomies(2, every=3)
    assert [a.name for a in anatomies] == list(val[::3][:2])
    sax = cohort.load_acdc(None, val[0])
    assert anatomies[0].truth.shape[0] > sax.shape[0]  # super-resolved through-plane
    assert set(np.unique(anatomies[0].truth.array)) <= {0, 1, 2, 3}
