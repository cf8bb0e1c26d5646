"""Training of the Mask2Surface networks: target conventions, one-step runs, resume, CLI errors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from CardiacReconstructionLib import cli  # noqa: E402
from CardiacReconstructionLib.simulation.degrade import degrade  # noqa: E402
from CardiacReconstructionLib.core.errors import InputError  # noqa: E402
from CardiacReconstructionLib.networks.mcsr import warp_slices  # noqa: E402
from CardiacReconstructionLib.simulation.phantom import make_phantom  # noqa: E402
from CardiacReconstructionLib.anatomy.canonical import onehot  # noqa: E402
from CardiacReconstructionLib.training import mask2surface as tm  # noqa: E402
from CardiacReconstructionLib.networks.checkpoint import load_network  # noqa: E402
from conftest import needs_acdc, needs_ct  # noqa: E402
from test_model_cards import assert_card_complete  # noqa: E402


def test_perfect_correction_reproduces_the_training_targets():
    """Moving the input slices by the centred true translations gives the LR target: the sign
    convention of the targets, the warp and the gauge agree."""
    hr = make_phantom(seed=3).truth
    deg = degrade(hr, "mask2surface", slice_spacing=10.0, seed=5)
    x, shifts, lr_target, z, hr_target, grid = tm.mcsr_targets(deg.sax, deg.lr_truth, hr, deg.displacements, 64, 2.0)
    moved = warp_slices(torch.from_numpy(onehot(x, 4))[None], torch.from_numpy(shifts)[None])[0].numpy()
    corrected = moved.argmax(0)
    fg = (corrected > 0) | (lr_target > 0)
    agree = (corrected == lr_target)[fg].mean()
    before = (x == lr_target)[fg].mean()
    assert agree > 0.93 and agree > before + 0.1
    labelled = x.any(axis=(1, 2))
    np.testing.assert_allclose(shifts[labelled].mean(axis=0), 0.0, atol=1e-5)
    assert hr_target.shape[0] == len(z) and hr_target.shape[1:] == x.shape[1:]
    assert z.min() >= -0.5 and z.max() <= x.shape[0] - 0.5


@needs_ct
@pytest.mark.slow
def test_mcsr_trains_one_step_and_resumes(tmp_path):
    cfg = tm.MCSRTrainConfig(minutes=5.0, max_steps=1, pool_biventricular=1, accumulate=1)
    out = tm.train_mcsr(cfg, tmp_path / "mcsr.pt", log=lambda *_: None)
    model = load_network(out, "mcsr")
    assert model.config.inplane_size == 64
    cfg2 = tm.MCSRTrainConfig(minutes=5.0, max_steps=2, pool_biventricular=1, accumulate=1)
    logs = []
    tm.train_mcsr(cfg2, tmp_path / "mcsr.pt", resume=True, log=logs.append)
    assert any("resumed MCSR at step 1" in str(m) for m in logs)
    assert torch.load(str(out), weights_only=True)["meta"]["steps"] == 2


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    """A tiny SDG pairs file from phantom label maps (no cohort needed)."""
    from CardiacReconstructionLib.methods.mask2surface import surface_grid
    from CardiacReconstructionLib.core.sdf import label_sdgs

    cond, truth = [], []
    for seed in (0, 1):
        hr = make_phantom(seed=seed).truth
        g = surface_grid(hr)
        s = label_sdgs(hr, g)
        truth.append(s.astype(np.float16))
        cond.append((s + np.float32(1.0)).astype(np.float16))
    path = tmp_path_factory.mktemp("pairs") / "pairs.npz"
    np.savez(path, condition=np.stack(cond), truth=np.stack(truth), subject=np.array(["p0", "p1"]))
    return path


@pytest.mark.slow
def test_vqvae_and_ldm_train_one_step(pairs_file, tmp_path):
    cfg = tm.SDGTrainConfig(minutes=5.0, max_steps=1, pairs=str(pairs_file), batch=1, device="cpu")
    vq = tm.train_vqvae(cfg, tmp_path / "vq.pt", log=lambda *_: None)
    assert load_network(vq, "vqvae").config.num_embeddings == 1024
    again = tm.train_vqvae(cfg, tmp_path / "vq_again.pt", log=lambda *_: None)
    a, b = (torch.load(str(p), weights_only=True) for p in (vq, again))
    for key, value in a["state_dict"].items():  # the same seed on the CPU: the same weights
        assert torch.equal(value, b["state_dict"][key]), key
    assert a["meta"]["device"] == "cpu" and a["meta"]["data"] == ["ct"]  # phantom pairs: no ACDC names
    ldm = tm.train_ldm(tm.SDGTrainConfig(minutes=5.0, max_steps=1, pairs=str(pairs_file), batch=2), vq,
                       tmp_path / "ldm.pt", log=lambda *_: None)
    model = load_network(ldm, "ldm")
    assert model.config.latent_scale > 0 and model.config.prediction_type == "sample"


@pytest.mark.slow
def test_ldm_fine_tunes_from_weights_with_bends(pairs_file, tmp_path):
    """--init keeps the starting denoiser's latent scale and weights (before the first step);
    --bend-mm trains with bent latents."""
    vq = tm.train_vqvae(tm.SDGTrainConfig(minutes=5.0, max_steps=1, pairs=str(pairs_file), batch=1),
                        tmp_path / "vq.pt", log=lambda *_: None)
    first = tm.train_ldm(tm.SDGTrainConfig(minutes=5.0, max_steps=1, pairs=str(pairs_file), batch=2), vq,
                         tmp_path / "ldm.pt", log=lambda *_: None)
    logs = []
    second = tm.train_ldm(tm.SDGTrainConfig(minutes=5.0, max_steps=1, pairs=str(pairs_file), batch=2, bend_mm=4.0,
                                            lr=0.0), vq, tmp_path / "ldm2.pt", log=logs.append, init=str(first))
    a, b = load_network(first, "ldm"), load_network(second, "ldm")
    assert any("starting from the denoiser" in str(m) for m in logs)
    assert b.config.latent_scale == a.config.latent_scale
    for key, value in a.state_dict().items():  # learning rate 0: the step changed nothing
        assert torch.equal(value, b.state_dict()[key]), key
    card = tm.model_card("ldm", second, {"chamfer_mean_mm": 1.0})
    assert "--lr 0 --init ldm.pt --bend-mm 4`" in card  # the card reproduces the run
    assert_card_complete(card)
    assert f"--pairs {pairs_file.name} --vqvae" in card and str(pairs_file.parent) not in card
    assert "--init" not in tm.model_card("ldm", first, {})
    with pytest.raises(InputError, match="use one"):
        tm.train_ldm(tm.SDGTrainConfig(max_steps=1, pairs=str(pairs_file)), vq, tmp_path / "ldm.pt", resume=True,
                     init=str(first))


def test_bends_move_each_latent_slice_by_its_shift():
    x = torch.zeros(1, 2, 3, 8, 8)
    x[0, :, :, 4, 4] = 1.0
    moved = tm.bend_latents(x, torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]]))
    peaks = [tuple(np.argwhere(moved[0, 0, k].numpy() > 0.5)[0]) for k in range(3)]
    assert peaks == [(4, 4), (5, 4), (4, 6)] and torch.equal(moved[0, 0], moved[0, 1])
    bends = tm.random_bends(4, 16, 1.5, torch.Generator().manual_seed(0))
    assert bends.shape == (4, 16, 2) and float(bends.abs().max()) <= 1.5 * 5 / 3 + 1e-6
    assert float(bends.diff(dim=1).abs().max()) < 0.5  # smooth along the slices: anatomy, not jitter


def test_several_pairs_files_are_concatenated(pairs_file):
    one_c, one_t = tm._load_pairs(str(pairs_file), 20.0)
    two_c, two_t = tm._load_pairs(f"{pairs_file},{pairs_file}", 20.0)
    assert two_c.shape[0] == 2 * one_c.shape[0] and torch.equal(two_t[len(one_t):], one_t)
    assert float(two_c.abs().max()) <= 1.0  # clipped and scaled to [-1, 1]


@needs_acdc
@pytest.mark.slow
def test_acdc_pair_targets_its_pseudo_hr_shape_on_the_condition_grid():
    """An MRI-shaped pair: the target is the pseudo-HR shape's SDG on the surface grid moved by the
    common shift, so after MCSR-Net's correction condition and target describe the same heart."""
    from CardiacReconstructionLib.networks.latent_diffusion import VQVAEConfig
    from CardiacReconstructionLib.methods.mask2surface import load_models
    from CardiacReconstructionLib.core.sdf import SURFACE_KEYS

    mcsr = load_models("cpu", need=("mcsr",))[0]
    cond, truth = tm.acdc_surface_pair("patient002_frame01", 0, mcsr, VQVAEConfig())
    assert cond.shape == truth.shape == (len(SURFACE_KEYS),) + VQVAEConfig().grid_shape
    assert np.isfinite(truth).all() and (truth < 0).any(axis=(1, 2, 3)).all()
    band = np.abs(truth) < 2.0
    assert np.mean(np.abs(cond - truth)[band]) < 2.0  # mm: the same heart, not a shifted one


def test_unknown_pairs_source_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="expected one of ct, acdc"):
        tm.make_pairs(tmp_path / "p.npz", "unused.pt", source="mri")


def test_cli_stage_errors(tmp_path, capsys):
    assert cli.main(["train", "mask2surface", "pairs", "--output", str(tmp_path / "p.npz")]) == 2
    assert "needs --mcsr" in capsys.readouterr().err
    assert cli.main(["train", "mask2surface", "vqvae", "--output", str(tmp_path / "v.pt")]) == 2
    assert "needs --pairs" in capsys.readouterr().err
    with pytest.raises(InputError, match="expected 'vqvae'"):
        load_network({"kind": "mcsr", "config": {}, "state_dict": {}}, "vqvae")
