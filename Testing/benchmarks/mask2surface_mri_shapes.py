"""Mask2Surface on MRI-shaped hearts it never trained on: the ACDC validation patients.

Why: the CT cohort is 15 healthy end-diastolic hearts, and clinical stacks are MRI. ACDC gives
real MRI stacks (five diagnostic groups, ED and ES) but no high-resolution truth, so the truth
here is the pseudo high-resolution shape of each real stack (``cohort.acdc_pseudo_hr``:
centroid alignment + shape-based interpolation). That shape is re-degraded (``normal`` motion,
10 mm slices) and reconstructed. Caveat: the pseudo-truth is itself the output of
``centroid_shape_interp``, so that baseline is not compared here (it would be scored against
its own kind of output); the comparison is Mask2Surface against MCSR-Net alone.

Usage: python Testing/benchmarks/mask2surface_mri_shapes.py [--every 3] [--count 8]
       [--vqvae FILE --ldm FILE]   (other weights than the shipped ones)
"""

import argparse

import numpy as np

from CardiacReconstructionLib.bench import Anatomy, benchmark
from CardiacReconstructionLib.cohort import acdc_pseudo_hr, acdc_split, load_acdc
from CardiacReconstructionLib.pipelines import mask2surface as m2s

METHODS = ("mask2surface[refine=none]", "mask2surface")
METRICS = ("dice_MYO", "chamfer_mean_mm", "chamfer_LV_myocardium_mm", "surface_assd_mean_mm")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--every", type=int, default=3, help="take every n-th ACDC validation stack")
    p.add_argument("--count", type=int, default=8, help="number of stacks")
    p.add_argument("--seeds", default="0", help="comma-separated motion seeds")
    p.add_argument("--vqvae")
    p.add_argument("--ldm")
    args = p.parse_args()
    keys = acdc_split(None, "val")[::args.every][:args.count]
    anatomies = [Anatomy(k, acdc_pseudo_hr(load_acdc(None, k))) for k in keys]
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{len(keys)} ACDC validation stacks ({', '.join(keys)}), normal motion, seeds {seeds}")
    print("| method | " + " | ".join(METRICS) + " |")
    print("|---" * (len(METRICS) + 1) + "|")
    with m2s.using_weights(vqvae=args.vqvae, ldm=args.ldm):
        for method in METHODS:
            rows = benchmark(anatomies, ["normal"], [method], seeds, surface_metrics=True)
            cells = [f"{np.mean([r[k] for r in rows]):.3f} ± {np.std([r[k] for r in rows]):.3f}" for k in METRICS]
            print(f"| {method} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
