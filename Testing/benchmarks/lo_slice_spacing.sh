#!/usr/bin/env bash
# Latent optimisation at slice spacings other than the 10 mm of the main benchmark (6-16 mm: from
# ~21 down to ~8 slices), normal motion, against centroid_shape_interp, with the empty-slice
# weight of the objective at 0 (its earlier default) and at its default: the check behind that
# default (see RESULTS.md). Phantoms (3 hearts x seeds 0,1) and held-out CT hearts (4 x seed 0).
# Usage: Testing/benchmarks/lo_slice_spacing.sh [OUTPUT_FOLDER]   (about 15 minutes on 2 CPU cores)
set -euo pipefail
out=${1:-cardiac-recon-bench-lo-spacing}
data=${CARDIAC_RECON_DATA:-$(dirname "$0")/../../../shared/data}
methods="centroid_shape_interp,latent_optimisation[empty_slice_weight=0.0],latent_optimisation"
for sp in 6 8 13 16; do
    cardiac-recon bench --source phantom --cases 3 --presets normal --seeds 0,1 --slice-spacing "$sp" \
        --methods "$methods" --output "$out/phantom-$sp"
done
for sp in 7 13; do
    cardiac-recon bench --source "$data/wholeheart_ct" --cases 4 --presets normal --seeds 0 --slice-spacing "$sp" \
        --methods "$methods" --output "$out/ct-$sp"
done
