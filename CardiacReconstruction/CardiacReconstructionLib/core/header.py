"""Header sanity of volume files: the geometry fields are checked before a voxel is read.

Why: ITK reads many broken headers without a word, and the engine would then compute a
plausible answer in the wrong place. Measured with SimpleITK 2.5 (ITK 5.4):

* a NIfTI ``pixdim`` of 0 or NaN is read as 1 mm; a negative one as its size with the axis flipped;
* ITK takes the NIfTI sform when ``sform_code`` is 1 (scanner) or the qform is unset, else the
  qform, whatever the other one says; it takes the voxel size from ``pixdim`` even where the
  sform's axes are longer or shorter, and falls back to the qform when the sform is sheared;
* a NaN in a NIfTI ``srow`` becomes a NaN origin (and VNL prints a matrix on stderr);
* a 2-D NIfTI loses the out-of-plane part of its pose (ITK keeps a 2 x 2 direction);
* NRRD ``space directions`` and MHA ``TransformMatrix`` may be sheared or scaled: ITK keeps them
  as a non-orthonormal "direction"; an MHA spacing of -1 becomes 1 with a flipped axis;
* sizes are taken as they come, so a corrupt header can ask for terabytes.

So :func:`inspect` reads the header alone (gzip-aware; NIfTI with nibabel's header classes on
the fields as stored, NRRD with pynrrd's header reader, MetaImage as text) and raises
:class:`InputError` with one line naming the file, the field, its value and what is expected.
What is only known after ITK has read the file (which NIfTI pose it took) is settled by
:func:`reconcile`, which also re-checks the grid of the volume actually read.

Limits (a grid outside them is refused): at most :data:`MAX_SIDE` voxels along any axis,
:data:`MAX_SLICES` along a slice axis (one clearly coarser than the others), :data:`MAX_VOXELS`
in all; voxels of :data:`MIN_SPACING_MM` to :data:`MAX_PIXEL_MM` (a slice axis up to
:data:`MAX_SLICE_MM`); axes orthonormal to :data:`ORTHO_TOL`. An axis with a single voxel needs
only a positive, finite spacing: its spacing moves nothing.

NIfTI sform and qform (both set): they must place the grid alike. They *differ* when a corner
of the grid moves by more than :data:`POSE_NOTE_MM` (or :data:`POSE_NOTE_REL` of the grid's
diagonal) or an axis turns by more than :data:`POSE_NOTE_DEG`: the file is read with ITK's choice
and a note says which was used. They disagree *grossly* beyond :data:`POSE_REFUSE_MM` or
:data:`POSE_REFUSE_DEG`: then nobody can tell which pose is right, and the file is refused.
"""

from __future__ import annotations

import gzip
import itertools
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .axes import coarsest_axis
from .errors import InputError
from .geometry import Volume

MAX_SIDE = 4096
MAX_SLICES = 1000
MAX_VOXELS = 2 ** 28  # 268 million voxels: 1 GiB as int32 labels
MIN_SPACING_MM = 0.05
MAX_PIXEL_MM = 50.0
MAX_SLICE_MM = 100.0
ORTHO_TOL = 1e-3  # largest |cos| between two axes, |length - 1| of a unit direction
POSE_NOTE_MM = 0.1
POSE_NOTE_REL = 1e-3
POSE_NOTE_DEG = 0.1
POSE_REFUSE_MM = 1.0
POSE_REFUSE_DEG = 1.0

AXES = "ijk"
NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr", ".seg.nrrd")
META_SUFFIXES = (".mha", ".mhd")

_NIFTI_UNITS_MM = {0: 1.0, 1: 1000.0, 2: 1.0, 3: 1e-3}  # xyzt_units & 7: unknown, metre, mm, micron (ITK scales)


@dataclass
class Header:
    """What :func:`inspect` learnt: the spatial grid (i, j, k order) and, for NIfTI, its poses."""

    name: str
    kind: str  # 'nifti', 'nrrd' or 'meta'
    sizes: Tuple[int, ...]
    spacing: np.ndarray
    #: NIfTI only: the defined poses ('sform', 'qform') as 4x4 IJK-to-RAS matrices in mm.
    poses: Dict[str, np.ndarray] = field(default_factory=dict)
    #: NIfTI only: the pose ITK takes by its rule (None: neither is set).
    itk_pose: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    #: NIfTI float voxels that are NaN or infinite (ITK reads them as 0, i.e. background).
    nonfinite: int = 0


