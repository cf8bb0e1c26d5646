"""The synthetic bSSFP-like rendering of label stacks (simulation.mr_render) for the images-in path."""

import time

import numpy as np
import pytest

from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.geometry import Volume
from CardiacReconstructionLib.core.labels import LV, MYO, RV
from CardiacReconstructionLib.simulation.cases import make_case
from CardiacReconstructionLib.simulation.mr_render import render_cine
from CardiacReconstructionLib.simulation.phantom import make_phantom


@pytest.fixture(scope="module")
def sax():
    return make_case(make_phantom(seed=0).truth, "normal", seed=0, slice_spacing=10.0).sax


def test_same_geometry_float32_finite_and_in_range(sax):
    image = render_cine(sax, seed=0)
    assert image.shape == sax.shape
    assert image.geometry.same_as(sax.geometry)
    assert image.array.dtype == np.float32 and not image.is_label
    assert np.all(np.isfinite(image.array))
    assert image.array.min() >= 0.0 and image.array.max() <= 255.0
    assert image.array.max() > 200.0  # bright blood reaches the top of the range


def test_deterministic_for_a_seed_and_different_between_seeds(sax):
    a, b, c = render_cine(sax, seed=3), render_cine(sax, seed=3), render_cine(sax, seed=4)
    np.testing.assert_array_equal(a.array, b.array)
    assert np.abs(a.array - c.array).mean() > 1.0


def test_blood_pools_bright_myocardium_dark(sax):
    image, labels = render_cine(sax, seed=0).array, sax.array
    lv, rv, myo = (float(image[labels == v].mean()) for v in (LV, RV, MYO))
    assert lv > 180.0 and rv > 180.0 and myo < 110.0
    assert min(lv, rv) - myo > 100.0
    # Each blood pool is a clear structure: its interior is brighter than the surrounding tissue too.
    outside = float(image[labels == 0].mean())
    assert min(lv, rv) - outside > 80.0


def test_body_has_air_outside_and_dark_lungs(sax):
    image = render_cine(sax, seed=0).array
    corners = image[:, :4, :4]  # the FOV corners lie outside the elliptic body
    assert corners.mean() < 20.0
    background = image[sax.array == 0]
    assert np.percentile(background, 10) < 40.0 < np.percentile(background, 60)  # lungs and air vs tissue


def test_input_labels_unchanged(sax):
    before = sax.array.copy()
    render_cine(sax, seed=1)
    np.testing.assert_array_equal(sax.array, before)
    assert sax.array.dtype == before.dtype


def test_fast_on_a_small_stack(sax):
    labels = Volume(np.ascontiguousarray(sax.array[:10]), sax.ijk_to_ras)  # 10 x 128 x 128
    assert labels.shape == (10, 128, 128)
    start = time.perf_counter()
    render_cine(labels, seed=0)
    assert time.perf_counter() - start < 1.0


def test_whole_heart_labels_render_blood_bright_and_walls_dark():
    truth = make_phantom(seed=1, mode="wholeheart").truth
    matrix = truth.ijk_to_ras.copy()
    matrix[:3, 2] *= 4
    labels = Volume(np.ascontiguousarray(truth.array[::4]), matrix)  # every 4th slice: keep it quick
    image = render_cine(labels, seed=0).array
    means = {v: float(image[labels.array == v].mean()) for v in range(1, 8) if (labels.array == v).any()}
    assert {4, 5, 6, 7} <= set(means)
    assert min(means[v] for v in (LV, RV, 4, 5)) - max(means[v] for v in (MYO, 6, 7)) > 80.0  # 6, 7 are walls


def test_rejects_a_non_label_volume(sax):
    with pytest.raises(InputError):
        render_cine(sax.with_array(sax.array.astype(np.float32)))
