"""Canonical cardiac labels and the mapping of every input convention onto them.

Canonical labels (the only ones used inside the engine):
    0 background, 1 LV blood pool, 2 LV myocardium, 3 RV blood pool   (biventricular)
    4 LA blood pool, 5 RA blood pool, 6 aorta, 7 pulmonary artery      (whole heart adds these)

The whole-heart CT training data has the great vessels as *walls* only (open tubes, no lumen):
the cohort loader maps the aortic wall to 6 and the pulmonary artery wall to 7, so whole-heart
priors learn thin vessel stubs there, not filled lumens. The RV myocardium, atrial walls and
valve caps of the CT data have no canonical label and become background.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple

import numpy as np
from scipy import ndimage

from .errors import InputError

_SCT_ANATOMY = "SCT^123037004^Anatomical Structure"
_TERMINOLOGY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
_ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class Structure:
    label: int
    key: str  # short name, used for segment IDs, CSV columns and file names
    name: str  # segment name shown to users
    color: Tuple[float, float, float]  # 0..1
    snomed: Tuple[str, str]  # (code, meaning) of the anatomical type
    synonyms: Tuple[str, ...]

    @property
    def terminology(self) -> str:
        """Slicer terminology entry string (context~category~type~modifier~region context~...)."""
        code, meaning = self.snomed
        return f"{_TERMINOLOGY_CONTEXT}~{_SCT_ANATOMY}~SCT^{code}^{meaning}~^^~{_ANATOMIC_CONTEXT}~^^~^^"


STRUCTURES: Dict[int, Structure] = {s.label: s for s in (
    Structure(1, "LV", "LV blood pool", (0.86, 0.27, 0.24), ("87878005", "Left ventricle"),
              ("lv", "left ventricle", "lv cavity", "lv blood pool", "lv bloodpool", "left ventricular cavity",
               "left ventricle cavity", "lv endo", "lv endocardium", "lvbp", "lv bp", "left ventricular blood pool")),
    Structure(2, "MYO", "LV myocardium", (0.93, 0.75, 0.45), ("74281007", "Myocardium"),
              ("myo", "myocardium", "lv myocardium", "lv myo", "lvm", "lv wall", "left ventricular myocardium",
               "left ventricle myocardium", "myocardium of left ventricle", "heart muscle")),
    Structure(3, "RV", "RV blood pool", (0.29, 0.48, 0.85), ("53085002", "Right ventricle"),
              ("rv", "right ventricle", "rv cavity", "rv blood pool", "rv bloodpool", "right ventricular cavity",
               "right ventricle cavity", "rv endo", "rv endocardium", "rvbp", "rv bp")),
    Structure(4, "LA", "LA blood pool", (0.80, 0.45, 0.70), ("82471001", "Left atrium"),
              ("la", "left atrium", "la cavity", "la blood pool", "left atrial cavity")),
    Structure(5, "RA", "RA blood pool", (0.45, 0.75, 0.85), ("73829009", "Right atrium"),
              ("ra", "right atrium", "ra cavity", "ra blood pool", "right atrial cavity")),
    Structure(6, "AO", "Aorta", (0.90, 0.20, 0.50), ("15825003", "Aorta"),
              ("ao", "aorta", "ascending aorta", "aortic root")),
    Structure(7, "PA", "Pulmonary artery", (0.35, 0.70, 0.45), ("81040000", "Pulmonary artery"),
              ("pa", "pulmonary artery", "pulmonary trunk", "main pulmonary artery")),
)}

BIVENTRICULAR = (1, 2, 3)
WHOLE_HEART = (1, 2, 3, 4, 5, 6, 7)
LV, MYO, RV = 1, 2, 3

#: Input conventions: source label value -> canonical label.
CONVENTIONS: Dict[str, Dict[int, int]] = {
    "canonical": {i: i for i in WHOLE_HEART},
    "acdc": {1: RV, 2: MYO, 3: LV},
    "ukbb": {1: LV, 2: MYO, 3: RV, 4: RV},
    "mmwhs": {500: LV, 205: MYO, 600: RV, 420: 4, 550: 5, 820: 6, 850: 7},
    # The shared whole-heart CT cohort (Rodero et al. 2021); see the module docstring.
    "wholeheart_ct": {1: LV, 2: MYO, 3: RV, 4: 0, 5: 4, 6: 5, 7: 0, 8: 0, 9: 6, 10: 7, 11: 0},
}
CONVENTION_NAMES = ("auto",) + tuple(c for c in CONVENTIONS if c != "wholeheart_ct")


def _normalise(name: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[_\-.:/()]+", " ", name.lower())).strip()


_SYNONYMS = {_normalise(syn): s.label for s in STRUCTURES.values() for syn in (s.synonyms + (s.name, s.key))}


def label_for_segment_name(name: str) -> Optional[int]:
    """Canonical label for a segment name (case-insensitive synonyms), or None if unknown."""
    return _SYNONYMS.get(_normalise(name))


def mode_of(labels: Iterable[int]) -> str:
    """'wholeheart' when any structure beyond the ventricles is present, else 'biventricular'."""
    return "wholeheart" if any(int(l) > RV for l in labels) else "biventricular"


def present_labels(array: np.ndarray) -> Tuple[int, ...]:
    return tuple(int(v) for v in np.unique(array) if v != 0)


def apply_convention(array: np.ndarray, convention: str) -> np.ndarray:
    """Map a label array of the named convention onto canonical labels (uint8)."""
    if convention not in CONVENTIONS:
        raise InputError(f"Unknown label convention {convention!r}; expected one of {', '.join(CONVENTION_NAMES)}.")
    table = CONVENTIONS[convention]
    present = present_labels(array)
    unknown = [v for v in present if v not in table]
    if unknown:
        expected = ", ".join(f"{k}={STRUCTURES[v].key}" for k, v in table.items())
        raise InputError(f"Label values {unknown} are not part of the {convention!r} convention ({expected}).")
    lut = np.zeros(max(max(table), int(array.max()) if array.size else 0) + 1, dtype=np.uint8)
    for src, dst in table.items():
        lut[src] = dst
    return lut[array.astype(np.int64)]


def _enclosure_by_myocardium(array: np.ndarray, label: int) -> float:
    """Fraction of the in-plane boundary of ``label`` that touches label 2 (the myocardium in
    every 1-2-3 convention). The LV blood pool is ringed by myocardium; the RV is not."""
    mask = array == label
    if not mask.any():
        return 0.0
    footprint = np.zeros((1, 3, 3), bool)
    footprint[0, 1, :] = footprint[0, :, 1] = True
    ring = ndimage.binary_dilation(mask, footprint) & ~mask
    return float((array[ring] == 2).mean()) if ring.any() else 0.0


def detect_convention(array: np.ndarray) -> Tuple[str, str]:
    """Guess the label convention of ``array``; returns (name, explanation for the user)."""
    present = present_labels(array)
    if not present:
        raise InputError("The segmentation is empty: it contains no labelled voxels.")
    if set(present) <= set(CONVENTIONS["mmwhs"]):
        return "mmwhs", f"labels {list(present)} are MM-WHS values (500 LV, 205 MYO, 600 RV, ...)"
    if max(present) > 7:
        raise InputError(f"Cannot recognise the label values {list(present)}; expected 1-3 (ACDC/UK Biobank/"
                         "canonical), 1-7 (canonical whole heart) or MM-WHS values, or choose the convention.")
    if 2 not in present:
        return "canonical", (f"labels {list(present)} without a myocardium label 2; assumed canonical "
                             "(1 LV, 2 MYO, 3 RV)")
    if max(present) > 4:
        return "canonical", f"labels {list(present)} include whole-heart values; canonical (1 LV ... 7 PA)"
    if 4 in present and 3 not in present:
        return "ukbb", "label 4 without label 3: UK Biobank style (1 LV, 2 MYO, 4 RV)"
    e1, e3 = _enclosure_by_myocardium(array, 1), _enclosure_by_myocardium(array, 3)
    if e3 > e1:
        return "acdc", (f"label 3 is ringed by the myocardium ({e3:.0%} of its border vs {e1:.0%} for label 1): "
                        "ACDC order (1 RV, 2 MYO, 3 LV)")
    return "canonical", (f"label 1 is ringed by the myocardium ({e1:.0%} of its border vs {e3:.0%} for label 3): "
                         "canonical/UK Biobank order (1 LV, 2 MYO, 3 RV)")


def to_canonical(array: np.ndarray, convention: str = "auto") -> Tuple[np.ndarray, str]:
    """Canonical uint8 labels and a sentence saying which convention was used and why."""
    if convention == "auto":
        convention, why = detect_convention(array)
        message = f"label convention: {convention} (auto: {why})"
    else:
        message = f"label convention: {convention}"
    out = apply_convention(array, convention)
    if not out.any():
        raise InputError("The segmentation contains no cardiac structure after label mapping.")
    return out, message


def from_segment_names(names_to_values: Dict[str, int]) -> Dict[int, int]:
    """Mapping {source value: canonical label} from segment names; unknown names raise."""
    table, unknown = {}, []
    for name, value in names_to_values.items():
        lab = label_for_segment_name(name)
        if lab is None:
            unknown.append(name)
        else:
            table[int(value)] = lab
    if unknown:
        raise InputError(f"Unrecognised segment names {unknown}; expected names such as 'LV', 'left ventricle', "
                         "'myocardium', 'RV', 'LA', 'RA', 'aorta', 'pulmonary artery'.")
    return table
