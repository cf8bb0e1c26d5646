"""Signed distance grids (SDGs) of cardiac surfaces, and their zero level sets as surfaces.

Mask2Surface represents each surface as a signed distance grid: the distance (mm) of every voxel
centre to the surface, negative inside, positive outside (the paper's eq. 2), clipped to
``+-clip_mm`` because only the band around the surface carries information and a bounded range
suits the networks. The coarse SDG of a label map (C-SDG) is built from a marching-cubes mesh of
each structure's mask; ground-truth SDGs of the CT cohort come from its registered meshes
(:mod:`..evaluation.surface_truth`), through the same distance helper, :func:`mesh_distance`.

Channels (:data:`SURFACE_KEYS`) and their inside masks on canonical labels:

=================  ==========================
LV_myocardium      label 2
LV_endocardium     label 1 (LV blood pool)
LV_epicardium      labels 1 or 2
RV_endocardium     label 3 (RV blood pool)
=================  ==========================

Distances (:func:`mesh_distance`) are exact point-to-triangle distances next to the surface and
cKDTree distances to point samplings of the mesh farther out, where a sampling with gap ``h``
errs by at most ``h**2 / (2 d)``: the result never underestimates the exact distance and
overestimates it by at most :data:`DISTANCE_TOLERANCE_MM` (0.25 mm). That split is what makes
the four C-SDGs of an inference case take a fraction of a second on one core.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
from scipy.spatial import cKDTree
from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray, vtk_to_numpy
from vtkmodules.vtkCommonCore import vtkDoubleArray, vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D, vtkImplicitPolyDataDistance

from .errors import InputError
from .geometry import Geometry, Volume
from .labels import LV, MYO, RV
from .surfaces import padded_crop, contour_surface

#: Clip of every SDG (mm): values lie in [-SDG_CLIP_MM, +SDG_CLIP_MM].
SDG_CLIP_MM = 20.0
#: The SDG channels, in this order.
SURFACE_KEYS = ("LV_myocardium", "LV_endocardium", "LV_epicardium", "RV_endocardium")
#: Display name and colour of each surface (Slicer model nodes, figures): the colour of the
#: structure it bounds, the epicardium a darker myocardium.
SURFACE_STYLES = {"LV_myocardium": ("LV myocardium surface", (0.93, 0.75, 0.45)),
                  "LV_endocardium": ("LV endocardium", (0.86, 0.27, 0.24)),
                  "LV_epicardium": ("LV epicardium", (0.72, 0.55, 0.30)),
                  "RV_endocardium": ("RV endocardium", (0.29, 0.48, 0.85))}
#: Bound (mm) on the overestimate of a point-to-mesh distance (see :func:`mesh_distance`).
DISTANCE_TOLERANCE_MM = 0.25
#: Clip (in fine-grid voxels) of the SDGs made only to extract a zero level set: the level set
#: depends on the values next to it only, and a narrow band keeps fine grids fast.
_SURFACE_BAND_VOXELS = 4.0


def surface_masks(labels: np.ndarray) -> Dict[str, np.ndarray]:
    """The inside mask (bool, same shape) of every surface in :data:`SURFACE_KEYS` from
    canonical labels."""
    labels = np.asarray(labels)
    return {"LV_myocardium": labels == MYO,
            "LV_endocardium": labels == LV,
            "LV_epicardium": (labels == LV) | (labels == MYO),
            "RV_endocardium": labels == RV}


def positive_mm(value, name: str = "clip_mm") -> float:
    """``value`` as a float; InputError unless it is a positive number of millimetres."""
    number = float(value)
    if not np.isfinite(number) or number <= 0:
        raise InputError(f"{name} must be a positive number of millimetres, got {value}.")
    return number


def _barycentric_weights(level: int) -> np.ndarray:
    """Barycentric weights (n, 3) of a triangle's level-``level`` subdivision without its three
    corners (the mesh vertices are sampled once on their own)."""
    a, b = np.meshgrid(np.arange(level + 1), np.arange(level + 1), indexing="ij")
    keep = (a + b <= level)
    w = np.stack([a[keep], b[keep], level - a[keep] - b[keep]], axis=1) / float(level)
    return w[(w < 1.0).all(axis=1)]


def mesh_samples(vertices: np.ndarray, faces: np.ndarray, max_gap_mm: float = DISTANCE_TOLERANCE_MM) -> np.ndarray:
    """Points (n, 3) on a triangle mesh such that every point of every triangle lies within
    ``max_gap_mm`` of one of them.

    Any point of a triangle lies within ``L / sqrt(3)`` of a corner (``L`` its longest edge; the
    equilateral triangle is the worst case), so a triangle is subdivided into ``n**2`` similar
    triangles with ``n = ceil(L / (sqrt(3) * max_gap_mm))``. Triangles are grouped by ``n`` so a
    mesh with a few large triangles does not oversample the rest.
    """
    vertices = np.asarray(vertices, float)
    faces = np.asarray(faces, np.int64)
    if faces.size == 0:
        return vertices[:0]
    corners = vertices[faces]  # (m, 3 corners, 3)
    edges = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2).max(axis=1)
    levels = np.maximum(1, np.ceil(edges / (np.sqrt(3.0) * float(max_gap_mm)))).astype(int)
    parts = [vertices[np.unique(faces)]]
    for level in np.unique(levels):
        if level < 2:
            continue
        w = _barycentric_weights(int(level))
        parts.append(np.einsum("wc,mcx->mwx", w, corners[levels == level]).reshape(-1, 3))
    return np.concatenate(parts)


def _polydata(vertices: np.ndarray, faces: np.ndarray) -> vtkPolyData:
    """A triangle vtkPolyData from numpy vertices (n, 3) and faces (m, 3)."""
    points = vtkPoints()
    points.SetData(numpy_to_vtk(np.ascontiguousarray(vertices, dtype=float), deep=True))
    cells = vtkCellArray()
    offsets = np.arange(0, 3 * len(faces) + 1, 3, dtype=np.int64)
    cells.SetData(numpy_to_vtkIdTypeArray(offsets, deep=True),
                  numpy_to_vtkIdTypeArray(np.ascontiguousarray(faces, dtype=np.int64).ravel(), deep=True))
    polydata = vtkPolyData()
    polydata.SetPoints(points)
    polydata.SetPolys(cells)
    return polydata


def _exact_distance(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Exact point-to-triangle distances (VTK's cell locator); ~10 us a point, so it is kept
    for the few points next to the surface."""
    implicit = vtkImplicitPolyDataDistance()
    implicit.SetInput(_polydata(vertices, faces))
    values = vtkDoubleArray()
    implicit.FunctionValue(numpy_to_vtk(np.ascontiguousarray(points, dtype=float), deep=True), values)
    return np.abs(vtk_to_numpy(values).astype(float))


