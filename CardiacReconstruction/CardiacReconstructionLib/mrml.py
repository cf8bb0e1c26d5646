"""The MRML adapter: engine objects <-> 3D Slicer nodes. The only engine module that imports ``slicer``.

It uses only what exists both in the Slicer application (5.8 and later) and in the Qt-free
``slicer-core`` package: MRML nodes, the static ``vtkSlicerSegmentationsModuleLogic`` methods,
``vtkSlicerModelsLogic`` and the array helpers of ``slicer.util``. Nothing goes through
``slicer.modules`` or ``slicer.app``, so the same code runs inside Slicer and under pytest.

Conventions
-----------
* Every function takes its scene from the nodes it is given, or from an explicit ``scene``
  argument, and only then falls back to ``slicer.mrmlScene``.
* Engine volumes are in world RAS (see :mod:`.core.geometry`). A node under a *linear* parent
  transform is read with that transform applied (world = parent-to-world x IJK-to-RAS); a node
  under a non-linear transform is refused with an :class:`InputError` (harden it first). Output
  nodes are created in world coordinates; the corrected image keeps the image's own geometry
  and parent transform so it overlays the original exactly.
* Input nodes are never modified. Temporary nodes (export and import labelmaps, and the display
  and colour nodes Slicer adds for them) are removed before a function returns, also on errors.
* Output nodes are found again by name and a role attribute, so running a reconstruction twice
  updates its models, table and corrected image instead of piling up copies.
* An image may come without its segmentation (:func:`image_stack_from_node`): the caller
  segments it (``methods.deeprecon.segment_image``, in the worker or in process) and
  :func:`result_to_nodes` adds that segmentation to the scene with the result, and the synthetic
  image of a method that makes one (``Result.image``).
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import slicer
import vtk

from .core.axes import IDENTITY, permute, working_image, working_stack
from .core.case import Case, LaxView
from .core.errors import InputError
from .core.geometry import Volume
from .core.io import as_integer_labels, as_single_slice
from .core.labels import LV, MYO, RV, STRUCTURES, apply_convention, label_for_segment_name, present_labels, to_canonical
from .core.sdf import SURFACE_STYLES
from .core.stack import corrected_image

#: Node attribute that marks the nodes this module creates, with their role as value.
ROLE_ATTRIBUTE = "CardiacReconstruction.Role"
#: How the scene names the segmenters of an image given alone and the methods that paint an image.
TITLES = {"directseg": "DirectSeg", "deeprecon": "DeepRecon"}

_STRUCTURE_BY_KEY = {s.key: s for s in STRUCTURES.values()}
_BINARY_LABELMAP = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
_CLOSED_SURFACE = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
_REFERENCE_GEOMETRY = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()


def _scene_of(scene=None, *nodes):
    """The explicit scene, else the scene of the first node that has one, else slicer.mrmlScene."""
    if scene is not None:
        return scene
    for node in nodes:
        if node is not None and node.GetScene() is not None:
            return node.GetScene()
    scene = getattr(slicer, "mrmlScene", None)
    if scene is None:
        raise InputError("No MRML scene: pass one with scene=... or set slicer.mrmlScene.")
    return scene


def ensure_converter_rules() -> None:
    """Register the labelmap <-> closed surface converter rules if nobody has. The Slicer
    application's Segmentations module does this at startup; bare slicer-core does not, and
    without the rules segmentations cannot hold binary labelmaps or build 3D surfaces."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    registered = {rule.GetClassName() for rule in factory.GetConverterRules()}
    for rule_class in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
                       slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule):
        if rule_class.__name__ not in registered:
            factory.RegisterConverterRule(rule_class())


def _node_ids(scene) -> List[str]:
    return [scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())]