def refuse(name: str, what: str, expected: str) -> InputError:
    """The one-line refusal: ``<file>: <field> = <value>; expected <what is expected>.``"""
    return InputError(f"{name}: {what}; expected {expected}.")


def _fmt(values) -> str:
    arr = np.atleast_1d(np.asarray(values, float))
    return " ".join(f"{v:.6g}" for v in arr) if arr.size > 1 else f"{arr[0]:.6g}"


def _suffix_of(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".seg.nrrd", ".nii.gz") + NIFTI_SUFFIXES + NRRD_SUFFIXES + META_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def inspect(path) -> Header:
    """Check the header of ``path`` before it is read; InputError (one line) on a fault."""
    path = Path(path)
    suffix = _suffix_of(path)
    if suffix in NIFTI_SUFFIXES:
        header = _nifti(path)
    elif suffix in NRRD_SUFFIXES:
        header = _nrrd(path, layers_allowed=suffix == ".seg.nrrd")
    elif suffix in META_SUFFIXES:
        header = _meta(path)
    else:
        raise InputError(f"{path.name}: unsupported file type {suffix or '(none)'}.")
    check_grid(header.name, header.sizes, header.spacing)
    return header


def reconcile(header: Header, volume: Volume, labels: bool = False) -> Tuple[Volume, List[str]]:
    """The volume ITK (or slicerio) read, checked against the header: a 2-D NIfTI gets back the
    3-D pose ITK dropped; for NIfTI, the pose read must be one the header defines; the grid is
    checked again (:func:`check_grid`); ``labels``: NaN or infinite NIfTI voxels, which ITK
    turns into background, are refused. Returns the volume and the notes for the user."""
    notes = list(header.notes)
    if labels and header.nonfinite:
        raise InputError(f"{header.name} is not a label map: {header.nonfinite} voxels are NaN or infinite (ITK "
                         "would read them as 0); expected integer labels (0 = background).")
    if header.kind == "nifti" and header.poses:
        if len(header.sizes) == 2:  # ITK kept only the in-plane 2 x 2 part of the pose
            volume = Volume(volume.array, header.poses[header.itk_pose])
        sizes = tuple(volume.shape[::-1])
        gaps = {name: _pose_gap(pose, volume.ijk_to_ras, sizes) for name, pose in header.poses.items()}
        used = min(gaps, key=lambda name: gaps[name][0])
        if gaps[used][0] > POSE_REFUSE_MM or gaps[used][1] > POSE_REFUSE_DEG:
            raise InputError(f"{header.name}: the pose ITK read is {gaps[used][0]:.3g} mm from the header's "
                             f"{' and '.join(header.poses)}; expected one of them (a header ITK misreads).")
        if len(header.poses) == 2:
            mm, deg = _pose_gap(header.poses["sform"], header.poses["qform"], sizes)
            if _differ(mm, deg, sizes, header.poses[used]):
                other = "qform" if used == "sform" else "sform"
                notes.append(f"{header.name}: the NIfTI sform and qform differ by up to {mm:.2g} mm and {deg:.2g} "
                             f"degrees; using the {used} (ITK's choice), not the {other}")
    check_volume(volume, header.name)
    return volume, notes


