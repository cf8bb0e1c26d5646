"""What the tool understood of a case's files, before anything runs (``cardiac-recon check``).

A user whose result looks wrong should first see whether the inputs were read as meant: which
axis holds the slices, in which anatomical direction they run, which label convention was chosen
and why, where each long-axis view lies against the stack, whether the image shares the labels'
grid, and how much memory each method would need at the default output spacing.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

from . import methods
from .core.api import available_memory_mib, check_memory, output_geometry
from .core.axes import AXIS_NAMES
from .core.case import Case
from .core.labels import LV, MYO, RV
from .core.stack import base_is_first

_WORDS = (("R", "L"), ("A", "P"), ("S", "I"))  # RAS +/- directions


def anatomical(vector) -> str:
    """A RAS direction in words, largest component first: e.g. 'right-anterior (R 0.71, A 0.69)'."""
    v = np.asarray(vector, float)
    v = v / (np.linalg.norm(v) or 1.0)
    order = np.argsort(-np.abs(v))
    names = {"R": "right", "L": "left", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}
    letters = [_WORDS[a][0 if v[a] >= 0 else 1] for a in order]
    strong = [letters[n] for n, a in enumerate(order) if abs(v[a]) >= 0.4] or letters[:1]
    detail = ", ".join(f"{letters[n]} {abs(v[a]):.2f}" for n, a in enumerate(order) if abs(v[a]) >= 0.05)
    return f"{'-'.join(names[s] for s in strong)} ({detail})"


def _centroid_ras(case: Case, labels) -> np.ndarray:
    kji = np.argwhere(np.isin(case.sax.array, labels))
    return case.sax.geometry.index_to_ras(kji[:, ::-1].mean(axis=0)) if len(kji) else None


def report(case: Case, messages: Sequence[str], slice_spacing=None) -> List[str]:
    """The lines ``cardiac-recon check`` prints for a case read by :func:`..core.io.read_case`."""
    sax = case.sax
    order = tuple(case.info.get("axis_order", (0, 1, 2)))
    spacing = sax.spacing
    lines = [f"SAX stack: {sax.shape[0]} slices along the file's {AXIS_NAMES[order[2]]} axis, "
             f"{sax.shape[2]} x {sax.shape[1]} pixels of {spacing[0]:.3g} x {spacing[1]:.3g} mm, "
             f"slices {spacing[2]:.3g} mm apart"]
    step = sax.geometry.direction[:, 2]
    base_first = base_is_first(sax.array)
    lines.append(f"  slice order: {'base to apex' if base_first else 'apex to base'} "
                 f"(slice index grows towards {anatomical(step)})")
    lv, rv = _centroid_ras(case, (LV, MYO)), _centroid_ras(case, (RV,))
    if lv is not None and rv is not None:
        in_plane = (rv - lv) - ((rv - lv) @ step) * step  # the slices' plane: where the RV lies beside the LV
        lines.append(f"  LV to RV: {anatomical(in_plane)}, {np.linalg.norm(in_plane):.0f} mm between centroids "
                     "in the slice plane")
    empty = [k for k in range(sax.shape[0]) if not sax.array[k].any()]
    if empty:
        lines.append(f"  slices without labels: {empty} (their displacements are not measured)")
    lines += [f"  {m}" for m in messages if m.startswith("SAX:")]
    for view in case.lax:
        geo = view.labels.geometry
        normal = geo.direction[:, 2]
        angle = np.degrees(np.arccos(min(1.0, abs(float(normal @ step)))))
        centre = sax.geometry.index_to_ras((np.array(sax.shape[::-1], float) - 1) / 2)
        distance = abs(float((centre - geo.origin) @ normal))
        lines.append(f"{view.view} view: its plane is {90 - angle:.0f} degrees from the stack's slice axis and passes "
                     f"{distance:.1f} mm from the stack's centre")
    lines += [m for m in messages if m[:4] in ("2ch:", "3ch:", "4ch:")]
    if case.image is not None:
        same = case.image.geometry.same_as(sax.geometry)
        lines.append(f"image: {'on the same grid as the labels' if same else 'NOT on the labels grid'} "
                     f"({case.image.array.dtype}, values {float(case.image.array.min()):.4g} to "
                     f"{float(case.image.array.max()):.4g})")
    grid = output_geometry(sax.geometry, slice_spacing)
    free = available_memory_mib()
    lines.append(f"output grid: {grid.shape[0]} slices of {grid.spacing[2]:.3g} mm"
                 + (f"; memory available: {free / 1024:.1f} GiB" if free else ""))
    for method in methods.available():  # an infinite limit never refuses: this is the estimate alone
        lines.append(f"  {method.name}: about {check_memory(method, grid, float('inf')):.0f} MiB")
    for name, reason in methods.unavailable():
        lines.append(f"  {name}: unavailable ({reason})")
    return lines