@contextlib.contextmanager
def _temporary_nodes(scene) -> Iterator[None]:
    """Remove every node added to ``scene`` inside the block (temporary volumes and the display
    and colour-table nodes Slicer creates for them), even when the block raises. The subject
    hierarchy and singleton nodes are shared scene infrastructure and are kept."""
    before = set(_node_ids(scene))
    try:
        yield
    finally:
        for node_id in reversed(_node_ids(scene)):
            node = scene.GetNodeByID(node_id)
            if node_id in before or node is None or node.GetSingletonTag() \
                    or node.IsA("vtkMRMLSubjectHierarchyNode"):
                continue
            scene.RemoveNode(node)


def _string_array(values) -> vtk.vtkStringArray:
    array = vtk.vtkStringArray()
    for value in values:
        array.InsertNextValue(str(value))
    return array


def _find_output_node(scene, class_name: str, name: str, role: str):
    """A node this module made earlier with the same class, name and role, or None."""
    for n in range(scene.GetNumberOfNodesByClass(class_name)):
        node = scene.GetNthNodeByClass(n, class_name)
        if node.GetName() == name and node.GetAttribute(ROLE_ATTRIBUTE) == role:
            return node
    return None


def _output_node(scene, class_name: str, name: str, role: str):
    """Reuse the earlier output node of this name and role, or add a new one."""
    node = _find_output_node(scene, class_name, name, role)
    if node is None:
        node = scene.AddNewNodeByClass(class_name, name)
        node.SetAttribute(ROLE_ATTRIBUTE, role)
    return node


def _describe(node) -> str:
    return f"'{node.GetName()}'"


def _to_world(node) -> np.ndarray:
    """4x4 parent-to-world matrix of a transformable node (identity without a transform)."""
    transform = node.GetParentTransformNode()
    if transform is None:
        return np.eye(4)
    if not transform.IsTransformToWorldLinear():
        raise InputError(f"{_describe(node)} is under the non-linear transform {_describe(transform)}; harden the "
                         "transform (Data module, right-click, 'Harden transform') or remove it first.")
    matrix = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def _local_ijk_to_ras(volume_node) -> np.ndarray:
    """IJK-to-RAS of the node's first voxel: Slicer's IJK counts from the image extent's start,
    which is not always zero, while our arrays start at the first stored voxel."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    m = slicer.util.arrayFromVTKMatrix(matrix)
    extent = volume_node.GetImageData().GetExtent()
    first = np.eye(4)
    first[:3, 3] = extent[0], extent[2], extent[4]
    return m @ first


def _volume_array(volume_node) -> np.ndarray:
    """A copy of the node's voxels, [k, j, i]; refuses nodes without a 3D scalar image."""
    if volume_node.GetImageData() is None:
        raise InputError(f"The volume {_describe(volume_node)} has no voxels (its image data is empty).")
    array = slicer.util.arrayFromVolume(volume_node)
    if array.ndim != 3:
        raise InputError(f"{_describe(volume_node)} has {array.shape[-1]} components per voxel; expected a scalar "
                         "volume (one value per voxel).")
    return np.array(array, copy=True)


def _world_volume(volume_node, array: Optional[np.ndarray] = None) -> Volume:
    """The node's voxels (or ``array`` on its grid) as an engine Volume in world RAS."""
    array = _volume_array(volume_node) if array is None else array
    return Volume(array, _to_world(volume_node) @ _local_ijk_to_ras(volume_node))


def _add_volume_node(scene, array: np.ndarray, ijk_to_ras: np.ndarray, name: str,
                     class_name: str = "vtkMRMLScalarVolumeNode", node=None):
    """What ``slicer.util.addVolumeFromArray`` does, but into ``scene`` (that helper always
    uses slicer.mrmlScene) and optionally into an existing node."""
    if node is None:
        node = scene.AddNewNodeByClass(class_name, name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(np.asarray(ijk_to_ras, float)))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.CreateDefaultDisplayNodes()
    return node


# Nodes -> engine
def _segment_ids(segmentation) -> List[str]:
    return [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]


