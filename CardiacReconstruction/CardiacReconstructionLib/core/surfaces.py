"""Smooth, closed surface meshes of label maps, and surface files that 3D Slicer reads correctly.

Meshing follows Slicer's own closed-surface conversion (discrete flying edges on the label,
windowed-sinc smoothing, optional decimation, normals), so a surface made here looks like the one
Slicer would show for the same segment. Meshes are built in physical millimetres (spacing applied
before smoothing, so anisotropic voxels are smoothed isotropically) and then moved into RAS with
the rest of the volume's IJK-to-RAS matrix. Each mask is padded by one voxel so that structures
touching the grid border still give closed (watertight) surfaces, and triangles are oriented so
that normals point out of the structure whatever the handedness of the matrix.

Files: polydata inside the engine are RAS. Files carry their coordinate system the way Slicer
writes it (``SPACE=LPS`` / ``SPACE=RAS`` in the .vtk/.stl header or the .obj comment, a ``SPACE``
field-data string in .vtp); Slicer assumes LPS for files without the tag, and so does
:func:`read_surface`. :func:`write_surface` writes LPS by default, like Slicer.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, Optional

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonCore import vtkStringArray
from vtkmodules.vtkCommonDataModel import vtkFieldData, vtkImageData, vtkPolyData
from vtkmodules.vtkCommonTransforms import vtkTransform
from vtkmodules.vtkFiltersCore import (vtkFeatureEdges, vtkMassProperties, vtkPolyDataNormals, vtkQuadricDecimation,
                                       vtkTriangleFilter, vtkWindowedSincPolyDataFilter)
from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D, vtkTransformPolyDataFilter
from vtkmodules.vtkIOGeometry import vtkOBJReader, vtkOBJWriter, vtkSTLReader, vtkSTLWriter
from vtkmodules.vtkIOLegacy import vtkPolyDataReader, vtkPolyDataWriter
from vtkmodules.vtkIOXML import vtkXMLPolyDataReader, vtkXMLPolyDataWriter

from .errors import InputError
from .geometry import LPS_TO_RAS, Geometry, Volume
from .io import atomic_path
from .labels import STRUCTURES, present_labels

SURFACE_EXTENSIONS = (".vtp", ".vtk", ".stl", ".obj")
COORDINATE_SYSTEMS = ("LPS", "RAS")
_SPACE_TAG = "SPACE"  # Slicer's key for the coordinate system of model files
_HEADER = "CardiacReconstruction output."


def _run(algorithm, source) -> vtkPolyData:
    """Run one VTK filter on ``source`` (a data object) and return its output."""
    algorithm.SetInputData(source)
    algorithm.Update()
    return algorithm.GetOutput()


def _transform(polydata: vtkPolyData, matrix: np.ndarray) -> vtkPolyData:
    transform = vtkTransform()
    transform.SetMatrix(np.asarray(matrix, float).ravel().tolist())
    f = vtkTransformPolyDataFilter()
    f.SetTransform(transform)
    return _run(f, polydata)


def padded_crop(mask: np.ndarray):
    """The mask's bounding box with one voxel of background around it, and the index (i, j, k)
    of the crop's first voxel in the original grid. Cropping keeps meshing fast; the padding
    closes surfaces at the grid border."""
    nonzero = np.nonzero(mask)
    lo = np.array([a.min() for a in nonzero])
    hi = np.array([a.max() for a in nonzero]) + 1
    crop = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    return np.pad(crop, 1).astype(np.uint8), (lo[::-1] - 1).astype(float)


def _image_in_mm(crop: np.ndarray, first_ijk: np.ndarray, spacing: np.ndarray) -> vtkImageData:
    """vtkImageData of a [k, j, i] array in 'scaled index' space (index * spacing): VTK's
    dimensions are (i, j, k) with i fastest, which is exactly numpy's C order of [k, j, i]."""
    image = vtkImageData()
    image.SetDimensions(crop.shape[2], crop.shape[1], crop.shape[0])
    image.SetSpacing(*(float(s) for s in spacing))
    image.SetOrigin(*(float(v) for v in first_ijk * spacing))
    image.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(crop).ravel(), deep=True))
    return image


