#!/usr/bin/env bash
# The Mask2Surface benchmark behind its RESULTS.md section: the 4 held-out CT hearts (ground-truth
# surfaces from their template-registered meshes) and 4 phantoms (ground truth: zero level set of the
# truth's signed distance), presets normal and mask2surface, 3 seeds; every classical baseline (meshed
# by marching cubes at 0.5 on its labels, no smoothing, as the paper meshes its baselines),
# MCSR-Net alone (the paper's ablation: mask2surface[refine=none]), the VQ-VAE without diffusion
# (mask2surface[refine=autoencoder]), Mask2Surface with one DDIM sample as the paper
# (mask2surface[samples=1]) and Mask2Surface as shipped (10 DDIM steps, 8 samples averaged).
# Usage: Testing/benchmarks/mask2surface_bench.sh [OUTPUT_FOLDER]
# The two sources run one after the other, so each case's time is measured on the whole 2-core CPU
# (run in parallel, they shared it and every time roughly doubled); about 25 minutes in all.
set -euo pipefail
out=${1:-cardiac-recon-bench-mask2surface}
data=${CARDIAC_RECON_DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/data}
export CARDIAC_RECON_DATA=$data
methods="nearest,linear,shape_interp,centroid_shape_interp,mask2surface[refine=none],mask2surface[refine=autoencoder],mask2surface[samples=1],mask2surface"

cardiac-recon bench --surfaces --source "$data/wholeheart_ct" --cases 4 --presets normal,mask2surface \
    --seeds 0,1,2 --methods "$methods" --output "$out/ct"
cardiac-recon bench --surfaces --source phantom --cases 4 --presets normal,mask2surface \
    --seeds 0,1,2 --methods "$methods" --output "$out/phantom"