def _segment_label_table(node, ids: List[str], convention: str) -> Tuple[Dict[int, int], str]:
    """{exported label value (1..N, one per segment in ``ids`` order): canonical label} and a
    sentence for the user. Segment names decide when all are recognised; otherwise the
    segments' label values are read in the named ``convention``."""
    segmentation = node.GetSegmentation()
    segments = [segmentation.GetSegment(i) for i in ids]
    by_name = [label_for_segment_name(s.GetName()) for s in segments]
    if all(label is not None for label in by_name):
        names = ", ".join(f"{s.GetName()}->{STRUCTURES[lab].key}" for s, lab in zip(segments, by_name))
        return {n + 1: lab for n, lab in enumerate(by_name)}, f"label mapping by segment name: {names}"
    unknown = [s.GetName() for s, lab in zip(segments, by_name) if lab is None]
    if convention == "auto":
        raise InputError(f"Unrecognised segment names {unknown} in {_describe(node)}; rename the segments (e.g. 'LV', "
                         "'myocardium', 'RV', 'LA', 'RA', 'aorta', 'pulmonary artery') or choose the label "
                         "convention of their label values.")
    values = [int(s.GetLabelValue()) for s in segments]
    if len(set(values)) != len(values):
        raise InputError(f"The segments of {_describe(node)} share label values {values} (they lie in separate "
                         f"layers), so the {convention!r} convention cannot tell them apart; name them instead "
                         "(e.g. 'LV', 'myocardium', 'RV').")
    canonical = apply_convention(np.asarray(values), convention)
    pairs = ", ".join(f"{s.GetName()}={v}->{STRUCTURES[int(c)].key if c else 'background'}"
                      for s, v, c in zip(segments, values, canonical))
    return {n + 1: int(c) for n, c in enumerate(canonical)}, f"label convention: {convention} ({pairs})"


def _export_geometry_mode(node, reference_volume_node) -> int:
    """Export onto the reference volume, else onto the segmentation's reference image geometry
    (its source grid, which keeps the SAX slice axis as k), else onto the union of the
    segments' own labelmap grids. Closed-surface segmentations without any reference grid
    would get an axis-aligned box that loses the slice axis, so they are refused."""
    segmentation = node.GetSegmentation()
    if reference_volume_node is not None or segmentation.GetConversionParameter(_REFERENCE_GEOMETRY):
        return slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
    if not _is_labelmap_sourced(node):
        raise InputError(f"{_describe(node)} is stored as closed surfaces without a reference image geometry; select "
                         "the SAX image as the reference volume so it can be voxelised on the SAX grid.")
    return slicer.vtkSegmentation.EXTENT_UNION_OF_SEGMENTS


def _is_labelmap_sourced(node) -> bool:
    return node.GetSegmentation().GetSourceRepresentationName() == _BINARY_LABELMAP


def _exportable_copy(scene, node, reference_volume_node):
    """The node itself when it holds binary labelmaps; otherwise a temporary copy voxelised
    directly on the reference grid. Exporting closed surfaces would otherwise store a new
    labelmap representation in the user's node (and on a default isotropic grid)."""
    if _is_labelmap_sourced(node):
        return node
    copy = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{node.GetName()} (temporary copy)")
    copy.GetSegmentation().DeepCopy(node.GetSegmentation())
    copy.SetAndObserveTransformNodeID(node.GetTransformNodeID())
    if reference_volume_node is not None:
        copy.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    return copy


def _labels_from_segmentation(node, convention: str, reference_volume_node) -> Tuple[Volume, str]:
    ids = _segment_ids(node.GetSegmentation())
    if not ids:
        raise InputError(f"The segmentation {_describe(node)} has no segments.")
    table, message = _segment_label_table(node, ids, convention)
    mode = _export_geometry_mode(node, reference_volume_node)
    ensure_converter_rules()
    scene = _scene_of(None, node, reference_volume_node)
    with _temporary_nodes(scene):
        source = _exportable_copy(scene, node, reference_volume_node)
        exported = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{node.GetName()} (temporary export)")
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            source, _string_array(ids), exported, reference_volume_node, mode)
        if not ok or exported.GetImageData() is None:
            raise InputError(f"The segmentation {_describe(node)} could not be converted to a labelmap"
                             + (f" on the grid of {_describe(reference_volume_node)}." if reference_volume_node
                                else "."))
        volume = _world_volume(exported)  # the export sits under the source's parent transform
    lut = np.zeros(max(len(ids), int(volume.array.max())) + 1, np.uint8)
    for value, label in table.items():
        lut[value] = label
    labels = lut[volume.array.astype(np.int64)]
    if not labels.any():
        raise InputError(f"The segmentation {_describe(node)} contains no cardiac structure"
                         + (f" inside {_describe(reference_volume_node)}." if reference_volume_node else "."))
    return volume.with_array(labels), message


