"""How Mask2Surface's denoiser re-aligns slices, and whether that helps: a diagnostic.

Why: on held-out CT and MRI-shaped hearts the latent denoiser improves MCSR-Net's surfaces, on
the procedural phantom it makes them worse (RESULTS.md). This script measures the part of its
change that moves whole slices. Per case: MCSR-Net -> C-SDG -> latent diffusion (the shipped
pipeline, same seed as the benchmark); the decoded change (refined SDG - C-SDG) is split per
surface-grid slice by least squares, on the voxels within 5 mm of a surface, into an in-plane
translation of the slice (the four surfaces together, ``change ~ -grad(C-SDG) . t``), one offset
per surface, and the rest. The same split of (truth SDG - C-SDG) is the translation each slice
*needed* (truth SDG: the truth labels' signed distance on the same surface grid; it also absorbs
any in-plane shape error that looks like a translation). Reported per source (means over cases):

* rms needed translation after MCSR-Net, and after adding the denoiser's translation (mm;
  weighted by each slice's surface voxels);
* cosine between the denoiser's per-slice translations and the needed ones (1: the right
  direction on every slice; below 0: the wrong one);
* Chamfer mean (mm, exact point-to-mesh, four surfaces) of MCSR-Net alone (its label mesh, as in
  the benchmark), the C-SDG's level sets, Mask2Surface, and Mask2Surface without its translation
  part.

Usage: python Testing/benchmarks/m2s_alignment.py [--sources ct,phantom,acdc] [--cases 4]
       [--seeds 0,1] [--preset normal]
(ct: held-out CT hearts; phantom: procedural phantoms; acdc: every third ACDC validation stack,
truth = its pseudo high-resolution shape. About 20 s per case on the 2-core CPU.)
"""

import argparse

import numpy as np

from CardiacReconstructionLib.evaluation import bench
from CardiacReconstructionLib.simulation.cases import make_case
from CardiacReconstructionLib.evaluation.metrics import chamfer_distance
from CardiacReconstructionLib.methods import mask2surface as m2s
from CardiacReconstructionLib.core.sdf import SURFACE_KEYS, label_sdgs, sdg_surface

NEAR_SURFACE_MM = 5.0


def slice_translations(condition, change, spacing_kji):
    """Per surface-grid slice k: the in-plane translation (j, i; mm) that best explains ``change``
    to the SDGs ``condition`` [S, k, j, i] (plus one offset per surface), its field, and the weight
    (number of near-surface voxels; 0 where too few to fit)."""
    grad_j = np.gradient(condition, axis=2) / spacing_kji[1]
    grad_i = np.gradient(condition, axis=3) / spacing_kji[2]
    n_surf, n_k = condition.shape[:2]
    t, weight = np.zeros((n_k, 2)), np.zeros(n_k)
    for k in range(n_k):
        near = np.abs(condition[:, k]) < NEAR_SURFACE_MM
        if near.sum() < 30:
            continue
        design = np.zeros((near.sum(), 2 + n_surf))
        design[:, 0], design[:, 1] = -grad_j[:, k][near], -grad_i[:, k][near]
        design[np.arange(near.sum()), 2 + np.nonzero(near)[0]] = 1.0
        t[k] = np.linalg.lstsq(design, change[:, k][near], rcond=None)[0][:2]
        weight[k] = near.sum()
    field = -(grad_j * t[None, :, 0, None, None] + grad_i * t[None, :, 1, None, None])
    return t, field, weight


def mean_chamfer(surfaces, truth):
    return float(np.mean([chamfer_distance(surfaces[k], truth[k], to_surface=True) for k in truth if k in surfaces]))


def level_sets(sdg, grid):
    return {k: sdg_surface(sdg[i], grid, smoothing_iterations=m2s.DEFAULT_SMOOTHING)
            for i, k in enumerate(SURFACE_KEYS)}


def analyse(anatomy, preset, seed, models):
    mcsr, vqvae, ldm = models
    clip = vqvae.config.clip_mm
    case = make_case(anatomy.truth, preset, seed=seed, slice_spacing=10.0, landmarks=anatomy.landmarks)
    truth = anatomy.truth_surfaces()
    (alone, _), = bench.run_methods(case, ["mask2surface"], float(anatomy.truth.spacing[2]), seed,
                                    {"mask2surface": {"refine": "none"}})
    hr = m2s.run_mcsr(mcsr, case.sax).hr_labels()
    grid = m2s.surface_grid(hr, vqvae.config.grid_shape, vqvae.config.spacing_mm)
    condition = np.clip(label_sdgs(hr, grid, clip), -clip, clip)
    change = m2s.refine_sdg(vqvae, ldm, condition, "diffusion", m2s.DEFAULT_DDIM_STEPS, seed) - condition
    needed = np.clip(label_sdgs(anatomy.truth, grid, clip), -clip, clip) - condition
    spacing_kji = np.asarray(grid.spacing, float)[::-1]
    t, t_field, w = slice_translations(condition, change, spacing_kji)
    t_needed, _, _ = slice_translations(condition, needed, spacing_kji)
    w = w / w.sum()

    def rms(v):
        return float(np.sqrt((w * (v ** 2).sum(1)).sum()))

    return dict(
        rms_needed=rms(t_needed), rms_after=rms(t_needed - t),
        cosine=float((w * (t * t_needed).sum(1)).sum() / (rms(t) * rms(t_needed) + 1e-12)),
        chamfer_mcsr=mean_chamfer(bench.result_surfaces(alone), truth),
        chamfer_csdg=mean_chamfer(level_sets(condition, grid), truth),
        chamfer_m2s=mean_chamfer(level_sets(condition + change, grid), truth),
        chamfer_m2s_no_translation=mean_chamfer(level_sets(condition + change - t_field, grid), truth))


def anatomies(source, n):
    if source == "ct":
        return list(bench.cohort_anatomies(None, n))
    if source == "phantom":
        return list(bench.phantom_anatomies(n))
    return bench.acdc_anatomies(n, every=3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", default="ct,phantom,acdc")
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--preset", default="normal")
    args = p.parse_args()
    models = m2s.load_models()
    seeds = [int(s) for s in args.seeds.split(",")]
    columns = ("rms_needed", "rms_after", "cosine", "chamfer_mcsr", "chamfer_csdg", "chamfer_m2s",
               "chamfer_m2s_no_translation")
    print(f"preset `{args.preset}`, seeds {seeds}\n\n| source (cases) | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for source in bench.parse_list(args.sources, "--sources", ("ct", "phantom", "acdc")):
        rows = [analyse(a, args.preset, s, models) for a in anatomies(source, args.cases) for s in seeds]
        print(f"| {source} ({len(rows)}) | " + " | ".join(f"{np.mean([r[c] for r in rows]):.3f}" for c in columns)
              + " |", flush=True)


if __name__ == "__main__":
    main()