def check_volume(volume: Volume, name: str) -> None:
    """The grid checks of :func:`check_grid` on a volume as read (any format)."""
    sizes = tuple(volume.shape[::-1])
    matrix = volume.ijk_to_ras[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    check_grid(name, sizes, spacing)
    check_axes(name, "the voxel axes", matrix / spacing[None, :])


def check_grid(name: str, sizes: Sequence[int], spacing: Sequence[float]) -> None:
    """Refuse absurd sizes and voxel sizes (the module's limits; axes in i, j, k order)."""
    sizes = [int(n) for n in sizes]
    spacing = np.asarray(spacing, float)
    for axis, n in enumerate(sizes):
        if n < 1 or n > MAX_SIDE:
            raise refuse(name, f"size along {AXES[axis]} = {n}", f"1 to {MAX_SIDE} voxels")
    total = int(np.prod(sizes, dtype=np.int64))
    if total > MAX_VOXELS:
        raise refuse(name, f"size {' x '.join(map(str, sizes))} = {total} voxels", f"at most {MAX_VOXELS}")
    for axis, s in enumerate(spacing):
        if not (np.isfinite(s) and s > 0):
            raise refuse(name, f"voxel size along {AXES[axis]} = {s:.6g} mm", "a positive, finite size in mm")
    many = [a for a, n in enumerate(sizes) if n > 1]
    slice_axis = _slice_axis(sizes, spacing)
    for axis in many:
        top = MAX_SLICE_MM if axis == slice_axis else MAX_PIXEL_MM
        what = "slice spacing" if axis == slice_axis else "voxel size"
        if not MIN_SPACING_MM <= spacing[axis] <= top:
            raise refuse(name, f"{what} along {AXES[axis]} = {spacing[axis]:.6g} mm", f"{MIN_SPACING_MM} to {top} mm")
    if slice_axis is not None and sizes[slice_axis] > MAX_SLICES:
        raise refuse(name, f"{sizes[slice_axis]} slices along {AXES[slice_axis]}", f"at most {MAX_SLICES} slices")


def _slice_axis(sizes: Sequence[int], spacing: np.ndarray) -> Optional[int]:
    """The axis clearly coarser than the others (as in :mod:`.axes`), when every axis has several voxels."""
    return None if len(sizes) != 3 or min(sizes) < 2 else coarsest_axis(spacing)


def check_axes(name: str, what: str, directions: np.ndarray, unit: bool = True) -> None:
    """Refuse non-unit (``unit``), sheared or singular axis directions (the columns of ``directions``)."""
    d = np.asarray(directions, float)
    n = d.shape[1]
    lengths = np.linalg.norm(d, axis=0)
    for axis in range(n):
        if not lengths[axis] > 1e-12:
            raise refuse(name, f"{what}: the {AXES[axis]} axis is ({_fmt(d[:, axis])})", "a non-zero axis direction")
        if unit and abs(lengths[axis] - 1) > ORTHO_TOL:
            raise refuse(name, f"{what}: the {AXES[axis]} axis has length {lengths[axis]:.6g}",
                         "unit axis directions (the voxel size belongs in the spacing)")
    unit_d = d / lengths[None, :]
    for a, b in itertools.combinations(range(n), 2):
        cos = float(unit_d[:, a] @ unit_d[:, b])
        if abs(cos) > ORTHO_TOL:
            angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
            raise refuse(name, f"{what}: the {AXES[a]} and {AXES[b]} axes are {angle:.4g} degrees apart (sheared "
                         "or singular)", "orthogonal axes (90 degrees)")


def _pose_gap(a: np.ndarray, b: np.ndarray, sizes: Sequence[int]) -> Tuple[float, float]:
    """How far two IJK-to-RAS poses of one grid place it apart: the largest displacement of a
    grid corner (mm) and the largest angle between corresponding axes (degrees)."""
    sizes3 = list(sizes) + [1] * (3 - len(sizes))
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in sizes3])), float)
    diff = corners @ (a[:3, :3] - b[:3, :3]).T + (a[:3, 3] - b[:3, 3])
    mm = float(np.max(np.linalg.norm(diff, axis=1)))
    ua = a[:3, :3] / np.linalg.norm(a[:3, :3], axis=0)
    ub = b[:3, :3] / np.linalg.norm(b[:3, :3], axis=0)
    deg = float(np.degrees(np.max(np.arccos(np.clip(np.sum(ua * ub, axis=0), -1, 1)))))
    return mm, deg


def _differ(mm: float, deg: float, sizes: Sequence[int], pose: np.ndarray) -> bool:
    sizes3 = np.array(list(sizes) + [1] * (3 - len(sizes)), float)
    diagonal = float(np.linalg.norm(pose[:3, :3] @ (sizes3 - 1)))
    return mm > max(POSE_NOTE_MM, POSE_NOTE_REL * diagonal) or deg > POSE_NOTE_DEG