def _labels_from_volume_node(node, convention: str) -> Tuple[Volume, str]:
    volume = _world_volume(node)
    labels, message = to_canonical(as_integer_labels(volume, node.GetName()), convention)
    return volume.with_array(labels.astype(np.uint8)), message


def volume_from_node(node, convention: str = "auto", reference_volume_node=None) -> Tuple[Volume, str]:
    """Canonical labels (uint8 Volume in world RAS) of a segmentation or labelmap node, and a
    sentence saying how the labels were mapped.

    Parameters
    ----------
    node : vtkMRMLSegmentationNode, or a labelmap (or integer-valued scalar) volume node.
    convention : label convention of the voxel values ('auto' detects it). For segmentations,
        segment names decide when all are recognised; otherwise the segments' label values are
        read in this convention (which must then be named).
    reference_volume_node : segmentations only: export onto this volume's grid (e.g. the SAX
        image). Without it the segmentation's own reference image geometry is used.

    The node is not modified and no node is left behind in the scene (closed-surface
    segmentations are voxelised in a temporary copy).
    """
    if node is None:
        raise InputError("No segmentation was selected.")
    if node.IsA("vtkMRMLSegmentationNode"):
        return _labels_from_segmentation(node, convention, reference_volume_node)
    if node.IsA("vtkMRMLScalarVolumeNode"):
        return _labels_from_volume_node(node, convention)
    raise InputError(f"{_describe(node)} is a {node.GetClassName()}; expected a segmentation or a labelmap volume.")


def image_from_node(volume_node) -> Volume:
    """The voxels of a scalar volume node as a float32 Volume in world RAS (a copy)."""
    if volume_node is None or not volume_node.IsA("vtkMRMLScalarVolumeNode"):
        kind = "nothing" if volume_node is None else volume_node.GetClassName()
        raise InputError(f"Expected a scalar volume node for the SAX image, got {kind}.")
    return _world_volume(volume_node, _volume_array(volume_node).astype(np.float32))


def lax_views_from_nodes(lax_nodes: Optional[Dict[str, object]], convention: str = "auto"):
    """The long-axis views (``{'2ch'|'3ch'|'4ch': node or None}``) as :class:`.core.case.LaxView`
    objects, and their label-mapping messages."""
    views, messages = [], []
    for view, node in (lax_nodes or {}).items():
        if node is None:
            continue
        volume, msg = volume_from_node(node, convention)
        views.append(LaxView(view, as_single_slice(volume, f"The {view} view {_describe(node)}")))
        messages.append(f"{view}: {msg}")
    return views, messages


