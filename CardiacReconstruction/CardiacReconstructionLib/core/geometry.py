"""The engine's one convention for arrays and geometry, and the only conversions out of it.

Convention (used everywhere inside the engine)
----------------------------------------------
* A :class:`Volume` is a numpy array indexed ``[k, j, i]`` (slice, row, column) plus a 4x4
  matrix ``ijk_to_ras`` that maps homogeneous voxel indices ``(i, j, k, 1)`` to RAS millimetres.
  This is exactly Slicer's own convention (``slicer.util.arrayFromVolume`` returns ``[k, j, i]``
  and ``GetIJKToRASMatrix`` is RAS), so the MRML adapter needs no reordering.
* Geometry vectors (spacing, axis directions) are always listed in ``i, j, k`` order, as in
  ITK and Slicer; only the array is ``k, j, i``. ``Geometry.shape`` is the array shape (k, j, i).
* For a short-axis (SAX) stack, k is the slice axis; in-plane displacements are ``(dx, dy)``
  millimetres along the stack's i and j axis directions.

Conversions at the edges (only here)
------------------------------------
* SimpleITK / ITK files (NIfTI, NRRD, MHA) are LPS: ``GetArrayFromImage`` is already
  ``[k, j, i]``; the matrix is flipped by ``diag(-1, -1, 1, 1)``.
* slicerio arrays are ``[i, j, k]`` with an ``ijkToLPS`` matrix: transpose and flip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

#: RAS <-> LPS flip (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _check_matrix(ijk_to_ras) -> np.ndarray:
    m = np.asarray(ijk_to_ras, dtype=float)
    if m.shape != (4, 4):
        raise InputError(f"The IJK-to-RAS matrix must be 4x4, got shape {m.shape}.")
    if not np.all(np.isfinite(m)):
        raise InputError("The volume geometry contains non-finite numbers (NaN or infinity).")
    if abs(np.linalg.det(m[:3, :3])) < 1e-9:
        raise InputError("The volume geometry is degenerate (zero spacing or collinear axes).")
    return m


def make_ijk_to_ras(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> np.ndarray:
    """Build an IJK-to-RAS matrix from spacing (i, j, k), origin (RAS mm of voxel 0's centre)
    and a 3x3 direction matrix whose columns are the unit i, j, k axes in RAS."""
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    m = np.eye(4)
    m[:3, :3] = d * np.asarray(spacing, dtype=float)[None, :]
    m[:3, 3] = origin
    return m


@dataclass(frozen=True)
class Geometry:
    """A voxel grid: array shape ``(k, j, i)`` and its IJK-to-RAS matrix."""

    shape: tuple
    ijk_to_ras: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "ijk_to_ras", _check_matrix(self.ijk_to_ras))
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise InputError(f"A volume must be 3D with at least one voxel per axis, got shape {self.shape}.")

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit i, j, k axes in RAS."""
        return self.ijk_to_ras[:3, :3] / self.spacing[None, :]

    @property
    def origin(self) -> np.ndarray:
        """RAS position (mm) of the centre of voxel (0, 0, 0)."""
        return self.ijk_to_ras[:3, 3].copy()

    @property
    def n_slices(self) -> int:
        return self.shape[0]

    def index_to_ras(self, ijk) -> np.ndarray:
        """Map (..., 3) voxel coordinates in i, j, k order to RAS mm."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ self.ijk_to_ras[:3, :3].T + self.ijk_to_ras[:3, 3]

    def ras_to_index(self, ras) -> np.ndarray:
        """Map (..., 3) RAS points to continuous voxel coordinates in i, j, k order."""
        inv = np.linalg.inv(self.ijk_to_ras)
        ras = np.asarray(ras, dtype=float)
        return ras @ inv[:3, :3].T + inv[:3, 3]

    def slice_centres(self) -> np.ndarray:
        """RAS centre (mm) of every k-slice, shape (n_slices, 3)."""
        k = np.arange(self.shape[0], dtype=float)
        ijk = np.stack([np.full_like(k, (self.shape[2] - 1) / 2), np.full_like(k, (self.shape[1] - 1) / 2), k], axis=1)
        return self.index_to_ras(ijk)

    def with_slices(self, n_slices: int, slice_spacing: float, first_slice_offset_mm: float = 0.0) -> "Geometry":
        """The same in-plane grid with another number and spacing of k-slices; the first new
        slice lies ``first_slice_offset_mm`` along the k axis from the current first slice."""
        m = self.ijk_to_ras.copy()
        k_dir = self.direction[:, 2]
        m[:3, 2] = k_dir * slice_spacing
        m[:3, 3] = self.origin + k_dir * first_slice_offset_mm
        return Geometry((n_slices, self.shape[1], self.shape[2]), m)

    def same_as(self, other: "Geometry", atol: float = 1e-4) -> bool:
        return self.shape == other.shape and np.allclose(self.ijk_to_ras, other.ijk_to_ras, atol=atol)


@dataclass(frozen=True)
class Volume:
    """An array ``[k, j, i]`` on a :class:`Geometry`. Integer arrays are label maps."""

    array: np.ndarray
    ijk_to_ras: np.ndarray

    def __post_init__(self):
        arr = np.asarray(self.array)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise InputError(f"A volume must be a 3D array (k, j, i), got {arr.ndim} dimensions.")
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "ijk_to_ras", _check_matrix(self.ijk_to_ras))

    @classmethod
    def on(cls, geometry: Geometry, array) -> "Volume":
        array = np.asarray(array)
        if array.shape != geometry.shape:
            raise InputError(f"Array shape {array.shape} does not match the grid shape {geometry.shape}.")
        return cls(array, geometry.ijk_to_ras)

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.array.shape, self.ijk_to_ras)

    @property
    def spacing(self) -> np.ndarray:
        return self.geometry.spacing

    @property
    def shape(self) -> tuple:
        return self.array.shape

    @property
    def is_label(self) -> bool:
        return np.issubdtype(self.array.dtype, np.integer) or self.array.dtype == bool

    def with_array(self, array) -> "Volume":
        return Volume.on(self.geometry, array)

    def copy(self) -> "Volume":
        return Volume(self.array.copy(), self.ijk_to_ras.copy())


def to_sitk(volume: Volume):
    """Volume -> SimpleITK image (LPS physical space)."""
    import SimpleITK as sitk

    arr = volume.array
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    m = LPS_TO_RAS @ volume.ijk_to_ras  # ijk -> LPS
    geo = Geometry(volume.shape, m)
    img.SetSpacing([float(s) for s in geo.spacing])
    img.SetOrigin([float(o) for o in geo.origin])
    img.SetDirection([float(d) for d in geo.direction.ravel()])
    return img


def from_sitk(image) -> Volume:
    """SimpleITK image (LPS) -> Volume (RAS). 2D images become one-slice volumes."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(image)
    dim = image.GetDimension()
    spacing = list(image.GetSpacing())
    origin = list(image.GetOrigin())
    direction = np.array(image.GetDirection(), dtype=float).reshape(dim, dim)
    if dim == 2:
        arr = arr[None]
        d3 = np.eye(3)
        d3[:2, :2] = direction
        direction, spacing, origin = d3, spacing + [1.0], origin + [0.0]
    elif dim != 3:
        raise InputError(f"Only 2D and 3D images are supported, got a {dim}D image.")
    if arr.ndim != 3:
        raise InputError(f"Expected a scalar image; this one has {arr.shape[-1]} components per voxel.")
    m_lps = make_ijk_to_ras(spacing, origin, direction)
    return Volume(arr, LPS_TO_RAS @ m_lps)


def to_slicerio_voxels(volume: Volume):
    """Volume -> (voxels[i, j, k], ijkToLPS) as slicerio expects."""
    return np.ascontiguousarray(volume.array.transpose(2, 1, 0)), LPS_TO_RAS @ volume.ijk_to_ras


def from_slicerio_voxels(voxels, ijk_to_lps) -> Volume:
    """slicerio (voxels[i, j, k], ijkToLPS) -> Volume."""
    voxels = np.asarray(voxels)
    if voxels.ndim != 3:
        raise InputError(f"Expected a 3D segmentation array, got {voxels.ndim} dimensions.")
    return Volume(np.ascontiguousarray(voxels.transpose(2, 1, 0)), LPS_TO_RAS @ np.asarray(ijk_to_lps, float))


def sitk_reference(geometry: Geometry):
    """An empty SimpleITK image on ``geometry`` (the reference grid of a resampling)."""
    return to_sitk(Volume(np.zeros(geometry.shape, np.uint8), geometry.ijk_to_ras))


def sitk_affine(matrix_ras: np.ndarray):
    """A 4x4 RAS point map (reference -> input, ITK's direction) as a SimpleITK transform,
    which works in LPS."""
    import SimpleITK as sitk

    m = LPS_TO_RAS @ np.asarray(matrix_ras, float) @ LPS_TO_RAS
    transform = sitk.AffineTransform(3)
    transform.SetMatrix([float(v) for v in m[:3, :3].ravel()])
    transform.SetTranslation([float(v) for v in m[:3, 3]])
    return transform


# Resampling (SimpleITK does the geometry)
_INTERPOLATORS = {"nearest": "sitkNearestNeighbor", "linear": "sitkLinear", "label_linear": "sitkLabelLinear",
                  "label_gaussian": "sitkLabelGaussian", "bspline": "sitkBSpline"}


def resample(volume: Volume, reference: Geometry, interpolation: str = "nearest", transform=None,
             default_value: float = 0.0, nearest_extrapolation: bool = False) -> Volume:
    """Resample ``volume`` onto ``reference`` by physical position.

    ``transform`` is an optional SimpleITK transform in LPS that maps reference points to input
    points (ITK's convention). Labels keep their dtype with ``nearest``/``label_*`` interpolation.
    """
    import SimpleITK as sitk

    if interpolation not in _INTERPOLATORS:
        raise ValueError(f"Unknown interpolation {interpolation!r}; choose from {sorted(_INTERPOLATORS)}.")
    ref = sitk_reference(reference)
    src = to_sitk(volume)
    out_type = src.GetPixelID()
    if interpolation in ("linear", "bspline") and volume.is_label:
        src = sitk.Cast(src, sitk.sitkFloat32)
        out_type = sitk.sitkFloat32
    res = sitk.Resample(src, ref, transform if transform is not None else sitk.Transform(),
                        getattr(sitk, _INTERPOLATORS[interpolation]), float(default_value), out_type,
                        bool(nearest_extrapolation))
    return Volume.on(reference, sitk.GetArrayFromImage(res))


def resample_onehot(volume: Volume, reference: Geometry, labels, transform=None,
                    nearest_extrapolation: bool = False) -> np.ndarray:
    """Linearly resample each label's indicator onto ``reference``: float32 array
    ``[len(labels), k, j, i]`` of label probabilities (smooth, geometry-aware)."""
    out = []
    for lab in labels:
        ind = Volume((volume.array == lab).astype(np.float32), volume.ijk_to_ras)
        out.append(resample(ind, reference, "linear", transform,
                            nearest_extrapolation=nearest_extrapolation).array.astype(np.float32))
    return np.stack(out)
