"""Reading and writing label volumes, images and cases (files are LPS; see :mod:`.geometry`).

* ``.seg.nrrd`` goes through slicerio (segment names, colours, terminology survive).
* NIfTI, NRRD and MHA go through SimpleITK.
* Every write lands in a temporary file beside the target and is renamed into place, so an
  error never leaves a half-written file behind. Inputs are only ever read.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .axes import working_stack
from .case import LAX_VIEWS, Case, LaxView
from .errors import InputError
from .geometry import Volume, from_sitk, from_slicerio_voxels, to_sitk, to_slicerio_voxels
from .header import inspect as inspect_header, reconcile
from .labels import STRUCTURES, from_segment_names, present_labels, to_canonical

VOLUME_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _suffix(path) -> str:
    name = str(path).lower()
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path) -> Iterator[str]:
    """Yield a temporary path beside ``path`` that is renamed onto it only on success: the one
    atomic write of the engine (volumes, surfaces, weights, cards), so nothing is ever half-written.
    The file gets the permissions of any new file under the user's umask (``mkstemp`` alone would
    make it private)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith((".seg.nrrd", ".nii.gz")) else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=str(path.parent))
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


#: The record every command writes into its output folder; its ``files`` list is what
#: ``--overwrite`` may remove (and nothing else).
RUN_RECORD = "run.json"