def _gross(mm: float, deg: float) -> bool:
    return mm > POSE_REFUSE_MM or deg > POSE_REFUSE_DEG


# ---------------------------------------------------------------------------------------------
# NIfTI-1 and NIfTI-2, plain or gzip: nibabel's header classes on the fields as stored
# ---------------------------------------------------------------------------------------------

def _open(path: Path):
    """The file, decompressed when it is gzip (ITK reads both whatever the name says)."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _nifti_header(path: Path):
    """nibabel's NIfTI-1 or NIfTI-2 header of the file, unchecked: ``nibabel.load`` would silently
    'fix' a zero or negative pixdim or an out-of-range qform_code, the faults this module refuses."""
    from nibabel.nifti1 import Nifti1Header
    from nibabel.nifti2 import Nifti2Header

    try:
        with _open(path) as f:
            block = f.read(540)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path.name}: cannot be read as NIfTI: a broken gzip stream ({exc}); expected a "
                         "complete .nii.gz file.") from None
    sizes = [struct.unpack_from(e + "i", block)[0] for e in "<>"] if len(block) >= 348 else []
    klass = next((k for k in (Nifti1Header, Nifti2Header) if k.sizeof_hdr in sizes), None)
    if not sizes or (klass is Nifti2Header and len(block) < 540):
        raise refuse(path.name, f"cannot be read as NIfTI: the file holds {len(block)} bytes",
                     "a NIfTI header of 348 bytes (NIfTI-1) or 540 (NIfTI-2)")
    if klass is None:
        raise refuse(path.name, f"cannot be read as NIfTI: sizeof_hdr = {sizes[0]}", "348 or 540 (a NIfTI header)")
    header = klass(block[:klass.sizeof_hdr], "<>"[sizes.index(klass.sizeof_hdr)], check=False)
    if header["magic"].item() not in (b"n+1", b"ni1", b"n+2", b"ni2"):
        raise refuse(path.name, f"cannot be read as NIfTI: magic = {header['magic'].item()!r}",
                     "'n+1' or 'n+2' (an Analyze header has no pose)")
    return header


def _nifti(path: Path) -> Header:
    from nibabel.nifti1 import data_type_codes

    name, hdr = path.name, _nifti_header(path)
    dim, pixdim = hdr["dim"], hdr["pixdim"]
    ndim = int(dim[0])
    if not 2 <= ndim <= 7:
        raise refuse(name, f"NIfTI dim[0] = {ndim}", "2 or 3 dimensions")
    for axis in range(1, ndim + 1):
        if dim[axis] < 1:
            raise refuse(name, f"NIfTI dim[{axis}] = {dim[axis]}", "at least 1 voxel")
    extra = [axis for axis in range(4, ndim + 1) if dim[axis] > 1]
    if extra:
        axis = extra[0]
        what = "time points" if axis == 4 else "values per voxel"
        raise refuse(name, f"NIfTI dim[{axis}] = {dim[axis]} ({what})",
                     "a single 3-D volume (dim[4..7] = 1: one phase; split a 4D cine into its frames)")
    datatype = int(hdr["datatype"])
    dtype = data_type_codes.dtype.get(datatype, np.dtype("V"))
    if dtype.kind not in "iuf" or dtype.itemsize > 8:
        kind = data_type_codes.label.get(datatype, "unknown code")
        raise refuse(name, f"NIfTI datatype = {datatype} ({kind})", "scalar voxels (an integer or float type)")
    n_spatial = 2 if ndim == 2 else 3
    sizes = tuple(int(n) for n in dim[1:n_spatial + 1])
    for axis in range(1, n_spatial + 1):
        if not (np.isfinite(pixdim[axis]) and pixdim[axis] > 0):
            raise refuse(name, f"NIfTI pixdim[{axis}] = {pixdim[axis]:.6g} (the voxel size along {AXES[axis - 1]})",
                         "a positive, finite size (ITK would read 1 mm or flip the axis)")
    unit = _NIFTI_UNITS_MM.get(int(hdr["xyzt_units"]) & 7, 1.0)
    spacing = np.array(pixdim[1:n_spatial + 1], float) * unit
    check_grid(name, sizes, spacing)  # before anything is built on the sizes
    # voxels in this file (ITK reads a cut-off copy with garbage, silently)
    nonfinite = _check_nifti_data(path, hdr) if hdr["magic"].item() in (b"n+1", b"n+2") else 0

    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    for what, code in (("qform_code", qcode), ("sform_code", scode)):
        if not 0 <= code <= 5:
            raise refuse(name, f"NIfTI {what} = {code}", "0 (unset) to 5")
    poses: Dict[str, np.ndarray] = {}
    if scode:
        poses["sform"] = _sform(name, hdr.get_sform()[:3], spacing, unit, n_spatial)
    if qcode:
        poses["qform"] = _qform(name, hdr, spacing, unit)
    itk_pose = "sform" if scode and (scode == 1 or not qcode) else ("qform" if qcode else None)
    notes = []
    if not poses:
        notes.append(f"{name}: the NIfTI header sets neither qform nor sform, so its pose is unknown; read "
                     "axis-aligned at the origin (as ITK does)")
    if len(poses) == 2:
        mm, deg = _pose_gap(poses["sform"], poses["qform"], sizes)
        if _gross(mm, deg):
            raise refuse(name, f"NIfTI sform (code {scode}) and qform (code {qcode}) place the grid up to {mm:.3g} mm "
                         f"and {deg:.3g} degrees apart", f"one pose (they may differ by at most {POSE_REFUSE_MM:g} mm "
                         f"and {POSE_REFUSE_DEG:g} degree; ITK would silently use the {itk_pose})")
    return Header(name, "nifti", sizes, spacing, poses, itk_pose, notes, nonfinite)


def _check_nifti_data(path: Path, hdr) -> int:
    """Refuse a file with fewer voxel bytes than its header promises (a truncated copy): the
    whole gzip stream is decompressed once (a cut stream is refused too). Returns how many float
    voxels are NaN or infinite (ITK reads them as 0)."""
    dtype, shape = hdr.get_data_dtype(), hdr.get_data_shape()
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    offset = float(hdr["vox_offset"])
    if not (np.isfinite(offset) and offset >= 0):
        raise refuse(path.name, f"NIfTI vox_offset = {offset:.6g}", "the byte offset of the voxels (at least 348)")
    end = int(offset) + needed
    have, kept = 0, bytearray()
    try:
        with _open(path) as stream:
            for chunk in iter(lambda: stream.read(1 << 22), b""):
                have += len(chunk)
                if dtype.kind == "f" and len(kept) < end:
                    kept += chunk
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path.name}: cannot be read: a broken or truncated gzip stream ({exc}); expected a "
                         "complete .nii.gz file.") from None
    if have < end:
        raise refuse(path.name, f"cannot be read: the file holds {max(0, have - int(offset))} bytes of voxels",
                     f"{needed} ({' x '.join(map(str, shape))} voxels of {dtype.name}; a truncated copy?)")
    return int(np.count_nonzero(~np.isfinite(np.frombuffer(bytes(kept[int(offset):end]), dtype)))) if kept else 0


def _plane_normal(columns: np.ndarray) -> np.ndarray:
    normal = np.cross(columns[:, 0], columns[:, 1])
    return normal / np.linalg.norm(normal)


def _sform(name: str, rows: np.ndarray, spacing: np.ndarray, unit: float, n_spatial: int) -> np.ndarray:
    """The sform (``rows``: srow_x/y/z) as ITK reads it: its axis directions and offset (in mm),
    ``pixdim``'s voxel sizes. Refused: non-finite numbers, sheared or singular axes, axis lengths
    other than ``pixdim``'s."""
    if not np.all(np.isfinite(rows)):
        raise refuse(name, f"NIfTI srow_x/y/z = {_fmt(rows.ravel())} (non-finite numbers)", "finite numbers")
    columns = rows[:, :n_spatial] * unit
    check_axes(name, "the NIfTI sform", columns, unit=False)
    lengths = np.linalg.norm(columns, axis=0)
    mismatch = np.abs(lengths - spacing) / spacing
    if np.max(mismatch) > POSE_NOTE_REL:
        axis = int(np.argmax(mismatch))
        raise refuse(name, f"NIfTI sform axis {AXES[axis]} is {lengths[axis]:.6g} mm long but pixdim[{axis + 1}] = "
                     f"{spacing[axis] / unit:.6g}", "the same voxel size in both (ITK would use pixdim)")
    directions = columns / lengths[None, :]
    if n_spatial == 2:
        directions = np.c_[directions, _plane_normal(directions)]
        spacing = np.r_[spacing, 1.0]
    pose = np.eye(4)
    pose[:3, :3] = directions * spacing[None, :]
    pose[:3, 3] = rows[:, 3] * unit
    return pose


