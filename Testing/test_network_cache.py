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
