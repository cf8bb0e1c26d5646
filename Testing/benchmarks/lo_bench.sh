#!/usr/bin/env bash
# Latent optimisation (issue 4) against every baseline: the held-out CT hearts and the phantom,
# presets none/normal/severe, 3 motion seeds, without and with a 4-chamber long-axis view cut
# from the truth, on a 2-core CPU (latent_optimisation runs torch on one thread: its option `threads`).
# Usage: Testing/benchmarks/lo_bench.sh [OUTPUT_FOLDER]
# (about 30 minutes on 2 CPU cores shared with other jobs; latent_optimisation ~3-6 s per case)
set -euo pipefail
out=${1:-cardiac-recon-bench-lo}
data=${CARDIAC_RECON_DATA:-$(dirname "$0")/../../../shared/data}
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
methods=nearest,linear,shape_interp,centroid_shape_interp,latent_optimisation
for lax in none 4ch; do
    flag=(); [ "$lax" = none ] || flag=(--lax "$lax")
    cardiac-recon bench --source "$data/wholeheart_ct" --cases 4 --presets none,normal,severe --seeds 0,1,2 \
        --methods "$methods" "${flag[@]}" --output "$out/ct-lax-$lax"
    cardiac-recon bench --source phantom --cases 5 --presets none,normal,severe --seeds 0,1,2 \
        --methods "$methods" "${flag[@]}" --output "$out/phantom-lax-$lax"
done
