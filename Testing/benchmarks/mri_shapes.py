"""Learned methods on MRI-shaped hearts they never trained on: the ACDC validation patients.

Why: the CT cohort is 15 healthy end-diastolic hearts, and clinical stacks are MRI. ACDC gives
real MRI stacks (five diagnostic groups, ED and ES) but no high-resolution truth, so the truth
here is the pseudo high-resolution shape of each real stack (``cohort.acdc_pseudo_hr``:
centroid alignment + shape-based interpolation). That shape is re-degraded (``normal`` motion by
default, 10 mm slices) and reconstructed. Caveat: the pseudo-truth is itself the output of
``centroid_shape_interp``, so that baseline is not compared here (it would be scored against
its own kind of output).

Usage: python Testing/benchmarks/mri_shapes.py [--every 3] [--count 8] [--seeds 0,1,2]
       [--methods M1,M2] [--presets normal] [--surfaces]
       [--vqvae FILE --ldm FILE]   (other Mask2Surface weights than the shipped ones)
Defaults: Mask2Surface against MCSR-Net alone, with surface metrics. For latent optimisation:
  --methods "latent_optimisation,latent_optimisation[weights=FILE]" --no-surfaces
"""

import argparse

import numpy as np

from CardiacReconstructionLib.evaluation.bench import acdc_anatomies, benchmark, parse_list
from CardiacReconstructionLib.methods import mask2surface as m2s

SURFACE_METRICS = ("dice_MYO", "chamfer_mean_mm", "chamfer_LV_myocardium_mm", "surface_assd_mean_mm")
LABEL_METRICS = ("dice_mean", "dice_MYO", "assd_mean", "displacement_error_mm", "displacement_error_mean_removed_mm")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--every", type=int, default=3, help="take every n-th ACDC validation stack")
    p.add_argument("--count", type=int, default=8, help="number of stacks")
    p.add_argument("--seeds", default="0", help="comma-separated motion seeds")
    p.add_argument("--presets", default="normal", help="comma-separated degradation presets")
    p.add_argument("--methods", default="mask2surface[refine=none],mask2surface",
                   help="comma-separated methods or variants name[key=value]")
    p.add_argument("--surfaces", action=argparse.BooleanOptionalAction, default=True,
                   help="score surfaces (Chamfer, mesh ASSD) rather than labels and displacements")
    p.add_argument("--vqvae")
    p.add_argument("--ldm")
    args = p.parse_args()
    anatomies = acdc_anatomies(args.count, args.every)
    keys = [a.name for a in anatomies]
    seeds = [int(s) for s in args.seeds.split(",")]
    metrics = SURFACE_METRICS if args.surfaces else LABEL_METRICS
    print(f"{len(keys)} ACDC validation stacks ({', '.join(keys)}), seeds {seeds}")
    for preset in parse_list(args.presets, "--presets"):
        print(f"\npreset `{preset}`\n\n| method | " + " | ".join(metrics) + " |")
        print("|---" * (len(metrics) + 1) + "|")
        with m2s.using_weights(vqvae=args.vqvae, ldm=args.ldm):
            for method in parse_list(args.methods, "--methods"):
                rows = benchmark(anatomies, [preset], [method], seeds, surface_metrics=args.surfaces)
                cells = [f"{np.mean([r[k] for r in rows]):.3f} ± {np.std([r[k] for r in rows]):.3f}" for k in metrics]
                print(f"| {method} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