def _writable_folder(folder: Path) -> None:
    """Refuse, before any computation, an output folder that cannot be created or written."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"The output {folder} is a file, not a folder; give a folder path.")
    ancestor = folder
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"Cannot create the output folder {folder}: {ancestor} is a file.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"Cannot write the output folder {folder}: {ancestor} is not writable (permission denied).")


def previous_run_files(folder, overwrite: bool = False) -> List[Path]:
    """Check ``folder`` before a command computes anything: it must be writable, and empty unless
    ``overwrite``; then the files a previous run of this tool wrote there (listed in its
    :data:`RUN_RECORD`) are returned, to be replaced when the new results are committed. A folder
    with other files is refused even with ``overwrite``: this tool never deletes what it did not
    write."""
    folder = Path(folder)
    _writable_folder(folder)
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if not present:
        return []
    if not overwrite:
        raise InputError(f"The output folder {folder} is not empty ({len(present)} entries, e.g. {present[0]}); "
                         "choose an empty folder, or pass --overwrite to replace an earlier run's files.")
    try:
        listed = json.loads((folder / RUN_RECORD).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        raise InputError(f"--overwrite: {folder} holds no {RUN_RECORD} of an earlier run, so nothing in it is "
                         "known to be this tool's to replace; choose an empty folder.") from None
    listed = {str(name) for name in listed} | {RUN_RECORD}
    foreign = [name for name in present if name not in listed]
    if foreign:
        names = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise InputError(f"--overwrite: {folder} also holds files an earlier run did not write ({names}); move them "
                         "or choose another folder.")
    return [folder / name for name in present]


@contextlib.contextmanager
def staged_folder(folder, replace: Sequence[Path] = ()) -> Iterator[Path]:
    """Yield a temporary folder whose files move into ``folder`` only on success; on an error
    nothing is left behind (``folder`` is created only if everything worked). ``replace``: files
    of an earlier run (:func:`previous_run_files`) removed just before the new files move in."""
    folder = Path(folder)
    _writable_folder(folder)
    parent = folder.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=str(parent)))
    try:
        yield tmp
        folder.mkdir(parents=True, exist_ok=True)
        for old in replace:
            if old.is_file():
                old.unlink()
        for item in sorted(tmp.iterdir()):
            os.replace(item, folder / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_readable(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"File not found: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder; expected a NIfTI, NRRD, MHA or .seg.nrrd file.")
    if _suffix(path) not in VOLUME_SUFFIXES:
        raise InputError(f"{path.name}: unsupported file type; expected one of {', '.join(VOLUME_SUFFIXES)}.")
    return path


def read_volume(path) -> Volume:
    """Read an image or label file into a Volume (RAS) without any label mapping. The header is
    checked first (:mod:`.header`: ITK reads many broken headers silently)."""
    return _read_volume(path)[0]


def _read_volume(path, labels: bool = False) -> Tuple[Volume, List[str]]:
    """:func:`read_volume`, and the header's notes for the user (e.g. which NIfTI pose was used);
    ``labels``: a label map is expected (NaN voxels, which ITK reads as 0, are refused)."""
    import SimpleITK as sitk

    path = _check_readable(path)
    if _suffix(path) == ".seg.nrrd":
        volume, _, notes = _read_seg_nrrd(path)
        return volume, notes
    header = inspect_header(path)
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's stderr warnings; the header checks speak instead
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path.name}: cannot be read as an image ({str(exc).strip().splitlines()[-1]}).") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    try:
        volume = from_sitk(image)
    except InputError as exc:
        raise InputError(f"{path.name}: {exc}") from None
    return reconcile(header, volume, labels)


def _read_seg_nrrd(path: Path):
    """(volume, segments, header notes) of a .seg.nrrd; layered segments are flattened."""
    import slicerio

    header = inspect_header(path)
    try:
        seg = slicerio.read_segmentation(str(path))
    except Exception as exc:  # slicerio raises plain exceptions on malformed headers
        raise InputError(f"{path.name}: not a readable .seg.nrrd ({exc}).") from None
    voxels = np.asarray(seg["voxels"])
    segments = seg.get("segments", [])
    if voxels.ndim == 4:  # overlapping segments are stored in layers: flatten by segment
        flat = np.zeros(voxels.shape[1:], np.int32)
        for n, s in enumerate(segments, start=1):
            layer = s.get("layer", 0)
            if not 0 <= layer < voxels.shape[0]:
                raise InputError(f"{path.name}: segment {s.get('name', n)!r} is in layer {layer}; expected a "
                                 f"layer from 0 to {voxels.shape[0] - 1}.")
            flat[voxels[layer] == s["labelValue"]] = n
        segments = [dict(s, labelValue=n) for n, s in enumerate(segments, start=1)]
        voxels = flat
    volume, notes = reconcile(header, from_slicerio_voxels(voxels, seg["ijkToLPS"]))
    return volume, segments, notes


def read_segmentation(path, convention: str = "auto") -> Tuple[Volume, str]:
    """Read a segmentation as canonical labels; returns (volume, how labels were mapped).

    ``.seg.nrrd`` segments are mapped by name when ``convention`` is 'auto'; other files by
    the named convention (or its automatic detection)."""
    path = _check_readable(path)
    if _suffix(path) == ".seg.nrrd":
        volume, segments, notes = _read_seg_nrrd(path)
        if convention == "auto" and segments:
            table = from_segment_names({s.get("name", s.get("id", "?")): s["labelValue"] for s in segments})
            values, where = np.unique(as_integer_labels(volume, path), return_inverse=True)  # no LUT of max+1
            labels = np.array([table.get(int(v), 0) for v in values], np.uint8)[where.reshape(volume.shape)]
            names = ", ".join(f"{s.get('name')}->{STRUCTURES[table[s['labelValue']]].key}" for s in segments)
            message = f"label mapping by segment name: {names}"
        else:
            labels, message = _canonical(volume, path, convention)
    else:
        volume, notes = _read_volume(path, labels=True)
        labels, message = _canonical(volume, path, convention)
    if not labels.any():
        raise InputError(f"{path.name}: the segmentation is empty after label mapping.")
    return volume.with_array(labels.astype(np.uint8)), "; ".join([message] + notes)


def _canonical(volume: Volume, path: Path, convention: str):
    """:func:`.labels.to_canonical` of the file's labels, its refusals naming the file."""
    try:
        return to_canonical(as_integer_labels(volume, path), convention)
    except InputError as exc:
        text = str(exc)
        raise InputError(text if text.startswith(path.name) else f"{path.name}: {text}") from None


def as_integer_labels(volume: Volume, path) -> np.ndarray:
    arr = volume.array
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
        if arr.size and arr.min() < 0:
            raise InputError(f"{Path(path).name}: negative label values; expected a label map (0 = background).")
        return arr
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{Path(path).name} is not a label map: {np.count_nonzero(~np.isfinite(arr))} voxels are "
                         "NaN or infinite; expected integer labels (0 = background).")
    if not np.all(arr == np.round(arr)) or (arr.size and arr.min() < 0):
        raise InputError(f"{Path(path).name} is not a label map: its voxels are non-integer intensities "
                         "(did you pass the MR image instead of its segmentation?).")
    if arr.size and arr.max() > 1000:
        raise InputError(f"{Path(path).name} is not a label map: values up to {arr.max():.0f}.")
    return arr.astype(np.int32)