def case_from_nodes(sax_node, lax_nodes: Optional[Dict[str, object]] = None, image_node=None,
                    convention: str = "auto", slice_axis: Optional[str] = None) -> Tuple[Case, List[str]]:
    """A :class:`Case` from nodes; ``lax_nodes`` maps '2ch'/'3ch'/'4ch' to a node or None.

    A SAX segmentation node is exported onto the SAX image's grid when an image is given, so
    the two always share one grid; a SAX labelmap must already lie on the image's grid.
    The stack's slice axis becomes k (see :func:`.core.axes.working_stack`).
    Returns the case and the label-mapping messages for the user. Without a segmentation, see
    :func:`image_stack_from_node` (the image is segmented first)."""
    if sax_node is None:
        raise InputError("No segmentation was selected; select the SAX segmentation, or the SAX image alone to "
                         "segment it first.")
    image = image_from_node(image_node) if image_node is not None else None
    reference = image_node if sax_node.IsA("vtkMRMLSegmentationNode") else None
    sax, message = volume_from_node(sax_node, convention, reference)
    if image is not None and not sax.geometry.same_as(image.geometry):
        raise InputError(f"The SAX segmentation {_describe(sax_node)} {sax.shape} and the image "
                         f"{_describe(image_node)} {image.shape} do not share one grid; resample the segmentation "
                         "onto the image or use a segmentation node.")
    messages = [f"SAX: {message}"]
    sax, image, order, note = working_stack(sax, image, _describe(sax_node), slice_axis)
    messages += [note] if note else []
    views, lax_messages = lax_views_from_nodes(lax_nodes, convention)
    return Case(sax=sax, lax=views, image=image, name=sax_node.GetName(),
                info={"axis_order": list(order)}), messages + lax_messages


def image_stack_from_node(image_node, slice_axis: Optional[str] = None):
    """The SAX image given without its segmentation, to be segmented first: a float32 Volume in
    world RAS with the slice axis as k, the axis order that undoes it, and the messages for the
    user. Refused in one line when it cannot be a cine stack (a single 2D slice, a label map's
    values: :func:`.core.case.check_image_stack`)."""
    if image_node is None or not image_node.IsA("vtkMRMLScalarVolumeNode"):
        kind = "nothing" if image_node is None else image_node.GetClassName()
        raise InputError(f"Select the SAX segmentation or the SAX image (a scalar volume); got {kind}.")
    image, order, note = working_image(_world_volume(image_node), _describe(image_node), slice_axis)
    return image, tuple(order), [note] if note else []


def segmented_case(segmentation: Volume, image: Volume, order, name: str, views=(), segmenter: str = "") -> Case:
    """The case of an image given alone once it is segmented: ``segmentation`` (canonical labels
    on the grid of ``image``, both with the slices along k as :func:`image_stack_from_node` gave
    them), with ``order`` to undo that and the segmenter's name in ``info``."""
    if not segmentation.geometry.same_as(image.geometry, atol=1e-3):
        raise InputError(f"The segmentation of {name} {segmentation.shape} is not on the image's grid {image.shape}.")
    labels = segmentation.with_array(segmentation.array.astype(np.uint8))
    return Case(sax=labels, lax=list(views), image=image, name=name,
                info={"axis_order": list(order), "segmenter": segmenter})


# Engine -> nodes
def _check_canonical(volume: Volume) -> Tuple[int, ...]:
    if not isinstance(volume, Volume) or not volume.is_label:
        raise InputError("Only a label volume (integer voxels) can become a segmentation.")
    present = present_labels(volume.array)
    unknown = [v for v in present if v not in STRUCTURES]
    if unknown:
        raise InputError(f"Labels {unknown} are not canonical structures (1 LV ... 7 PA).")
    if not present:
        raise InputError("The reconstruction is empty: no labelled voxels to put in a segmentation.")
    return present


def _add_structure_segment(segmentation, structure) -> None:
    """An empty segment with the structure's fixed ID, name, colour and terminology; the
    flags stop Slicer from renaming or recolouring it from a terminology lookup."""
    segmentation.AddEmptySegment(structure.key, structure.name, list(structure.color))
    segment = segmentation.GetSegment(structure.key)
    segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), structure.terminology)
    segment.SetNameAutoGenerated(False)
    segment.SetColorAutoGenerated(False)


