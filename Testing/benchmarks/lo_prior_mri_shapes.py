"""Encode -> decode Dice of the latent-optimisation prior on MRI-shaped hearts it never trained on.

The "MRI-shaped validation" of the `lo_vae` model card: every second ED/ES stack of the ACDC
validation patients, its pseudo high-resolution shape (``cohort.acdc_pseudo_hr``: centroid
alignment + shape-based interpolation, an approximation) placed on the prior grid by the same
stack-derived frame inference uses (stacks that cannot be placed are skipped and counted), then
encoded and decoded with z = mu (:func:`..training.lo.validate`).

Usage: python Testing/benchmarks/lo_prior_mri_shapes.py [WEIGHTS ...]   (default: the shipped lo_vae)
"""

import sys

import numpy as np

from CardiacReconstructionLib.training.cohort import acdc_pseudo_hr, acdc_split, load_acdc
from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.methods.latent_optimisation import labels_on_prior_grid, load_prior
from CardiacReconstructionLib.training.lo import validate


def main() -> None:
    for source in sys.argv[1:] or ["lo_vae"]:
        model = load_prior(source)
        shapes, skipped = [], 0
        for key in acdc_split(None, "val")[::2]:
            sax = load_acdc(None, key)
            try:
                shapes.append(labels_on_prior_grid(acdc_pseudo_hr(sax), sax, model.config))
            except InputError:
                skipped += 1
        v = validate(model, np.stack(shapes).astype(np.uint8))
        print(f"{source}: {len(shapes)} shapes ({skipped} skipped), Dice LV {v['dice_LV']:.3f} "
              f"MYO {v['dice_MYO']:.3f} RV {v['dice_RV']:.3f}, KL {v['kl_nats']:.0f} nats", flush=True)


if __name__ == "__main__":
    main()