def _signed_volume(polydata: vtkPolyData) -> float:
    """Divergence-theorem volume (mm^3): positive when triangles are wound outwards."""
    if polydata.GetNumberOfPolys() == 0:
        return 0.0
    tri = vtk_to_numpy(polydata.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    p = polydata_points(polydata)
    return float(np.einsum("ij,ij->i", p[tri[:, 0]], np.cross(p[tri[:, 1]], p[tri[:, 2]])).sum() / 6.0)


def _outward_normals(polydata: vtkPolyData) -> vtkPolyData:
    """Point normals with consistently ordered triangles that face out of the structure.
    Splitting is off so that no point is duplicated (the surface stays watertight)."""
    def normals(flip: bool) -> vtkPolyData:
        f = vtkPolyDataNormals()
        f.SplittingOff()
        f.ConsistencyOn()
        f.AutoOrientNormalsOff()
        f.ComputePointNormalsOn()
        f.ComputeCellNormalsOff()
        f.SetFlipNormals(flip)
        return _run(f, polydata)

    out = normals(False)
    return normals(True) if _signed_volume(out) < 0 else out


def _smooth(surface: vtkPolyData, iterations: int, pass_band: float) -> vtkPolyData:
    """Windowed-sinc smoothing (as Slicer smooths its surfaces): it shrinks a closed surface far
    less than Laplacian smoothing, and with boundary and feature-edge handling off it keeps the
    surface closed."""
    smoother = vtkWindowedSincPolyDataFilter()
    smoother.SetNumberOfIterations(int(iterations))
    smoother.SetPassBand(float(pass_band))
    smoother.NormalizeCoordinatesOn()
    smoother.BoundarySmoothingOff()
    smoother.FeatureEdgeSmoothingOff()
    smoother.NonManifoldSmoothingOn()
    return _run(smoother, surface)


def _decimate_keeping_closed(surface: vtkPolyData, reduction: float) -> vtkPolyData:
    """Quadric decimation, unless it would open the surface: on smooth anatomy it keeps the
    mesh watertight, but where a ragged mask pinches the surface at single vertices it can
    create non-manifold edges, and then the full-resolution mesh is kept."""
    decimator = vtkQuadricDecimation()
    decimator.SetTargetReduction(reduction)
    decimator.VolumePreservationOn()
    decimated = _run(decimator, surface)
    return decimated if open_edge_count(decimated) == 0 else surface


def mask_surface(mask: np.ndarray, ijk_to_ras, smoothing_iterations: int = 20, pass_band: float = 0.01,
                 decimate: Optional[float] = None) -> vtkPolyData:
    """Closed, smoothed triangle surface (RAS mm) of a boolean mask ``[k, j, i]``.

    Parameters
    ----------
    mask : boolean (or 0/1) array indexed [k, j, i].
    ijk_to_ras : the mask's 4x4 IJK-to-RAS matrix (any oblique pose or handedness).
    smoothing_iterations : windowed-sinc iterations; 0 keeps the voxel staircase.
    pass_band : windowed-sinc pass band in (0, 2); smaller smooths more (Slicer's default
        smoothing factor 0.5 is 0.01).
    decimate : optional fraction in [0, 1) of triangles to remove (quadric decimation; skipped
        where it would break the surface's watertightness).

    Returns an empty vtkPolyData for an empty mask.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise InputError(f"A mask must be a 3D array (k, j, i), got {mask.ndim} dimensions.")
    geometry = Geometry(mask.shape, ijk_to_ras)
    if not 0.0 < pass_band < 2.0:
        raise InputError(f"The smoothing pass band must lie in (0, 2), got {pass_band}.")
    if int(smoothing_iterations) < 0:
        raise InputError(f"Smoothing iterations must be 0 or more, got {smoothing_iterations}.")
    if decimate is not None and not 0.0 <= decimate < 1.0:
        raise InputError(f"Decimation is the fraction of triangles to remove, in [0, 1); got {decimate}.")
    if not mask.any():
        return vtkPolyData()

    crop, first_ijk = padded_crop(mask.astype(bool))
    return contour_surface(vtkDiscreteFlyingEdges3D(), 1, crop, first_ijk, geometry, smoothing_iterations,
                           pass_band, decimate)


def contour_surface(contour, level: float, crop: np.ndarray, first_ijk: np.ndarray, geometry: Geometry,
                    smoothing_iterations: int, pass_band: float, decimate: Optional[float] = None) -> vtkPolyData:
    """The one meshing path of label masks and signed distance fields: ``contour`` (a flying-edges
    filter) at ``level`` on a padded crop (first voxel at index ``first_ijk`` of ``geometry``) in
    millimetres, windowed-sinc smoothing, optional decimation, then RAS with outward normals."""
    spacing = geometry.spacing
    contour.SetValue(0, float(level))
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    contour.ComputeScalarsOff()
    surface = _run(contour, _image_in_mm(crop, first_ijk, spacing))
    if int(smoothing_iterations) > 0:
        surface = _smooth(surface, smoothing_iterations, pass_band)
    if decimate:
        surface = _decimate_keeping_closed(surface, float(decimate))
    mm_to_ras = geometry.ijk_to_ras @ np.diag(np.append(1.0 / spacing, 1.0))
    return _outward_normals(_transform(surface, mm_to_ras))


def label_surfaces(volume: Volume, labels: Optional[Iterable[int]] = None, smoothing_iterations: int = 20,
                   pass_band: float = 0.01, decimate: Optional[float] = None) -> Dict[str, vtkPolyData]:
    """One closed surface (RAS mm) per canonical structure, keyed by ``STRUCTURES[label].key``.

    ``labels`` defaults to every canonical label present; requested labels that are absent from
    the volume are left out of the result. Other arguments as in :func:`mask_surface`.
    """
    if not isinstance(volume, Volume) or not volume.is_label:
        raise InputError("Surfaces are made from a label volume (integer voxels).")
    wanted = present_labels(volume.array) if labels is None else tuple(int(l) for l in labels)
    unknown = [l for l in wanted if l not in STRUCTURES]
    if unknown:
        raise InputError(f"Labels {unknown} are not canonical structures; expected values in {sorted(STRUCTURES)}.")
    surfaces = {}
    for label in sorted(set(wanted)):
        mask = volume.array == label
        if mask.any():
            surfaces[STRUCTURES[label].key] = mask_surface(mask, volume.ijk_to_ras, smoothing_iterations,
                                                           pass_band, decimate)
    return surfaces


def polydata_points(polydata: vtkPolyData) -> np.ndarray:
    """Point coordinates as a float64 array (N, 3) (a copy)."""
    points = polydata.GetPoints()
    if points is None:
        return np.zeros((0, 3))
    return vtk_to_numpy(points.GetData()).astype(float)


def open_edge_count(polydata: vtkPolyData) -> int:
    """Number of boundary plus non-manifold edges: 0 for a watertight surface."""
    f = vtkFeatureEdges()
    f.BoundaryEdgesOn()
    f.NonManifoldEdgesOn()
    f.FeatureEdgesOff()
    f.ManifoldEdgesOff()
    return int(_run(f, polydata).GetNumberOfCells())


def enclosed_volume(polydata: vtkPolyData) -> float:
    """Volume (mm^3) enclosed by a closed triangle surface."""
    f = vtkMassProperties()
    f.SetInputData(_run(vtkTriangleFilter(), polydata))
    f.Update()
    return float(f.GetVolume())


def _extension(path: str) -> str:
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in SURFACE_EXTENSIONS:
        raise InputError(f"Unsupported surface file extension {ext or '(none)'!r} in {path!r}; "
                         f"use one of {', '.join(SURFACE_EXTENSIONS)}.")
    return ext


def _check_coordinate_system(coordinate_system: str) -> str:
    cs = str(coordinate_system).upper()
    if cs not in COORDINATE_SYSTEMS:
        raise InputError(f"Unknown coordinate system {coordinate_system!r}; expected LPS or RAS.")
    return cs


def _ras_lps(polydata: vtkPolyData) -> vtkPolyData:
    """RAS <-> LPS (its own inverse; a rotation, so triangle orientation is kept)."""
    return _transform(polydata, LPS_TO_RAS)


def _write_vtp(polydata, space):
    """Slicer reads a .vtp file's coordinate system from a field-data string named SPACE; the
    tag goes on a copy of the field data so the caller's polydata is left untouched."""
    field_data = vtkFieldData()
    field_data.DeepCopy(polydata.GetFieldData())
    field_data.RemoveArray(_SPACE_TAG)
    tag = vtkStringArray()
    tag.SetName(_SPACE_TAG)
    tag.InsertNextValue(space)
    field_data.AddArray(tag)
    tagged = vtkPolyData()
    tagged.ShallowCopy(polydata)
    tagged.SetFieldData(field_data)
    w = vtkXMLPolyDataWriter()
    w.SetInputData(tagged)
    w.SetDataModeToAppended()
    w.SetCompressorTypeToZLib()
    return w


def _write_vtk(polydata, space):
    w = vtkPolyDataWriter()
    w.SetInputData(polydata)
    w.SetFileVersion(42)  # readable by VTK < 9 and most other software, as Slicer does
    w.SetFileTypeToBinary()
    w.SetHeader(f"{_HEADER} {_SPACE_TAG}={space}")
    return w


def _write_stl(polydata, space):
    w = vtkSTLWriter()
    w.SetInputData(_run(vtkTriangleFilter(), polydata))
    w.SetFileTypeToBinary()
    w.SetHeader(f"{_HEADER} {_SPACE_TAG}={space}")
    return w


def _write_obj(polydata, space):
    w = vtkOBJWriter()  # the SPACE comment is added after writing
    w.SetInputData(polydata)
    return w


_WRITERS = {".vtp": _write_vtp, ".vtk": _write_vtk, ".stl": _write_stl, ".obj": _write_obj}


def _prepend_obj_comment(path: str, space: str) -> None:
    """vtkOBJWriter has no header option; Slicer reads the coordinate system from the first
    comment of an .obj file, so add one."""
    with open(path, "r", encoding="utf-8") as f:
        body = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"# {_HEADER} {_SPACE_TAG}={space}\n")
        f.write(body)