def write_segmentation_node(volume: Volume, segmentation_node=None, name: str = "Cardiac reconstruction",
                            scene=None):
    """Put canonical labels into a segmentation node (a new one, or ``segmentation_node`` with
    its segments replaced): one segment per present structure with ID = structure key
    ('LV', 'MYO', ...), name, colour and terminology, the volume's grid as reference geometry,
    and a closed-surface representation shown in 3D. The labels are in world coordinates, so a
    reused node is taken out of any parent transform. Returns the segmentation node."""
    present = _check_canonical(volume)
    scene = _scene_of(scene, segmentation_node)
    ensure_converter_rules()
    node = segmentation_node
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.SetAndObserveTransformNodeID(None)  # the labels are in world coordinates
    node.CreateDefaultDisplayNodes()
    segmentation = node.GetSegmentation()
    keys = [STRUCTURES[label].key for label in present]
    # Import maps label value n to the n-th ID, so the labels are renumbered 1..N first: an
    # absent structure must not get an empty segment.
    lut = np.zeros(max(present) + 1, np.uint8)
    lut[list(present)] = np.arange(1, len(present) + 1)
    consecutive = lut[volume.array.astype(np.int64)]
    was_modified = node.StartModify()
    try:
        segmentation.RemoveAllSegments()
        for label in present:
            _add_structure_segment(segmentation, STRUCTURES[label])
        with _temporary_nodes(scene):
            labelmap = _add_volume_node(scene, consecutive, volume.ijk_to_ras, f"{name} (temporary import)",
                                        "vtkMRMLLabelMapVolumeNode")
            node.SetReferenceImageGeometryParameterFromVolumeNode(labelmap)
            if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
                    labelmap, node, _string_array(keys)):
                raise RuntimeError(f"Slicer could not import the reconstruction into {_describe(node)}.")
        node.SetSourceRepresentationToBinaryLabelmap()
    finally:
        node.EndModify(was_modified)
    node.CreateClosedSurfaceRepresentation()  # after the import, which drops derived representations
    display = node.GetDisplayNode()
    display.SetVisibility(True)
    display.SetVisibility3D(True)
    display.SetPreferredDisplayRepresentationName3D(_CLOSED_SURFACE)
    return node


def _style_model(model_node, color) -> None:
    """Structure colour, smooth (Gouraud) shading and slice intersections visible."""
    if model_node.GetDisplayNode() is None:
        model_node.CreateDefaultDisplayNodes()
    display = model_node.GetDisplayNode()
    display.SetColor(*color)
    display.SetScalarVisibility(False)
    display.SetInterpolation(slicer.vtkMRMLDisplayNode.GouraudInterpolation)
    display.SetVisibility(True)
    display.SetVisibility3D(True)
    display.SetVisibility2D(True)
    display.SetSliceIntersectionThickness(2)


def add_model_nodes(surfaces: Dict[str, object], name_prefix: str, scene=None) -> List[object]:
    """One model node per surface (``{structure key: vtkPolyData}`` in RAS), named
    '<prefix> <structure name>' and coloured like the structure. The model holds a copy of the
    surface, so editing it in Slicer cannot change the engine's result."""
    scene = _scene_of(scene)
    logic = slicer.vtkSlicerModelsLogic()
    logic.SetMRMLScene(scene)
    models = []
    for key, polydata in surfaces.items():
        structure = _STRUCTURE_BY_KEY.get(key)
        surface_name, surface_colour = SURFACE_STYLES.get(key, (key, (0.8, 0.8, 0.8)))
        name = f"{name_prefix} {structure.name if structure else surface_name}"
        copy = vtk.vtkPolyData()
        copy.DeepCopy(polydata)
        role = f"model:{key}"
        model = _find_output_node(scene, "vtkMRMLModelNode", name, role)
        if model is None:
            model = logic.AddModel(copy)
            model.SetName(name)
            model.SetAttribute(ROLE_ATTRIBUTE, role)
        else:
            model.SetAndObservePolyData(copy)
        _style_model(model, structure.color if structure else surface_colour)
        models.append(model)
    return models


def _check_displacements(displacements, n_slices: Optional[int] = None) -> np.ndarray:
    d = np.asarray(displacements, float)
    if d.ndim != 2 or d.shape[1] != 2 or (n_slices is not None and d.shape[0] != n_slices):
        expected = f"({n_slices}, 2)" if n_slices is not None else "(n_slices, 2)"
        raise InputError(f"Displacements must be an {expected} array of mm, got shape {d.shape}.")
    if np.isinf(d).any():
        raise InputError("The displacements contain infinite values.")
    return d  # NaN: a slice without labels, whose displacement was not measured


