"""Simulated cases: a degraded SAX stack with its truth, true displacements and long-axis views.

The one place that combines :mod:`.degrade` (the stack) and :mod:`.lax` (the views), so that
neither of those imports the other.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..core.case import Case
from ..core.geometry import Volume
from .degrade import degrade
from .lax import extract_lax, random_lax_shift


def make_case(hr: Volume, preset: str = "normal", *, seed: int = 0, lax_views: Sequence[str] = (),
              landmarks: Optional[dict] = None, lax_shift: bool = False, lax_options: Optional[dict] = None,
              name: Optional[str] = None, **kw):
    """A :class:`..core.case.Case` simulated from ``hr``: the degraded SAX stack, the cropped truth, the
    true displacements and, for each of ``lax_views``, a long-axis view cut from the full HR
    volume (plane from ``landmarks`` or from the labels, see :mod:`.lax`). With ``lax_shift``
    each view is also moved in-plane by a seeded breath-hold shift (recorded in
    ``case.info['lax_shifts_mm']``). Other keywords go to :func:`.degrade`."""

    deg = degrade(hr, preset, seed=seed, **kw)
    views, shifts = [], {}
    for index, view in enumerate(lax_views):
        lax_seed = int(np.random.SeedSequence([seed, index + 1]).generate_state(1)[0]) if lax_shift else None
        views.append(extract_lax(hr, view, landmarks, seed=lax_seed, **(lax_options or {})))
        if lax_shift:
            shifts[view] = random_lax_shift(lax_seed).tolist()
    info = {"preset": preset, "seed": deg.seed, "parameters": deg.parameters,
            "kept_slices": deg.kept_slices.tolist(), "rotations_deg": deg.rotations_deg.tolist(),
            "tilts_deg": deg.tilts_deg.tolist(), "lr_truth": deg.lr_truth}
    if lax_shift:
        info["lax_shifts_mm"] = shifts
    return Case(sax=deg.sax, lax=views, truth=deg.truth, true_displacements=deg.displacements,
                name=name or f"{preset}-seed{deg.seed}", info=info)
