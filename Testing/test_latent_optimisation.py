"""Latent optimisation with the shipped prior on a phantom stack (small iteration caps: fast).

Checks the output grid and labels, determinism, recovery of a known per-slice shift (after the
zero-mean gauge), the long-axis term and its gauge, the stack-derived prior frame, and errors.
"""

import numpy as np
import pytest

from CardiacReconstructionLib import methods
from CardiacReconstructionLib.core.case import Case
from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.geometry import Volume
from CardiacReconstructionLib.core.stack import shift_slices

torch = pytest.importorskip("torch")

from CardiacReconstructionLib.methods import latent_optimisation as lo  # noqa: E402

FAST = dict(iterations=8, rigid_iterations=30, starts=2, device="cpu", seed=3)


@pytest.fixture(scope="module")
def phantom_case():
    from CardiacReconstructionLib.simulation.cases import make_case
    from CardiacReconstructionLib.simulation.phantom import make_phantom

    p = make_phantom(seed=0)
    return make_case(p.truth, "none", seed=0, lax_views=("4ch",), landmarks=p.landmarks)


def _sax_only(case):
    return Case(sax=case.sax, truth=case.truth, true_displacements=case.true_displacements)


@pytest.fixture(scope="module")
def fast_result(phantom_case):
    return methods.run("latent_optimisation", _sax_only(phantom_case), slice_spacing=2.0, **FAST)


def test_registered_as_a_learned_method_with_displacements():
    m = methods.get("latent_optimisation")
    assert m.kind == "learned" and m.estimates_displacements
    assert {"iterations", "tolerance", "starts", "lax_weight", "gauge", "weights"} <= {o.name for o in m.options}


def test_shipped_weights_verify_and_hold_their_grid():
    from CardiacReconstructionLib.networks import weights

    path = weights.verify(lo.DEFAULT_WEIGHTS)
    checkpoint = torch.load(path, weights_only=True)  # safe loading works
    assert checkpoint["kind"] == "vae" and checkpoint["meta"]["train_config"]["seed"] == 3  # the card's run
    model = lo.load_prior()
    assert model.config.latent_dim == 64 and len(model.config.grid_shape) == 3
    assert list(model.config.grid_shape) == checkpoint["config"]["grid_shape"]
    # cached and frozen: the joint stage differentiates through the decoder, never into its weights
    assert lo.load_prior() is model and lo.load_prior(str(path)) is not model
    assert not model.training and not any(p.requires_grad for p in model.parameters())


@pytest.mark.slow
def test_output_grid_labels_displacements_and_diagnostics(phantom_case, fast_result):
    case, r = _sax_only(phantom_case), fast_result
    assert r.labels.geometry.same_as(methods.output_geometry(case.sax.geometry, 2.0))
    assert r.labels.array.dtype == np.uint8 and set(np.unique(r.labels.array)) == {0, 1, 2, 3}
    assert r.displacements.shape == (case.n_slices, 2)
    heart = np.isin(case.sax.array, (1, 2, 3)).any(axis=(1, 2))
    np.testing.assert_allclose(r.displacements[heart].mean(axis=0), 0.0, atol=1e-4)  # zero-mean gauge
    assert np.isnan(r.displacements[~heart]).all() and not r.estimated[~heart].any()  # not measured: no heart
    d = r.diagnostics
    assert d["device"] == "cpu" and d["gauge"] == "zero_mean"
    assert 1 <= d["iterations"] <= FAST["iterations"] and d["iterations_rigid"] == FAST["rigid_iterations"]
    assert np.isfinite(d["final_loss"]) and len(d["slice_dice"]) == case.n_slices
    # the fitted slices agree with the motion-free input where the heart is large
    big = np.isin(case.sax.array, (1, 2, 3)).sum(axis=(1, 2)) > 2000
    assert np.nanmean(np.asarray(d["slice_dice"])[big]) > 0.93  # measured 0.9615; margin 0.03


@pytest.mark.slow
def test_same_input_and_seed_give_the_same_output(phantom_case, fast_result):
    a = fast_result
    b = methods.run("latent_optimisation", _sax_only(phantom_case), slice_spacing=2.0, **FAST)
    assert np.array_equal(a.labels.array, b.labels.array)
    assert np.array_equal(a.displacements, b.displacements, equal_nan=True)


