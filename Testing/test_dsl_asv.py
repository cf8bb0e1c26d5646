"""DeepWHR (dsl_asv) with the shipped weights on phantom cases, and its geometric helpers."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from CardiacReconstructionLib import methods  # noqa: E402
from CardiacReconstructionLib.networks import weights  # noqa: E402
from CardiacReconstructionLib.core.case import Case  # noqa: E402
from CardiacReconstructionLib.simulation.cases import make_case  # noqa: E402
from CardiacReconstructionLib.core.errors import InputError  # noqa: E402
from CardiacReconstructionLib.core.geometry import Volume, make_ijk_to_ras  # noqa: E402
from CardiacReconstructionLib.core.labels import LV, MYO, RV  # noqa: E402
from CardiacReconstructionLib.evaluation.metrics import dice, displacement_error  # noqa: E402
from CardiacReconstructionLib.simulation.phantom import make_phantom  # noqa: E402
from CardiacReconstructionLib.methods import dsl_asv as pipe  # noqa: E402

needs_weights = pytest.mark.skipif("dsl" not in weights.manifest() or "asv" not in weights.manifest(),
                                   reason="dsl/asv weights not installed")


@pytest.fixture(scope="module")
def severe_case():
    phantom = make_phantom(seed=4)
    return make_case(phantom.truth, "severe", seed=3, slice_spacing=10.0)


@pytest.fixture(scope="module")
def severe_result(severe_case):
    return methods.run("dsl_asv", severe_case, slice_spacing=2.0)


@needs_weights
def test_registered_as_learned_method_with_displacements():
    m = methods.get("dsl_asv")
    assert m.kind == "learned" and m.estimates_displacements
    assert {o.name for o in m.options} == {"correction", "iterations", "max_shift_mm", "start"}


@needs_weights
@pytest.mark.slow
def test_output_grid_shapes_and_labels(severe_case, severe_result):
    expected = methods.output_geometry(severe_case.sax.geometry, slice_spacing=2.0)
    assert severe_result.labels.geometry.same_as(expected)
    assert severe_result.labels.array.dtype == np.uint8
    assert severe_result.displacements.shape == (severe_case.n_slices, 2)
    assert set(np.unique(severe_result.labels.array)) == {0, LV, MYO, RV}  # biventricular in, out


@needs_weights
@pytest.mark.slow
def test_result_is_close_to_truth_and_corrects_motion(severe_case, severe_result):
    d = dice(severe_result.labels, severe_case.truth)
    assert min(d.values()) > 0.5 and np.mean(list(d.values())) > 0.7
    # The estimated displacements explain a good part of the true ones (mean removed: the common
    # shift of all slices is unobservable): better than estimating no motion at all.
    err = displacement_error(severe_result.displacements, severe_case.true_displacements, remove_mean=True)
    none = displacement_error(np.zeros_like(severe_case.true_displacements), severe_case.true_displacements,
                              remove_mean=True)
    assert err["mean_mm"] < 0.75 * none["mean_mm"]


@needs_weights
@pytest.mark.slow
def test_deterministic(severe_case, severe_result):
    again = methods.run("dsl_asv", severe_case, slice_spacing=2.0)
    np.testing.assert_array_equal(again.labels.array, severe_result.labels.array)
    np.testing.assert_array_equal(again.displacements, severe_result.displacements)


@needs_weights
@pytest.mark.slow
def test_arbitrary_output_spacing_is_honoured(severe_case):
    result = methods.run("dsl_asv", severe_case, slice_spacing=3.3)
    expected = methods.output_geometry(severe_case.sax.geometry, slice_spacing=3.3)
    assert result.labels.geometry.same_as(expected)
    slab = severe_case.n_slices * 10.0
    assert result.labels.shape[0] == round(slab / 3.3)
    assert abs(result.labels.spacing[2] - slab / round(slab / 3.3)) < 1e-6


@needs_weights
@pytest.mark.slow
def test_surface_to_volume_before_and_after_reported(severe_result):
    diag = severe_result.diagnostics
    for key in ("sv_before", "sv_after", "sv_relative_change"):
        assert set(diag[key]) == {"LV", "MYO", "RV"}
    change = diag["sv_relative_change"]["MYO"]
    before, after = diag["sv_before"]["MYO"], diag["sv_after"]["MYO"]
    assert change == pytest.approx((after - before) / before)
    # Severe motion makes staircases; the reconstruction is smoother.
    assert after < before
    assert diag["mode"] == "biventricular"


@needs_weights
@pytest.mark.slow
def test_correction_none_reports_zero_displacements(severe_case):
    result = methods.run("dsl_asv", severe_case, correction="none")
    measured = result.estimated
    assert measured.any() and not result.displacements[measured].any()
    assert np.isnan(result.displacements[~measured]).all()  # slices without labels: not measured


@needs_weights
@pytest.mark.slow
def test_reversed_slice_order_gives_the_same_anatomy(severe_case, severe_result):
    """Canonicalisation is physical: the same stack stored apex-first (k axis flipped) must give
    the same labels in space."""
    sax = severe_case.sax
    m = sax.ijk_to_ras.copy()
    m[:3, 3] = sax.geometry.index_to_ras([0, 0, sax.shape[0] - 1])
    m[:3, 2] = -m[:3, 2]
    flipped = Case(sax=Volume(sax.array[::-1].copy(), m))
    result = methods.run("dsl_asv", flipped, slice_spacing=2.0)
    assert result.labels.array.shape == severe_result.labels.array.shape
    back = Volume(result.labels.array[::-1].copy(), severe_result.labels.ijk_to_ras)
    assert np.mean(list(dice(back, severe_result.labels).values())) > 0.995  # measured 1.0; margin 0.005
    np.testing.assert_allclose(result.displacements[::-1], severe_result.displacements, atol=0.3)


@needs_weights
@pytest.mark.slow
def test_wholeheart_mode_outputs_the_great_vessels_and_atria():
    phantom = make_phantom(seed=2, mode="wholeheart")
    case = make_case(phantom.truth, "normal", seed=0, slice_spacing=10.0)
    result = methods.run("dsl_asv", case, slice_spacing=2.5)
    assert result.diagnostics["mode"] == "wholeheart"
    present = set(np.unique(result.labels.array).tolist()) - {0}
    in_input = set(np.unique(case.sax.array).tolist()) - {0}
    assert {1, 2, 3, 4, 5} <= present <= in_input
    keys = {"LV", "MYO", "RV", "LA", "RA", "AO", "PA"}
    assert set(result.diagnostics["sv_after"]) == {k for i, k in enumerate(sorted(keys, key=list(
        ("LV", "MYO", "RV", "LA", "RA", "AO", "PA")).index), 1) if i in in_input}


@needs_weights
def test_too_many_slices_is_an_input_error():
    a = np.zeros((41, 16, 16), np.uint8)
    a[:, 4:10, 4:10] = 1
    with pytest.raises(InputError, match="2-40 slices"):
        methods.run("dsl_asv", Case(sax=Volume(a, make_ijk_to_ras((2.0, 2.0, 8.0)))))


# --- geometric helpers (no weights needed, hand-computable) -----------------------------------

def test_slice_shifts_recover_known_shifts():
    k, j, i = np.mgrid[0:3, 0:40, 0:40]
    ref = np.zeros((3, 40, 40), np.uint8)
    ref[np.hypot(i - 20, j - 20) < 6] = 1
    obs = ref.copy()
    obs[1] = np.roll(np.roll(ref[1], 3, axis=1), -2, axis=0)  # +3 voxels along i, -2 along j
    s = pipe.slice_shifts(pipe.onehot(obs, 2), pipe.onehot(ref, 2), max_shift_px=10)
    np.testing.assert_allclose(s, [[0, 0], [3, -2], [0, 0]], atol=1e-6)


def test_canonical_grid_puts_rv_at_plus_i_and_base_first(ring_stack_rotated):
    sax = ring_stack_rotated
    grid = pipe.canonical_geometry(sax)
    labels = pipe.to_canonical_labels(sax, grid)
    lv_i = np.argwhere(labels == LV)[:, 2].mean()
    rv_i = np.argwhere(labels == RV)[:, 2].mean()
    rv_j, lv_j = np.argwhere(labels == RV)[:, 1].mean(), np.argwhere(labels == LV)[:, 1].mean()
    # The RV disc lies 13 voxels of 1.5 mm (x the taper) beside the LV: ~7 voxels of 2.5 mm.
    assert rv_i - lv_i > 5 and abs(rv_j - lv_j) < 1.0
    assert not grid.reversed  # the conftest ring stack tapers towards its last slice (apex)
    np.testing.assert_allclose(np.linalg.norm(grid.geometry.ijk_to_ras[:3, :2], axis=0), 2.5)


@pytest.fixture
def ring_stack_rotated():
    from conftest import ring_stack

    base = ring_stack(n_slices=8, size=64, spacing=(1.5, 1.5, 10.0))
    # Rotate the in-plane content by 90 degrees: the RV now lies along +j of the stored grid.
    return Volume(np.rot90(base.array, 1, axes=(1, 2)).copy(), base.ijk_to_ras)


@needs_weights
@pytest.mark.slow
def test_finetune_updates_encoder_only(tmp_path):
    from CardiacReconstructionLib.core.io import write_volume
    from CardiacReconstructionLib.networks.checkpoint import load_network
    from CardiacReconstructionLib.training.dsl_asv import finetune_dsl

    folder = tmp_path / "corrected"
    folder.mkdir()
    for seed in (0, 1):
        lr = make_case(make_phantom(seed=seed).truth, "none", seed=seed, slice_spacing=10.0).sax
        write_volume(lr, folder / f"stack{seed}.nii.gz")
    out = tmp_path / "dsl_ft.pt"
    finetune_dsl(folder, out, max_steps=2, minutes=5.0, accumulate=1, log=lambda *_: None)
    tuned = load_network(torch.load(str(out), weights_only=True), "dsl")
    shipped = load_network(weights.load_state_dict("dsl"), "dsl")
    for (name, a), b in zip(tuned.decoder.state_dict().items(), shipped.decoder.state_dict().values()):
        assert torch.equal(a, b), name
    changed = [not torch.equal(a, b) for a, b in zip(tuned.encoder.parameters(), shipped.encoder.parameters())]
    assert any(changed)
    meta = torch.load(str(out), weights_only=True)["meta"]["finetuned"]
    assert meta["steps"] == 2 and meta["decoder_frozen"] and meta["stacks"] == ["stack0.nii.gz", "stack1.nii.gz"]
