"""Fuzzing ``cardiac-recon run`` with real files: every generated file is read right or refused.

Hypothesis draws a label stack (2-8 slices of 8-24 x 8-24 pixels), its voxel sizes, a random
oblique pose (a rotation, sometimes a reflection), the file axis the slices run along (i, j or k;
:func:`CardiacReconstructionLib.core.axes.restore_axes` of the working order), the label set and
convention (canonical with or without the whole-heart labels, ACDC, UK Biobank, MM-WHS, passed
as ``--convention``; for .seg.nrrd, segment names with canonical or MM-WHS label values) and the
voxel type, for each file format (.nii.gz, .nrrd, .seg.nrrd, .mha), clean or with one fault: the
header faults core/header.py refuses, truncation, NaN, negative or no labels, one slice, voxel
sizes beyond the limits (:data:`FAULT_CASES`: each (format, fault) pair is its own test, so every
fault gets its examples). Each example is written by the engine's writers (or slicerio), the fault
patched into its bytes, and the file run through ``main(["run", ..., "--method", "nearest",
"--no-surfaces"])`` (surfaces are skipped: they do not depend on the file).

The property: a clean file runs (status 0) and its ``labels.seg.nrrd``, read back with slicerio
(not the engine's reader) and looked up by physical position, holds the input's canonical label
at the centre of every input voxel; the output's slab is the input's (half a slice beyond the
first and last slice centres, along the file's own slice axis) and its in-plane axes are the
input's. So does a NIfTI whose qform is 0.3 mm off its sform (ITK's choice, the sform, is used
and a 'SAX:' note says so). A faulty file exits with status 2 and one line on stderr (after any
'SAX:' lines), the output folder does not exist and no staging folder is left. Either way the
input's bytes are unchanged. stderr is captured at the file descriptor (what ITK prints from C++
counts).

Examples per run (``deadline=None``, the first SimpleITK call is slow; no example database, so
nothing is written into the repository): 100 clean files per format and 10 per (format, fault),
46 pairs: 860 examples, of which 410 ran (100 per format, plus 10 NIfTI with the 0.3 mm qform)
and 450 were refused (.nii.gz 140, .mha 120, .nrrd 100, .seg.nrrd 90). Three runs on the 2-core
development machine, other work sharing it: 10.9 / 12.9 / 12.9 s (12-14 s with pytest's start).
FUZZ_CLEAN_EXAMPLES and FUZZ_FAULT_EXAMPLES set other numbers; the counts are printed
(``pytest -s``) and recorded as hypothesis events (``--hypothesis-show-statistics``).
"""

import collections
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import slicerio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from CardiacReconstructionLib.core import io
from CardiacReconstructionLib.core.axes import order_with_slices_last, restore_axes
from CardiacReconstructionLib.core.geometry import LPS_TO_RAS, Volume, make_ijk_to_ras
from CardiacReconstructionLib.core.labels import CONVENTIONS
from faulty_files import mha_field, nifti_fields, nrrd_field, patch_mha, patch_nifti, patch_nrrd, run_cli

