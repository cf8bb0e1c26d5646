"""Every real file is read right or refused: a corpus of malformed files, generated here.

Each entry is a file as a broken converter, a truncated copy or a hand edit leaves it (written
by the engine's writers and then damaged; see faulty_files.py). For each, ``cardiac-recon run``
must exit with status 2 and exactly one line on stderr (after any 'SAX:' lines) that names the
file and says what is wrong, write nothing (the output folder does not exist afterwards, and no
staging folder is left) and leave the input byte-identical. stderr is captured at the file
descriptor, so what ITK or VNL print from C++ counts too.

The header faults are those :mod:`CardiacReconstructionLib.core.header` refuses, each of which
ITK reads without an error (the bug this corpus pins down): a pixdim of 0 read as 1 mm, a sheared
NRRD or MHA axis kept, a NaN sform row turned into a NaN origin, and so on.
"""

import gzip
import math

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from CardiacReconstructionLib.core import io
from CardiacReconstructionLib.core.geometry import Volume, make_ijk_to_ras
from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.header import inspect
from faulty_files import nifti_fields, patch_mha, patch_nifti, patch_nrrd, ring_labels, run_cli, to_nifti2

SPACING = (1.5, 1.5, 8.0)


def _stack(dtype=np.uint8, shape=(5, 16, 16)) -> Volume:
    return Volume(ring_labels(shape).astype(dtype), make_ijk_to_ras(SPACING, (-12.0, 30.0, 5.0)))


def _labels(folder, name, volume=None):
    return io.write_segmentation(volume if volume is not None else _stack(), folder / name)


def _image(folder, name, array, spacing=SPACING):
    """Any voxel type (io.write_segmentation would cast to uint8)."""
    return io.write_volume(Volume(array, make_ijk_to_ras(spacing)), folder / name)


