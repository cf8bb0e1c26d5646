"""Model weights shipped with the extension: where they live, and checking them before use.

Layout (``CardiacReconstruction/Resources/Weights/``, beside this package in the source tree
and in Slicer's installed module folder)::

    manifest.json      {name: {"file": "<name>.pt", "sha256": "<hex>", "card": "<name>.md"}}
    <name>.pt          a checkpoint (:mod:`.checkpoint`), loaded with weights_only=True
    <name>.md          the model card: data, training command, metrics, licence

Weights hold only tensors and plain containers so that loading never unpickles code (PyTorch
>= 2.6 refuses anything else by default, which broke other extensions' checkpoints). Every load
verifies the SHA-256 recorded in the manifest, so a truncated download or a damaged install gives
a clear message instead of a cryptic torch error or, worse, silently wrong results.

The folder can be overridden for tests and offline installs with the ``directory`` argument of
every function or the ``CARDIAC_RECON_WEIGHTS`` environment variable (argument first).
"""

from __future__ import annotations

import hashlib
import json
import importlib.util
import os
import re
import shutil
from pathlib import Path
from typing import Dict, Union

from ..core.errors import InputError
from ..core.io import atomic_path

ENV_VAR = "CARDIAC_RECON_WEIGHTS"
MANIFEST = "manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CHUNK = 1 << 20


def weights_dir(directory: Union[str, os.PathLike, None] = None) -> Path:
    """The weights folder: ``directory``, else $CARDIAC_RECON_WEIGHTS, else the shipped
    ``Resources/Weights`` folder next to this package (source tree and Slicer), else the
    ``CardiacReconstructionWeights`` data package that a pip install carries."""
    if directory is not None:
        return Path(directory)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    beside = Path(__file__).resolve().parents[2] / "Resources" / "Weights"  # <module>/Lib/networks/weights.py
    if beside.is_dir():
        return beside
    spec = importlib.util.find_spec("CardiacReconstructionWeights")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return beside


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"Invalid model weights name {name!r}: use letters, digits, '.', '_' and '-' "
                         "(it becomes a file name).")
    return name


def manifest(directory: Union[str, os.PathLike, None] = None) -> Dict[str, Dict[str, str]]:
    """The manifest ``{name: {file, sha256, card}}``; empty when no weights are installed."""
    path = weights_dir(directory) / MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"The model weights manifest {path} cannot be read ({exc}); reinstall the extension "
                         "or package.") from None
    if not isinstance(data, dict) or not all(isinstance(e, dict) and {"file", "sha256"} <= set(e)
                                             for e in data.values()):
        raise InputError(f"The model weights manifest {path} is malformed: expected "
                         "{name: {file, sha256, card}}; reinstall the extension or package.")
    return data


def sha256(path: Union[str, os.PathLike]) -> str:
    """Hex SHA-256 of a file, read in chunks (weights can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(name: str, directory: Union[str, os.PathLike, None] = None) -> Path:
    """Path of the weights ``name`` after checking that the file exists and its SHA-256 matches
    the manifest; raises InputError saying what is wrong otherwise."""
    folder = weights_dir(directory)
    entries = manifest(folder)
    if _check_name(name) not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise InputError(f"No model weights named {name!r} in {folder / MANIFEST} (installed: {known}); the "
                         "extension/package install may be incomplete or older than this method.")
    entry = entries[name]
    path = folder / entry["file"]
    if not path.is_file():
        raise InputError(f"The model weights file {path} for {name!r} is missing: the extension/package install is "
                         "incomplete; reinstall it.")
    actual = sha256(path)
    if actual != entry["sha256"].lower():
        raise InputError(f"The model weights file {path} for {name!r} is corrupt: SHA-256 {actual[:12]}... does not "
                         f"match the expected {entry['sha256'][:12]}...; reinstall the extension/package.")
    return path


def resolve(name_or_path: Union[str, os.PathLike], directory: Union[str, os.PathLike, None] = None) -> Path:
    """The weights file a user means: a path (it has a folder separator or a ``.pt`` suffix) must
    be an existing file; anything else is a name in the manifest (:func:`verify`: SHA-256 checked).
    Why one rule: the options that accept both (latent optimisation's ``weights=``, ``train lo
    --init``, ``train mask2surface ldm --init``) read them alike, and a name never silently picks
    up a same-named file in the working folder. (Options that take only a file, such as
    ``--vqvae``, load it as given.)"""
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.suffix == ".pt" or any(sep and sep in text for sep in (os.sep, os.altsep)):
        if not path.is_file():
            raise InputError(f"Weights file {path} not found: give an existing .pt file or the name of shipped weights "
                             f"({', '.join(sorted(manifest(directory))) or 'none installed'}).")
        return path
    return verify(text, directory)


def load_state_dict(name: str, map_location="cpu", directory: Union[str, os.PathLike, None] = None) -> dict:
    """The verified dict in weights ``name`` (for the shipped networks a checkpoint of
    :mod:`.checkpoint`), loaded without unpickling any code."""
    import torch

    path = verify(name, directory)
    try:
        state = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError for incompatible files
        raise InputError(f"The model weights {path} cannot be loaded by PyTorch {torch.__version__} "
                         f"({str(exc).strip().splitlines()[0]}).") from None
    if not isinstance(state, dict):
        raise InputError(f"The model weights {path} hold a {type(state).__name__}, not a state_dict.")
    return state


def _copy_into(source: Path, target: Path) -> None:
    """Copy ``source`` onto ``target`` atomically (nothing half-written on failure)."""
    if source.resolve() == target.resolve():
        return
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def register(name: str, path: Union[str, os.PathLike], card: Union[str, os.PathLike],
             directory: Union[str, os.PathLike, None] = None) -> Dict[str, str]:
    """Install weights ``path`` as ``<name>.pt`` with its model card and record them in the
    manifest (used by training commands). ``card`` is the card's markdown text, or a
    :class:`pathlib.Path` of a markdown file to copy. Each file, including the manifest, is
    replaced atomically, so a failure never leaves a half-written manifest. Returns the entry."""
    _check_name(name)
    source = Path(path)
    if not source.is_file():
        raise InputError(f"Cannot register model weights {name!r}: {source} is not a file.")
    folder = weights_dir(directory)
    folder.mkdir(parents=True, exist_ok=True)
    entries = manifest(folder)
    entry = {"file": f"{name}.pt", "sha256": sha256(source), "card": f"{name}.md"}
    _copy_into(source, folder / entry["file"])
    if isinstance(card, os.PathLike):
        if not Path(card).is_file():
            raise InputError(f"The model card {card} does not exist.")
        _copy_into(Path(card), folder / entry["card"])
    else:
        with atomic_path(folder / entry["card"]) as tmp:
            Path(tmp).write_text(str(card), encoding="utf-8")
    entries[name] = entry
    with atomic_path(folder / MANIFEST) as tmp:
        Path(tmp).write_text(json.dumps(dict(sorted(entries.items())), indent=2) + "\n", encoding="utf-8")
    return entry
