"""Mask2Surface with the shipped weights on phantom cases: surfaces, labels, displacements,
seeding, ablations and input errors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from CardiacReconstructionLib import methods  # noqa: E402
from CardiacReconstructionLib.networks import weights  # noqa: E402
from CardiacReconstructionLib.evaluation.bench import result_surfaces, surface_scores  # noqa: E402
from CardiacReconstructionLib.core.case import Case  # noqa: E402
from CardiacReconstructionLib.simulation.cases import make_case  # noqa: E402
from CardiacReconstructionLib.core.errors import InputError  # noqa: E402
from CardiacReconstructionLib.core.geometry import Volume  # noqa: E402
from CardiacReconstructionLib.core.labels import LV, MYO, RV  # noqa: E402
from CardiacReconstructionLib.evaluation.metrics import dice, displacement_error  # noqa: E402
from CardiacReconstructionLib.simulation.phantom import make_phantom  # noqa: E402
from CardiacReconstructionLib.methods import mask2surface as pipe  # noqa: E402
from CardiacReconstructionLib.core.sdf import SURFACE_KEYS, label_truth_surfaces  # noqa: E402
from CardiacReconstructionLib.core.surfaces import enclosed_volume, open_edge_count  # noqa: E402

needs_weights = pytest.mark.skipif(not {"mcsr", "m2s_vqvae", "m2s_ldm"} <= set(weights.manifest()),
                                   reason="Mask2Surface weights not installed")


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(seed=2)


@pytest.fixture(scope="module")
def case(phantom):
    return make_case(phantom.truth, "mask2surface", seed=1, slice_spacing=10.0)


@pytest.fixture(scope="module")
def result(case):
    return methods.run("mask2surface", case, slice_spacing=2.0, seed=0)


@needs_weights
def test_registered_with_its_options():
    m = methods.get("mask2surface")
    assert m.kind == "learned" and m.estimates_displacements
    assert {o.name for o in m.options} == {"refine", "ddim_steps", "strength", "samples", "mc_passes",
                                         "smoothing_iterations"}
    assert dict((o.name, o.default) for o in m.options)["ddim_steps"] == 10


@needs_weights
@pytest.mark.slow
def test_surfaces_are_watertight_and_manifold(result):
    assert set(result.surfaces) == set(SURFACE_KEYS)
    for key, surface in result.surfaces.items():
        assert surface.GetNumberOfPolys() > 100, key
        assert open_edge_count(surface) == 0, key  # vtkFeatureEdges: no boundary or non-manifold edge
        assert enclosed_volume(surface) > 0, key


@needs_weights
@pytest.mark.slow
def test_surfaces_nest_and_match_the_truth(phantom, result):
    vol = {k: enclosed_volume(s) for k, s in result.surfaces.items()}
    # epicardium encloses endocardium + myocardium
    # measured 1.7e-4; margin 0.01
    assert vol["LV_epicardium"] == pytest.approx(vol["LV_endocardium"] + vol["LV_myocardium"], rel=0.01)
    scores = surface_scores(result.surfaces, label_truth_surfaces(phantom.truth, spacing_mm=1.5))
    assert scores["chamfer_mean_mm"] < 2.0  # measured 1.355 mm; margin 0.65


@needs_weights
@pytest.mark.slow
def test_labels_are_the_voxelised_surfaces_on_the_output_grid(case, result):
    expected = methods.output_geometry(case.sax.geometry, slice_spacing=2.0)
    assert result.labels.geometry.same_as(expected)
    assert set(np.unique(result.labels.array)) == {0, LV, MYO, RV}
    d = dice(result.labels, case.truth)
    assert d[MYO] > 0.75 and d[LV] > 0.9 and d[RV] > 0.9  # measured 0.810, 0.929, 0.926; margins 0.06, 0.03, 0.03


@needs_weights
@pytest.mark.slow
def test_displacements_beat_no_correction(case, result):
    assert result.displacements.shape == (case.n_slices, 2)
    err = displacement_error(result.displacements, case.true_displacements, remove_mean=True)
    none = displacement_error(np.zeros_like(case.true_displacements), case.true_displacements, remove_mean=True)
    assert err["mean_mm"] < 0.8 * none["mean_mm"]


@needs_weights
@pytest.mark.slow
def test_same_seed_same_surface(case, result):
    again = methods.run("mask2surface", case, slice_spacing=2.0, seed=0)
    for key in result.surfaces:
        a = np.asarray(result.surfaces[key].GetPoints().GetData())
        b = np.asarray(again.surfaces[key].GetPoints().GetData())
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.labels.array, result.labels.array)


@needs_weights
@pytest.mark.slow
def test_mcsr_alone_ablation_has_labels_and_marching_cubes_surfaces(case):
    alone = methods.run("mask2surface", case, slice_spacing=2.0, refine="none")
    assert not alone.surfaces and alone.diagnostics["refine"] == "none"
    surfaces = result_surfaces(alone)
    assert set(surfaces) == set(SURFACE_KEYS)
    assert all(open_edge_count(s) == 0 for s in surfaces.values())


@needs_weights
@pytest.mark.slow
def test_known_uniform_shift_of_one_slice_is_recovered(phantom):
    clean = make_case(phantom.truth, "none", seed=0, slice_spacing=10.0)
    sax = clean.sax.array.copy()
    k = int(np.flatnonzero(sax.any(axis=(1, 2)))[len(np.flatnonzero(sax.any(axis=(1, 2)))) // 2])
    shift_vox = 3  # columns: +i
    sax[k] = np.roll(sax[k], shift_vox, axis=1)
    moved = Case(Volume(sax, clean.sax.ijk_to_ras))
    res = methods.run("mask2surface", moved, slice_spacing=2.0, refine="none")
    spacing_i = float(clean.sax.spacing[0])
    d = res.displacements - np.nanmean(res.displacements, axis=0)  # NaN: slices without labels
    # the rolled slice shows the truth moved by +3 voxels along i: displacement ~ (+3 * s_i, 0)
    assert abs(d[k, 0] - shift_vox * spacing_i) < 2.0 and abs(d[k, 1]) < 1.0  # measured 1.68 and 0.33 mm


@needs_weights
def test_input_without_myocardium_is_an_input_error(case):
    arr = np.where(case.sax.array == MYO, 0, case.sax.array).astype(np.uint8)
    with pytest.raises(InputError, match="LV myocardium"):
        methods.run("mask2surface", Case(Volume(arr, case.sax.ijk_to_ras)), slice_spacing=2.0)


@needs_weights
def test_unknown_refinement_is_an_input_error(case):
    with pytest.raises(InputError, match="refine"):
        methods.run("mask2surface", case, refine="magic")


def test_surface_grid_is_centred_on_the_labelled_slices():
    from CardiacReconstructionLib.core.geometry import Geometry, make_ijk_to_ras

    arr = np.zeros((40, 20, 20), np.uint8)
    arr[10:20, 5:15, 5:15] = MYO
    vol = Volume(arr, make_ijk_to_ras((2.0, 2.0, 2.0), (0, 0, 0), np.eye(3)))
    g = pipe.surface_grid(vol, (8, 16, 16), (2.0, 2.0, 4.0))
    assert isinstance(g, Geometry) and g.shape == (8, 16, 16)
    centre = g.index_to_ras([7.5, 7.5, 3.5])
    np.testing.assert_allclose(centre, [19.0, 19.0, 29.0])  # labelled k 10..19 -> middle 14.5 * 2 mm


@needs_weights
@pytest.mark.slow
def test_residual_decoding_keeps_the_condition_where_diffusion_changes_nothing():
    """The refined SDG is the C-SDG plus decoder(refined) - decoder(condition): with a denoiser
    that returns the condition (untrained, condition residual) the C-SDG comes back unchanged,
    clipped, not its (lossy) VQ-VAE reconstruction."""
    from CardiacReconstructionLib.networks.latent_diffusion import LatentDenoiser, LDMConfig

    _, vqvae, _ = pipe.load_models("cpu", need=("vqvae",))
    k, j, i = np.meshgrid(np.arange(16) * 4.0, np.arange(32) * 2.5, np.arange(32) * 2.5, indexing="ij")
    radius = np.sqrt((k - 30) ** 2 + (j - 40) ** 2 + (i - 40) ** 2)
    condition = np.stack([radius - r for r in (25.0, 15.0, 30.0, 20.0)]).astype(np.float32)
    ldm = LatentDenoiser(LDMConfig(channels=(16, 16, 16), norm_num_groups=8, num_head_channels=8)).eval()
    refined = pipe.refine_sdg(vqvae, ldm, condition, "diffusion", steps=3)
    np.testing.assert_allclose(refined, np.clip(condition, -20, 20), atol=1e-4)
    decoded = pipe.refine_sdg(vqvae, ldm, condition, "autoencoder")
    assert np.abs(decoded - np.clip(condition, -20, 20)).max() > 0.1  # the ablation shows the decoder's loss