@pytest.mark.slow
def test_known_shifts_are_recovered_within_1mm(phantom_case):
    """Shift the motion-free slices by a known global + per-slice pattern (whole pixels of
    1.25 mm so the labels move exactly); the estimate, minus its value on the unshifted stack
    (the prior's own reading of the anatomy), must match the pattern minus its mean to 1 mm."""
    case = _sax_only(phantom_case)
    n = case.n_slices
    heart = np.isin(case.sax.array, (1, 2, 3)).sum(axis=(1, 2)) > 1500
    pattern = np.zeros((n, 2))
    pattern[heart] = 1.25 * np.array([[2, -1], [-2, 2], [1, 2], [-2, -2], [2, 0], [0, -2], [-1, 1]])[:heart.sum()]
    truth = pattern + np.array([2.5, -3.75])  # plus a global shift: unobservable without LAX
    moved = Case(sax=shift_slices(case.sax, np.where(heart[:, None], truth, 0.0), order=0))
    opts = dict(iterations=5, rigid_iterations=80, starts=1, device="cpu", slice_spacing=5.0)
    ref = methods.run("latent_optimisation", case, **opts).displacements
    est = methods.run("latent_optimisation", moved, **opts).displacements
    expected = truth[heart] - truth[heart].mean(axis=0)
    got = (est - ref)[heart] - (est - ref)[heart].mean(axis=0)
    err = np.linalg.norm(got - expected, axis=1)
    assert err.mean() < 1.0, err


@pytest.mark.slow
def test_long_axis_term_runs_anchors_the_gauge_and_fits_the_view(phantom_case):
    from CardiacReconstructionLib.evaluation.metrics import lax_dice

    view = phantom_case.lax[0]
    with_lax = methods.run("latent_optimisation", phantom_case, slice_spacing=5.0, **FAST)
    d = with_lax.diagnostics
    assert d["gauge"] == "lax" and d["loss_terms"]["lax"] > 0
    without = methods.run("latent_optimisation", phantom_case, slice_spacing=5.0, lax_weight=0.0, gauge="zero_mean",
                          **FAST)
    assert without.diagnostics["loss_terms"]["lax"] == 0
    fit = [np.mean(list(lax_dice(r.labels, view).values())) for r in (with_lax, without)]
    assert fit[0] > fit[1]  # the long-axis term pulls the result onto the view


def test_prior_frame_follows_the_stack_not_its_slice_order(phantom_case):
    sax = phantom_case.sax
    frame = lo.prior_frame_from_stack(sax)
    # k runs base -> apex: the phantom's slice 0 is basal, so k is the stack's +k
    assert frame.axes[:, 2] @ sax.geometry.direction[:, 2] > 0.999
    flipped = Volume(sax.array[::-1].copy(), sax.ijk_to_ras @ np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, sax.shape[0] - 1], [0, 0, 0, 1]], float))
    same = lo.prior_frame_from_stack(flipped)  # the same slices listed apex first
    np.testing.assert_allclose(same.axes, frame.axes, atol=1e-9)
    np.testing.assert_allclose(same.centre, frame.centre, atol=1e-6)
    assert np.allclose(frame.axes.T @ frame.axes, np.eye(3), atol=1e-9) and np.linalg.det(frame.axes) > 0


def test_fast_plane_sampling_matches_trilinear_sampling(phantom_case):
    model = lo.load_prior()
    prior = lo.prior_geometry(phantom_case.sax, model.config)
    opts = dict(empty_slice_weight=1.0, lax_weight=1.0, gauge="auto", motion_sd_mm=5.0, displacement_weight=0.0,
                smoothness=0.0, latent_weight=0.0, pixel_step=0)
    problem = lo._Problem(_sax_only(phantom_case), prior, opts, torch, "cpu")
    assert problem.parallel
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(model.decode(torch.randn(2, model.config.latent_dim, generator=g)), dim=1)
    d = 4 * torch.randn(2, phantom_case.n_slices, 2, generator=g)
    t = 3 * torch.randn(2, 3, generator=g)
    fast = problem.sample_sax(probs, d, t)
    slow = lo._sample(probs, problem.sax_points(d, t), torch)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_bad_inputs_raise_input_errors(phantom_case):
    no_rv = phantom_case.sax.with_array(np.where(phantom_case.sax.array == 3, 0, phantom_case.sax.array))
    with pytest.raises(InputError, match="RV"):
        methods.run("latent_optimisation", Case(sax=no_rv), **FAST)
    with pytest.raises(InputError, match="long-axis"):
        methods.run("latent_optimisation", _sax_only(phantom_case), gauge="lax", **FAST)
    with pytest.raises(InputError, match="not found"):
        methods.run("latent_optimisation", _sax_only(phantom_case), weights="/nonexistent/prior.pt", device="cpu")
    with pytest.raises(InputError, match="iterations"):
        methods.run("latent_optimisation", _sax_only(phantom_case), iterations=0)
