#!/usr/bin/env bash
# The foundation benchmark behind RESULTS.md: every registered method on 5 phantom hearts and on
# the 4 held-out (validation-split) CT hearts, each degraded with several presets and 3 seeds.
# Usage: Testing/benchmarks/baselines.sh [OUTPUT_FOLDER]   (about 3 minutes on 2 CPU cores)
set -euo pipefail
out=${1:-cardiac-recon-bench}
data=${CARDIAC_RECON_DATA:-$(dirname "$0")/../../../shared/data}
cardiac-recon bench --source phantom --cases 5 --presets none,normal,severe --seeds 0,1,2 --output "$out/phantom"
cardiac-recon bench --source "$data/wholeheart_ct" --cases 4 \
    --presets none,normal,severe,mcsr,mask2surface,stacom --seeds 0,1,2 --output "$out/ct"
