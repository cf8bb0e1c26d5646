"""DeepWHR training commands: a few steps on a tiny grid, resuming, the weights file format."""

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from CardiacReconstructionLib.training import cohort  # noqa: E402
from CardiacReconstructionLib.core.errors import InputError  # noqa: E402
from CardiacReconstructionLib.networks.checkpoint import load_network  # noqa: E402
from CardiacReconstructionLib.training import dsl_asv as tr  # noqa: E402
from CardiacReconstructionLib.training import pool  # noqa: E402
from test_model_cards import assert_card_complete  # noqa: E402

try:
    cohort.data_root()
    HAVE_DATA = True
except InputError:
    HAVE_DATA = False

needs_data = pytest.mark.skipif(not HAVE_DATA, reason="shared CT cohort not available")
QUIET = dict(log=lambda *_: None)


def _tiny_dsl(**kw):
    return tr.DSLTrainConfig(**{**dict(pool_biventricular=1, pool_wholeheart=0, accumulate=1, inplane_size=32,
                                       channels=(8, 8, 16), hr_inplane_mm=(5.0, 5.0), subjects=("subject_00",),
                                       minutes=5.0), **kw})


@needs_data
@pytest.mark.slow
def test_dsl_trains_and_resumes(tmp_path):
    out = tmp_path / "dsl.pt"
    steps = dict(max_steps=2, minutes=0.0, device="cpu")  # a step budget: the schedule does not follow the clock
    tr.train_dsl(_tiny_dsl(**steps), out, **QUIET)
    first = torch.load(str(out), weights_only=True)
    assert first["kind"] == "dsl" and first["meta"]["steps"] == 2 and first["meta"]["device"] == "cpu"
    again = torch.load(str(tr.train_dsl(_tiny_dsl(**steps), tmp_path / "again.pt", **QUIET)), weights_only=True)
    for key, value in first["state_dict"].items():  # the same seed on the CPU: the same weights
        assert torch.equal(value, again["state_dict"][key]), key
    ckpt = torch.load(str(out.with_suffix(".ckpt")), weights_only=True)
    assert ckpt["step"] == 2 and ckpt["device"] == "cpu"

    tr.train_dsl(_tiny_dsl(max_steps=3), out, resume=True, **QUIET)
    resumed = torch.load(str(out), weights_only=True)
    assert resumed["meta"]["steps"] == 3  # continued, not restarted
    changed = [not torch.equal(first["state_dict"][k], v) for k, v in resumed["state_dict"].items()
               if v.dtype.is_floating_point]
    assert any(changed)
    model = load_network(str(out), "dsl")
    x = torch.zeros(1, 8, 5, 32, 32)
    x[:, 0] = 1
    assert model(x).shape == (1, 8, 5, 32, 32)


@needs_data
def test_asv_trains_one_step_and_output_matches_requested_positions(tmp_path):
    cfg = tr.ASVTrainConfig(pool_biventricular=1, pool_wholeheart=0, batch=1, crop=16, subjects=("subject_01",),
                            max_steps=1)
    out = tmp_path / "asv.pt"
    tr.train_asv(cfg, out, **QUIET)
    model = load_network(str(out), "asv")
    lr = torch.zeros(1, 8, 6, 16, 16)
    lr[:, 0] = 1
    z = torch.linspace(-0.4, 5.4, 23)
    assert model(lr, z, 0.25).shape == (1, 8, 23, 16, 16)
    with pytest.raises(InputError, match="'asv' network, expected 'dsl'"):
        load_network(str(out), "dsl")
    card = tr.model_card("asv", out, {"asv_dice_x5": 0.9, "dsl_displacement_error_normal_mm": 1.0})
    assert_card_complete(card)
    assert "| asv_dice_x5 | 0.900 |" in card and "dsl_displacement" not in card  # the ASV rows only
    assert "--max-steps 1 --subjects subject_01" in card and "--device cpu" in card


@needs_data
def test_training_pairs_are_canonical_and_aligned():
    """The clean target of a 'none' degradation equals its input; the motion pairs differ."""
    rng = np.random.default_rng(0)
    cfg = _tiny_dsl()
    hearts = pool.HeartPool(pool.cohort_paths(None, ("subject_02",)), 1, 0, (2.5, 2.5), 2.0, rng, **QUIET)
    x, y = tr.dsl_pair(hearts, replace(cfg, inplane_size=64), rng)
    assert x.shape == y.shape and x.shape[1:] == (64, 64) and x.dtype == np.uint8
    assert 6 <= x.shape[0] <= 22
    assert set(np.unique(y)) <= {0, 1, 2, 3}


def test_random_motion_covers_none_to_severe():
    rng = np.random.default_rng(1)
    draws = [pool.random_motion(rng) for _ in range(300)]
    presets = {p for p, _ in draws}
    assert presets == {"none", "normal", "stacom"}
    means = [o["displacement_mean_mm"] for p, o in draws if p == "normal"]
    assert min(means) < 2.3 and max(means) > 9.2  # SRHeart normal .. beyond severe


def test_finetune_without_stacks_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="No label stacks"):
        tr.finetune_dsl(tmp_path, tmp_path / "x.pt", max_steps=1, **QUIET)


@needs_data
def test_cli_train_dsl_asv_small(tmp_path):
    from CardiacReconstructionLib.cli import main

    out = tmp_path / "cli_dsl.pt"
    rc = main(["train", "dsl_asv", "dsl", "--small", "--max-steps", "1", "--subjects", "subject_03",
               "--device", "cpu", "--output", str(out)])
    assert rc == 0 and torch.load(str(out), weights_only=True)["meta"]["device"] == "cpu"
    assert main(["train", "dsl_asv", "finetune", "--output", str(tmp_path / "f.pt")]) == 2
