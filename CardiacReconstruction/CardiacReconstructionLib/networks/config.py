"""Serialisable network configurations: one way for every network to store its config with its
weights (plain JSON-like types, so ``torch.load(..., weights_only=True)`` reads them) and to
rebuild it."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Dict

from ..core.errors import InputError


class NetworkConfig:
    """Mixin for ``@dataclass`` network configurations."""

    def to_dict(self) -> Dict:
        """Plain types; tuples become lists."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Dict):
        """Rebuild from :meth:`to_dict` output (lists back to tuples where the default is a tuple);
        keys this engine does not know are an error, not silently dropped."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise InputError(f"Unknown {cls.__name__} keys {unknown}; this engine knows {sorted(known)}.")
        return cls(**{k: tuple(v) if isinstance(known[k].default, tuple) else v for k, v in d.items()})
