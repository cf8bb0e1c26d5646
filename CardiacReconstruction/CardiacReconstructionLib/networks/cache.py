"""The trained networks a pipeline runs, loaded once per device and weights source.

Why a cache: loading and checksumming a weights file costs more than a whole small case, and
a scripted batch runs one pipeline on many cases. Why overrides: validation of freshly trained
networks runs the real pipeline with other weights files, without touching the shipped ones.
One instance per pipeline (:mod:`..methods.dsl_asv`, :mod:`..methods.mask2surface`,
:mod:`..methods.latent_optimisation`).
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

    def get(self, kind: str, device: str = "cpu", weights=None):
        """The network ``kind`` on ``device``, in eval mode and frozen (a pipeline that
        differentiates through it, as latent optimisation does through its decoder, must not
        compute or accumulate gradients of its weights). From the :meth:`using` file if any, else
        ``weights`` (a method's option: a manifest name or a .pt path, :func:`.weights.resolve`),
        else the shipped weights; the name or path is resolved (checksummed) on the first load only."""
        from . import weights as installed
        from .checkpoint import load_network

        override = self._override.get(kind)
        source = override if override is not None else (weights or self.shipped[kind])
        key = (str(device), kind, str(source))
        if key not in self._models:
            path = source if override is not None else installed.resolve(source)
            self._models[key] = load_network(path, kind).requires_grad_(False).to(device)
        return self._models[key]

    def clear(self) -> None:
        self._models.clear()
