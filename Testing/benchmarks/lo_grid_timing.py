"""Latent optimisation time per case at the shipped prior grid and at the SRHeart grid.

Why: the shipped prior is a reduced grid (32 x 64 x 64 at 2.5 x 2.5 x 4 mm) trained on a CPU; the
SRHeart default is 64 x 128 x 128 at 1.25 x 1.25 x 2 mm, here with the architecture a prior grown
to that grid has (:func:`..networks.vae.refined`: one more, narrow level at the fine end). This
times the method with untrained VAEs of both grids (the cost per iteration does not depend on the
weights' values) and ``tolerance=0``, so every one of the ``iterations`` runs: an upper bound, the
ratio between the grids measured in the same run. One normal-motion phantom case.

Usage: python Testing/benchmarks/lo_grid_timing.py [--iterations 150] [--threads 1,2]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from CardiacReconstructionLib import methods
from CardiacReconstructionLib.simulation.cases import make_case
from CardiacReconstructionLib.networks.checkpoint import save_network
from CardiacReconstructionLib.networks.vae import LabelVAE, VAEConfig, refined_config
from CardiacReconstructionLib.simulation.phantom import make_phantom

GRIDS = {"shipped": VAEConfig(), "srheart": refined_config(VAEConfig())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    args = p.parse_args()
    torch.manual_seed(0)
    case = make_case(make_phantom(seed=0).truth, "normal", seed=0, slice_spacing=10.0)
    print("| grid | threads | total (s) | rigid stage (s) | joint stage (s) | ratio to shipped |\n"
          "|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        shipped = {}
        for name, config in GRIDS.items():
            path = Path(tmp) / f"{name}.pt"
            save_network(LabelVAE(config), path, "vae", {"untrained": True})
            for threads in (int(t) for t in args.threads.split(",")):
                t0 = time.perf_counter()
                r = methods.run("latent_optimisation", case, slice_spacing=2.0, seed=0, weights=str(path),
                                iterations=args.iterations, tolerance=0.0, threads=threads)
                total = time.perf_counter() - t0
                shipped.setdefault(threads, total)
                print(f"| {name} {'x'.join(map(str, config.grid_shape))} | {threads} | {total:.1f} | "
                      f"{r.timings['rigid_s']:.1f} | {r.timings['joint_s']:.1f} | {total / shipped[threads]:.1f} |",
                      flush=True)


if __name__ == "__main__":
    main()