def as_single_slice(volume: Volume, what: str) -> Volume:
    """Make the one-voxel-thick axis of a 2D view the k axis (keeping the physical pose)."""
    thin = [a for a, n in zip((2, 1, 0), volume.shape) if n == 1]  # i, j, k axes with one voxel
    if not thin:
        raise InputError(f"{what} must be a single slice; it has shape {volume.shape} (k, j, i).")
    axis = thin[-1]
    if axis == 2:
        return volume
    perm = [a for a in (0, 1, 2) if a != axis] + [axis]  # new i, j, k = old axes
    m = np.eye(4)
    m[:3, :3] = volume.ijk_to_ras[:3, perm]
    if np.linalg.det(m[:3, :3]) < 0:
        perm[0], perm[1] = perm[1], perm[0]
        m[:3, :3] = volume.ijk_to_ras[:3, perm]
    m[:3, 3] = volume.ijk_to_ras[:3, 3]
    arr_ijk = volume.array.transpose(2, 1, 0)
    return Volume(np.ascontiguousarray(arr_ijk.transpose(perm).transpose(2, 1, 0)), m)


def read_lax(path, view: Optional[str] = None, convention: str = "auto") -> Tuple[LaxView, str]:
    """Read a long-axis segmentation. ``view`` ('2ch', '3ch', '4ch') defaults to the one named
    in the file name."""
    if view is None:
        found = [v for v in LAX_VIEWS if v in Path(path).name.lower()]
        if len(found) != 1:
            raise InputError(f"Cannot tell the long-axis view of {Path(path).name}; name it, e.g. "
                             "'--lax 4ch=FILE' (views: 2ch, 3ch, 4ch).")
        view = found[0]
    volume, message = read_segmentation(path, convention)
    return LaxView(view, as_single_slice(volume, f"The {view} view {Path(path).name}")), f"{view}: {message}"


def check_shared_grid(labels: Volume, image: Optional[Volume], image_path) -> None:
    """The image and its labels must lie on one grid: the same shape (k, j, i) and the same pose, to a
    tenth of the smallest voxel at every corner of the grid (a size match alone lets a shifted or
    rotated image through, and its slices would then be paired with the wrong labels)."""
    if image is None:
        return
    if image.shape != labels.shape:
        raise InputError(f"The image {Path(image_path).name} {image.shape} and the SAX segmentation {labels.shape} "
                         "must share one grid.")
    a, b = labels.geometry, image.geometry
    corners = np.array([[i, j, k] for i in (0, a.shape[2] - 1) for j in (0, a.shape[1] - 1)
                        for k in (0, a.shape[0] - 1)], float)
    gap = float(np.max(np.linalg.norm(a.index_to_ras(corners) - b.index_to_ras(corners), axis=1)))
    if gap > 0.1 * float(min(a.spacing)):
        raise InputError(f"The image {Path(image_path).name} and the SAX segmentation have the same size but not "
                         f"the same pose (their grids lie up to {gap:.3g} mm apart); they must share one grid.")


def read_case(sax_path, lax: Sequence[Tuple[Optional[str], str]] = (), image_path=None,
              convention: str = "auto", name: Optional[str] = None,
              slice_axis: Optional[str] = None) -> Tuple[Case, List[str]]:
    """Build a Case from files; ``lax`` holds (view or None, path) pairs. The stack's slice axis
    (found from the spacings, or ``slice_axis`` 'i'/'j'/'k') becomes k; ``case.info['axis_order']``
    undoes it (:func:`.axes.restore_axes`). Returns the case and the messages for the user."""
    sax, message = read_segmentation(sax_path, convention)
    messages = [f"SAX: {message}"]
    views = []
    for view, path in lax:
        lax_view, msg = read_lax(path, view, convention)
        views.append(lax_view)
        messages.append(msg)
    image = None
    if image_path is not None:
        image = read_volume(image_path)
        check_shared_grid(sax, image, image_path)
    sax, image, order, note = working_stack(sax, image, Path(sax_path).name, slice_axis)
    messages += [note] if note else []
    return Case(sax=sax, lax=views, image=image, name=name or file_stem(sax_path),
                info={"axis_order": list(order)}), messages