def _vtk_column(name: str, values: np.ndarray):
    """A named VTK array of the values' own type, built here so that the 'slice' column is an
    integer column whatever the Slicer version's slicer.util.updateTableFromArray does."""
    from vtk.util.numpy_support import numpy_to_vtk

    column = numpy_to_vtk(np.ascontiguousarray(values), deep=True)
    column.SetName(name)
    return column


_DX_DESCRIPTION = ("Estimated in-plane displacement of the slice along the SAX image's {axis} axis (mm); "
                   "the corrected slice is the observed one moved by minus this value.")


def add_displacement_table(displacements, name: str, residuals=None, scene=None, estimated=None):
    """A table node with one row per SAX slice: 'slice', 'dx (mm)', 'dy (mm)' (along the stack's
    i and j axes, see :mod:`.core.case`; NaN where the slice shows no heart) and, when given,
    'estimated' (1/0, ``Result.estimated``) and 'residual'. Reuses the table of the same name made
    by an earlier run."""
    d = _check_displacements(displacements)
    columns = [np.arange(len(d), dtype=np.int32), d[:, 0].copy(), d[:, 1].copy()]
    names = ["slice", "dx (mm)", "dy (mm)"]
    if estimated is not None:
        columns.append(np.asarray(estimated, bool).astype(np.int32))
        names.append("estimated")
    if residuals is not None:
        r = np.asarray(residuals, float).ravel()
        if r.shape != (len(d),):
            raise InputError(f"Expected one residual per slice ({len(d)}), got {r.size}.")
        columns.append(r)
        names.append("residual")
    table = _output_node(_scene_of(scene), "vtkMRMLTableNode", name, "displacements")
    was_modified = table.StartModify()
    table.RemoveAllColumns()
    for column_name, values in zip(names, columns):
        table.AddColumn(_vtk_column(column_name, values))
    table.EndModify(was_modified)
    table.SetColumnDescription("slice", "SAX slice index k (0 = first slice of the input stack)")
    table.SetColumnDescription("dx (mm)", _DX_DESCRIPTION.format(axis="i (column)"))
    table.SetColumnDescription("dy (mm)", _DX_DESCRIPTION.format(axis="j (row)"))
    table.SetColumnUnitLabel("dx (mm)", "mm")
    table.SetColumnUnitLabel("dy (mm)", "mm")
    return table


def add_corrected_image(image_node, displacements, name: Optional[str] = None, scene=None, axis_order=IDENTITY):
    """A copy of the SAX image with every slice moved by ``-displacements[k]`` (linear
    interpolation, border values repeated), on the image's own grid and parent transform, so
    it overlays the original. ``axis_order``: the case's (slices along k while shifting). Reuses
    the corrected image of the same name made earlier."""
    image = permute(image_from_node(image_node), tuple(axis_order))
    d = _check_displacements(displacements, image.shape[0])
    corrected = corrected_image(image, d, axis_order)  # world mm, like the displacements
    name = name or f"{image_node.GetName()} motion corrected"
    scene = _scene_of(scene, image_node)
    node = _output_node(scene, "vtkMRMLScalarVolumeNode", name, "corrected image")
    _add_volume_node(scene, corrected.array, _local_ijk_to_ras(image_node), name, node=node)
    node.SetAndObserveTransformNodeID(image_node.GetTransformNodeID())
    return node


def add_image_volume(image: Volume, name: str, role: str = "synthetic image", scene=None):
    """A scalar volume node (world coordinates) holding an engine image, e.g. the synthetic
    super-resolved image of DeepRecon (``Result.image``); the node of the same name and role made
    by an earlier run is reused."""
    if not isinstance(image, Volume):
        raise InputError("Only an engine Volume can become an image volume node.")
    scene = _scene_of(scene)
    node = _output_node(scene, "vtkMRMLScalarVolumeNode", name, role)
    _add_volume_node(scene, image.array.astype(np.float32), image.ijk_to_ras, name, node=node)
    node.SetAndObserveTransformNodeID(None)
    return node


