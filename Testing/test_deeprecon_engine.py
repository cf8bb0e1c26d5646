"""DeepRecon's engine parts: crops, the StyleGAN2 networks, the hybrid inversion, latent
interpolation and motion-adaptation alignment, the checkpoint kinds and a resumable GAN run."""

import copy

import numpy as np
import pytest
from scipy import ndimage

torch = pytest.importorskip("torch")

from CardiacReconstructionLib.core.crops import (from_window, intensity_window, label_centres,  # noqa: E402
                                                 paste_grid, sample_crops, window_bounds)
from CardiacReconstructionLib.core.errors import InputError  # noqa: E402
from CardiacReconstructionLib.core.geometry import Volume, make_ijk_to_ras  # noqa: E402
from CardiacReconstructionLib.networks.checkpoint import load_network, save_network  # noqa: E402
from CardiacReconstructionLib.networks.inversion import hybrid_invert, inversion_loss  # noqa: E402
from CardiacReconstructionLib.networks.segmenter import SegmenterConfig, SliceSegmenter  # noqa: E402
from CardiacReconstructionLib.networks.stylegan import (EncoderConfig, ModulatedConv2d, StyleDiscriminator,  # noqa: E402
                                                        StyleEncoder, StyleGANConfig, StyleGenerator)

TINY = StyleGANConfig(size=16, z_dim=16, w_dim=16, mapping_layers=2, channels=(16, 16, 8))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    G, D = StyleGenerator(TINY).eval(), StyleDiscriminator(TINY).eval()
    E = StyleEncoder(EncoderConfig(size=16, num_ws=TINY.num_ws, w_dim=16, channels=(8, 16), strides=(2, 2))).eval()
    return G, D, E


def test_crop_and_paste_round_trip_a_smooth_image():
    jj, ii = np.meshgrid(np.arange(80), np.arange(90), indexing="ij")
    image = np.stack([np.sin(jj / 9.0) + np.cos(ii / 7.0) + k for k in range(3)]).astype(np.float32)
    centres = np.array([[40.0, 45.0], [38.5, 47.2], [42.0, 44.0]])
    crops = sample_crops(image, centres, (1.5, 1.5), 32, 2.0)
    assert crops.shape == (3, 32, 32) and crops.dtype == np.float32
    grid = paste_grid(image.shape[1:], centres[1], (1.5, 1.5), 32, 2.0)
    back = ndimage.map_coordinates(crops[1], grid, order=1, mode="constant", cval=np.nan)
    inside = np.isfinite(back) & (back != 0)
    inner = (abs(jj - 38.5) < 15) & (abs(ii - 47.2) < 15)  # well inside the 64 mm crop
    assert np.abs(back[inner & inside] - image[1][inner & inside]).max() < 0.05
    labels = (image > 1.5).astype(np.uint8)
    lab_crops = sample_crops(labels, centres, (1.5, 1.5), 32, 2.0, labels=True)
    assert lab_crops.dtype == np.uint8 and set(np.unique(lab_crops)) <= {0, 1}


def test_label_centres_fill_slices_without_heart_from_their_neighbours():
    labels = np.zeros((4, 20, 20), np.uint8)
    labels[0, 4:6, 4:6] = 1
    labels[2, 10:12, 12:14] = 2
    c = label_centres(labels)
    np.testing.assert_allclose(c[1], (c[0] + c[2]) / 2)
    np.testing.assert_allclose(c[3], c[2])
    assert np.isnan(label_centres(labels, fallback=False)[1]).all()
    with pytest.raises(InputError, match="No slice"):
        label_centres(np.zeros((2, 5, 5), np.uint8))


def test_intensity_window_maps_to_minus_one_one_and_refuses_constant_images():
    img = np.random.default_rng(0).gamma(2.0, 50.0, (3, 30, 30))
    out = intensity_window(img)
    assert out.min() >= -1 and out.max() <= 1 and out.dtype == np.float32
    assert img.dtype == np.float64  # the input is not modified
    with pytest.raises(InputError, match="constant"):
        intensity_window(np.full((2, 4, 4), 7.0))
    lo, hi = window_bounds(img)
    np.testing.assert_allclose(from_window(out, lo, hi), np.clip(img, lo, hi), rtol=1e-4, atol=1e-3)