def file_stem(path) -> str:
    """A file's name without its (double) suffix: ``sax.seg.nrrd`` -> ``sax``; a case's default name."""
    name = Path(path).name
    suffix = _suffix(name)
    return name[: -len(suffix)] if suffix and name.lower().endswith(suffix) else Path(name).stem


def write_segmentation(volume: Volume, path) -> Path:
    """Write canonical labels: ``.seg.nrrd`` with names, colours and terminology (slicerio),
    or NIfTI/NRRD/MHA label maps (SimpleITK)."""
    import SimpleITK as sitk

    path = Path(path)
    suffix = _suffix(path)
    if suffix not in VOLUME_SUFFIXES:
        raise InputError(f"Cannot write {path.name}: use .seg.nrrd, .nii.gz, .nii, .nrrd or .mha.")
    labels = volume.array.astype(np.uint8)
    with atomic_path(path) as tmp:
        if suffix == ".seg.nrrd":
            import slicerio
            from slicerio.segmentation import terminology_entry_from_string

            voxels, ijk_to_lps = to_slicerio_voxels(volume.with_array(labels))
            segments = []
            for lab in present_labels(labels):
                s = STRUCTURES[lab]
                segments.append({"id": s.key, "name": s.name, "color": list(s.color), "labelValue": int(lab),
                                 "layer": 0, "terminology": terminology_entry_from_string(s.terminology)})
            slicerio.write_segmentation(tmp, {"voxels": voxels, "ijkToLPS": ijk_to_lps, "segments": segments,
                                              "containedRepresentationNames": ["Binary labelmap"],
                                              "masterRepresentation": "Binary labelmap"})
            _drop_header_timestamp(tmp)
        else:
            sitk.WriteImage(to_sitk(volume.with_array(labels)), tmp, True)
    return path


def _drop_header_timestamp(path) -> None:
    """Remove the ``# on <date>`` comment pynrrd writes into NRRD headers, so that the same input
    and seed give byte-identical files (users diff runs)."""
    data = Path(path).read_bytes()
    end = data.find(b"\n\n")
    if end < 0:
        return
    header = b"\n".join(line for line in data[:end].split(b"\n") if not line.startswith(b"# on "))
    Path(path).write_bytes(header + data[end:])


def write_volume(volume: Volume, path) -> Path:
    """Write an image volume (any scalar type) with SimpleITK."""
    import SimpleITK as sitk

    path = Path(path)
    if _suffix(path) in (".seg.nrrd", "") or _suffix(path) not in VOLUME_SUFFIXES:
        raise InputError(f"Cannot write the image {path.name}: use .nii.gz, .nii, .nrrd or .mha.")
    with atomic_path(path) as tmp:
        sitk.WriteImage(to_sitk(volume), tmp, True)
    return path


def write_displacements(displacements: np.ndarray, path, residuals: Optional[np.ndarray] = None,
                        estimated: Optional[np.ndarray] = None) -> Path:
    """CSV of per-slice displacements: slice index, dx_mm, dy_mm (stack i and j axes), then the
    optional columns estimated (1/0, see ``Result.estimated``) and residual. A displacement that
    was not measured (NaN: the slice shows no heart) is an empty field, not a 0."""
    d = np.asarray(displacements, float)
    number = lambda v, fmt: "" if not np.isfinite(v) else format(v, fmt)  # noqa: E731
    rows = ["slice,dx_mm,dy_mm" + (",estimated" if estimated is not None else "")
            + (",residual" if residuals is not None else "")]
    for k, (dx, dy) in enumerate(d):
        rows.append(f"{k},{number(dx, '.4f')},{number(dy, '.4f')}"
                    + (f",{int(bool(estimated[k]))}" if estimated is not None else "")
                    + (f",{number(residuals[k], '.6g')}" if residuals is not None else ""))
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(rows) + "\n")
    return Path(path)