def write_surface(polydata: vtkPolyData, path, coordinate_system: str = "LPS") -> str:
    """Write a RAS surface to ``path`` (.vtp, .vtk, .stl or .obj), tagged with the coordinate
    system it is stored in (LPS by default, like Slicer). The file appears complete or not at
    all: it is written to a temporary file in the same folder and renamed."""
    path = os.fspath(path)
    ext = _extension(path)
    space = _check_coordinate_system(coordinate_system)
    if not isinstance(polydata, vtkPolyData):
        raise InputError(f"write_surface expects a vtkPolyData, got {type(polydata).__name__}.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"Cannot write {path!r}: the folder {folder!r} does not exist.")
    data = _ras_lps(polydata) if space == "LPS" else polydata
    with atomic_path(path) as tmp:
        writer = _WRITERS[ext](data, space)
        writer.SetFileName(tmp)
        if writer.Write() != 1 or writer.GetErrorCode() != 0:
            raise InputError(f"Could not write the surface file {path!r} (disk full or no permission?).")
        if ext == ".obj":
            _prepend_obj_comment(tmp, space)
    return path


def _space_from_text(text: Optional[str]) -> Optional[str]:
    """'LPS' or 'RAS' from a header or comment containing ``SPACE=...``, else None."""
    text = (text or "").upper()
    for space in COORDINATE_SYSTEMS:
        if f"{_SPACE_TAG}={space}" in text:
            return space
    return None


def _read_with(reader, path):
    reader.SetFileName(path)
    reader.Update()
    return reader.GetOutput()


def read_surface(path) -> vtkPolyData:
    """Read a surface file (.vtp, .vtk, .stl, .obj) into RAS polydata, honouring the file's
    ``SPACE`` tag; untagged files are taken as LPS, as Slicer does."""
    path = os.fspath(path)
    ext = _extension(path)
    if not os.path.isfile(path):
        raise InputError(f"Surface file {path!r} does not exist.")
    if ext == ".vtp":
        reader = vtkXMLPolyDataReader()
        polydata = _read_with(reader, path)
        tag = polydata.GetFieldData().GetAbstractArray(_SPACE_TAG)
        has_tag = tag is not None and tag.GetNumberOfValues() > 0
        space = _space_from_text(f"{_SPACE_TAG}={tag.GetValue(0)}") if has_tag else None
    elif ext == ".vtk":
        reader = vtkPolyDataReader()
        reader.SetFileName(path)
        if not reader.IsFilePolyData():
            raise InputError(f"{path!r} is not a VTK polydata file.")
        polydata = _read_with(reader, path)
        space = _space_from_text(reader.GetHeader())
    elif ext == ".stl":
        reader = vtkSTLReader()
        polydata = _read_with(reader, path)
        space = _space_from_text(reader.GetHeader())
    else:
        reader = vtkOBJReader()
        polydata = _read_with(reader, path)
        space = _space_from_text(reader.GetComment())
    if reader.GetErrorCode() != 0 or polydata is None or polydata.GetNumberOfPoints() == 0:
        raise InputError(f"Could not read a surface from {path!r}: the file is empty or not a valid {ext} file.")
    result = vtkPolyData()
    result.ShallowCopy(polydata if space == "RAS" else _ras_lps(polydata))
    result.GetFieldData().RemoveArray(_SPACE_TAG)
    return result
