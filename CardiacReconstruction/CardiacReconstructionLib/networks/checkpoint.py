"""The project's one checkpoint format and its loader.

A weights file is ``{'kind', 'config', 'state_dict', 'meta'}``: the network kind (a key of
:data:`NETWORK_KINDS`), its config as plain JSON-able values, float32 tensors, and free-form
metadata (training data, seed, device, metrics). Plain containers and tensors only, so every file
loads with ``torch.load(weights_only=True)`` and no code is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from ..core.errors import InputError
from ..core.io import atomic_path

#: Weights-file kind -> (networks module, config class, network class).
NETWORK_KINDS = {"dsl": ("dsl", "DSLConfig", "DSLNet"), "asv": ("asv", "ASVConfig", "ASVNet"),
                 "mcsr": ("mcsr", "MCSRConfig", "MCSRNet"),
                 "vqvae": ("latent_diffusion", "VQVAEConfig", "SDGAutoencoder"),
                 "ldm": ("latent_diffusion", "LDMConfig", "LatentDenoiser"), "vae": ("vae", "VAEConfig", "LabelVAE"),
                 "stylegan": ("stylegan", "StyleGANConfig", "StyleGenerator"),
                 "stylegan_d": ("stylegan", "StyleGANConfig", "StyleDiscriminator"),
                 "stylegan_encoder": ("stylegan", "EncoderConfig", "StyleEncoder"),
                 "segmenter": ("segmenter", "SegmenterConfig", "SliceSegmenter")}


def save_torch(obj, path) -> Path:
    """``torch.save`` through a temporary file in the same folder: nothing half-written."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def save_network(model, path, kind: str, meta: Dict) -> Path:
    """Write ``model`` in the checkpoint format (float32 tensors on the CPU)."""
    state = {k: v.detach().cpu().float().clone() for k, v in model.state_dict().items()}
    return save_torch({"kind": kind, "config": model.config.to_dict(), "state_dict": state, "meta": meta}, path)


def read_checkpoint(path_or_obj, map_location="cpu") -> dict:
    """The checkpoint dict of a weights file (or the dict itself); InputError for anything else."""
    import torch

    if isinstance(path_or_obj, dict):
        obj = path_or_obj
    else:
        try:
            obj = torch.load(str(path_or_obj), map_location=map_location, weights_only=True)
        except FileNotFoundError:
            raise InputError(f"Weights file {path_or_obj} not found.") from None
        except Exception as exc:  # UnpicklingError/RuntimeError for files that are not checkpoints
            raise InputError(f"{path_or_obj} is not a weights file PyTorch {torch.__version__} can load "
                             f"({(str(exc).strip().splitlines() or ['unreadable'])[0]}).") from None
    if not isinstance(obj, dict) or not {"kind", "config", "state_dict"} <= set(obj):
        raise InputError(f"{getattr(path_or_obj, 'name', 'The weights')} is not a CardiacReconstruction checkpoint "
                         "(expected the keys kind, config, state_dict, meta).")
    return obj


def load_network(path_or_obj, kind: str, map_location="cpu"):
    """A network of ``kind`` (:data:`NETWORK_KINDS`) from a weights file (or its loaded dict), in
    eval mode."""
    import importlib

    obj = read_checkpoint(path_or_obj, map_location)
    if obj.get("kind") != kind:
        raise InputError(f"The weights file holds a {obj.get('kind')!r} network, expected {kind!r}.")
    module_name, config_name, net_name = NETWORK_KINDS[kind]
    module = importlib.import_module(f"{__package__}.{module_name}")
    model = getattr(module, net_name)(getattr(module, config_name).from_dict(obj["config"]))
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"The {kind} weights do not fit the network their config describes "
                         f"({(str(exc).strip().splitlines() or [''])[0]}).") from None
    return model.eval()