def _qform(name: str, hdr, spacing: np.ndarray, unit: float) -> np.ndarray:
    """The qform as niftilib builds it: ``pixdim`` sizes (a 2-D image's normal of 1 mm), ``qfac`` =
    the sign of ``pixdim[0]`` (nibabel's get_qform wants exactly 1 or -1), ``a`` = 0 when
    b^2 + c^2 + d^2 is within 1e-7 of 1 (nibabel's quaternion threshold is tighter)."""
    from nibabel.quaternions import quat2mat

    q = np.array([hdr[k] for k in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")],
                 float)
    if not np.all(np.isfinite(q)):
        raise refuse(name, f"NIfTI quatern_b/c/d, qoffset_x/y/z = {_fmt(q)} (non-finite numbers)", "finite numbers")
    norm2 = float(q[:3] @ q[:3])
    if norm2 > 1 + 1e-3:
        raise refuse(name, f"NIfTI quatern_b/c/d = {_fmt(q[:3])} (b^2 + c^2 + d^2 = {norm2:.4g})",
                     "a unit quaternion (b^2 + c^2 + d^2 <= 1)")
    rotation = quat2mat(np.r_[np.sqrt(1 - norm2) if 1 - norm2 >= 1e-7 else 0.0, q[:3]])  # normalised by quat2mat
    rotation[:, 2] *= -1.0 if hdr["pixdim"][0] < 0 else 1.0
    pose = np.eye(4)
    pose[:3, :3] = rotation * np.r_[spacing, 1.0][None, :3]
    pose[:3, 3] = q[3:] * unit
    return pose


# ---------------------------------------------------------------------------------------------
# NRRD (.nrrd, .nhdr, .seg.nrrd), through pynrrd's header parser
# ---------------------------------------------------------------------------------------------

_SPATIAL_KINDS = ("domain", "space")
_NRRD_TYPES = {"signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t", "short", "short int",
               "signed short", "signed short int", "int16", "int16_t", "ushort", "unsigned short",
               "unsigned short int", "uint16", "uint16_t", "int", "signed int", "int32", "int32_t", "uint",
               "unsigned int", "uint32", "uint32_t", "longlong", "long long", "long long int", "signed long long",
               "signed long long int", "int64", "int64_t", "ulonglong", "unsigned long long",
               "unsigned long long int", "uint64", "uint64_t", "float", "double"}


def _nrrd(path: Path, layers_allowed: bool) -> Header:
    import nrrd

    name = path.name
    try:
        header = nrrd.read_header(str(path))
    except Exception as exc:  # pynrrd raises its own NRRDError, ValueErrors and UnicodeErrors
        raise InputError(f"{name}: not a readable NRRD header ({exc}).") from None
    try:
        sizes = [int(n) for n in np.atleast_1d(header["sizes"])]
        dimension = int(header.get("dimension", len(sizes)))
    except (KeyError, TypeError, ValueError):
        raise refuse(name, "the NRRD header lacks 'sizes'", "a 'sizes' field") from None
    if len(sizes) != dimension or not 1 <= dimension <= 16:
        raise refuse(name, f"NRRD sizes = {' '.join(map(str, sizes))} for dimension {dimension}",
                     "one size per axis")
    if str(header.get("type", "")).strip() not in _NRRD_TYPES:
        raise refuse(name, f"NRRD type = {header.get('type')}", "a scalar type (uint8, int16, float, ...)")
    directions = header.get("space directions")
    kinds = list(header.get("kinds", []))
    if kinds and len(kinds) != dimension:
        raise refuse(name, f"NRRD kinds = {' '.join(kinds)} ({len(kinds)} entries)", f"{dimension} (the dimension)")
    if kinds:
        spatial = [a for a, kind in enumerate(kinds) if kind in _SPATIAL_KINDS]
    elif directions is not None:
        rows = np.asarray(directions, float)
        spatial = [a for a in range(len(rows)) if not np.all(np.isnan(rows[a]))]
    else:
        spatial = list(range(dimension))
    other = [a for a in range(dimension) if a not in spatial and sizes[a] > 1]
    if layers_allowed and len(other) == 1 and other[0] == 0 and (kinds[0] if kinds else "list") == "list":
        other = []  # the segment layers of a .seg.nrrd
    if other:
        axis = other[0]
        kind = kinds[axis] if kinds else "none"
        raise refuse(name, f"NRRD axis {axis} (kind {kind}) has {sizes[axis]} values per voxel",
                     "one value per voxel (a scalar volume)")
    if not 2 <= len(spatial) <= 3:
        raise refuse(name, f"NRRD has {len(spatial)} spatial axes (kinds {' '.join(kinds) or 'unset'})", "2 or 3")
    sizes_spatial = tuple(sizes[a] for a in spatial)
    check_grid(name, sizes_spatial, np.ones(len(spatial)))
    if directions is None and layers_allowed:
        raise refuse(name, "the .seg.nrrd header has no space directions",
                     "space directions (slicerio ignores 'spacings' and would read 1 mm voxels)")
    if directions is not None:
        rows = np.asarray(directions, float)[spatial]
        origin = np.asarray(header.get("space origin", np.zeros(rows.shape[1])), float)
        if not (np.all(np.isfinite(rows)) and np.all(np.isfinite(origin))):
            raise refuse(name, f"NRRD space directions = {_fmt(rows.ravel())}, space origin = {_fmt(origin)}: "
                         "the volume geometry contains non-finite numbers (NaN or infinity)", "finite numbers")
        spacing = np.linalg.norm(rows, axis=1)
        for axis, s in enumerate(spacing):
            if not s > 0:
                raise refuse(name, f"NRRD space directions: the {AXES[axis]} axis is ({_fmt(rows[axis])})",
                             "a non-zero axis (its length is the voxel size)")
        check_axes(name, "the NRRD space directions", rows.T, unit=False)
        notes = []
    elif "spacings" in header:
        spacing = np.asarray(header["spacings"], float)[spatial]
        for axis, s in enumerate(spacing):
            if not (np.isfinite(s) and s > 0):
                raise refuse(name, f"NRRD spacings = {_fmt(header['spacings'])}", "positive, finite sizes in mm")
        notes = [f"{name}: the NRRD header gives spacings but no space directions; read axis-aligned at the origin"]
    else:
        spacing = np.ones(len(spatial))
        notes = [f"{name}: the NRRD header gives no spacing; 1 mm voxels assumed"]
    return Header(name, "nrrd", sizes_spatial, spacing, notes=notes)


# ---------------------------------------------------------------------------------------------
# MetaImage (.mha, .mhd): a text header up to ElementDataFile
# ---------------------------------------------------------------------------------------------

_META_DIRECTION_KEYS = ("TransformMatrix", "Rotation", "Orientation")
_META_ORIGIN_KEYS = ("Offset", "Origin", "Position")


_META_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
               "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}


def _meta(path: Path) -> Header:
    name = path.name
    with open(path, "rb") as f:
        text = f.read(65536)
    fields: Dict[str, str] = {}
    header_end = 0
    for raw in text.split(b"\n"):
        key, sep, value = raw.decode("latin-1").partition("=")
        header_end += len(raw) + 1
        if not sep:
            if raw.strip():
                break  # binary data or not a MetaIO header
            continue
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    if "NDims" not in fields or "ElementDataFile" not in fields:
        raise refuse(name, "no MetaImage header (NDims ... ElementDataFile)", "a MetaImage (.mha/.mhd) file")

    def numbers(key: str, count: int, kind=float):
        try:
            values = [kind(v) for v in fields[key].split()]
        except ValueError:
            raise refuse(name, f"MetaImage {key} = {fields[key]}", f"{count} numbers") from None
        if len(values) != count:
            raise refuse(name, f"MetaImage {key} = {fields[key]}", f"{count} numbers")
        return np.array(values, float if kind is float else np.int64)

    ndims = int(numbers("NDims", 1, int)[0])
    if ndims not in (2, 3):
        raise refuse(name, f"MetaImage NDims = {ndims}", "2 or 3")
    channels = int(numbers("ElementNumberOfChannels", 1, int)[0]) if "ElementNumberOfChannels" in fields else 1
    if channels != 1:
        raise refuse(name, f"MetaImage ElementNumberOfChannels = {channels}", "1 (a scalar volume)")
    if "DimSize" not in fields:
        raise refuse(name, "the MetaImage header lacks DimSize", "DimSize")
    sizes = tuple(int(n) for n in numbers("DimSize", ndims, int))
    check_grid(name, sizes, np.ones(ndims))
    spacing_key = next((k for k in ("ElementSpacing", "ElementSize") if k in fields), None)
    spacing = numbers(spacing_key, ndims) if spacing_key else np.ones(ndims)
    for axis, s in enumerate(spacing):
        if not (np.isfinite(s) and s > 0):
            raise refuse(name, f"MetaImage {spacing_key} = {fields[spacing_key]}",
                         "positive, finite voxel sizes in mm (ITK would flip an axis of negative size)")
    key = next((k for k in _META_DIRECTION_KEYS if k in fields), None)
    if key is not None:
        matrix = numbers(key, ndims * ndims)
        if not np.all(np.isfinite(matrix)):
            raise refuse(name, f"MetaImage {key} = {fields[key]} (non-finite numbers)", "finite numbers")
        check_axes(name, f"the MetaImage {key}", matrix.reshape(ndims, ndims).T)  # listed axis by axis
    key = next((k for k in _META_ORIGIN_KEYS if k in fields), None)
    if key is not None and not np.all(np.isfinite(numbers(key, ndims))):
        raise refuse(name, f"MetaImage {key} = {fields[key]} (non-finite numbers)", "finite numbers")
    data_file = fields["ElementDataFile"]
    if fields.get("ElementType") in _META_BYTES and data_file != "LIST" and len(data_file.split()) == 1:
        needed = int(np.prod(sizes, dtype=np.int64)) * _META_BYTES[fields["ElementType"]]
        compressed = fields.get("CompressedData", "False").lower() == "true"
        if data_file == "LOCAL":
            _check_meta_data(path, path, header_end, needed, compressed)
        elif "%" not in data_file:
            target = path.parent / data_file
            if not target.is_file():
                raise refuse(name, f"MetaImage ElementDataFile = {data_file}, which does not exist",
                             "the voxel file beside the header")
            _check_meta_data(path, target, 0, needed, compressed)
    return Header(name, "meta", sizes, spacing)


def _check_meta_data(path: Path, data_path: Path, start: int, needed: int, compressed: bool) -> None:
    """Refuse a MetaImage with fewer voxel bytes than DimSize asks for (MetaIO would print its own
    complaint on stderr, then ITK a misleading 'No such file or directory')."""
    with open(data_path, "rb") as f:
        f.seek(start)
        data = f.read()
    have = len(data)
    if compressed:
        inflater = zlib.decompressobj(47)  # zlib or gzip framing
        try:
            have = len(inflater.decompress(data, needed))
        except zlib.error as exc:
            raise refuse(path.name, f"cannot be read: its compressed voxels are broken ({exc})",
                         "a complete MetaImage file") from None
    if have < needed:
        raise refuse(path.name, f"cannot be read: the file holds {have} bytes of voxels",
                     f"{needed} (DimSize x ElementType; a truncated copy?)")
