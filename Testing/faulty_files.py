"""Builders of real label files and of their header faults, for the malformed-input corpus
(test_malformed_inputs.py) and the fuzz suite (test_fuzz_inputs.py).

Files are written by the engine's own writers (SimpleITK, slicerio), then one header field is
changed in place, byte by byte, the way a broken converter or a hand edit would leave it: the
faults are real files, not mocks of a reader. Nothing here is committed data; every file lives in
a test's tmp_path.
"""

import gzip
import struct
from pathlib import Path

import numpy as np

from CardiacReconstructionLib.cli import main

# NIfTI-1 field offsets and struct formats (little-endian, as ITK writes)
NIFTI_FIELDS = {"dim": (40, "8h"), "datatype": (70, "h"), "bitpix": (72, "h"), "pixdim": (76, "8f"),
                "xyzt_units": (123, "B"), "qform_code": (252, "h"), "sform_code": (254, "h"),
                "quatern": (256, "6f"), "srow": (280, "12f")}


def _load(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _store(path: Path, data: bytes) -> None:
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)


def nifti_fields(path) -> dict:
    data = _load(Path(path))
    return {k: struct.unpack_from("<" + fmt, data, off) for k, (off, fmt) in NIFTI_FIELDS.items()}


def patch_nifti(path, **changes) -> Path:
    """Overwrite NIfTI-1 header fields: ``pixdim={3: 0.0}`` (element -> value) or a full value."""
    path = Path(path)
    data = bytearray(_load(path))
    for key, value in changes.items():
        offset, fmt = NIFTI_FIELDS[key]
        current = list(struct.unpack_from("<" + fmt, data, offset))
        if isinstance(value, dict):
            for index, v in value.items():
                current[index] = v
        elif isinstance(value, (list, tuple)):
            current = list(value)
        else:
            current = [value]
        struct.pack_into("<" + fmt, data, offset, *current)
    _store(path, bytes(data))
    return path


def _split_text_header(data: bytes, end_marker: bytes):
    end = data.find(end_marker)
    assert end > 0, "no header end found"
    return data[:end].decode("latin-1").split("\n"), data[end:]


def patch_nrrd(path, field: str, value: str) -> Path:
    """Set (or add) one NRRD header field, ``field: value``; the data is left as it is."""
    path = Path(path)
    lines, rest = _split_text_header(path.read_bytes(), b"\n\n")
    lines = [line for line in lines if not line.startswith(field + ":")] + [f"{field}: {value}"]
    path.write_bytes("\n".join(lines).encode("latin-1") + rest)
    return path


def nrrd_field(path, field: str) -> str:
    lines, _ = _split_text_header(Path(path).read_bytes(), b"\n\n")
    return next(line.split(":", 1)[1].strip() for line in lines if line.startswith(field + ":"))


def patch_mha(path, key: str, value: str) -> Path:
    """Set (or add, before ElementDataFile) one MetaImage header field ``Key = value``."""
    path = Path(path)
    data = path.read_bytes()
    start = data.find(b"ElementDataFile")
    end = data.find(b"\n", start) + 1
    lines = data[:start].decode("latin-1").split("\n")
    lines = [line for line in lines if line and line.split("=")[0].strip() != key] + [f"{key} = {value}"]
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1") + data[start:end] + data[end:])
    return path


def mha_field(path, key: str) -> str:
    for line in Path(path).read_bytes()[:4096].decode("latin-1").split("\n"):
        if line.split("=")[0].strip() == key:
            return line.split("=", 1)[1].strip()
    raise KeyError(key)


def run_cli(input_path, out, capfd, method: str = "nearest", extra=()):
    """``cardiac-recon run`` in this process; returns (status, stderr lines after the 'SAX:' lines,
    all stderr lines). capfd sees what C++ (ITK, VNL) prints on the real stderr too."""
    capfd.readouterr()
    rc = main(["run", "--input", str(input_path), "--method", method, "--no-surfaces", *extra, "--output", str(out)])
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    rest = list(err)
    while rest and rest[0].startswith("SAX:"):
        rest.pop(0)
    return rc, rest, err


def ring_labels(shape=(5, 16, 16), seed=0) -> np.ndarray:
    """A small canonical SAX-like label stack [k, j, i]: LV (1) in a MYO ring (2), an RV (3) beside it."""
    k, j, i = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]].astype(float)
    rng = np.random.default_rng(seed)
    ci, cj = shape[2] * rng.uniform(0.35, 0.5), shape[1] * rng.uniform(0.4, 0.6)
    radius = min(shape[1], shape[2]) * 0.22
    r = np.hypot(i - ci, j - cj)
    a = np.zeros(shape, np.uint8)
    a[np.hypot(i - (ci + 1.6 * radius), j - cj) < 0.8 * radius] = 3
    a[r < radius] = 2
    a[r < 0.6 * radius] = 1
    return a


def to_nifti2(path, target) -> Path:
    """The same image as a NIfTI-2 file (540-byte header, 64-bit fields), built from a NIfTI-1
    file's fields; for checking that both header layouts are read alike."""
    data = _load(Path(path))
    f = {k: struct.unpack_from("<" + fmt, data, off) for k, (off, fmt) in NIFTI_FIELDS.items()}
    vox_offset = int(struct.unpack_from("<f", data, 108)[0])
    header = bytearray(544)
    struct.pack_into("<i", header, 0, 540)
    header[4:12] = b"n+2\0\r\n\x1a\n"
    struct.pack_into("<hh", header, 12, f["datatype"][0], f["bitpix"][0])
    struct.pack_into("<8q", header, 16, *f["dim"])
    struct.pack_into("<8d", header, 104, *f["pixdim"])
    struct.pack_into("<q", header, 168, 544)
    struct.pack_into("<d", header, 176, struct.unpack_from("<f", data, 112)[0])  # scl_slope
    struct.pack_into("<ii", header, 344, f["qform_code"][0], f["sform_code"][0])
    struct.pack_into("<6d", header, 352, *f["quatern"])
    struct.pack_into("<12d", header, 400, *f["srow"])
    struct.pack_into("<i", header, 500, f["xyzt_units"][0])
    target = Path(target)
    _store(target, bytes(header) + data[vox_offset:])
    return target
