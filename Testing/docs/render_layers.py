"""Render the README's picture of the engine's layers from the source's own import graph.

    python Testing/docs/render_layers.py --output Resources/Screenshots/layers.png

One band per layer (lowest at the bottom, as in ``Testing/import_graph.py``'s LAYERS), the modules
of each band inside it, and the number of import edges that run from each band down to each lower
one. Runtime bands (what the Slicer extension needs to reconstruct) are blue, development bands
(simulation, data, evaluation, training, CLI) grey; a band never imports one above it
(``Testing/test_layers.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from import_graph import LAYERS, RUNTIME, import_graph, layer_of  # noqa: E402

TITLES = {"core": "core: geometry, io, labels, case, method API, indices, surfaces",
          "anatomy": "anatomy: SAX frame, valve planes, canonical grid",
          "networks": "networks: architectures, one checkpoint format, weights, cache",
          "methods": "methods: registry, baselines, pipelines",
          "mrml|worker": "adapters: MRML nodes (Slicer), background worker",
          "simulation": "simulation: phantom, degradation, LAX cutting, cases",
          "training.cohort": "data: CT cohort and ACDC loaders",
          "evaluation": "evaluation: metrics, benchmark, surface truth, figures",
          "training": "training: trainers, model cards",
          "cli|__main__": "command line (cardiac-recon)"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", default="layers.png")
    args = p.parse_args(argv)
    graph = import_graph()
    members = {rank: [] for rank in range(len(LAYERS))}
    for module in sorted(graph):
        if module:
            members[layer_of(module)].append(module)
    edges = Counter((layer_of(m), layer_of(t)) for m, ts in graph.items() if m for t in ts
                    if t and layer_of(t) != layer_of(m))
    fig, ax = plt.subplots(figsize=(11, 0.75 * len(LAYERS) + 0.6))
    for rank, names in enumerate(LAYERS):
        runtime = names.split("|")[0].split(".")[0] in RUNTIME and names != "training.cohort"
        y = rank * 0.75
        ax.add_patch(FancyBboxPatch((0, y), 7.6, 0.6, boxstyle="round,pad=0.02",
                                    fc="#cfe2f3" if runtime else "#e6e6e6", ec="#3d5a80" if runtime else "#777"))
        ax.text(0.12, y + 0.42, TITLES[names], fontsize=10, weight="bold", va="center")
        packages = set(names.split("|")) - {"training.cohort"}
        short = ", ".join(sorted(m.split(".")[-1] for m in members[rank] if m not in packages))
        ax.text(0.12, y + 0.16, short or "-", fontsize=7.5, va="center", color="#333")
        down = sum(n for (a, b), n in edges.items() if a == rank)
        if down:
            ax.text(7.75, y + 0.3, f"{down} imports down", fontsize=8, va="center", color="#555")
    ax.annotate("", xy=(9.2, 0.1), xytext=(9.2, 0.75 * len(LAYERS) - 0.3),
                arrowprops=dict(arrowstyle="->", color="#3d5a80", lw=1.5))
    ax.text(9.35, 0.75 * len(LAYERS) / 2, "imports point down only\nno cycles", fontsize=8, va="center",
            rotation=90, color="#3d5a80")
    ax.text(0, -0.3, "blue: runtime (shipped in the Slicer extension with the phantom and metrics of its self-test);"
            " grey: development (pip package only)", fontsize=8, color="#333")
    ax.set_xlim(-0.1, 9.8)
    ax.set_ylim(-0.5, 0.75 * len(LAYERS))
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