def test_modulated_conv_equals_per_sample_modulated_weights():
    torch.manual_seed(1)
    conv = ModulatedConv2d(6, 5, w_dim=8)
    x, w = torch.randn(3, 6, 9, 9), torch.randn(3, 8)
    out = conv(x, w)
    style = conv.affine(w)
    for b in range(3):  # StyleGAN2 eq. 1-3, written per sample
        weight = conv.weight * conv.scale * style[b][None, :, None, None]
        weight = weight / weight.pow(2).sum(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        ref = torch.nn.functional.conv2d(x[b:b + 1], weight, padding=1)
        torch.testing.assert_close(out[b:b + 1], ref, rtol=1e-4, atol=1e-5)


def test_generator_discriminator_encoder_shapes_and_determinism(tiny):
    G, D, E = tiny
    ws = G.map(torch.randn(4, 16))
    assert ws.shape == (4, TINY.num_ws, 16)
    img = G(ws)
    assert img.shape == (4, 1, 16, 16)
    torch.testing.assert_close(img, G(ws, "const"))  # no noise: the image of a code is fixed
    noisy = copy.deepcopy(G)
    with torch.no_grad():
        noisy.convs[1].noise_strength.fill_(0.5)  # trained strengths are non-zero; the initial ones are 0
    assert not torch.equal(noisy(ws, "random"), noisy(ws, "random"))
    torch.testing.assert_close(noisy(ws, "const"), img)
    assert D(img).shape == (4, 1)
    _, feats = D.features(img)
    assert len(feats) == len(TINY.channels)
    torch.testing.assert_close(E(img).mean(dim=(0, 1)) * 0, E.w_avg * 0)
    assert E(img).shape == ws.shape
    with pytest.raises(ValueError, match="size"):
        StyleGenerator(StyleGANConfig(size=32, channels=(8, 8)))


def test_hybrid_inversion_lowers_its_objective_and_leaves_the_networks_frozen_state(tiny):
    G, D, E = tiny
    with torch.no_grad():
        target = G(G.map(torch.randn(2, 16)))
    start = hybrid_invert(G, E, target, steps=0)
    torch.testing.assert_close(start, E(target))
    before = inversion_loss(G, E, target, start, D=D)[0]["loss"].sum()
    flags = [p.requires_grad for p in G.parameters()]
    ws = hybrid_invert(G, E, target, steps=25, D=D)
    after = inversion_loss(G, E, target, ws, D=D)[0]["loss"].sum()
    assert float(after.detach()) < 0.8 * float(before.detach())
    assert [p.requires_grad for p in G.parameters()] == flags
    assert all(p.grad is None for p in G.parameters())


def test_network_kinds_round_trip_through_the_checkpoint_format(tmp_path, tiny):
    G, D, E = tiny
    seg = SliceSegmenter(SegmenterConfig(channels=(4, 8), strides=(2,)))
    for model, kind in ((G, "stylegan"), (D, "stylegan_d"), (E, "stylegan_encoder"), (seg, "segmenter")):
        path = save_network(model, tmp_path / f"{kind}.pt", kind, {"note": "test"})
        loaded = load_network(path, kind)
        assert loaded.config == model.config
        for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
            torch.testing.assert_close(a, b, msg=k)
    with pytest.raises(InputError, match="holds a 'stylegan'"):
        load_network(tmp_path / "stylegan.pt", "segmenter")


def test_latent_interpolation_hits_the_input_codes_at_their_slices():
    from CardiacReconstructionLib.methods.deeprecon import synthesise

    ws = torch.arange(3 * 2 * 4, dtype=torch.float32).reshape(3, 2, 4)
    centres = np.array([[0.0, 0.0], [2.0, 4.0], [4.0, 8.0]])
    w, c = synthesise(ws, centres, np.array([0.0, 1.0, 1.5, 2.0, 3.7, -1.0]))
    torch.testing.assert_close(w[[0, 1, 3]], ws)
    torch.testing.assert_close(w[2], (ws[1] + ws[2]) / 2)
    torch.testing.assert_close(w[4], ws[2])  # beyond the last slice: the last slice
    np.testing.assert_allclose(c[2], [3.0, 6.0])
    np.testing.assert_allclose(c[5], centres[0])


def test_image_checks_refuse_2d_and_label_like_images():
    from CardiacReconstructionLib.methods.deeprecon import _check_image

    geo = make_ijk_to_ras((1.5, 1.5, 10.0))
    with pytest.raises(InputError, match="single 2D slice"):
        _check_image(Volume(np.random.default_rng(0).random((1, 20, 20)).astype(np.float32), geo))
    with pytest.raises(InputError, match="label map"):
        _check_image(Volume(np.random.default_rng(0).integers(0, 4, (3, 20, 20)).astype(np.uint8), geo))
    with pytest.raises(InputError, match="needs the cine"):
        _check_image(None)
    ok = Volume(np.random.default_rng(0).integers(0, 255, (3, 20, 20)).astype(np.uint8), geo)
    assert _check_image(ok) is ok


def test_motion_differences_align_base_to_apex():
    from CardiacReconstructionLib.methods.motion_adaptation import align_differences

    target = np.zeros((5, 4, 4), np.uint8)
    target[1:4, 1, 1] = 1  # heart in slices 1..3
    source = np.zeros((7, 4, 4), np.uint8)
    source[0:7, 1, 1] = 1  # heart in all 7
    diff = torch.arange(5, dtype=torch.float32)[:, None]
    out = align_differences(diff, target, source)[:, 0]
    np.testing.assert_allclose(out.numpy(), np.linspace(1, 3, 7), atol=1e-6)


@pytest.mark.slow
def test_gan_training_runs_checkpoints_and_resumes(tmp_path):
    from CardiacReconstructionLib.training.deeprecon_gan import GANConfig, train_generator

    out = tmp_path / "g.pt"
    cfg = GANConfig(minutes=0, max_steps=2, batch=4, threads=1)
    train_generator(out, cfg, log=lambda m: None)
    G = load_network(out, "stylegan")
    assert G(G.mean_ws(2)).shape == (2, 1, 64, 64)
    assert load_network(tmp_path / "g_d.pt", "stylegan_d").config == G.config
    state = torch.load(out.with_suffix(".ckpt"), weights_only=True)
    assert state["step"] == 2
    train_generator(out, GANConfig(minutes=0, max_steps=3, batch=4, threads=1), resume=True, log=lambda m: None)
    assert torch.load(out.with_suffix(".ckpt"), weights_only=True)["step"] == 3
