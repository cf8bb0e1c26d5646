"""Ground-truth signed distance grids and surfaces of the CT cohort, from its registered meshes.

Mask2Surface's ground truth is a template mesh registered to each heart, not a label map: the
CT cohort ships exactly that (``wholeheart_ct/source/``: the shape model's template faces and
every real subject's vertices, in the same world millimetres as ``subject_NN.npz``). Two of its
structures are used: ``LV`` (the closed shell of the LV myocardial wall) and ``RV`` (the RV wall
shell). Their faces are split into the surfaces of :data:`..core.sdf.SURFACE_KEYS` once per subject by
probing the subject's own 1 mm raw label map on both sides of each face (:func:`classify_faces`):

* LV_myocardium: every LV-mesh face;
* LV_endocardium: LV-mesh faces with LV blood (raw label 1) on one side;
* LV_epicardium: LV-mesh faces without LV blood on either side (free wall and septum);
* RV_endocardium: faces of either mesh with RV blood (raw label 3) on one side (the RV free
  wall's inner face and the septum's right face).

An SDG channel is the (unsigned) distance to that face set, signed by the subject's canonical,
valve-cut labels (the insides of :func:`..core.sdf.surface_masks`), and intersected with the valve
half-space exactly like :func:`cut_at_valve_planes`: ``sdf = max(sdf, -distance to the
valve plane)``, with the 'left' plane for the three LV surfaces and the 'right' plane for the RV.
So the zero level set is the mesh inside the ventricle and the flat valve plane at the base,
matching the labels that :func:`..training.cohort.load_subject` produces. Only the real subjects
(``subject_00`` ... ``subject_18``) have meshes; the PCA shapes do not.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
from vtkmodules.vtkCommonDataModel import vtkPolyData

from ..anatomy.frame import SaxFrame, ValvePlane, cut_at_valve_planes, sax_frame, valve_planes
from ..training import cohort
from ..core.errors import InputError
from ..core.geometry import Geometry, Volume, resample, sitk_affine
from ..core.sdf import (SDG_CLIP_MM, SURFACE_KEYS, band_points, check_geometry, fine_grid, mesh_distance, positive_mm,
                        sample_nearest, sdg_surface, surface_band_mm, surface_masks, voxel_centres)

SOURCE_DIR = "source"
VERTICES_FILE = "subjects_vertices.npz"
TEMPLATE_FILE = "template_and_momenta.npz"
#: The two shape-model structures used: LV and RV wall shells.
MESHES = ("LV", "RV")
#: How far (mm) on each side of a face its labels are probed: about one voxel of the 1 mm label
#: map, well inside the thinnest wall (RV free wall).
PROBE_MM = 1.0
#: Raw CT labels probed (see the data README).
RAW_LV_BLOOD, RAW_RV_BLOOD = 1, 3
#: The valve plane that caps each surface (see :func:`valve_planes`).
VALVE_SIDE = {"LV_myocardium": "left", "LV_endocardium": "left", "LV_epicardium": "left",
              "RV_endocardium": "right"}

PathLike = Union[str, Path]
Mesh = Tuple[np.ndarray, np.ndarray]  # vertices (n, 3) world mm, faces (m, 3)


def _subject_npz(subject: PathLike, root: Optional[PathLike]) -> Path:
    """The subject's label-map ``.npz``: an existing path as given, else a name in the data root."""
    path = Path(subject)
    if path.suffix == ".npz" or path.exists():
        if not path.is_file():
            raise InputError(f"CT subject file not found: {path}.")
        return path.resolve()
    return cohort.subject_path(path.name, root).resolve()


def subject_index(subject: PathLike) -> int:
    """Index into the shape model's subject arrays from a ``subject_NN`` name or path."""
    match = re.fullmatch(r"subject_(\d+)", Path(subject).stem)
    if not match or int(match.group(1)) >= cohort.N_SUBJECTS:
        raise InputError(f"{Path(subject).stem!r} has no registered mesh; ground-truth surfaces exist for the real "
                         f"subjects subject_00 ... subject_{cohort.N_SUBJECTS - 1:02d} only.")
    return int(match.group(1))


