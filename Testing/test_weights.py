"""Shipped model weights: manifest, checksum verification and safe loading."""

import json
from pathlib import Path

import pytest
import torch

from CardiacReconstructionLib.networks import weights
from CardiacReconstructionLib.core.errors import InputError


@pytest.fixture
def tiny_state(tmp_path):
    """A real (tiny) torch module's state_dict saved to a file outside the weights folder."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3), torch.nn.BatchNorm3d(2))
    state = module.state_dict()
    path = tmp_path / "trained.pt"
    torch.save(state, path)
    return state, path


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "Weights"


def test_register_verify_load_round_trip(tiny_state, folder):
    state, path = tiny_state
    entry = weights.register("tiny-net", path, "# Tiny net\nTest card.", directory=folder)
    assert entry == {"file": "tiny-net.pt", "sha256": weights.sha256(path), "card": "tiny-net.md"}
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk == {"tiny-net": entry}
    assert (folder / "tiny-net.md").read_text().startswith("# Tiny net")
    assert weights.verify("tiny-net", directory=folder) == folder / "tiny-net.pt"
    loaded = weights.load_state_dict("tiny-net", directory=folder)
    assert list(loaded) == list(state)
    for key, tensor in state.items():
        assert torch.equal(loaded[key], tensor)


def test_register_updates_one_entry_and_copies_a_card_file(tiny_state, folder, tmp_path):
    state, path = tiny_state
    weights.register("a", path, "card a", directory=folder)
    card = tmp_path / "card_b.md"
    card.write_text("# B")
    torch.save({"w": torch.ones(3)}, tmp_path / "b.pt")
    weights.register("b", tmp_path / "b.pt", card, directory=folder)
    weights.register("a", tmp_path / "b.pt", "card a v2", directory=folder)  # retrained: entry replaced
    entries = weights.manifest(folder)
    assert sorted(entries) == ["a", "b"]
    assert entries["a"]["sha256"] == weights.sha256(tmp_path / "b.pt")
    assert (folder / "b.md").read_text() == "# B"
    assert torch.equal(weights.load_state_dict("a", directory=folder)["w"], torch.ones(3))
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_sha256_is_the_standard_digest(tmp_path):
    path = tmp_path / "abc.bin"
    path.write_bytes(b"abc")
    assert weights.sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_corrupt_file_is_reported(tiny_state, folder):
    _, path = tiny_state
    entry = weights.register("net", path, "card", directory=folder)
    target = folder / "net.pt"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt") as info:
        weights.load_state_dict("net", directory=folder)
    assert entry["sha256"][:12] in str(info.value)
    assert weights.sha256(target)[:12] in str(info.value)


def test_missing_file_says_install_is_incomplete(tiny_state, folder):
    _, path = tiny_state
    weights.register("net", path, "card", directory=folder)
    (folder / "net.pt").unlink()
    with pytest.raises(InputError, match="net.pt.*missing.*install is incomplete"):
        weights.verify("net", directory=folder)


def test_unknown_name_lists_installed_weights(tiny_state, folder):
    _, path = tiny_state
    weights.register("net", path, "card", directory=folder)
    with pytest.raises(InputError, match=r"No model weights named 'other'.*installed: net"):
        weights.verify("other", directory=folder)
    with pytest.raises(InputError, match="Invalid model weights name"):
        weights.verify("../escape", directory=folder)


def test_resolve_takes_a_path_or_a_verified_name(tiny_state, folder, tmp_path, monkeypatch):
    _, path = tiny_state
    weights.register("tiny-net", path, "card", directory=folder)
    assert weights.resolve(path, directory=folder) == path  # a file as it is
    assert weights.resolve("tiny-net", directory=folder) == folder / "tiny-net.pt"  # a name, verified
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-net").write_bytes(b"not weights")  # a same-named file does not shadow the name
    assert weights.resolve("tiny-net", directory=folder) == folder / "tiny-net.pt"
    with pytest.raises(InputError, match=r"Weights file .*missing\.pt not found.*tiny-net"):
        weights.resolve(tmp_path / "missing.pt", directory=folder)
    with pytest.raises(InputError, match="No model weights named 'other'"):
        weights.resolve("other", directory=folder)
    (folder / "tiny-net.pt").write_bytes(b"corrupted")
    with pytest.raises(InputError, match="corrupt"):
        weights.resolve("tiny-net", directory=folder)


def test_environment_variable_overrides_the_folder(tiny_state, folder, monkeypatch):
    _, path = tiny_state
    weights.register("net", path, "card", directory=folder)
    monkeypatch.setenv(weights.ENV_VAR, str(folder))
    assert weights.weights_dir() == folder
    assert weights.verify("net") == folder / "net.pt"
    assert weights.weights_dir(Path("/elsewhere")) == Path("/elsewhere")  # the argument wins


def test_default_folder_is_the_shipped_resources(monkeypatch):
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    folder = weights.weights_dir()
    assert folder.parts[-3:] == ("CardiacReconstruction", "Resources", "Weights")


def test_empty_and_malformed_manifests(folder):
    assert weights.manifest(folder) == {}
    folder.mkdir()
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot be read"):
        weights.manifest(folder)
    (folder / "manifest.json").write_text(json.dumps({"net": {"file": "net.pt"}}))
    with pytest.raises(InputError, match="malformed"):
        weights.manifest(folder)


def test_pickled_objects_are_refused(folder, tmp_path):
    """A file that is not a plain state dict (here a whole module) fails weights_only loading
    with an InputError, not an unpickling traceback."""
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    weights.register("whole", path, "card", directory=folder)
    with pytest.raises(InputError, match="cannot be loaded by PyTorch"):
        weights.load_state_dict("whole", directory=folder)


def test_every_shipped_weights_file_is_one_checkpoint_format(folder):
    """All shipped networks (the latent-optimisation prior included) are checkpoints of a known
    kind that build their network; registering a copy keeps them loadable by name."""
    from CardiacReconstructionLib.networks.checkpoint import NETWORK_KINDS, load_network

    shipped = weights.manifest()
    assert {"lo_vae", "dsl", "asv", "mcsr", "m2s_vqvae", "m2s_ldm"} <= set(shipped)
    kinds = set()
    for name in shipped:
        obj = weights.load_state_dict(name)  # SHA-256 verified, weights_only
        assert set(obj) == {"kind", "config", "state_dict", "meta"} and obj["kind"] in NETWORK_KINDS
        assert all(v.dtype == torch.float32 for v in obj["state_dict"].values())
        kinds.add(obj["kind"])
        if obj["kind"] == "vae":
            model = load_network(obj, "vae")
            weights.register("prior-copy", weights.verify(name), "card", directory=folder)
            again = load_network(weights.load_state_dict("prior-copy", directory=folder), "vae")
            assert again.config == model.config
            assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    assert kinds == set(NETWORK_KINDS)
