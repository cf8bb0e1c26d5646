"""The per-pipeline network cache: shipped weights by default, overrides within a block, one
load per device and source."""

import pytest

pytest.importorskip("torch")

from CardiacReconstructionLib.networks import weights  # noqa: E402
from CardiacReconstructionLib.core.errors import InputError  # noqa: E402
from CardiacReconstructionLib.networks.cache import NetworkCache  # noqa: E402
from CardiacReconstructionLib.methods import dsl_asv  # noqa: E402

needs_weights = pytest.mark.skipif("asv" not in weights.manifest(), reason="ASV weights not installed")


@needs_weights
def test_loads_once_and_overrides_only_within_the_block():
    cache = NetworkCache({"asv": "asv"})
    shipped = cache.get("asv")
    assert cache.get("asv") is shipped and not shipped.training
    with cache.using(asv=str(weights.verify("asv"))):
        other = cache.get("asv")
        assert other is not shipped  # a different source is a different cache entry
    assert cache.get("asv") is shipped
    cache.clear()
    assert cache.get("asv") is not shipped


def test_unknown_kind_is_an_input_error():
    with pytest.raises(InputError, match="Unknown network kinds"):
        with dsl_asv.NETWORKS.using(vqvae="x.pt"):
            pass


def _bad_weights_files(tmp_path, kind):
    """A checkpoint of another kind, a bare state dict (the former prior format) and a file torch
    cannot read."""
    other, other_kind = tmp_path / "other_kind.pt", "asv" if kind != "asv" else "dsl"
    other.write_bytes(weights.verify(other_kind).read_bytes())
    import torch

    bare = tmp_path / "bare.pt"
    torch.save({"encoder.0.weight": torch.zeros(1)}, bare)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    return {other: f"holds a '{other_kind}' network, expected '{kind}'", bare: "not a CardiacReconstruction checkpoint",
            junk: "not a weights file PyTorch"}


def _run_with(method, path):
    """Run ``method`` on a phantom case with the weights file ``path`` in its one weights slot:
    latent optimisation's ``weights`` option, the other pipelines' :func:`using_weights`."""
    from CardiacReconstructionLib import methods
    from CardiacReconstructionLib.methods import mask2surface
    from CardiacReconstructionLib.simulation.cases import make_case
    from CardiacReconstructionLib.simulation.phantom import make_phantom

    case = make_case(make_phantom(0).truth, "none", seed=0)
    if method == "latent_optimisation":
        return methods.run(method, case, device="cpu", weights=str(path))
    slot = dsl_asv.using_weights(dsl_weights=str(path)) if method == "dsl_asv" else \
        mask2surface.using_weights(mcsr=str(path))
    with slot:
        return methods.run(method, case, device="cpu")


@pytest.mark.skipif(not {"asv", "dsl", "lo_vae", "mcsr"} <= set(weights.manifest()), reason="weights not installed")
@pytest.mark.parametrize("method, kind", [("latent_optimisation", "vae"), ("dsl_asv", "dsl"), ("mask2surface", "mcsr")])
def test_a_weights_file_that_is_not_a_checkpoint_of_the_kind_is_one_input_error(tmp_path, method, kind):
    for path, message in _bad_weights_files(tmp_path, kind).items():
        with pytest.raises(InputError, match=message) as info:
            _run_with(method, path)
        assert "\n" not in str(info.value), str(info.value)
