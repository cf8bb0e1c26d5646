"""The trained networks a pipeline runs, loaded once per device and weights source.

Why a cache: loading and checksumming a weights file costs more than a whole small case, and
a scripted batch runs one pipeline on many cases. Why overrides: validation of freshly trained
networks runs the real pipeline with other weights files, without touching the shipped ones.
One instance per pipeline (:mod:`..methods.dsl_asv`, :mod:`..methods.mask2surface`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Tuple

from ..core.errors import InputError


class NetworkCache:
    """Networks by kind (:data:`.checkpoint.NETWORK_KINDS`), each from the shipped weights named
    in ``shipped`` (kind -> name in the weights manifest, SHA-256 verified) unless
    :meth:`using` names another file."""

    def __init__(self, shipped: Dict[str, str]):
        self.shipped = dict(shipped)
        self._models: Dict[Tuple[str, str, str], object] = {}
        self._override: Dict[str, object] = {}

    @contextmanager
    def using(self, **paths):
        """Within the block, load these weights files (keys: kinds of :attr:`shipped`; None keeps
        the current choice)."""
        unknown = sorted(set(paths) - set(self.shipped))
        if unknown:
            raise InputError(f"Unknown network kinds {unknown}; expected some of {sorted(self.shipped)}.")
        previous = dict(self._override)
        self._override.update({k: v for k, v in paths.items() if v is not None})
        try:
            yield
        finally:
            self._override.clear()
            self._override.update(previous)

    def get(self, kind: str, device: str = "cpu"):
        """The network ``kind`` in eval mode on ``device``."""
        from . import weights
        from .checkpoint import load_network

        source = self._override.get(kind)
        key = (str(device), kind, str(source))
        if key not in self._models:
            obj = source if source is not None else weights.load_state_dict(self.shipped[kind], map_location="cpu")
            self._models[key] = load_network(obj, kind).to(device)
        return self._models[key]

    def clear(self) -> None:
        self._models.clear()