def add_input_segmentation(labels: Volume, name: str, scene=None):
    """The segmentation an image given alone was segmented into (so the user can check what the
    reconstruction ran on), as a segmentation node; reuses the one of the same name made earlier."""
    scene = _scene_of(scene)
    node = _find_output_node(scene, "vtkMRMLSegmentationNode", name, "input segmentation")
    node = write_segmentation_node(labels, node, name, scene)
    node.SetAttribute(ROLE_ATTRIBUTE, "input segmentation")
    return node


def _residuals_of(result, n_slices: int) -> Optional[np.ndarray]:
    """Per-slice residuals a method may report in ``diagnostics['residuals']``."""
    residuals = result.diagnostics.get("residuals")
    if residuals is None:
        return None
    residuals = np.asarray(residuals, float).ravel()
    return residuals if residuals.shape == (n_slices,) else None


def result_to_nodes(result, case: Case, output_segmentation=None, image_node=None, name: Optional[str] = None,
                    scene=None, input_segmentation: bool = False) -> Dict[str, object]:
    """Show a reconstruction in the scene: the segmentation (closed surfaces in 3D), one model
    per surface of ``result.surfaces``, the displacement table, with ``image_node`` the
    motion-corrected image, the synthetic image of a method that makes one (``result.image``:
    '<input> DeepRecon image') and, with ``input_segmentation``, the case's segmentation as
    computed from an image given alone ('<input> DirectSeg segmentation', named after
    ``case.info['segmenter']``). Returns {'segmentation', 'models', 'table', 'corrected_image',
    'image', 'input_segmentation'} (None where there is none)."""
    scene = _scene_of(scene, output_segmentation, image_node)
    if name is None:
        name = output_segmentation.GetName() if output_segmentation is not None else \
            f"{case.name} {result.method or 'reconstruction'}"
    segmentation = write_segmentation_node(result.labels, output_segmentation, name, scene)
    models = add_model_nodes(result.surfaces, name, scene) if result.surfaces else []
    table = add_displacement_table(result.displacements, f"{name} displacements",
                                   _residuals_of(result, len(result.displacements)), scene, result.estimated)
    corrected = None if image_node is None else add_corrected_image(
        image_node, result.displacements, scene=scene, axis_order=case.info.get("axis_order", IDENTITY))
    painted = None
    if getattr(result, "image", None) is not None:
        title = TITLES.get(result.method, result.method or "reconstruction")
        painted = add_image_volume(result.image, f"{case.name} {title} image", scene=scene)
    computed = None
    if input_segmentation:
        segmenter = str(case.info.get("segmenter", ""))
        words = (case.name, TITLES.get(segmenter, segmenter), "segmentation")
        computed = add_input_segmentation(case.sax, " ".join(w for w in words if w), scene)
    return {"segmentation": segmentation, "models": models, "table": table, "corrected_image": corrected,
            "image": painted, "input_segmentation": computed}


def summary_line(case: Case, result, seconds: float, device: str) -> str:
    """One line for the user: run time, device, and LV/RV volumes (ml) and myocardial mass (g)
    of the input stack and of the reconstruction."""
    from .core.indices import myocardial_mass_g, volumes_ml

    before, after = volumes_ml(case.sax), volumes_ml(result.labels)
    parts = [f"{STRUCTURES[label].key} {before[label]:.1f} -> {after.get(label, 0.0):.1f} ml"
             for label in (LV, RV) if label in before]
    if MYO in before:
        parts.append(f"myocardial mass {myocardial_mass_g(case.sax):.1f} -> {myocardial_mass_g(result.labels):.1f} g")
    measures = "; ".join(parts) + " (input stack -> reconstruction)" if parts else "no ventricle to measure"
    return f"Reconstructed in {seconds:.1f} s on {device}. {measures}."