@functools.lru_cache(maxsize=2)
def _model_meshes(source_dir: str) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Per structure in :data:`MESHES`: all subjects' vertices [19, n, 3] and the template faces."""
    vertices_file, template_file = Path(source_dir) / VERTICES_FILE, Path(source_dir) / TEMPLATE_FILE
    for f in (vertices_file, template_file):
        if not f.is_file():
            raise InputError(f"Shape-model file not found: {f}; expected the CT cohort's source/ folder.")
    with np.load(vertices_file) as v, np.load(template_file) as t:
        meshes = {name: (np.asarray(v[name], np.float64), np.asarray(t[f"{name}_faces"], np.int64)) for name in MESHES}
    for vertices, faces in meshes.values():
        vertices.setflags(write=False)
        faces.setflags(write=False)
    return meshes


def _face_normals(vertices: np.ndarray, faces: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Face centroids and unit normals (orientation irrelevant: both sides are probed)."""
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return corners.mean(axis=1), normals / np.where(length > 0, length, 1.0)


def _labels_beside(mesh: Mesh, raw: Volume, probe_mm: float) -> Tuple[np.ndarray, np.ndarray]:
    """Raw labels at ``probe_mm`` on either side of every face (nearest voxel)."""
    centroids, normals = _face_normals(*mesh)
    return tuple(sample_nearest(raw.array, raw.geometry, centroids + side * probe_mm * normals)
                 for side in (1.0, -1.0))


def classify_faces(lv: Mesh, rv: Mesh, raw: Volume, probe_mm: float = PROBE_MM) -> Dict[str, Mesh]:
    """Split the LV and RV wall meshes into the surfaces of :data:`SURFACE_KEYS` by the raw
    labels (:class:`..training.cohort.CTShape` labels, as a Volume) on both sides of each face (see the
    module docstring). Returns per key (vertices, faces); the RV endocardium's faces index the
    LV vertices followed by the RV vertices."""
    lv_a, lv_b = _labels_beside(lv, raw, probe_mm)
    rv_a, rv_b = _labels_beside(rv, raw, probe_mm)
    lv_blood = (lv_a == RAW_LV_BLOOD) | (lv_b == RAW_LV_BLOOD)
    lv_faces_rv_blood = (lv_a == RAW_RV_BLOOD) | (lv_b == RAW_RV_BLOOD)
    rv_faces_rv_blood = (rv_a == RAW_RV_BLOOD) | (rv_b == RAW_RV_BLOOD)
    both_vertices = np.concatenate([lv[0], rv[0]])
    rv_endo = np.concatenate([lv[1][lv_faces_rv_blood], rv[1][rv_faces_rv_blood] + len(lv[0])])
    return {"LV_myocardium": lv,
            "LV_endocardium": (lv[0], lv[1][lv_blood]),
            "LV_epicardium": (lv[0], lv[1][~lv_blood]),
            "RV_endocardium": (both_vertices, rv_endo)}


@dataclass(frozen=True)
class SubjectTruth:
    """Everything a subject's ground truth needs, in its source world mm: its SAX frame, the
    canonical valve-cut labels (the sign), the valve planes, and the classified face sets."""

    name: str
    frame: SaxFrame
    labels: Volume
    planes: Dict[str, ValvePlane]
    surfaces: Dict[str, Mesh]
    mesh_faces: Dict[str, int]  # number of faces of each structure in MESHES

    def face_fractions(self) -> Dict[str, float]:
        """Fraction of the LV mesh's faces in each LV surface, and of both meshes' faces in the
        RV endocardium: a check of :func:`classify_faces`."""
        n_lv, n_all = self.mesh_faces["LV"], sum(self.mesh_faces.values())
        return {key: len(faces) / (n_all if key == "RV_endocardium" else n_lv)
                for key, (_, faces) in self.surfaces.items()}


@functools.lru_cache(maxsize=8)
def _subject_truth_cached(npz: str, source_dir: str, probe_mm: float) -> SubjectTruth:
    shape = cohort.read_shape(npz)
    index = subject_index(npz)
    meshes = _model_meshes(source_dir)
    lv, rv = ((meshes[name][0][index], meshes[name][1]) for name in MESHES)
    raw = shape.volume()
    canonical = raw.with_array(cohort.canonical_ct_labels(raw.array, "biventricular"))
    return SubjectTruth(name=shape.name,
                        frame=sax_frame(shape.landmarks, shape.labels_xyz, shape.origin, shape.spacing),
                        labels=cut_at_valve_planes(canonical, shape.landmarks),
                        planes=valve_planes(shape.landmarks),
                        surfaces=classify_faces(lv, rv, raw, probe_mm),
                        mesh_faces={"LV": len(lv[1]), "RV": len(rv[1])})


def subject_truth(subject: PathLike, root: Optional[PathLike] = None, probe_mm: float = PROBE_MM) -> SubjectTruth:
    """The (cached) :class:`SubjectTruth` of a real CT subject, by name (``subject_15``) or by the
    path of its ``.npz`` (as :func:`..training.cohort.split` returns); the meshes are read from the
    ``source/`` folder beside that file."""
    npz = _subject_npz(subject, root)
    subject_index(npz)
    return _subject_truth_cached(str(npz), str(npz.parent / SOURCE_DIR), float(probe_mm))


# Output space (the SAX grid, possibly augmented)
def _output_to_source(augmentation, frame: SaxFrame) -> np.ndarray:
    """4x4 map from output (target grid) points to source world points."""
    if augmentation is None:
        return np.eye(4)
    if not isinstance(augmentation, cohort.Augmentation):
        raise InputError(f"augmentation must be a cohort.Augmentation or None, got {type(augmentation).__name__}.")
    if augmentation.elastic_mm != 0:
        raise InputError(f"Ground-truth SDGs support affine augmentations only; this one has an elastic part "
                         f"(elastic_mm={augmentation.elastic_mm}). Draw it with AugmentationRanges(elastic_mm=0).")
    return cohort.augmentation_affine(augmentation, frame)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, float) @ matrix[:3, :3].T + matrix[:3, 3]


def _plane_in_output(plane: ValvePlane, output_to_source: np.ndarray) -> ValvePlane:
    """The valve plane mapped into output space (an affine map keeps planes planar), with its
    distances measured in output millimetres and the same (ventricular) positive side."""
    normal = output_to_source[:3, :3].T @ plane.normal
    point = _apply(np.linalg.inv(output_to_source), plane.point)
    return ValvePlane(point, normal / np.linalg.norm(normal))


def _plane_distance_grid(plane: ValvePlane, grid: Geometry) -> np.ndarray:
    """Signed distance of every voxel centre of ``grid`` to ``plane``, [k, j, i] (linear in the
    index, so built by broadcasting rather than from a full point array)."""
    per_axis = grid.ijk_to_ras[:3, :3].T @ plane.normal  # mm per step along i, j, k
    offset = (grid.origin - plane.point) @ plane.normal
    k, j, i = (np.arange(n, dtype=float) for n in grid.shape)
    return offset + per_axis[0] * i[None, None, :] + per_axis[1] * j[None, :, None] + per_axis[2] * k[:, None, None]


def _truth_channels(truth: SubjectTruth, grid: Geometry, output_to_source: np.ndarray, clip: float,
                    band_only: bool) -> np.ndarray:
    """[4, k, j, i] float32 ground-truth SDGs on ``grid``; with ``band_only`` the distances are
    computed in the zero level set's :func:`..core.sdf.narrow_band` only (the rest is +-clip)."""
    transform = None if np.allclose(output_to_source, np.eye(4)) else sitk_affine(output_to_source)
    inside = surface_masks(resample(truth.labels, grid, "nearest", transform=transform).array)  # the cut labels
    to_output = np.linalg.inv(output_to_source)
    all_points = None if band_only else voxel_centres(grid)
    channels = []
    for key in SURFACE_KEYS:
        plane = _plane_in_output(truth.planes[VALVE_SIDE[key]], output_to_source)
        negative = inside[key] & (_plane_distance_grid(plane, grid) > 0)
        if band_only:
            where, points = band_points(negative, grid)
        else:
            where, points = np.ones(grid.shape, bool), all_points
        vertices, faces = truth.surfaces[key]
        distance = mesh_distance(_apply(to_output, vertices), faces, points, clip)
        signed = np.where(inside[key][where], -distance, distance)
        channel = np.where(negative, -clip, clip).astype(np.float32)
        channel[where] = np.clip(np.maximum(signed, -plane.signed_distance(points)), -clip, clip)
        channels.append(channel)
    return np.stack(channels)


def truth_sdgs(subject: PathLike, target: Geometry, augmentation: Optional[cohort.Augmentation] = None,
               clip_mm: float = SDG_CLIP_MM, root: Optional[PathLike] = None) -> np.ndarray:
    """Ground-truth SDGs of a real CT subject on ``target``: float32 [4, k, j, i] in
    :data:`SURFACE_KEYS` order, mm, negative inside, clipped to ``+-clip_mm``.

    Parameters
    ----------
    subject : ``subject_NN`` or the path of its ``.npz`` (as :func:`..training.cohort.split` returns).
    target : a grid in the subject's SAX world frame, e.g. ``load_subject(...).geometry``.
    augmentation : a :class:`..training.cohort.Augmentation` with ``elastic_mm == 0`` (InputError
        otherwise), or None. The result matches ``load_subject(..., augment=...)`` drawn with
        the same augmentation: mesh vertices and valve planes are mapped into output space (so
        distances are output millimetres), voxel centres into source space for the sign.
    clip_mm : clip of the values.

    Sign: the subject's canonical labels after the valve-plane cut (as ``load_subject`` in
    biventricular mode), nearest neighbour at each voxel centre; distance: to the classified
    mesh faces (:func:`..core.sdf.mesh_distance`, within 0.25 mm of exact); then intersected with the
    valve half-space (module docstring).
    """
    target, clip, truth = check_geometry(target), positive_mm(clip_mm), subject_truth(subject, root)
    return _truth_channels(truth, target, _output_to_source(augmentation, truth.frame), clip, band_only=False)


def truth_surfaces(subject: PathLike, reference: Geometry, spacing_mm: float = 1.0,
                   augmentation: Optional[cohort.Augmentation] = None,
                   root: Optional[PathLike] = None) -> Dict[str, vtkPolyData]:
    """Ground-truth surfaces (RAS mm, closed, outward normals) of a real CT subject for
    Chamfer/ASSD scoring: the zero level sets (:func:`..core.sdf.sdg_surface`) of :func:`truth_sdgs`
    on an isotropic ``spacing_mm`` grid with ``reference``'s axes covering its extent, per
    :data:`SURFACE_KEYS` entry that is not empty there. Only the narrow band around each level
    set is computed, so a 1 mm grid over a whole SAX field takes a few seconds."""
    check_geometry(reference, "reference")
    truth, grid = subject_truth(subject, root), fine_grid(reference, spacing_mm)
    channels = _truth_channels(truth, grid, _output_to_source(augmentation, truth.frame),
                               surface_band_mm(spacing_mm), band_only=True)
    surfaces = {key: sdg_surface(channel, grid) for key, channel in zip(SURFACE_KEYS, channels)}
    return {key: surface for key, surface in surfaces.items() if surface.GetNumberOfPolys() > 0}
