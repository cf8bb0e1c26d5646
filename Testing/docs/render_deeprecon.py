"""Render the README's picture of the images-in workflow (DeepRecon) on a held-out ACDC stack.

    python Testing/docs/render_deeprecon.py --output Resources/Screenshots/deeprecon.png

Rows: the real slice (heart-centred crop), its synthetic twin G(w+*) after the hybrid inversion,
the segmentation of the synthetic slice, and the slices DeepRecon synthesised between two real
slices 10 mm apart (latent interpolation; 2.5 mm steps). The patient is a validation patient
(number divisible by 5), never trained on; the ACDC spacing is assumed (1.5 x 1.5 x 10 mm).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

COLOURS = ListedColormap([(0, 0, 0, 0), (0.85, 0.2, 0.2, 0.55), (0.2, 0.75, 0.3, 0.55), (0.2, 0.4, 0.9, 0.55)])


def main() -> int:
    import torch

    from CardiacReconstructionLib.core.crops import sample_crops
    from CardiacReconstructionLib.methods import deeprecon as dr
    from CardiacReconstructionLib.training.cohort import ACDC_SPACING, acdc_image_volume, load_acdc

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--key", default="patient045_frame01")
    p.add_argument("--output", default="Resources/Screenshots/deeprecon.png")
    args = p.parse_args()
    torch.set_num_threads(1)
    lab = load_acdc(None, args.key)
    img = acdc_image_volume(args.key)
    G, _, _, seg = dr.networks("cpu")
    ws, crops, centres, _ = dr.invert_stack(img, lab, "cpu", dr.DEFAULT_STEPS)
    with torch.no_grad():
        synth = G(ws, "const")[:, 0].numpy()
    seg_synth = dr.crop_labels(seg, synth, "cpu")
    truth = sample_crops(lab.array, centres, ACDC_SPACING[:2], G.config.size, G.config.pixel_mm, labels=True)
    shows = np.flatnonzero(truth.reshape(len(truth), -1).any(1))
    mid = shows[max(0, len(shows) // 2 - 2): len(shows) // 2 + 3]
    k0 = int(mid[1])
    w, _ = dr.synthesise(ws, centres, np.linspace(k0, k0 + 1, 5))
    with torch.no_grad():
        between = G(w, "const")[:, 0].numpy()
    fig, ax = plt.subplots(4, 5, figsize=(10, 8.4))
    for a in ax.flat:
        a.axis("off")
    for c, k in enumerate(mid):
        ax[0, c].imshow(crops[k], cmap="gray", vmin=-1, vmax=1)
        ax[0, c].set_title(f"real slice {k}", fontsize=9)
        ax[1, c].imshow(synth[k], cmap="gray", vmin=-1, vmax=1)
        ax[1, c].set_title(f"G(w+*) slice {k}", fontsize=9)
        ax[2, c].imshow(synth[k], cmap="gray", vmin=-1, vmax=1)
        ax[2, c].imshow(seg_synth[k], cmap=COLOURS, vmin=0, vmax=3, interpolation="nearest")
        ax[2, c].contour(truth[k] > 0, levels=[0.5], colors="yellow", linewidths=0.6)
        ax[2, c].set_title("Seg of G(w+*) (yellow: truth)", fontsize=8)
    for c in range(5):
        ax[3, c].imshow(between[c], cmap="gray", vmin=-1, vmax=1)
        ax[3, c].set_title(f"slice {k0} + {2.5 * c:g} mm", fontsize=9)
    size_mm = G.config.size * G.config.pixel_mm
    ax[0, 0].plot([4, 4 + 20 / G.config.pixel_mm], [G.config.size - 5] * 2, color="white", lw=2)
    ax[0, 0].text(4, G.config.size - 8, "20 mm", color="white", fontsize=7)
    fig.suptitle(f"DeepRecon on held-out {args.key} ({size_mm:g} mm crops): real, inverted, segmented, "
                 "interpolated (red LV, green MYO, blue RV)", fontsize=10)
    fig.tight_layout()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=90)
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
