"""The one training loop (training.trainer) on a toy network, and the --device option of every
training command: resume gives the weights of an uninterrupted run, the budget, the schedule and
the accumulation do what they say, and CUDA without CUDA is a one-line error."""

import pytest

torch = pytest.importorskip("torch")

from CardiacReconstructionLib import cli  # noqa: E402
from CardiacReconstructionLib.core.errors import InputError  # noqa: E402
from CardiacReconstructionLib.training.trainer import (Trainer, budget_cosine, cosine_lr, resume_state,  # noqa: E402
                                                       start_torch)

QUIET = lambda *_: None  # noqa: E731


def _toy_run(ckpt, max_steps, resume=False, minutes=0.0, log=QUIET, calls=None):
    """A linear toy trained on batches drawn from generators seeded by the step (as the LO trainer
    draws its batches), two micro-batches a step, the learning rate following the steps."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    run = Trainer("toy", model, opt, ckpt, {"seed": 0}, "cpu", resume_state(ckpt, resume), log=log)

    def sample_loss(step):
        if calls is not None:
            calls.append(step)
        x = torch.randn(4, 3, generator=torch.Generator().manual_seed(step))
        return {"loss": model(x).pow(2).mean(), "mean_output": model(x).mean()}

    return run.run(sample_loss, max_steps, minutes, lambda step, fraction: cosine_lr(0.1, 0.01, step / 4),
                   micro_batches=2, log_every=1, checkpoint_every=1)


def test_resumed_run_gives_the_weights_of_an_uninterrupted_one(tmp_path):
    straight = _toy_run(tmp_path / "a.ckpt", 4)
    logs = []
    _toy_run(tmp_path / "b.ckpt", 2)
    resumed = _toy_run(tmp_path / "b.ckpt", 4, resume=True, log=logs.append)
    assert any("resumed TOY at step 2" in m for m in logs)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4]  # the history survives the resume
    assert set(resumed.history[-1]) >= {"loss", "mean_output", "elapsed_s"}
    ckpt = torch.load(str(tmp_path / "b.ckpt"), weights_only=True)  # plain containers and tensors only
    assert ckpt["step"] == 4 and ckpt["device"] == "cpu" and ckpt["config"] == {"seed": 0}
    assert resumed.opt.param_groups[0]["lr"] == pytest.approx(cosine_lr(0.1, 0.01, 3 / 4))  # set before step 4


def test_micro_batches_time_budget_and_meta(tmp_path):
    calls, logs = [], []
    run = _toy_run(tmp_path / "c.ckpt", 10, minutes=1e-9, log=logs.append, calls=calls)
    assert run.step == 1 and calls == [0, 0]  # the budget is checked after each step; two micro-batches
    assert any("stopping at step 1" in m for m in logs)
    meta = run.meta()
    assert meta["device"] == "cpu" and meta["steps"] == 1 and meta["samples"] == 2 and meta["train_config"]["seed"] == 0


def test_schedules_and_missing_checkpoint(tmp_path):
    lr = budget_cosine(1e-3, minutes=10.0, max_steps=100)  # over the time budget, whatever the step
    assert lr(0, 0.0) == 1e-3 and lr(7, 1.0) == pytest.approx(5e-5)
    assert lr(0, 0.5) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5)) and lr(0, 2.0) == lr(0, 1.0)  # clipped
    by_steps = budget_cosine(1e-3, minutes=0.0, max_steps=100)  # no time budget: over the steps, clock-free
    assert by_steps(50, 0.9) == pytest.approx(lr(0, 0.5)) and by_steps(100, 0.0) == pytest.approx(5e-5)
    assert resume_state(tmp_path / "none.ckpt", resume=True) is None  # a fresh start
    with pytest.raises(InputError, match="Nothing to resume"):
        resume_state(tmp_path / "none.ckpt", resume=True, required=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_one_line_input_error(tmp_path, capsys):
    with pytest.raises(InputError, match="no CUDA device"):
        start_torch(0, 1, "cuda")
    assert start_torch(0, 1, "auto") == "cpu"
    for argv in (["lo", "--output", str(tmp_path / "lo")],
                 ["dsl_asv", "dsl", "--output", str(tmp_path / "d.pt")],
                 ["dsl_asv", "validate"],
                 ["mask2surface", "vqvae", "--output", str(tmp_path / "v.pt")],
                 ["mask2surface", "pairs", "--output", str(tmp_path / "p.npz")]):
        assert cli.main(["train", *argv, "--device", "cuda"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "no CUDA device" in err, err


@pytest.mark.parametrize("argv", [["lo", "--output", "x"], ["dsl_asv", "dsl"], ["dsl_asv", "asv"],
                                  ["dsl_asv", "finetune"], ["dsl_asv", "validate"], ["dsl_asv", "install"],
                                  ["mask2surface", "mcsr"], ["mask2surface", "pairs"], ["mask2surface", "vqvae"],
                                  ["mask2surface", "ldm"], ["mask2surface", "validate"],
                                  ["mask2surface", "install"]])
def test_every_train_command_and_stage_takes_device(argv):
    parser = cli.build_parser()
    assert parser.parse_args(["train", *argv]).device == "auto"
    assert parser.parse_args(["train", *argv, "--device", "cpu"]).device == "cpu"
    with pytest.raises(SystemExit):  # argparse: an unknown device is refused
        parser.parse_args(["train", *argv, "--device", "tpu"])
