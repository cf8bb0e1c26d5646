#!/usr/bin/env bash
# The DeepWHR (dsl_asv) benchmark behind its RESULTS.md section.
#   1. `cardiac-recon bench`: the 4 held-out CT hearts and 5 phantoms, presets none, normal,
#      severe, stacom, 3 seeds, every registered method (baselines, latent optimisation when
#      installed, dsl_asv).
#   2. The paper's ablation (SR without motion correction / centroid alignment + SR / DSL + SR)
#      with ASV as the SR stage, on the same hearts, presets normal, severe, stacom.
#   3. Whole-heart mode (LV, MYO, RV, LA, RA, aorta, pulmonary artery): the CT hearts resliced on
#      a 240 mm slab and whole-heart phantoms, presets normal and severe.
# Usage: Testing/benchmarks/dsl_asv_bench.sh [OUTPUT_FOLDER] [METHODS]
#   METHODS defaults to 'all'; e.g. nearest,linear,shape_interp,centroid_shape_interp,dsl_asv
# Time on 2 busy CPU cores: about 50 minutes without latent optimisation (bench 8 min, ablation
# 30 min, whole heart 10 min); latent optimisation adds about 45 s per case.
set -euo pipefail
out=${1:-cardiac-recon-bench-dsl-asv}
methods=${2:-all}
data=${CARDIAC_RECON_DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/data}
export CARDIAC_RECON_DATA=$data

cardiac-recon bench --source "$data/wholeheart_ct" --cases 4 --presets none,normal,severe,stacom --seeds 0,1,2 \
    --methods "$methods" --output "$out/ct"
cardiac-recon bench --source phantom --cases 5 --presets none,normal,severe,stacom --seeds 0,1,2 \
    --methods "$methods" --output "$out/phantom"

python - "$out" <<'EOF'
"""Ablation (paper Table 4 shape) and whole-heart mode; writes ablation.md / wholeheart.md."""
import sys
from pathlib import Path

from CardiacReconstructionLib import methods
from CardiacReconstructionLib.evaluation.bench import (Anatomy, cohort_anatomies, phantom_anatomies, run_methods,
                                            summary_markdown, write_rows_csv)
from CardiacReconstructionLib.training.cohort import load_subject, read_shape, split
from CardiacReconstructionLib.simulation.cases import make_case

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
SEEDS = (0, 1, 2)
VARIANTS = {  # label -> (method, options)
    "nearest": ("nearest", {}),
    "centroid_shape_interp": ("centroid_shape_interp", {}),
    "ASV, no motion correction": ("dsl_asv", {"correction": "none"}),
    "centroid alignment + ASV": ("dsl_asv", {"correction": "centroid"}),
    "DSL (shift) + ASV [default]": ("dsl_asv", {"correction": "shift"}),
    "DSL (network output) + ASV": ("dsl_asv", {"correction": "network"}),
}


def run(anatomies, presets, variants, tag):
    rows = []
    for anatomy in anatomies:
        for preset in presets:
            for seed in SEEDS:
                case = make_case(anatomy.truth, preset, seed=seed, slice_spacing=10.0)
                hr = float(anatomy.truth.spacing[2])
                for label, (name, options) in variants.items():
                    (_, metrics), = run_methods(case, [name], hr, seed, method_options={name: options})
                    rows.append(dict(case=anatomy.name, preset=preset, seed=seed, method=label, **metrics))
        print(f"{tag}: {anatomy.name} done", file=sys.stderr)
    return rows


for source, anatomies in (("ct", list(cohort_anatomies(None))), ("phantom", list(phantom_anatomies(5)))):
    rows = run(anatomies, ("normal", "severe", "stacom"), VARIANTS, f"ablation {source}")
    write_rows_csv(rows, out / f"ablation_{source}.csv")
    (out / f"ablation_{source}.md").write_text(summary_markdown(rows))

WH_METRICS = ("dice_LV", "dice_MYO", "dice_RV", "dice_LA", "dice_RA", "dice_AO", "dice_PA", "dice_mean",
              "assd_mean", "displacement_error_mean_removed_mm")
wh_ct = [Anatomy(Path(p).stem, load_subject(p, grid_shape=(120, 128, 128), mode="wholeheart"),
                 read_shape(p).landmarks) for p in split(None, "val")]
wh_ph = list(phantom_anatomies(3, mode="wholeheart"))
wh_variants = {m: (m, {}) for m in ("nearest", "shape_interp", "centroid_shape_interp", "dsl_asv")}
for source, anatomies in (("ct", wh_ct), ("phantom", wh_ph)):
    rows = run(anatomies, ("normal", "severe"), wh_variants, f"whole heart {source}")
    write_rows_csv(rows, out / f"wholeheart_{source}.csv")
    (out / f"wholeheart_{source}.md").write_text(summary_markdown(rows, WH_METRICS))
print(f"wrote {out}/ablation_*.md and wholeheart_*.md")
EOF
