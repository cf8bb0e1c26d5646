"""The beta-VAE prior and its training command: shapes, the loss, the weights file format, and
a few training steps at a tiny grid that resume exactly from their checkpoint."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.networks.checkpoint import load_network, save_network
from CardiacReconstructionLib.networks.vae import LabelVAE, VAEConfig, onehot, vae_loss

TINY = dict(grid_shape=(16, 16, 16), spacing=(10.0, 10.0, 10.0), channels=(4, 8), latent_dim=3)


def test_config_validates_the_grid_and_round_trips():
    with pytest.raises(InputError, match="divisible"):
        VAEConfig(grid_shape=(30, 64, 64))
    cfg = VAEConfig(**TINY)
    assert cfg.bottleneck_shape == (4, 4, 4)
    assert cfg.field_of_view_mm == (160.0, 160.0, 160.0)
    assert VAEConfig.from_dict(cfg.to_dict()) == cfg


def test_encode_decode_shapes():
    cfg = VAEConfig(**TINY)
    model = LabelVAE(cfg)
    x = onehot(np.zeros((2,) + cfg.grid_shape, np.uint8))
    assert x.shape == (2, 4) + cfg.grid_shape
    mu, log_var = model.encode(x)
    assert mu.shape == log_var.shape == (2, 3)
    assert model.decode(mu).shape == (2, 4) + cfg.grid_shape


def test_onehot_maps_non_biventricular_labels_to_background():
    x = onehot(np.array([[[[0, 1, 2, 3, 5]]]], np.uint8))  # batch 1, one row
    assert x[0, :, 0, 0].argmax(0).tolist() == [0, 1, 2, 3, 0]


def test_free_bits_make_small_kl_free():
    cfg = VAEConfig(**TINY, free_bits=2.0, beta=1.0)
    logits = torch.zeros(1, 4, *cfg.grid_shape)
    target = torch.zeros(1, *cfg.grid_shape, dtype=torch.long)
    mu = torch.full((1, 3), 0.5)  # KL 0.125 nats per dimension: below the free 2 nats
    out = vae_loss(logits, target, mu, torch.zeros(1, 3), cfg)
    assert out["ce"].item() == pytest.approx(np.log(4), rel=1e-5)  # uniform logits over 4 classes
    assert out["kl"].item() == pytest.approx(3 * 0.125)
    assert out["loss"].item() == pytest.approx(np.log(4) + 3 * 2.0, rel=1e-5)  # the floor, not the KL


def test_weights_file_is_a_vae_checkpoint_with_its_config(tmp_path):
    model = LabelVAE(VAEConfig(**TINY))
    path = tmp_path / "vae.pt"
    save_network(model, path, "vae", {"seed": 0})
    obj = torch.load(path, weights_only=True)
    assert obj["kind"] == "vae" and VAEConfig.from_dict(obj["config"]) == model.config and obj["meta"] == {"seed": 0}
    loaded = load_network(path, "vae")
    assert not loaded.training and loaded.config == model.config
    z = torch.zeros(1, 3)
    assert torch.equal(loaded.decode(z), model.decode(z))
    # the former format (a bare state dict) and other kinds are refused, in one line
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(InputError, match="not a CardiacReconstruction checkpoint"):
        load_network(tmp_path / "bare.pt", "vae")
    with pytest.raises(InputError, match="expected 'dsl'"):
        load_network(path, "dsl")


def test_translate_moves_labels_with_zero_fill():
    from CardiacReconstructionLib.training.lo import translate

    batch = torch.zeros(1, 3, 4, 4, dtype=torch.long)
    batch[0, 1, 1, 1] = 2
    out = translate(batch, np.array([[1, -1, 2]]))
    assert out.sum() == 2 and out[0, 2, 0, 3] == 2


def _data_available():
    try:
        from CardiacReconstructionLib.training.cohort import split

        split(None, "train")
        return True
    except InputError:
        return False


@pytest.mark.skipif(not _data_available(), reason="the shared CT cohort is not available")
@pytest.mark.slow
def test_training_runs_and_resumes_exactly(tmp_path):
    from CardiacReconstructionLib.training.lo import TrainConfig, train

    cfg = dict(grid_shape=(16, 16, 16), spacing=(10.0, 10.0, 10.0), channels=(4, 8), latent_dim=4, augmentations=1,
               subjects=2, batch_size=2, workers=1, checkpoint_every=1, validate_every=2, log_every=1,
               cache_dir=str(tmp_path / "cache"))
    logs = []
    straight = train(TrainConfig(epochs=3, **cfg), tmp_path / "straight", log=logs.append)
    # a run interrupted after its first step (the time limit is checked after every step) ...
    train(TrainConfig(epochs=3, max_minutes=1e-9, **cfg), tmp_path / "resumed", log=logs.append)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 1
    # ... and resumed gives exactly the weights of the uninterrupted run
    resumed = train(TrainConfig(epochs=3, **cfg), tmp_path / "resumed", resume=True, log=logs.append)
    assert any("resumed VAE at step 1" in m for m in logs)
    ckpt = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3
    a, b = (torch.load(p, weights_only=True)["state_dict"] for p in (straight, resumed))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    meta = (tmp_path / "resumed" / "lo_vae.json").read_text()
    assert "dice_LV" in meta and "Rodero" in meta
    # fine-tuning: a new run that starts from the finished weights, and says so in its metadata
    train(TrainConfig(epochs=1, max_minutes=1e-9, **cfg), tmp_path / "tuned", log=logs.append, init=str(straight))
    assert any("starting from the weights" in m for m in logs)
    assert json.loads((tmp_path / "tuned" / "lo_vae.json").read_text())["init"] == str(straight)
    # ... and a resumed fine-tune still records where it started
    train(TrainConfig(epochs=2, **cfg), tmp_path / "tuned", resume=True, log=logs.append)
    assert json.loads((tmp_path / "tuned" / "lo_vae.json").read_text())["init"] == str(straight)
    # installing the result writes the weights, the model card and the manifest entry
    from CardiacReconstructionLib.networks import weights
    from CardiacReconstructionLib.training.lo import register_weights

    entry = register_weights(tmp_path / "resumed", "tiny_vae", directory=tmp_path / "weights")
    assert weights.verify("tiny_vae", tmp_path / "weights").name == "tiny_vae.pt"
    card = (tmp_path / "weights" / entry["card"]).read_text()
    assert entry["sha256"] in card and "16 x 16 x 16" in card and "Validation" in card
    threads = torch.get_num_threads()
    # reproduces it
    assert f"--epochs 3 --lr 0.001 --seed 0 --threads {threads} --device cpu --register tiny_vae" in card
    assert "## Intended use" in card and "not for diagnosis" in card and "Apache-2.0" in card
    assert json.loads((tmp_path / "resumed" / "lo_vae.json").read_text())["device"] == "cpu"
    # ... including the grid and network, which are not the defaults here
    assert "--grid 16,16,16 --spacing 10,10,10 --channels 4,8 --latent 4 --augmentations 1 --epochs 3" in card
    assert "REDUCED grid" in card
    from test_model_cards import assert_card_complete

    assert_card_complete(card)


def test_model_card_of_the_shipped_prior_keeps_its_command_and_grid_note():
    from CardiacReconstructionLib.training.lo import TrainConfig, _network_options

    assert _network_options(asdict(TrainConfig())) == ""
    grown = asdict(TrainConfig(grid_shape=(64, 128, 128), spacing=(1.25, 1.25, 2.0), channels=(8, 16, 32, 64, 128),
                               augmentations=24))
    assert _network_options(grown) == (" --grid 64,128,128 --spacing 1.25,1.25,2 --channels 8,16,32,64,128"
                                       " --augmentations 24")


def test_resume_without_checkpoint_is_an_input_error(tmp_path):
    from CardiacReconstructionLib.training.lo import TrainConfig, train

    with pytest.raises(InputError, match="Nothing to resume"):
        train(TrainConfig(), tmp_path, resume=True)


def test_cli_train_parser_knows_lo():
    from CardiacReconstructionLib.cli import build_parser

    args = build_parser().parse_args(["train", "lo", "--output", "x", "--epochs", "2", "--grid", "16,32,32"])
    from CardiacReconstructionLib.training.lo import config_from_args

    cfg = config_from_args(args)
    assert cfg.epochs == 2 and cfg.grid_shape == (16, 32, 32)


def test_init_state_checks_the_network_and_loads_the_weights(tmp_path):
    from CardiacReconstructionLib.training.lo import TrainConfig, initial_state

    model = LabelVAE(VAEConfig(**TINY))
    path = tmp_path / "start.pt"
    save_network(model, path, "vae", {})
    state = initial_state(str(path), TrainConfig(**TINY))
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(InputError, match="latent_dim"):
        initial_state(str(path), TrainConfig(**{**TINY, "latent_dim": 5}))
    # the shipped prior by its manifest name (checksum-verified)
    from CardiacReconstructionLib.networks import weights

    shipped = VAEConfig.from_dict(weights.load_state_dict("lo_vae", map_location="cpu")["config"])
    cfg = TrainConfig(grid_shape=shipped.grid_shape, spacing=shipped.spacing, latent_dim=shipped.latent_dim,
                      channels=shipped.channels)
    assert set(initial_state("lo_vae", cfg)) == set(LabelVAE(cfg.vae_config()).state_dict())


def test_refined_vae_starts_as_the_trilinear_upsampling_of_the_coarse_one():
    from torch.nn import functional as F

    from CardiacReconstructionLib.networks.vae import refined, refined_config

    torch.manual_seed(0)
    coarse = LabelVAE(VAEConfig(grid_shape=(16, 16, 16), spacing=(10.0, 10.0, 8.0), channels=(16, 8, 8, 8),
                                latent_dim=3)).eval()
    fine = refined(coarse).eval()
    assert fine.config == refined_config(coarse.config)
    assert fine.config.grid_shape == (32, 32, 32) and fine.config.spacing == (5.0, 5.0, 4.0)
    assert fine.config.channels == (8, 16, 8, 8, 8) and fine.config.field_of_view_mm == coarse.config.field_of_view_mm
    with torch.no_grad():
        z = torch.randn(2, 3)
        up = F.interpolate(coarse.decode(z), scale_factor=2, mode="trilinear", align_corners=False)
        inner = (slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -1))  # borders: 3/4 of the logits
        assert torch.allclose(fine.decode(z)[inner], up[inner], atol=1e-5)
        labels = coarse.decode(z).argmax(1)
        x = onehot(labels.numpy())
        assert torch.allclose(fine.encode(F.interpolate(x, scale_factor=2))[0], coarse.encode(x)[0], atol=1e-5)
    with pytest.raises(InputError, match="channels"):
        refined(LabelVAE(VAEConfig(**{**TINY, "channels": (4, 8, 8, 8)})))  # too narrow to grow a level
    with pytest.raises(InputError, match="four levels"):
        refined(LabelVAE(VAEConfig(**{**TINY, "channels": (16, 8)})))


def test_init_grows_a_prior_of_half_the_grid(tmp_path):
    from CardiacReconstructionLib.networks.vae import refined  # the function tested above
    from CardiacReconstructionLib.training.lo import TrainConfig, initial_state

    cfg = dict(grid_shape=(16, 16, 16), spacing=(10.0, 10.0, 8.0), channels=(16, 8, 8, 8), latent_dim=3)
    coarse = LabelVAE(VAEConfig(**cfg))
    save_network(coarse, tmp_path / "coarse.pt", "vae", {})
    fine_cfg = TrainConfig(grid_shape=(32, 32, 32), spacing=(5.0, 5.0, 4.0), channels=(8, 16, 8, 8, 8), latent_dim=3)
    state = initial_state(str(tmp_path / "coarse.pt"), fine_cfg)
    grown = LabelVAE(fine_cfg.vae_config())
    grown.load_state_dict(state)
    with torch.no_grad():
        z = torch.randn(1, 3)
        expected = refined(coarse).decode(z)
        assert torch.allclose(grown.decode(z), expected, atol=1e-5)
    with pytest.raises(InputError, match="twice its grid"):  # twice the grid but not the grown channels
        initial_state(str(tmp_path / "coarse.pt"), TrainConfig(**{**cfg, "grid_shape": (32, 32, 32)}))


def test_init_and_resume_together_is_an_input_error(tmp_path):
    from CardiacReconstructionLib.training.lo import TrainConfig, train

    with pytest.raises(InputError, match="use one"):
        train(TrainConfig(), tmp_path, resume=True, init="lo_vae")