def mesh_distance(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, clip_mm: float = SDG_CLIP_MM,
                  tolerance_mm: float = DISTANCE_TOLERANCE_MM) -> np.ndarray:
    """Unsigned distance (mm, float64) from each of ``points`` (n, 3) to a triangle mesh, clipped
    to ``clip_mm`` (also for a mesh without faces).

    The result ``d_s`` never underestimates the exact point-to-triangle distance ``d`` and
    overestimates it by at most ``tolerance_mm``: ``d <= d_s <= d + tolerance_mm``; points
    close to the surface get the exact distance.

    Why this is fast: with samples that cover every triangle (and its edges) to within ``h``,
    the nearest sample to a point is at most ``sqrt(d**2 + h**2)`` away (the exact nearest
    surface point is the foot of a perpendicular onto a face or an edge, or a vertex, which is a
    sample), so the error is below ``min(h, h**2 / (2 d))``: far points need only a coarse
    sampling. The search runs coarse to fine: a cKDTree of the vertices alone (``h`` = longest
    edge / sqrt(3)), then of a sampling with half that gap (:func:`mesh_samples`), each only
    for the points whose error bound still exceeds the tolerance; the remaining points, those
    next to the surface, get VTK's exact point-to-triangle distance. Points beyond ``clip_mm``
    of the mesh's bounding box are not searched at all.
    """
    points = np.asarray(points, float)
    vertices = np.asarray(vertices, float)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    clip, tol = float(clip_mm), float(tolerance_mm)
    if not tol > 0:
        raise InputError(f"The distance tolerance must be positive, got {tolerance_mm}.")
    out = np.full(len(points), clip)
    if len(faces) == 0 or len(points) == 0:
        return out
    triangles = vertices[faces]  # every mesh point lies within the longest edge / sqrt(3) of a vertex (mesh_samples)
    gap = float(np.linalg.norm(triangles - np.roll(triangles, 1, axis=1), axis=2).max() / np.sqrt(3.0))
    corners = vertices[np.unique(faces)]
    todo = np.flatnonzero(np.all((points >= corners.min(0) - clip) & (points <= corners.max(0) + clip), axis=1))
    search_mm = clip + gap  # beyond clip + gap of every sample, the exact distance is >= clip
    for coarse_pass in (True, False):  # the vertices, then a sampling with half their gap
        if len(todo) == 0:
            return out
        samples = corners if coarse_pass else mesh_samples(vertices, faces, gap)
        d, _ = cKDTree(samples).query(points[todo], distance_upper_bound=search_mm, workers=1)
        out[todo] = np.minimum(out[todo], d)
        lower = np.sqrt(np.maximum(d ** 2 - gap ** 2, 0.0))  # the exact distance is at least this
        unsure = (lower < clip) & (gap > tol) & (gap ** 2 > 2.0 * tol * lower)  # min(h, h^2 / 2d) > tol
        todo, search_mm = todo[unsure], float(d[unsure].max(initial=0.0)) * (1 + 1e-9) + 1e-9  # bound is strict
        gap /= 2.0
    if len(todo):
        out[todo] = np.minimum(_exact_distance(vertices, faces, points[todo]), clip)
    return out