#: Examples per format of clean files, and per (format, fault) of faulty ones.
CLEAN_EXAMPLES = int(os.environ.get("FUZZ_CLEAN_EXAMPLES", 100))
FAULT_EXAMPLES = int(os.environ.get("FUZZ_FAULT_EXAMPLES", 10))
SETTINGS = dict(deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

FORMATS = (".nii.gz", ".nrrd", ".seg.nrrd", ".mha")
#: Faults every format can carry (built into the volume before writing).
COMMON_FAULTS = ("pixel_too_small", "slices_too_far", "nan_voxel", "negative_label", "empty", "single_slice")
#: Faults patched into the header or bytes of one format.
FORMAT_FAULTS = {
    ".nii.gz": ("pixdim_zero", "pixdim_nan", "pixdim_negative", "srow_nan", "sform_sheared", "poses_apart",
                "quatern_nan", "truncated", "poses_near"),
    ".nrrd": ("directions_sheared", "direction_zero", "origin_nan", "truncated"),
    ".seg.nrrd": ("directions_sheared", "origin_nan", "sizes_broken", "truncated"),
    ".mha": ("matrix_sheared", "matrix_scaled", "spacing_zero", "spacing_negative", "offset_nan", "truncated"),
}
#: Canonical label -> its value in each file convention (whole-heart labels only where defined).
TO_CONVENTION = {name: {canon: value for value, canon in table.items()}
                 for name, table in CONVENTIONS.items() if name in ("canonical", "acdc", "mmwhs")}
TO_CONVENTION["ukbb"] = {1: 1, 2: 2, 3: 4}
SEGMENT_NAMES = {1: "left ventricle", 2: "myocardium", 3: "right ventricle", 4: "left atrium", 5: "right atrium",
                 6: "aorta", 7: "pulmonary artery"}

#: Header oddities that must not stop a run: the qform 0.3 mm off the sform (ITK takes the sform,
#: sform_code 1, and a 'SAX:' note says so).
BENIGN = ("poses_near",)

COUNTS = collections.Counter()


def faults_of(fmt: str):
    common = tuple(f for f in COMMON_FAULTS if not (fmt == ".seg.nrrd" and f == "nan_voxel"))  # integer voxels
    return common + FORMAT_FAULTS[fmt]


#: (format, fault) pairs: every fault of every format gets its own examples (hypothesis' own
#: choice among ~40 faults would crowd the first few).
FAULT_CASES = [(fmt, fault) for fmt in FORMATS for fault in faults_of(fmt)]


@st.composite
def examples(draw, fmt: str, fault):
    n_slices = draw(st.integers(2, 8))
    n_j, n_i = draw(st.integers(8, 24)), draw(st.integers(8, 24))
    pixel = draw(st.floats(0.6, 2.5))
    pixel_j = pixel * draw(st.floats(1.0, 1.15))
    slice_spacing = draw(st.floats(1.5 * pixel_j, 12.0))
    if fmt == ".seg.nrrd":
        convention = "names"
        values = draw(st.sampled_from(("canonical", "mmwhs")))
    else:
        convention = values = draw(st.sampled_from(("canonical", "acdc", "ukbb", "mmwhs")))
    whole_heart = values in ("canonical", "mmwhs") and draw(st.booleans())
    big = values == "mmwhs"
    dtype = draw(st.sampled_from(("uint16", "int32", "float32") if big else ("uint8", "int16", "uint16", "float32")))
    return dict(fmt=fmt, fault=fault, shape=(n_slices, n_j, n_i), spacing=(pixel, pixel_j, slice_spacing),
                rotation=draw(st.integers(0, 2 ** 32 - 1)), reflect=draw(st.booleans()),
                origin=tuple(draw(st.floats(-200.0, 200.0)) for _ in range(3)),
                slice_axis=draw(st.sampled_from((0, 1, 2))),
                convention=convention, values=values, whole_heart=whole_heart, dtype=dtype,
                seed=draw(st.integers(0, 2 ** 16)))


def _canonical_stack(shape, whole_heart: bool, seed: int) -> np.ndarray:
    """LV (1) in a MYO ring (2) with the RV (3) beside it, moving from slice to slice; whole-heart
    labels 4-7 as small blobs in the corners of the first slices."""
    rng = np.random.default_rng(seed)
    n_k, n_j, n_i = shape
    j, i = np.mgrid[0:n_j, 0:n_i].astype(float)
    out = np.zeros(shape, np.uint8)
    for k in range(n_k):
        ci, cj = n_i * rng.uniform(0.3, 0.5), n_j * rng.uniform(0.35, 0.65)
        r = min(n_i, n_j) * rng.uniform(0.15, 0.25)
        rho = np.hypot(i - ci, j - cj)
        out[k][np.hypot(i - (ci + 1.7 * r), j - cj) < 0.8 * r] = 3
        out[k][rho < r] = 2
        out[k][rho < 0.55 * r] = 1
    out[0, 1, 1] = 1  # every label present at least once, even on the smallest grid
    out[0, 1, 3] = 2
    out[0, 3, 1] = 3
    if whole_heart:
        for label, (jj, ii) in zip((4, 5, 6, 7), ((0, 0), (0, n_i - 2), (n_j - 2, 0), (n_j - 2, n_i - 2))):
            out[min(label - 4, n_k - 1), jj:jj + 2, ii:ii + 2] = label
    return out


def _file_volume(ex):
    """The file's volume (axes in file order) and its canonical labels, per the example."""
    shape, spacing = list(ex["shape"]), list(ex["spacing"])
    fault = ex["fault"]
    if fault == "single_slice":
        shape[0] = 1
    if fault == "pixel_too_small":
        spacing[0] = 0.02
    if fault == "slices_too_far":
        spacing[2] = 150.0
    canon = _canonical_stack(shape, ex["whole_heart"], ex["seed"])
    if fault == "empty":
        canon[:] = 0
    direction = Rotation.random(random_state=ex["rotation"]).as_matrix()
    if ex["reflect"]:
        direction[:, 0] *= -1
    working = Volume(canon, make_ijk_to_ras(spacing, ex["origin"], direction))  # slices along k
    order = order_with_slices_last(ex["slice_axis"])
    in_file = restore_axes(working, order)  # slices along the file's slice_axis
    return in_file, order


def _write(ex, volume: Volume, folder: Path) -> Path:
    path = folder / f"sax{ex['fmt']}"
    canon = volume.array
    table = TO_CONVENTION[ex["values"]]
    values = np.zeros(canon.shape, np.int64)
    for label, value in table.items():
        values[canon == label] = value
    if ex["fmt"] == ".seg.nrrd":
        present = sorted(int(v) for v in np.unique(canon) if v)
        segments = [{"id": f"s{label}", "name": SEGMENT_NAMES[label], "labelValue": int(table[label]), "layer": 0,
                     "color": [0.5, 0.5, 0.5]} for label in present]
        voxels = np.ascontiguousarray(values.astype(np.int32 if ex["fault"] == "negative_label" else np.uint16)
                                      .transpose(2, 1, 0))
        if ex["fault"] == "negative_label":
            voxels.flat[0] = -1
        slicerio.write_segmentation(str(path), {"voxels": voxels, "ijkToLPS": LPS_TO_RAS @ volume.ijk_to_ras,
                                                "segments": segments,
                                                "containedRepresentationNames": ["Binary labelmap"],
                                                "masterRepresentation": "Binary labelmap"})
        return path
    array = values.astype(ex["dtype"])
    if ex["fault"] == "nan_voxel":
        array = array.astype(np.float32)
        array.flat[len(array.flat) // 2] = np.nan
    if ex["fault"] == "negative_label":
        array = array.astype(np.int32)
        array.flat[0] = -1
    return io.write_volume(volume.with_array(array), path)


def _shear(columns: np.ndarray) -> np.ndarray:
    """The same axes with j tilted towards i (unit lengths kept): a sheared grid."""
    out = np.array(columns, float)
    tilted = out[:, 1] / np.linalg.norm(out[:, 1]) + 0.5 * out[:, 0] / np.linalg.norm(out[:, 0])
    out[:, 1] = tilted / np.linalg.norm(tilted) * np.linalg.norm(out[:, 1])
    return out


def _vectors(text: str) -> np.ndarray:
    """NRRD '(a,b,c) (d,e,f) ...' -> columns."""
    return np.array([[float(v) for v in part.strip("()").split(",")] for part in text.split()]).T


def _nrrd_vectors(columns: np.ndarray) -> str:
    return " ".join("(" + ",".join(f"{v:.17g}" for v in col) + ")" for col in columns.T)


def _patch(ex, path: Path) -> None:
    """Put the example's format fault into the written file."""
    fault = ex["fault"]
    if fault == "truncated":  # the header kept, half the voxel bytes cut off (.nii.gz: half the stream)
        data = path.read_bytes()
        if ex["fmt"].endswith("nrrd"):
            start = data.find(b"\n\n") + 2
        elif ex["fmt"] == ".mha":
            start = data.find(b"\n", data.find(b"ElementDataFile")) + 1
        else:
            start = 0
        path.write_bytes(data[: start + (len(data) - start) // 2])
        return
    if ex["fmt"] == ".nii.gz":
        if fault == "pixdim_zero":
            patch_nifti(path, pixdim={3: 0.0})
        elif fault == "pixdim_nan":
            patch_nifti(path, pixdim={1: math.nan})
        elif fault == "pixdim_negative":
            patch_nifti(path, pixdim={2: -1.0})
        elif fault == "srow_nan":
            patch_nifti(path, srow={7: math.nan})
        elif fault == "quatern_nan":
            patch_nifti(path, quatern={4: math.nan})
        elif fault == "poses_near":
            patch_nifti(path, quatern={3: nifti_fields(path)["quatern"][3] + 0.3})
        elif fault in ("sform_sheared", "poses_apart"):
            rows = np.array(nifti_fields(path)["srow"], float).reshape(3, 4)
            if fault == "sform_sheared":
                rows[:, :3] = _shear(rows[:, :3])
            else:
                rows[:, 3] += 3.0  # 5.2 mm from the qform
            patch_nifti(path, srow=tuple(rows.ravel()))
    elif ex["fmt"] in (".nrrd", ".seg.nrrd"):
        if fault == "directions_sheared":
            patch_nrrd(path, "space directions", _nrrd_vectors(_shear(_vectors(nrrd_field(path, "space directions")))))
        elif fault == "direction_zero":
            columns = _vectors(nrrd_field(path, "space directions"))
            columns[:, 2] = 0
            patch_nrrd(path, "space directions", _nrrd_vectors(columns))
        elif fault == "origin_nan":
            patch_nrrd(path, "space origin", "(nan,0,0)")
        elif fault == "sizes_broken":
            patch_nrrd(path, "sizes", nrrd_field(path, "sizes").rsplit(" ", 1)[0])
    elif ex["fmt"] == ".mha":
        if fault in ("matrix_sheared", "matrix_scaled"):
            columns = np.array(mha_field(path, "TransformMatrix").split(), float).reshape(3, 3).T
            columns = _shear(columns) if fault == "matrix_sheared" else columns * 2
            patch_mha(path, "TransformMatrix", " ".join(f"{v:.17g}" for v in columns.T.ravel()))
        elif fault == "spacing_zero":
            patch_mha(path, "ElementSpacing", "0 " + mha_field(path, "ElementSpacing").split(" ", 1)[1])
        elif fault == "spacing_negative":
            patch_mha(path, "ElementSpacing", "-" + mha_field(path, "ElementSpacing"))
        elif fault == "offset_nan":
            patch_mha(path, "Offset", "nan " + mha_field(path, "Offset").split(" ", 1)[1])


def _check_output(out: Path, volume: Volume, axis: int) -> None:
    """The nearest result, read back with slicerio: the input's label at every input voxel centre,
    the input's slab along the file's slice axis ``axis``, the input's in-plane axes."""
    seg = slicerio.read_segmentation(str(out / "labels.seg.nrrd"))
    voxels = np.asarray(seg["voxels"])  # [i, j, k]
    m_out = LPS_TO_RAS @ np.asarray(seg["ijkToLPS"], float)
    m_in = volume.ijk_to_ras
    shape_in = volume.shape[::-1]  # i, j, k
    assert voxels.ndim == 3, voxels.shape
    for a in range(3):
        if a != axis:
            assert voxels.shape[a] == shape_in[a]
            np.testing.assert_allclose(m_out[:3, a], m_in[:3, a], atol=1e-4)
    # the slab: half a slice beyond the first and last slice centres, on either grid
    for end_in, end_out in ((-0.5, -0.5), (shape_in[axis] - 0.5, voxels.shape[axis] - 0.5)):
        e_in, e_out = np.zeros(4), np.zeros(4)
        e_in[3] = e_out[3] = 1
        e_in[axis], e_out[axis] = end_in, end_out
        np.testing.assert_allclose(m_out @ e_out, m_in @ e_in, atol=2e-3)
    # the labels at every input voxel centre
    ijk = np.argwhere(np.ones(shape_in, bool)).astype(float)
    ras = ijk @ m_in[:3, :3].T + m_in[:3, 3]
    inv = np.linalg.inv(m_out)
    q = ras @ inv[:3, :3].T + inv[:3, 3]
    idx = np.rint(q).astype(int)
    in_plane = [a for a in range(3) if a != axis]
    assert np.abs(q - idx)[:, in_plane].max() < 1e-2  # the in-plane grids coincide
    assert np.all(idx >= 0) and np.all(idx < np.array(voxels.shape))
    got = voxels[idx[:, 0], idx[:, 1], idx[:, 2]]
    want = volume.array.transpose(2, 1, 0)[tuple(ijk.astype(int).T)]
    np.testing.assert_array_equal(got, want)


def _run_example(ex, capfd) -> str:
    """Write, damage and run one example; check the property; returns 'ran' or 'refused'."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        volume, order = _file_volume(ex)
        path = _write(ex, volume, folder / "in")
        _patch(ex, path)
        before = path.read_bytes()
        out = folder / "out"
        extra = [] if ex["convention"] == "names" else ["--convention", ex["convention"]]
        rc, rest, err = run_cli(path, out, capfd, extra=extra)
        assert path.read_bytes() == before
        if ex["fault"] is None or ex["fault"] in BENIGN:
            assert rc == 0, err
            _check_output(out, volume, order[2])
            if ex["fault"] in BENIGN:
                assert any(line.startswith("SAX:") and "using the sform (ITK's choice)" in line for line in err)
            outcome = "ran"
        else:
            assert rc == 2, (ex["fault"], err)
            assert len(rest) == 1 and rest[0].startswith("cardiac-recon run: error: "), (ex["fault"], err)
            assert not out.exists()
            assert sorted(p.name for p in folder.iterdir()) == ["in"]
            outcome = "refused"
    COUNTS[outcome] += 1
    COUNTS[f"{outcome} {ex['fmt']}"] += 1
    event(f"{outcome} {ex['fmt']}")
    return outcome


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    """Print how many examples ran and were refused (``pytest -s``), per format."""
    COUNTS.clear()
    yield
    print(f"\nfuzz examples: {dict(sorted(COUNTS.items()))}")


def _outcomes(fmt, fault, max_examples, capfd):
    """The outcome of every generated example of ``fmt`` with ``fault`` (None: a clean file)."""
    runs = []

    @settings(max_examples=max_examples, **SETTINGS)
    @given(ex=examples(fmt, fault))
    def check(ex):
        runs.append(_run_example(ex, capfd))

    check()
    return runs


@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzz_clean_files_run_and_land_in_place(fmt, capfd):
    runs = _outcomes(fmt, None, CLEAN_EXAMPLES, capfd)
    assert len(runs) >= min(CLEAN_EXAMPLES, 20) and set(runs) == {"ran"}


@pytest.mark.parametrize("fmt, fault", FAULT_CASES, ids=[f"{fmt}-{fault}" for fmt, fault in FAULT_CASES])
def test_fuzz_faulty_files_are_refused_in_one_line(fmt, fault, capfd):
    runs = _outcomes(fmt, fault, FAULT_EXAMPLES, capfd)
    assert len(runs) >= min(FAULT_EXAMPLES, 4) and set(runs) == {"refused" if fault not in BENIGN else "ran"}
