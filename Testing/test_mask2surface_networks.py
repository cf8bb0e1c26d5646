"""The Mask2Surface networks: MCSR-Net's differentiable slice warp and any-slice-count design,
and the MONAI-based VQ-VAE / latent denoiser's shapes and seeded sampling (untrained weights:
these are properties of the architecture, not of training)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from CardiacReconstructionLib.networks.latent_diffusion import (LDMConfig, LatentDenoiser, SDGAutoencoder,  # noqa: E402
                                                                VQVAEConfig, ddim_scheduler)
from CardiacReconstructionLib.networks.blocks import interpolate_slices  # noqa: E402
from CardiacReconstructionLib.networks.mcsr import (MCSRConfig, MCSRNet, centre_shifts,  # noqa: E402
                                                    labelled_slices, warp_slices)
from CardiacReconstructionLib.networks.checkpoint import load_network, save_network  # noqa: E402


def _square_stack(k=6, size=32, lo=10, hi=18):
    x = torch.zeros(1, 4, k, size, size)
    x[:, 0] = 1
    x[:, 0, :, lo:hi, lo:hi] = 0
    x[:, 1, :, lo:hi, lo:hi] = 1
    return x


def test_warp_follows_the_displacement_convention():
    # the observed slice at p shows the truth at p - d: correcting samples it at p + d, so a
    # square seen at columns 10..17 with d = (+3, -2) voxels moves to columns 7..14, rows 12..19
    x = _square_stack()
    shifts = torch.tensor([[3.0, -2.0]]).repeat(1, 6, 1)
    out = warp_slices(x, shifts)
    rows, cols = np.nonzero(out[0, 1, 0].numpy() > 0.5)
    assert (cols.min(), cols.max()) == (7, 14)
    assert (rows.min(), rows.max()) == (12, 19)
    # probabilities stay a partition of unity, background enters from outside
    assert torch.allclose(out.sum(1), torch.ones_like(out.sum(1)), atol=1e-5)


def test_warp_passes_gradients_to_the_shifts():
    # the public MCSR code warps with nearest sampling: no gradient reaches the shifts
    x = _square_stack()
    shifts = torch.full((1, 6, 2), 0.3, requires_grad=True)
    warp_slices(x, shifts)[:, 1, :, 8:12, 8:12].sum().backward()  # across the square's edge
    assert shifts.grad is not None and float(shifts.grad.abs().sum()) > 0


def test_centring_pins_the_gauge_on_labelled_slices():
    x = _square_stack()
    x[:, 1:, 0] = 0
    x[:, 0, 0] = 1  # slice 0 has no heart
    labelled = labelled_slices(x)
    assert labelled.tolist() == [[False] + [True] * 5]
    shifts = torch.arange(12, dtype=torch.float32).reshape(1, 6, 2)
    c = centre_shifts(shifts, labelled)
    assert torch.allclose(c[0, 1:].mean(0), torch.zeros(2), atol=1e-6)
    assert torch.equal(c[0, 0], torch.zeros(2))


def test_interpolate_slices_is_linear_in_slice_position():
    x = torch.arange(3, dtype=torch.float32).reshape(1, 1, 3, 1, 1)
    z = torch.tensor([0.0, 0.5, 1.25, 2.0, 2.5])
    assert interpolate_slices(x, z).flatten().tolist() == pytest.approx([0, 0.5, 1.25, 2, 2])


@pytest.mark.parametrize("k", [5, 13])
def test_mcsr_handles_any_slice_count_and_starts_from_no_motion(k):
    torch.manual_seed(0)
    model = MCSRNet(MCSRConfig(inplane_size=32, mc_channels=(8, 8, 8, 8), sr_channels=(8, 8))).eval()
    x = _square_stack(k)
    z = torch.linspace(0, k - 1, 2 * k)
    with torch.no_grad():
        shifts, corrected, logits = model(x, z)
    assert shifts.shape == (1, k, 2) and logits.shape == (1, 4, 2 * k, 32, 32)
    assert torch.equal(shifts, torch.zeros_like(shifts))  # zero-initialised head
    assert torch.allclose(corrected, x, atol=1e-6)


def test_network_files_round_trip(tmp_path):
    model = MCSRNet(MCSRConfig(inplane_size=32, mc_channels=(8, 8, 8, 8), sr_channels=(8, 8)))
    path = save_network(model, tmp_path / "m.pt", "mcsr", {"note": "test"})
    obj = torch.load(str(path), weights_only=True)
    assert obj["kind"] == "mcsr"
    again = load_network(path, "mcsr")
    assert again.config == model.config
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_vqvae_latent_grid_and_codebook():
    cfg = VQVAEConfig(channels=(8, 8), grid_shape=(16, 16, 16))
    model = SDGAutoencoder(cfg).eval()
    x = torch.rand(1, 4, 16, 16, 16) * 2 - 1
    with torch.no_grad():
        z = model.encode(x)
        y = model.decode(z)
    assert z.shape == (1, 8, 8, 8, 8) and y.shape == x.shape  # x2 downsampling
    assert model.vqvae.quantizer.quantizer.num_embeddings == 1024


def test_ddim_uses_the_paper_schedule_and_sampling_is_seeded():
    cfg = LDMConfig(channels=(16, 16, 16), norm_num_groups=8, num_head_channels=8)
    sched = ddim_scheduler(cfg, 10)
    assert len(sched.timesteps) == 10
    assert float(sched.betas[0]) == pytest.approx(0.0015) and float(sched.betas[-1]) == pytest.approx(0.0195)
    torch.manual_seed(0)
    model = LatentDenoiser(cfg).eval()
    with torch.no_grad():  # MONAI zero-initialises the output layer; make the untrained net non-trivial
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cond = torch.randn(1, 8, 4, 4, 4)
    a = model.sample(cond, 3, torch.Generator().manual_seed(7))
    b = model.sample(cond, 3, torch.Generator().manual_seed(7))
    c = model.sample(cond, 3, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_condition_residual_denoiser_starts_from_the_condition():
    """x0 = condition + UNet output, and MONAI zero-initialises the output layer: before training,
    DDIM returns the condition latent itself from any noise (training learns only the change)."""
    cfg = LDMConfig(channels=(16, 16, 16), norm_num_groups=8, num_head_channels=8, latent_scale=0.5)
    model = LatentDenoiser(cfg).eval()
    cond = torch.randn(1, 8, 4, 4, 4)
    for seed in (0, 1):
        out = model.sample(cond, 4, torch.Generator().manual_seed(seed))
        assert torch.allclose(out, cond, atol=1e-5)
    plain = LatentDenoiser(LDMConfig(channels=(16, 16, 16), norm_num_groups=8, num_head_channels=8,
                                     condition_residual=False)).eval()
    assert not torch.allclose(plain.sample(cond, 4, torch.Generator().manual_seed(0)), cond, atol=1e-2)