def voxel_centres(geometry: Geometry) -> np.ndarray:
    """RAS (mm) of every voxel centre of ``geometry``, shape (k * j * i, 3) in array (C) order."""
    k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in geometry.shape), indexing="ij")
    return geometry.index_to_ras(np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1))


def sample_nearest(array: np.ndarray, geometry: Geometry, points: np.ndarray, outside=0) -> np.ndarray:
    """Values of ``array`` (on ``geometry``) at RAS ``points`` (n, 3), nearest neighbour;
    ``outside`` where a point falls outside the grid."""
    ijk = np.rint(geometry.ras_to_index(points)).astype(np.int64)
    shape_ijk = np.array(geometry.shape[::-1])
    inside = np.all((ijk >= 0) & (ijk < shape_ijk), axis=1)
    out = np.full(len(points), outside, dtype=np.asarray(array).dtype)
    out[inside] = np.asarray(array)[ijk[inside, 2], ijk[inside, 1], ijk[inside, 0]]
    return out


def mask_mesh(mask: np.ndarray, ijk_to_ras) -> tuple:
    """Marching-cubes mesh (vertices RAS mm (n, 3), faces (m, 3)) of a boolean mask [k, j, i]
    at level 0.5, on the mask's padded bounding box (so the mesh is closed), through the same
    meshing path as every other surface (:func:`..core.surfaces.contour_surface`, unsmoothed).
    Empty mask: no faces."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    crop, first_ijk = padded_crop(mask)
    surface = contour_surface(vtkFlyingEdges3D(), 0.5, crop.astype(np.float32), first_ijk,
                              Geometry(mask.shape, ijk_to_ras), smoothing_iterations=0, pass_band=0.01)
    vertices = vtk_to_numpy(surface.GetPoints().GetData()).astype(float)
    faces = vtk_to_numpy(surface.GetPolys().GetConnectivityArray()).reshape(-1, 3).astype(np.int64)
    return vertices, faces


def _signed(distance: np.ndarray, inside: np.ndarray, clip_mm: float) -> np.ndarray:
    return np.clip(np.where(inside, -distance, distance), -clip_mm, clip_mm)


def _mask_sdg_at(mask: np.ndarray, ijk_to_ras, points: np.ndarray, clip_mm: float) -> np.ndarray:
    """Signed distance of RAS ``points`` to the marching-cubes mesh of ``mask`` (flat)."""
    vertices, faces = mask_mesh(mask, ijk_to_ras)
    distance = mesh_distance(vertices, faces, points, clip_mm)
    inside = sample_nearest(np.asarray(mask, bool), Geometry(np.shape(mask), ijk_to_ras), points, False)
    return _signed(distance, inside, clip_mm)


def _check_mask(mask) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise InputError(f"A mask must be a 3D array (k, j, i), got {mask.ndim} dimensions.")
    return mask.astype(bool)


def check_geometry(grid, what: str = "target") -> Geometry:
    if not isinstance(grid, Geometry):
        raise InputError(f"The {what} grid must be a Geometry, got {type(grid).__name__}.")
    return grid


def mask_sdg(mask: np.ndarray, ijk_to_ras, target: Geometry, clip_mm: float = SDG_CLIP_MM) -> np.ndarray:
    """Coarse signed distance grid (C-SDG, paper eq. 2) of a mask on the grid ``target``.

    Parameters
    ----------
    mask : boolean (or 0/1) array [k, j, i].
    ijk_to_ras : the mask's 4x4 IJK-to-RAS matrix (any oblique or anisotropic pose).
    target : the output grid (any pose; need not overlap the mask's grid).
    clip_mm : values are clipped to [-clip_mm, clip_mm].

    Returns float32 [k, j, i] on ``target``: the distance (mm) from each voxel centre to the
    mask's marching-cubes mesh (level 0.5, see :func:`mask_mesh`), within
    ``+DISTANCE_TOLERANCE_MM`` of the exact point-to-mesh distance (:func:`mesh_distance`), negative where
    the voxel centre falls inside the mask (nearest neighbour; outside the mask's grid counts as
    outside). An empty mask gives ``+clip_mm`` everywhere.
    """
    target = check_geometry(target)
    clip = positive_mm(clip_mm)
    sdg = _mask_sdg_at(_check_mask(mask), ijk_to_ras, voxel_centres(target), clip)
    return sdg.reshape(target.shape).astype(np.float32)


def label_sdgs(labels: Volume, target: Geometry, clip_mm: float = SDG_CLIP_MM) -> np.ndarray:
    """C-SDGs of the four surfaces of a canonical label volume on ``target``: float32
    [4, k, j, i] in :data:`SURFACE_KEYS` order (see :func:`mask_sdg`)."""
    if not isinstance(labels, Volume) or not labels.is_label:
        raise InputError("Signed distance grids are made from a label volume (integer voxels).")
    target = check_geometry(target)
    clip = positive_mm(clip_mm)
    points = voxel_centres(target)
    masks = surface_masks(labels.array)
    return np.stack([_mask_sdg_at(masks[key], labels.ijk_to_ras, points, clip).reshape(target.shape)
                     for key in SURFACE_KEYS]).astype(np.float32)


def _closed_field_crop(sdg: np.ndarray, inside: np.ndarray, level: float):
    """The field on the bounding box of its inside voxels plus one voxel, padded where that box
    leaves the grid by a value above ``level``, so the level set is closed; and the (i, j, k)
    index of the crop's first voxel. Values equal to ``level`` are nudged outwards so no
    triangle degenerates to a point."""
    crop_mask, first_ijk = padded_crop(inside)
    pad_value = max(float(np.max(sdg)), level) + 1.0
    lo = first_ijk[::-1].astype(int) + 1  # (k, j, i) start in the once-padded array
    padded = np.pad(sdg.astype(np.float32), 1, constant_values=pad_value)
    crop = padded[lo[0]:lo[0] + crop_mask.shape[0], lo[1]:lo[1] + crop_mask.shape[1], lo[2]:lo[2] + crop_mask.shape[2]]
    return np.where(crop == level, np.nextafter(np.float32(level), np.float32(np.inf)), crop), first_ijk


def sdg_surface(sdg: np.ndarray, geometry: Geometry, level: float = 0.0, smoothing_iterations: int = 0,
                pass_band: float = 0.1) -> vtkPolyData:
    """The ``level`` set of a signed distance grid as a closed triangle surface (RAS mm).

    Flying edges on the scalar field (sub-voxel accurate, unlike a mask's staircase), built in
    mm and moved to RAS with ``geometry``'s matrix, outward normals. The field is padded with a
    value above ``level`` so the surface is watertight even where the inside touches the grid
    border. ``smoothing_iterations`` > 0 adds windowed-sinc smoothing (``pass_band`` in (0, 2);
    smaller smooths more). No voxel below ``level``: an empty vtkPolyData.
    """
    sdg = np.asarray(sdg, dtype=float)
    geometry = check_geometry(geometry)
    if sdg.shape != geometry.shape:
        raise InputError(f"SDG shape {sdg.shape} does not match the grid shape {geometry.shape}.")
    if not np.all(np.isfinite(sdg)):
        raise InputError("The signed distance grid contains non-finite values (NaN or infinity).")
    if int(smoothing_iterations) < 0 or not 0.0 < pass_band < 2.0:
        raise InputError(f"Smoothing needs iterations >= 0 and a pass band in (0, 2); got "
                         f"{smoothing_iterations} and {pass_band}.")
    inside = sdg < level
    if not inside.any():
        return vtkPolyData()
    crop, first_ijk = _closed_field_crop(sdg, inside, float(level))
    return contour_surface(vtkFlyingEdges3D(), level, crop, first_ijk, geometry, smoothing_iterations, pass_band)


def fine_grid(reference: Geometry, spacing_mm: float = 1.0) -> Geometry:
    """An isotropic grid of ``spacing_mm`` with ``reference``'s axes and first voxel centre,
    covering ``reference``'s voxel centres."""
    spacing = positive_mm(spacing_mm, "spacing_mm")
    extent = reference.spacing * (np.array(reference.shape[::-1], float) - 1)  # i, j, k
    n_ijk = np.floor(extent / spacing + 1e-6).astype(int) + 1
    n_ijk = n_ijk + (extent - (n_ijk - 1) * spacing > 1e-6)  # reach the last centre
    matrix = np.eye(4)
    matrix[:3, :3] = reference.direction * spacing
    matrix[:3, 3] = reference.origin
    return Geometry(tuple(int(n) for n in n_ijk[::-1]), matrix)


def surface_band_mm(spacing_mm: float) -> float:
    """The clip used for SDGs whose only purpose is their zero level set on a grid of
    ``spacing_mm``."""
    return _SURFACE_BAND_VOXELS * float(spacing_mm)


def narrow_band(negative: np.ndarray) -> np.ndarray:
    """Voxels with a 6-neighbour on the other side of the level set (bool, same shape): the
    only values a zero level set depends on (flying edges interpolates along grid edges between
    voxels of opposite sign). Inside voxels on the grid border count, because the surface closes
    against the padding there."""
    from scipy import ndimage

    negative = np.asarray(negative, bool)
    six = ndimage.generate_binary_structure(3, 1)
    return ndimage.binary_dilation(negative, six) & ~ndimage.binary_erosion(negative, six)


def band_points(negative: np.ndarray, geometry: Geometry):
    """:func:`narrow_band` of ``negative`` on ``geometry`` and the RAS centres (n, 3) of its
    voxels, in the order of ``array[band]``."""
    band = narrow_band(negative)
    return band, geometry.index_to_ras(np.argwhere(band)[:, ::-1].astype(float))


def label_truth_surfaces(labels: Volume, spacing_mm: float = 1.0) -> Dict[str, vtkPolyData]:
    """Ground-truth surfaces of a label map that has no mesh (e.g. the procedural phantom): the
    C-SDG of each surface on an isotropic ``spacing_mm`` grid with the labels' axes covering
    them, and its zero level set (:func:`sdg_surface`), for every :data:`SURFACE_KEYS` entry
    whose inside mask is not empty.

    Only the level set matters here, so distances are computed in the :func:`narrow_band` of the
    fine grid only (the rest is +-clip); the sign is the mask resampled nearest-neighbour.
    """
    from .geometry import resample

    if not isinstance(labels, Volume) or not labels.is_label:
        raise InputError("Surfaces are made from a label volume (integer voxels).")
    grid = fine_grid(labels.geometry, spacing_mm)
    clip = surface_band_mm(spacing_mm)
    surfaces = {}
    for key, mask in surface_masks(labels.array).items():
        if not mask.any():
            continue
        negative = resample(labels.with_array(mask.astype(np.uint8)), grid, "nearest").array.astype(bool)
        band, points = band_points(negative, grid)
        sdg = np.where(negative, -clip, clip).astype(np.float32)
        distance = mesh_distance(*mask_mesh(mask, labels.ijk_to_ras), points, clip)
        sdg[band] = _signed(distance, negative[band], clip)
        surfaces[key] = sdg_surface(sdg, grid)
    return surfaces
