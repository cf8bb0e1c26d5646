"""Canonical labels, conventions, segment-name synonyms and automatic detection."""

import numpy as np
import pytest

from CardiacReconstructionLib.core import labels as L
from CardiacReconstructionLib.core.errors import InputError
from conftest import ring_stack


def test_acdc_mapping_and_auto_detection():
    canonical = ring_stack().array
    acdc = np.select([canonical == 1, canonical == 3], [np.uint8(3), np.uint8(1)], canonical)  # swap LV and RV
    name, why = L.detect_convention(acdc)
    assert name == "acdc" and "ringed" in why
    mapped, message = L.to_canonical(acdc)
    np.testing.assert_array_equal(mapped, canonical)
    assert "acdc" in message


def test_canonical_detected_for_lv_first():
    name, _ = L.detect_convention(ring_stack().array)
    assert name == "canonical"


def test_ukbb_rv_label_4():
    a = ring_stack().array.copy()
    a[a == 3] = 4
    name, _ = L.detect_convention(a)
    assert name == "ukbb"
    assert set(np.unique(L.apply_convention(a, "ukbb"))) == {0, 1, 2, 3}


def test_mmwhs_values():
    a = np.zeros((2, 4, 4), np.int32)
    a[0, 0, 0], a[0, 1, 1], a[1, 2, 2], a[1, 3, 3] = 500, 205, 600, 850
    out, message = L.to_canonical(a)
    assert "mmwhs" in message
    assert (out[0, 0, 0], out[0, 1, 1], out[1, 2, 2], out[1, 3, 3]) == (1, 2, 3, 7)


@pytest.mark.parametrize("name, label", [("LV", 1), ("Left Ventricle", 1), ("lv_cavity", 1), ("LV-blood-pool", 1),
                                         ("Myocardium", 2), ("LV myocardium", 2), ("RV", 3), ("right ventricle", 3),
                                         ("Aorta", 6), ("Pulmonary artery", 7), ("liver", None)])
def test_segment_name_synonyms(name, label):
    assert L.label_for_segment_name(name) == label


def test_unknown_labels_and_names_are_explained():
    with pytest.raises(InputError, match=r"\[9\].*acdc"):
        L.apply_convention(np.array([[[0, 1, 9]]]), "acdc")
    with pytest.raises(InputError, match="Unrecognised segment names"):
        L.from_segment_names({"LV": 1, "spleen": 2})
    with pytest.raises(InputError, match="empty"):
        L.to_canonical(np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(InputError, match="Unknown label convention"):
        L.apply_convention(np.ones((1, 2, 2), np.uint8), "nope")


def test_structure_metadata_complete():
    for lab, s in L.STRUCTURES.items():
        assert s.label == lab and all(0 <= c <= 1 for c in s.color)
        assert s.terminology.count("~") == 6 and f"SCT^{s.snomed[0]}" in s.terminology
    assert L.mode_of((1, 2, 3)) == "biventricular" and L.mode_of((1, 4)) == "wholeheart"
