"""PNG figures for the demo and the benchmark (matplotlib, headless).

Label panels are drawn on one common grid (the first volume's, usually the truth) so the rows
can be compared point by point: other volumes are resampled onto it by physical position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from ..core.geometry import Volume, resample
from ..core.labels import STRUCTURES


def _colormap():
    from matplotlib.colors import ListedColormap

    colours = [(0, 0, 0)] + [STRUCTURES[l].color for l in sorted(STRUCTURES)]
    return ListedColormap(colours)


def _views(volume: Volume, centre_kji: Sequence[int]):
    """Mid short-axis slice and the two long-axis cuts through ``centre_kji``, with the
    physical aspect ratio of each panel (rows, columns in mm)."""
    k, j, i = centre_kji
    si, sj, sk = volume.spacing
    a = volume.array
    return [("short axis", a[k], sj / si), ("long axis (i-k)", a[:, j, :], sk / si),
            ("long axis (j-k)", a[:, :, i], sk / sj)]


def orthogonal_views(volumes: Dict[str, Volume], path, title: str = "") -> Path:
    """One row per volume (truth first), three orthogonal views each, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(volumes)
    reference = volumes[names[0]]
    fg = np.argwhere(reference.array > 0)
    centre = tuple(int(c) for c in (fg.mean(axis=0) if len(fg) else np.array(reference.shape) // 2))
    cmap = _colormap()
    fig, axes = plt.subplots(len(names), 3, figsize=(9, 2.9 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        vol = volumes[name]
        if not vol.geometry.same_as(reference.geometry):
            vol = resample(vol, reference.geometry, "nearest")
        for col, (view, img, aspect) in enumerate(_views(vol, centre)):
            ax = axes[row, col]
            ax.imshow(img, cmap=cmap, vmin=0, vmax=len(STRUCTURES), interpolation="nearest", aspect=aspect,
                      origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(view, fontsize=9)
            if col == 0:
                ax.set_ylabel(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def metric_bars(rows: List[dict], metric: str, path, group: str = "preset", hue: str = "method",
                ylabel: str = "") -> Path:
    """Mean +- sd of ``metric`` per (group, hue) as grouped bars, from benchmark rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(r[group] for r in rows))
    hues = list(dict.fromkeys(r[hue] for r in rows))
    width = 0.8 / max(1, len(hues))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(groups) * max(1, len(hues)) * 0.45, 3.6))
    for h, name in enumerate(hues):
        means, sds = [], []
        for g in groups:
            vals = np.array([r[metric] for r in rows if r[group] == g and r[hue] == name and metric in r], float)
            vals = vals[np.isfinite(vals)]
            means.append(vals.mean() if len(vals) else np.nan)
            sds.append(vals.std() if len(vals) else 0)
        x = np.arange(len(groups)) + (h - (len(hues) - 1) / 2) * width
        ax.bar(x, means, width, yerr=sds, label=name, capsize=2)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel or metric)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def volume_curve(phases: Sequence[float], volumes_ml: Sequence[float], path, title: str = "") -> Path:
    """The LV blood-pool volume (ml) over the cardiac phases (0 = ED; 1, 2... the given frames;
    the phases between them interpolated), given frames marked; ``title`` above it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = np.asarray(phases, float)
    volumes = np.asarray(volumes_ml, float)
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    ax.plot(phases, volumes, "-", color="tab:red", lw=1.5)
    given = np.isclose(phases, np.round(phases))
    ax.plot(phases[given], volumes[given], "o", color="tab:red", label="given frames")
    ax.plot(phases[~given], volumes[~given], ".", color="tab:red", alpha=0.6, label="interpolated")
    ax.set_xlabel("phase (0 = ED; integers: the target's frames)")
    ax.set_ylabel("LV blood pool (ml)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def _save(fig, path) -> Path:
    """Lay out, write (110 dpi) and close a figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