def _truncated_gzip(folder):
    path = _image(folder, "cut.nii.gz", np.random.default_rng(0).integers(0, 4, (6, 32, 32)).astype(np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _cut(folder, name, compress=True):
    """Any format, its second half cut off (voxels of random labels, so that compression leaves bulk)."""
    path = _image(folder, name, np.random.default_rng(1).integers(0, 4, (6, 32, 32)).astype(np.uint8))
    if not compress:  # the engine's writers compress; write it again without
        image = sitk.ReadImage(str(path))
        sitk.WriteImage(image, str(path), False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 200])
    return path


def _gzip_cut_in_header(folder):
    path = _labels(folder, "cut_header.nii.gz")
    path.write_bytes(path.read_bytes()[:40])
    return path


def _text(folder, name):
    path = folder / name
    path.write_text("patient,label\n1,LV\n")
    return path


def _png(folder, name):
    image = sitk.GetImageFromArray(ring_labels((1, 16, 16))[0])
    sitk.WriteImage(image, str(folder / "tmp.png"))
    path = folder / name
    path.write_bytes((folder / "tmp.png").read_bytes())
    (folder / "tmp.png").unlink()
    return path


def _two_d(folder):
    image = sitk.GetImageFromArray(ring_labels((1, 16, 16))[0])
    image.SetSpacing((1.5, 1.5))
    sitk.WriteImage(image, str(folder / "two_d.nii.gz"))
    return folder / "two_d.nii.gz"


def _reshaped(folder, name, dim):
    """A NIfTI whose dim[] spreads the same voxels over 4 or 5 dimensions."""
    path = _labels(folder, name, _stack(shape=(4, 8, 8)))
    return patch_nifti(path, dim=dim)


def _vector(folder, name):
    arr = np.stack([ring_labels()] * 3, axis=-1)
    image = sitk.GetImageFromArray(arr, isVector=True)
    image.SetSpacing(SPACING)
    sitk.WriteImage(image, str(folder / name))
    return folder / name


def _rgb_nifti(folder):
    path = _labels(folder, "rgb.nii", _stack(shape=(3, 8, 8)))
    return patch_nifti(path, dim=(3, 8, 8, 1, 1, 1, 1, 1), datatype=128, bitpix=24)  # 3 bytes a voxel, same bytes


def _float_labels(folder, name, values):
    arr = ring_labels().astype(np.float32)
    for key, value in values.items():
        arr[arr == key] = value
    return _image(folder, name, arr)


def _seg_nrrd_broken(folder, name, field, value):
    return patch_nrrd(_labels(folder, name), field, value)


def _seg_layer_out_of_range(folder):
    voxels = np.zeros((2, 8, 8, 4), np.uint8)  # two layers [layer, i, j, k]
    voxels[0, 2:5, 2:5, :] = 1
    voxels[1, 3:6, 3:6, :] = 1
    segments = [{"id": "a", "name": "LV", "labelValue": 1, "layer": 0}, {"id": "b", "name": "MYO", "labelValue": 1,
                                                                         "layer": 5}]
    path = folder / "layers.seg.nrrd"
    slicerio.write_segmentation(str(path), {"voxels": voxels, "ijkToLPS": np.diag([1.5, 1.5, 8.0, 1.0]),
                                            "segments": segments, "containedRepresentationNames": ["Binary labelmap"],
                                            "masterRepresentation": "Binary labelmap"})
    return path


def _header_only_nifti(folder, name, dim, pixdim=(1.0, 1.5, 1.5, 8.0)):
    """A NIfTI header that asks for a huge grid, with no voxel data behind it."""
    path = _labels(folder, name, _stack(shape=(2, 4, 4)))
    patch_nifti(path, dim=dim, pixdim=dict(enumerate(pixdim)))
    data = gzip.decompress(path.read_bytes())[:352]
    path.write_bytes(gzip.compress(data, mtime=0))
    return path


def _rotated_srow(angle_deg):
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return (1.5 * c, -1.5 * s, 0.0, -12.0, 1.5 * s, 1.5 * c, 0.0, 30.0, 0.0, 0.0, 8.0, 5.0)  # about RAS z


CORPUS = {
    # damaged containers
    "truncated gzip": (_truncated_gzip, "cannot be read"),
    "gzip cut inside the header": (_gzip_cut_in_header, "cannot be read as NIfTI"),
    "truncated .nii (raw)": (lambda f: _cut(f, "cut.nii", compress=False), "truncated copy"),
    "truncated .nrrd (gzip)": (lambda f: _cut(f, "cut.nrrd"), "cannot be read"),
    "truncated .nrrd (raw)": (lambda f: _cut(f, "cut_raw.nrrd", compress=False), "cannot be read"),
    "truncated .mha (compressed)": (lambda f: _cut(f, "cut.mha"), "cannot be read"),
    "truncated .mha (raw)": (lambda f: _cut(f, "cut_raw.mha", compress=False), "truncated copy"),
    "text renamed .nii.gz": (lambda f: _text(f, "notes.nii.gz"), "cannot be read as NIfTI"),
    "text renamed .mha": (lambda f: _text(f, "notes.mha"), "MetaImage"),
    "text renamed .seg.nrrd": (lambda f: _text(f, "notes.seg.nrrd"), "NRRD header"),
    "PNG renamed .nrrd": (lambda f: _png(f, "picture.nrrd"), "NRRD header"),
    "PNG renamed .nii.gz": (lambda f: _png(f, "picture.nii.gz"), "cannot be read as NIfTI"),
    # shapes and voxel types
    "2D image": (_two_d, "slice"),
    "4D series": (lambda f: _reshaped(f, "series.nii.gz", (4, 8, 8, 2, 2, 1, 1, 1)), "dim[4] = 2"),
    "5D image": (lambda f: _reshaped(f, "five.nii.gz", (5, 8, 8, 2, 1, 2, 1, 1)), "dim[5] = 2"),
    "vector voxels (.nrrd)": (lambda f: _vector(f, "vector.nrrd"), "values per voxel"),
    "vector voxels (.mha)": (lambda f: _vector(f, "vector.mha"), "ElementNumberOfChannels = 3"),
    "vector voxels (.nii.gz)": (lambda f: _vector(f, "vector.nii.gz"), "dim[5] = 3"),
    "RGB datatype (.nii)": (_rgb_nifti, "datatype = 128"),
    "float labels, non-integer": (lambda f: _float_labels(f, "half.nii.gz", {1: 0.5}), "not a label map"),
    "NaN voxels": (lambda f: _float_labels(f, "nan_voxels.nrrd", {3: np.nan}), "NaN or infinite"),
    "Inf voxels": (lambda f: _float_labels(f, "inf_voxels.mha", {2: np.inf}), "NaN or infinite"),
    "NaN voxels (.nii.gz; ITK reads them as 0)": (lambda f: _float_labels(f, "nan.nii.gz", {3: np.nan}),
                                                  "NaN or infinite"),
    "Inf voxels (.nii, float64)": (lambda f: _image(f, "inf.nii", np.where(ring_labels() == 2, np.inf, 1.0)),
                                   "NaN or infinite"),
    "negative labels": (lambda f: _image(f, "negative.nii.gz", ring_labels().astype(np.int16) - 1), "negative"),
    "huge label values": (lambda f: _image(f, "huge.nrrd", ring_labels().astype(np.int32) * 70000), "70000"),
    "huge float labels": (lambda f: _float_labels(f, "huge_float.nii.gz", {1: 70000.0}), "values up to 70000"),
    "empty map": (lambda f: _labels(f, "empty.nii.gz", _stack() .with_array(np.zeros((5, 16, 16), np.uint8))),
                  "empty"),
    "single slice": (lambda f: _labels(f, "single.nii.gz", _stack(shape=(1, 16, 16))), "slice"),
    # broken .seg.nrrd headers
    ".seg.nrrd sizes do not match the dimension": (lambda f: _seg_nrrd_broken(f, "sizes.seg.nrrd", "sizes", "16 16"),
                                                   "one size per axis"),
    ".seg.nrrd with a garbage type": (lambda f: _seg_nrrd_broken(f, "type.seg.nrrd", "type", "banana"),
                                      "type = banana"),
    ".seg.nrrd with NaN space directions": (
        lambda f: _seg_nrrd_broken(f, "nan.seg.nrrd", "space directions", "(nan,0,0) (0,1.5,0) (0,0,8)"), "non-finite"),
    ".seg.nrrd with sheared axes": (
        lambda f: _seg_nrrd_broken(f, "shear.seg.nrrd", "space directions", "(1.5,0,0) (1,1.5,0) (0,0,8)"), "sheared"),
    ".seg.nrrd with data cut short": (lambda f: _truncated_seg(f), "not a readable .seg.nrrd"),
    ".seg.nrrd segment in a missing layer": (_seg_layer_out_of_range, "layer 5"),
    # NIfTI header faults that ITK reads silently
    "pixdim[3] = 0": (lambda f: patch_nifti(_labels(f, "pixdim0.nii.gz"), pixdim={3: 0.0}), "pixdim[3] = 0"),
    "pixdim[3] = NaN": (lambda f: patch_nifti(_labels(f, "pixdim_nan.nii.gz"), pixdim={3: math.nan}),
                        "pixdim[3] = nan"),
    "pixdim[1] negative": (lambda f: patch_nifti(_labels(f, "pixdim_neg.nii"), pixdim={1: -1.5}), "pixdim[1] = -1.5"),
    "pixdim[2] infinite": (lambda f: patch_nifti(_labels(f, "pixdim_inf.nii"), pixdim={2: math.inf}),
                           "pixdim[2] = inf"),
    "srow NaN": (lambda f: patch_nifti(_labels(f, "srow_nan.nii.gz"), srow={3: math.nan}), "srow"),
    "quatern NaN": (lambda f: patch_nifti(_labels(f, "quat_nan.nii.gz"), quatern={0: math.nan}), "quatern"),
    "quatern not a unit quaternion": (lambda f: patch_nifti(_labels(f, "quat_big.nii.gz"), quatern={0: 2.0}),
                                      "unit quaternion"),
    "sform shifted 5 mm from the qform": (
        lambda f: patch_nifti(_labels(f, "shifted.nii.gz"), srow={3: -7.0}), "5 mm and 0 degrees apart"),
    "sform turned 10 degrees from the qform": (
        lambda f: patch_nifti(_labels(f, "turned.nii.gz"), srow=_rotated_srow(10.0)), "10 degrees apart"),
    "sform sheared": (lambda f: patch_nifti(_labels(f, "sheared.nii.gz"), srow={1: 0.75}), "sheared"),
    "sform singular": (lambda f: patch_nifti(_labels(f, "singular.nii.gz"), srow={8: 0.0, 9: 0.0, 10: 0.0}),
                       "non-zero axis"),
    "sform axis length differs from pixdim": (
        lambda f: patch_nifti(_labels(f, "scaled.nii.gz"), srow={10: 4.0}, qform_code=0), "pixdim[3] = 8"),
    "qform_code out of range": (lambda f: patch_nifti(_labels(f, "code.nii.gz"), qform_code=77), "qform_code = 77"),
    # NRRD and MHA geometry faults
    "NRRD sheared space directions": (
        lambda f: patch_nrrd(_labels(f, "shear.nrrd"), "space directions", "(1.5,0,0) (0.75,1.5,0) (0,0,8)"),
        "sheared"),
    "NRRD parallel space directions": (
        lambda f: patch_nrrd(_labels(f, "parallel.nrrd"), "space directions", "(1.5,0,0) (1.5,0,0) (0,0,8)"),
        "sheared or singular"),
    "NRRD zero space direction": (
        lambda f: patch_nrrd(_labels(f, "zero.nrrd"), "space directions", "(1.5,0,0) (0,0,0) (0,0,8)"),
        "non-zero axis"),
    "NRRD NaN origin": (lambda f: patch_nrrd(_labels(f, "origin.nrrd"), "space origin", "(nan,0,0)"), "non-finite"),
    "MHA sheared TransformMatrix": (
        lambda f: patch_mha(_labels(f, "shear.mha"), "TransformMatrix", "1 0 0 0.6 0.8 0 0 0 1"), "sheared"),
    "MHA TransformMatrix of non-unit axes": (
        lambda f: patch_mha(_labels(f, "long.mha"), "TransformMatrix", "1 0 0 0.5 1 0 0 0 1"), "unit axis"),
    "MHA singular TransformMatrix": (
        lambda f: patch_mha(_labels(f, "singular.mha"), "TransformMatrix", "1 0 0 1 0 0 0 0 1"), "sheared or singular"),
    "MHA scaled TransformMatrix": (
        lambda f: patch_mha(_labels(f, "scaled.mha"), "TransformMatrix", "2 0 0 0 2 0 0 0 2"), "length 2"),
    "MHA zero spacing": (lambda f: patch_mha(_labels(f, "zero.mha"), "ElementSpacing", "0 1.5 8"), "ElementSpacing"),
    "MHA negative spacing": (lambda f: patch_mha(_labels(f, "neg.mha"), "ElementSpacing", "-1.5 1.5 8"),
                             "ElementSpacing = -1.5"),
    "MHA data file missing": (lambda f: _mhd(f, keep=0), "does not exist"),
    "MHA data file cut short": (lambda f: _mhd(f, keep=100), "truncated copy"),
    ".seg.nrrd with spacings, no space directions": (lambda f: _seg_spacings_only(f), "no space directions"),
    "MHA NaN offset": (lambda f: patch_mha(_labels(f, "nan.mha"), "Offset", "nan 0 0"), "Offset"),
    # absurd sizes (headers only: the reader must refuse before it allocates)
    "5000 pixels per side": (lambda f: _header_only_nifti(f, "wide.nii.gz", (3, 5000, 16, 4, 1, 1, 1, 1)),
                             "size along i = 5000"),
    "4096^3 voxels": (lambda f: _header_only_nifti(f, "cube.nii.gz", (3, 4096, 4096, 4096, 1, 1, 1, 1)), "voxels"),
    "1200 slices": (lambda f: _header_only_nifti(f, "tall.nii.gz", (3, 16, 16, 1200, 1, 1, 1, 1)), "1200 slices"),
    "pixels of 0.01 mm": (lambda f: _header_only_nifti(f, "tiny.nii.gz", (3, 16, 16, 4, 1, 1, 1, 1),
                                                       (1.0, 0.01, 0.01, 8.0)), "0.01 mm"),
    "pixels of 60 mm": (lambda f: _header_only_nifti(f, "coarse.nii.gz", (3, 16, 16, 4, 1, 1, 1, 1),
                                                     (1.0, 60.0, 60.0, 200.0)), "60 mm"),
    "slices 150 mm apart": (lambda f: _header_only_nifti(f, "far.nii.gz", (3, 16, 16, 4, 1, 1, 1, 1),
                                                         (1.0, 1.5, 1.5, 150.0)), "slice spacing along k = 150 mm"),
}


#: Refused after reading, by the case checks of core/case.py, whose messages do not name the file.
NAMELESS = {"single slice"}


def _mhd(folder, keep):
    """A .mhd header with its .raw voxel file beside it, the .raw cut to ``keep`` bytes (0: removed)."""
    image = sitk.GetImageFromArray(ring_labels())
    image.SetSpacing(SPACING)
    sitk.WriteImage(image, str(folder / "detached.mhd"))
    raw = folder / "detached.raw"
    if keep:
        raw.write_bytes(raw.read_bytes()[:keep])
    else:
        raw.unlink()
    return folder / "detached.mhd"


def _seg_spacings_only(folder):
    path = _labels(folder, "spacings.seg.nrrd")
    data = path.read_bytes()
    end = data.find(b"\n\n")
    lines = [line for line in data[:end].split(b"\n") if not line.startswith((b"space", b"kinds"))]
    path.write_bytes(b"\n".join(lines + [b"spacings: 1.5 1.5 8"]) + data[end:])
    return path


def _truncated_seg(folder):
    path = _labels(folder, "short.seg.nrrd", _stack(shape=(5, 32, 32)))
    patch_nrrd(path, "encoding", "raw")  # uncompressed, so that cutting it leaves a valid header
    data = path.read_bytes()
    path.write_bytes(data[: data.find(b"\n\n") + 2 + 100])
    return path


@pytest.mark.parametrize("what", list(CORPUS))
def test_malformed_file_is_refused_in_one_line(what, tmp_path, capfd):
    make, fragment = CORPUS[what]
    inputs = tmp_path / "in"
    inputs.mkdir()
    path = make(inputs)
    before = path.read_bytes()
    out = tmp_path / "out"
    rc, rest, err = run_cli(path, out, capfd)
    assert rc == 2, (what, err)
    assert len(rest) == 1, (what, err)
    line = rest[0]
    assert line.startswith("cardiac-recon run: error: ") and "Traceback" not in line, (what, line)
    assert fragment.lower() in line.lower() and (path.name in line or what in NAMELESS), (what, line)
    assert not out.exists(), what
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"], what  # no staging folder left
    assert path.read_bytes() == before, what


def test_corpus_faults_are_really_in_the_files(tmp_path):
    """The patched fields hold what the corpus says (so each refusal is for the intended fault)."""
    path = patch_nifti(_labels(tmp_path, "p.nii.gz"), pixdim={3: 0.0}, srow={3: 17.0})
    fields = nifti_fields(path)
    assert fields["pixdim"][3] == 0.0 and fields["srow"][3] == 17.0 and fields["pixdim"][1] == 1.5
    assert fields["qform_code"][0] == 1 and fields["sform_code"][0] == 1  # ITK writes both poses


def test_sitk_reads_these_faults_silently(tmp_path):
    """Why the header is checked by hand: ITK reads a zero pixdim as 1 mm and keeps a sheared
    NRRD axis. If this ever fails, ITK got stricter and the checks are merely redundant."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        zero = sitk.ReadImage(str(patch_nifti(_labels(tmp_path, "z.nii.gz"), pixdim={3: 0.0})))
        shear = sitk.ReadImage(str(patch_nrrd(_labels(tmp_path, "s.nrrd"), "space directions",
                                              "(1.5,0,0) (0.75,1.5,0) (0,0,8)")))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    assert zero.GetSpacing()[2] == 1.0
    assert abs(np.array(shear.GetDirection()).reshape(3, 3)[:, 1] @ [1, 0, 0]) > 0.4


def test_slightly_different_sform_and_qform_run_with_a_note(tmp_path, capfd):
    """sform and qform 0.3 mm apart (float rounding of a converter): read with ITK's choice, the
    sform for sform_code 1, and said so in a 'SAX:' line; the result sits where the sform says."""
    path = patch_nifti(_labels(tmp_path, "near.nii.gz"), srow={3: -12.3})
    rc, rest, err = run_cli(path, tmp_path / "out", capfd)
    assert rc == 0, err
    note = [line for line in err if "sform and qform differ" in line]
    assert len(note) == 1 and note[0].startswith("SAX:") and "using the sform (ITK's choice)" in note[0]
    labels = io.read_volume(tmp_path / "out" / "labels.seg.nrrd")
    assert abs(labels.ijk_to_ras[0, 3] + 12.3) < 1e-3  # RAS x of voxel 0, as the sform says


def test_sform_code_2_uses_the_qform_as_itk_does(tmp_path, capfd):
    """ITK takes the qform when sform_code is not 1 (here 2, aligned) and the qform is set: the
    note names the qform, and the pose read is the qform's."""
    path = patch_nifti(_labels(tmp_path, "aligned.nii.gz"), srow={3: -12.4}, sform_code=2)
    volume, message = io.read_segmentation(path)
    assert "using the qform (ITK's choice), not the sform" in message
    assert abs(volume.ijk_to_ras[0, 3] + 12.0) < 1e-3


def test_seg_nrrd_with_huge_label_values_is_read_right(tmp_path, capfd):
    """A .seg.nrrd may use any label value for a segment: 4e9 (uint32) maps by name without a
    look-up table of 4e9 entries (which was a MemoryError traceback)."""
    arr = ring_labels().astype(np.uint32)
    voxels = np.where(arr == 1, 4_000_000_000, np.where(arr == 2, 70_000, 0)).astype(np.uint32).transpose(2, 1, 0)
    segments = [{"id": "a", "name": "LV", "labelValue": 4_000_000_000, "layer": 0},
                {"id": "b", "name": "myocardium", "labelValue": 70_000, "layer": 0}]
    path = tmp_path / "big.seg.nrrd"
    slicerio.write_segmentation(str(path), {"voxels": np.ascontiguousarray(voxels),
                                            "ijkToLPS": np.diag([-1.5, -1.5, 8.0, 1.0]), "segments": segments,
                                            "containedRepresentationNames": ["Binary labelmap"],
                                            "masterRepresentation": "Binary labelmap"})
    volume, message = io.read_segmentation(path)
    np.testing.assert_array_equal(volume.array, np.where(arr == 1, 1, np.where(arr == 2, 2, 0)))
    assert "LV->LV" in message and "myocardium->MYO" in message


def test_two_d_nifti_keeps_its_oblique_pose(tmp_path):
    """A 2-D NIfTI (dim[0] = 2) of an oblique long-axis plane: ITK keeps only a 2 x 2 direction,
    so the plane would land flat at z = 0; the reader restores the header's 3-D pose."""
    from scipy.spatial.transform import Rotation

    direction = Rotation.from_euler("xyz", [30, 20, 10], degrees=True).as_matrix()
    lax = Volume(ring_labels((1, 16, 16)), make_ijk_to_ras((1.5, 1.5, 8.0), (10.0, -20.0, 30.0), direction))
    path = io.write_segmentation(lax, tmp_path / "lax_4ch.nii")
    patch_nifti(path, dim={0: 2})
    back = io.read_volume(path)
    assert back.shape == (1, 16, 16)
    np.testing.assert_allclose(back.ijk_to_ras[:3, :2], lax.ijk_to_ras[:3, :2], atol=1e-4)
    np.testing.assert_allclose(back.ijk_to_ras[:3, 3], lax.ijk_to_ras[:3, 3], atol=1e-4)


def test_nifti2_header_is_parsed_like_nifti1(tmp_path):
    """The 540-byte NIfTI-2 layout (64-bit fields) gives the grid and poses of the same image's
    NIfTI-1 header, and its faults are refused alike (ITK 5.4 itself refuses NIfTI-2 files)."""
    from scipy.spatial.transform import Rotation

    oblique = Volume(ring_labels(), make_ijk_to_ras(SPACING, (10.0, -20.0, 30.0), Rotation.random(random_state=2)
                                                     .as_matrix()))
    one = _labels(tmp_path, "one.nii.gz", oblique)
    two = to_nifti2(one, tmp_path / "two.nii.gz")
    h1, h2 = inspect(one), inspect(two)
    assert h1.sizes == h2.sizes == (16, 16, 5) and h1.itk_pose == h2.itk_pose == "sform"
    np.testing.assert_allclose(h2.spacing, SPACING, rtol=1e-6)
    for name in ("sform", "qform"):
        np.testing.assert_allclose(h2.poses[name], h1.poses[name], atol=1e-9)
        np.testing.assert_allclose(h2.poses[name], oblique.ijk_to_ras, atol=1e-4)
    patch_nifti(one, pixdim={3: 0.0})
    with pytest.raises(InputError, match=r"pixdim\[3\] = 0"):
        inspect(to_nifti2(one, tmp_path / "zero.nii.gz"))
