"""What a reconstruction works on: a SAX stack, optional LAX views, image and ground truth.

Displacement convention: ``displacements[k] = (dx, dy)`` in mm along the SAX stack's i and j
axis directions means the content of slice k appears moved by ``+(dx, dy)`` relative to the
true anatomy (the observed slice at point p shows the truth at p - d). Correcting a slice means
shifting it by ``-(dx, dy)``. Methods estimate d; the simulator returns the true d.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from .errors import InputError
from .geometry import Volume
from .labels import mode_of, present_labels

LAX_VIEWS = ("2ch", "3ch", "4ch")


@dataclass
class LaxView:
    """One long-axis segmentation: a single-slice label volume with its own pose."""

    view: str  # '2ch', '3ch' or '4ch'
    labels: Volume

    def __post_init__(self):
        if self.view not in LAX_VIEWS:
            raise InputError(f"Unknown long-axis view {self.view!r}; expected one of {', '.join(LAX_VIEWS)}.")
        if self.labels.shape[0] != 1:
            raise InputError(f"A long-axis view must be a single slice; the {self.view} view has "
                             f"{self.labels.shape[0]} slices.")


@dataclass
class Case:
    """A reconstruction problem; ``truth`` and ``true_displacements`` only for evaluation."""

    sax: Volume
    lax: List[LaxView] = field(default_factory=list)
    image: Optional[Volume] = None
    truth: Optional[Volume] = None
    true_displacements: Optional[np.ndarray] = None
    name: str = "case"
    info: Dict = field(default_factory=dict)

    def __post_init__(self):
        validate_sax(self.sax)
        if self.image is not None and self.image.shape != self.sax.shape:
            raise InputError(f"The SAX image {self.image.shape} and segmentation {self.sax.shape} "
                             "must share one grid (k, j, i).")
        for view in self.lax:
            check_lax_pose(self.sax, view)
        if self.true_displacements is not None:
            d = np.asarray(self.true_displacements, float)
            if d.shape != (self.sax.shape[0], 2):
                raise InputError(f"True displacements must be (n_slices, 2) = ({self.sax.shape[0]}, 2), got {d.shape}.")
            self.true_displacements = d

    @property
    def mode(self) -> str:
        return mode_of(present_labels(self.sax.array))

    @property
    def n_slices(self) -> int:
        return self.sax.shape[0]


def validate_sax(sax: Volume) -> None:
    """Raise InputError unless ``sax`` is a usable canonical-label SAX stack."""
    if not sax.is_label:
        raise InputError(f"The SAX input must be a label map (integer voxels), got {sax.array.dtype} voxels.")
    if sax.shape[0] < 2:
        raise InputError(f"The SAX stack has {sax.shape[0]} slice; at least 2 slices (k axis) are needed.")
    present = present_labels(sax.array)
    if not present:
        raise InputError("The SAX segmentation is empty: it contains no labelled voxels.")
    if max(present) > 7 or min(present) < 0:
        raise InputError(f"The SAX stack holds non-canonical labels {list(present)}; map it with "
                         "labels.to_canonical first (1 LV, 2 MYO, 3 RV, 4 LA, 5 RA, 6 AO, 7 PA).")


def check_lax_pose(sax: Volume, lax: LaxView) -> None:
    """Raise InputError when a long-axis view cannot belong to the SAX stack: its plane must
    contain the long axis (so it is roughly perpendicular to the SAX slices) and its labelled
    region must cross the stack's slab."""
    sax_geo, lax_geo = sax.geometry, lax.labels.geometry
    normal = lax_geo.direction[:, 2]
    k_axis = sax_geo.direction[:, 2]
    angle = np.degrees(np.arccos(min(1.0, abs(float(normal @ k_axis)))))
    if angle < 45:
        raise InputError(f"The {lax.view} long-axis view is nearly parallel to the SAX slices (its plane is "
                         f"{90 - angle:.0f} degrees from the long axis); check that its pose (header) is right.")
    kji = np.argwhere(lax.labels.array > 0)
    if len(kji) == 0:
        raise InputError(f"The {lax.view} long-axis view is empty.")
    ijk_in_sax = sax_geo.ras_to_index(lax_geo.index_to_ras(kji[:, ::-1].astype(float)))
    n_k, n_j, n_i = sax_geo.shape
    inside = ((ijk_in_sax[:, 0] >= -0.5) & (ijk_in_sax[:, 0] <= n_i - 0.5) & (ijk_in_sax[:, 1] >= -0.5)
              & (ijk_in_sax[:, 1] <= n_j - 0.5) & (ijk_in_sax[:, 2] >= -0.5) & (ijk_in_sax[:, 2] <= n_k - 0.5))
    if inside.mean() < 0.25:
        raise InputError(f"The {lax.view} long-axis view does not overlap the SAX stack (only {inside.mean():.0%} "
                         "of its labelled pixels lie inside the stack); its pose does not match the SAX images.")


#: An "image" with at most this many distinct integer values is a label map.
LABEL_LIKE_VALUES = 8


def check_image_stack(image, what: str) -> None:
    """Refuse, in one line, an image given without its segmentation that cannot be a cine SAX
    stack: a single 2D slice (any axis of one voxel; refused before the slice axis is looked for,
    which would otherwise talk about spacings), or voxels of a label map (a few integer values,
    whatever the file's data type: label maps are often saved as float). ``what`` names it."""
    if min(image.shape) < 2:
        raise InputError(f"{what} is a single 2D slice (shape {tuple(image.shape)}, k, j, i); expected a 3D "
                         "short-axis stack of at least 2 slices.")
    arr = np.asarray(image.array)
    sample = arr.reshape(-1)[:: max(1, arr.size // 200000)]
    sample = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
    if sample.size and np.all(sample == np.round(sample)) and np.unique(sample).size <= LABEL_LIKE_VALUES:
        raise InputError(f"{what} holds only the integer values {np.unique(sample).astype(int).tolist()}, like a "
                         "label map; expected the cine MR image (give a segmentation with --input instead).")
