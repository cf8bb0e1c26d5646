"""The MRML adapter against real Slicer libraries (slicer-core): geometry, labels, files, outputs."""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("this 'slicer' module has no MRML (slicer-core or the Slicer application is needed)",
                allow_module_level=True)

import vtk  # noqa: E402  (slicer-core brings the matching vtk)

from CardiacReconstructionLib import methods, mrml  # noqa: E402
from CardiacReconstructionLib.simulation import cases  # noqa: E402
from CardiacReconstructionLib.core import io  # noqa: E402
from CardiacReconstructionLib.simulation import phantom  # noqa: E402
from CardiacReconstructionLib.core.case import Case  # noqa: E402
from CardiacReconstructionLib.core.errors import InputError  # noqa: E402
from CardiacReconstructionLib.core.geometry import Volume, make_ijk_to_ras  # noqa: E402
from CardiacReconstructionLib.core.labels import STRUCTURES  # noqa: E402
from CardiacReconstructionLib.core.surfaces import label_surfaces  # noqa: E402

from conftest import oblique_matrix, ring_stack  # noqa: E402

ACDC_FROM_CANONICAL = np.array([0, 3, 2, 1], np.uint8)  # canonical 1 LV, 2 MYO, 3 RV -> ACDC 3, 2, 1


@pytest.fixture
def stack():
    """Oblique, anisotropic (1.5 x 1.4 x 8 mm) SAX-like stack with LV, MYO and RV."""
    return ring_stack(n_slices=6, size=32, matrix=oblique_matrix())


def node_ids(scene):
    """IDs of the data nodes (the subject hierarchy node is shared infrastructure)."""
    return {scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())
            if not scene.GetNthNode(n).IsA("vtkMRMLSubjectHierarchyNode")}


def matrix_of(volume_node):
    m = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m)


def segment_ids(node):
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]


def linear_transform(scene, matrix):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
    return transform


# ---------------------------------------------------------------------------------------------
# Engine volume <-> segmentation node
# ---------------------------------------------------------------------------------------------

def test_oblique_round_trip_is_voxel_exact(scene, stack):
    node = mrml.write_segmentation_node(stack, scene=scene)
    back, message = mrml.volume_from_node(node)
    assert back.shape == stack.shape  # the 6 slices stay the k axis
    np.testing.assert_array_equal(back.array, stack.array)
    np.testing.assert_allclose(back.ijk_to_ras, stack.ijk_to_ras, atol=1e-9)
    np.testing.assert_allclose(back.spacing, [1.5, 1.4, 8.0])
    assert "segment name" in message


def test_segments_have_fixed_ids_names_colours_terminology_and_3d_surfaces(scene, stack):
    labels = stack.array.copy()
    labels[labels == 2] = 0  # no myocardium: no empty MYO segment either
    labels[0, :3, :3] = 5  # a whole-heart structure
    node = mrml.write_segmentation_node(stack.with_array(labels), name="Recon", scene=scene)
    assert node.GetName() == "Recon"
    assert segment_ids(node) == ["LV", "RV", "RA"]
    for key, label in (("LV", 1), ("RV", 3), ("RA", 5)):
        segment = node.GetSegmentation().GetSegment(key)
        assert segment.GetName() == STRUCTURES[label].name
        np.testing.assert_allclose(segment.GetColor(), STRUCTURES[label].color, atol=1e-6)
        assert segment.GetTerminology() == STRUCTURES[label].terminology
        assert node.GetClosedSurfaceInternalRepresentation(key).GetNumberOfPoints() > 0
    display = node.GetDisplayNode()
    assert display.GetVisibility3D()
    assert display.GetPreferredDisplayRepresentationName3D() == "Closed surface"
    back, _ = mrml.volume_from_node(node)
    np.testing.assert_array_equal(back.array, labels)


def test_reusing_an_output_node_replaces_its_segments(scene, stack):
    node = mrml.write_segmentation_node(stack, scene=scene)
    only_lv = stack.with_array((stack.array == 1).astype(np.uint8))
    again = mrml.write_segmentation_node(only_lv, segmentation_node=node)
    assert again is node
    assert segment_ids(node) == ["LV"]
    np.testing.assert_array_equal(mrml.volume_from_node(node)[0].array, only_lv.array)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1


def test_seg_nrrd_written_by_slicer_keeps_names_and_colours(scene, stack, tmp_path):
    node = mrml.write_segmentation_node(stack, scene=scene)
    path = str(tmp_path / "recon.seg.nrrd")
    node.AddDefaultStorageNode()
    node.GetStorageNode().SetFileName(path)
    assert node.GetStorageNode().WriteData(node) == 1

    read = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "read back")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(path)
    read.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.ReadData(read) == 1
    assert segment_ids(read) == ["LV", "MYO", "RV"]
    for key, label in (("LV", 1), ("MYO", 2), ("RV", 3)):
        segment = read.GetSegmentation().GetSegment(key)
        assert segment.GetName() == STRUCTURES[label].name
        np.testing.assert_allclose(segment.GetColor(), STRUCTURES[label].color, atol=1e-6)
    np.testing.assert_array_equal(mrml.volume_from_node(read)[0].array, stack.array)

    volume, message = io.read_segmentation(path)  # our own reader (slicerio) agrees
    assert "segment name" in message
    np.testing.assert_array_equal(volume.array, stack.array)
    np.testing.assert_allclose(volume.ijk_to_ras, stack.ijk_to_ras, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Input nodes -> engine
# ---------------------------------------------------------------------------------------------

def test_labelmap_node_in_acdc_convention(scene, stack):
    acdc = ACDC_FROM_CANONICAL[stack.array]
    node = slicer.util.addVolumeFromArray(acdc, stack.ijk_to_ras, "acdc", nodeClassName="vtkMRMLLabelMapVolumeNode")
    volume, message = mrml.volume_from_node(node, "acdc")
    np.testing.assert_array_equal(volume.array, stack.array)
    np.testing.assert_allclose(volume.ijk_to_ras, stack.ijk_to_ras, atol=1e-9)
    assert message == "label convention: acdc"
    assert "acdc" in mrml.volume_from_node(node)[1]  # 'auto' recognises it too


def test_unnamed_segments_need_a_convention(scene, stack):
    """A labelmap imported without names gives segments 'Label_1'...: the label values are
    read in the chosen convention, and 'auto' asks for one."""
    labelmap = slicer.util.addVolumeFromArray(ACDC_FROM_CANONICAL[stack.array], stack.ijk_to_ras, "acdc",
                                              nodeClassName="vtkMRMLLabelMapVolumeNode")
    mrml.ensure_converter_rules()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "unnamed")
    node.SetReferenceImageGeometryParameterFromVolumeNode(labelmap)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node)
    with pytest.raises(InputError, match="Unrecognised segment names"):
        mrml.volume_from_node(node)
    volume, message = mrml.volume_from_node(node, "acdc")
    np.testing.assert_array_equal(volume.array, stack.array)
    assert message.startswith("label convention: acdc")


def test_linear_parent_transform_is_applied_and_nonlinear_refused(scene, stack):
    node = slicer.util.addVolumeFromArray(stack.array, stack.ijk_to_ras, "sax",
                                          nodeClassName="vtkMRMLLabelMapVolumeNode")
    shift = np.eye(4)
    shift[:3, 3] = (10.0, -5.0, 3.0)
    node.SetAndObserveTransformNodeID(linear_transform(scene, shift).GetID())
    volume, _ = mrml.volume_from_node(node, "canonical")
    np.testing.assert_allclose(volume.ijk_to_ras, shift @ stack.ijk_to_ras, atol=1e-9)

    segmentation = mrml.write_segmentation_node(stack, scene=scene)
    segmentation.SetAndObserveTransformNodeID(node.GetTransformNodeID())
    np.testing.assert_allclose(mrml.volume_from_node(segmentation)[0].ijk_to_ras, shift @ stack.ijk_to_ras,
                               atol=1e-9)

    warp = scene.AddNewNodeByClass("vtkMRMLTransformNode")
    warp.SetAndObserveTransformToParent(vtk.vtkThinPlateSplineTransform())
    node.SetAndObserveTransformNodeID(warp.GetID())
    with pytest.raises(InputError, match="non-linear transform"):
        mrml.volume_from_node(node, "canonical")


def test_inputs_are_unchanged_and_no_nodes_are_left_behind(scene, stack):
    segmentation = mrml.write_segmentation_node(stack, scene=scene)
    labelmap = slicer.util.addVolumeFromArray(stack.array, stack.ijk_to_ras, "lab",
                                              nodeClassName="vtkMRMLLabelMapVolumeNode")
    image = slicer.util.addVolumeFromArray(stack.array.astype(np.float32) * 10, stack.ijk_to_ras, "img")
    far_away = slicer.util.addVolumeFromArray(np.zeros((2, 4, 4), np.float32), make_ijk_to_ras(origin=(1e4,) * 3),
                                              "far away")
    before_ids = node_ids(scene)
    before_arrays = [slicer.util.arrayFromVolume(labelmap).copy(), slicer.util.arrayFromVolume(image).copy()]
    before_times = [n.GetMTime() for n in (segmentation, labelmap, image)]

    mrml.volume_from_node(segmentation)
    mrml.volume_from_node(segmentation, reference_volume_node=image)
    mrml.volume_from_node(labelmap)
    mrml.image_from_node(image)
    with pytest.raises(InputError, match="no cardiac structure inside 'far away'"):  # errors clean up too
        mrml.volume_from_node(segmentation, reference_volume_node=far_away)

    assert node_ids(scene) == before_ids
    assert [n.GetMTime() for n in (segmentation, labelmap, image)] == before_times
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(labelmap), before_arrays[0])
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(image), before_arrays[1])
    assert segment_ids(segmentation) == ["LV", "MYO", "RV"]


def test_closed_surface_segmentation_is_voxelised_on_the_reference_grid(scene, stack):
    """Closed surfaces (e.g. imported models) need the SAX grid; the user's node keeps its
    representations (the voxelisation happens in a temporary copy)."""
    mrml.ensure_converter_rules()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "surfaces")
    node.SetSourceRepresentationToClosedSurface()
    for key, surface in label_surfaces(stack).items():
        node.AddSegmentFromClosedSurfaceRepresentation(surface, key, [1.0, 0.0, 0.0], key)
    with pytest.raises(InputError, match="closed surfaces without a reference image geometry"):
        mrml.volume_from_node(node)
    image = slicer.util.addVolumeFromArray(np.zeros(stack.shape, np.float32), stack.ijk_to_ras, "img")
    before_ids, before_time = node_ids(scene), node.GetMTime()
    volume, _ = mrml.volume_from_node(node, reference_volume_node=image)
    assert volume.geometry.same_as(stack.geometry)
    for label in (1, 2, 3):
        a, b = volume.array == label, stack.array == label
        # smoothed surfaces, revoxelised: measured >= 0.977; margin 0.017
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.96
    assert node.GetMTime() == before_time
    assert node_ids(scene) == before_ids
    assert not node.GetSegmentation().ContainsRepresentation("Binary labelmap")


def test_bad_inputs_raise_input_errors(scene, stack):
    with pytest.raises(InputError, match="No segmentation"):
        mrml.volume_from_node(None)
    model = scene.AddNewNodeByClass("vtkMRMLModelNode", "a model")
    with pytest.raises(InputError, match="expected a segmentation or a labelmap"):
        mrml.volume_from_node(model)
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    with pytest.raises(InputError, match="no segments"):
        mrml.volume_from_node(empty)
    mri = slicer.util.addVolumeFromArray(np.random.default_rng(0).random((3, 8, 8)).astype(np.float32), None, "mri")
    with pytest.raises(InputError, match="not a label map"):
        mrml.volume_from_node(mri)
    with pytest.raises(InputError, match="scalar volume"):
        mrml.image_from_node(model)


def test_case_from_nodes_with_image_and_lax(scene):
    truth = phantom.make_phantom(1).truth
    case = cases.make_case(truth, "normal", seed=1, lax_views=("4ch",))
    sax = mrml.write_segmentation_node(case.sax, name="sax", scene=scene)
    lax = mrml.write_segmentation_node(case.lax[0].labels, name="4ch", scene=scene)
    image = slicer.util.addVolumeFromArray(case.sax.array.astype(np.float32) * 100, case.sax.ijk_to_ras, "cine")

    built, messages = mrml.case_from_nodes(sax, {"4ch": lax, "2ch": None}, image_node=image)
    assert isinstance(built, Case) and built.name == "sax"
    np.testing.assert_array_equal(built.sax.array, case.sax.array)
    assert built.image.geometry.same_as(built.sax.geometry)
    np.testing.assert_allclose(built.image.array, case.sax.array * 100.0)
    assert [v.view for v in built.lax] == ["4ch"]
    np.testing.assert_array_equal(built.lax[0].labels.array, case.lax[0].labels.array)
    np.testing.assert_allclose(built.lax[0].labels.ijk_to_ras, case.lax[0].labels.ijk_to_ras, atol=1e-9)
    assert messages[0].startswith("SAX: ") and messages[1].startswith("4ch: ")


def test_labelmap_off_the_image_grid_is_refused(scene, stack):
    labelmap = slicer.util.addVolumeFromArray(stack.array, stack.ijk_to_ras, "lab",
                                              nodeClassName="vtkMRMLLabelMapVolumeNode")
    moved = stack.ijk_to_ras.copy()
    moved[:3, 3] += 5.0
    image = slicer.util.addVolumeFromArray(np.zeros(stack.shape, np.float32), moved, "img")
    with pytest.raises(InputError, match="do not share one grid"):
        mrml.case_from_nodes(labelmap, {}, image_node=image)


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------

def test_models_carry_the_surfaces(scene, stack):
    surfaces = label_surfaces(stack)
    models = mrml.add_model_nodes(surfaces, "Recon", scene=scene)
    assert [m.GetName() for m in models] == ["Recon LV blood pool", "Recon LV myocardium", "Recon RV blood pool"]
    for model, (key, surface) in zip(models, surfaces.items()):
        assert model.GetPolyData().GetNumberOfPoints() == surface.GetNumberOfPoints() > 0
        display = model.GetDisplayNode()
        structure = next(s for s in STRUCTURES.values() if s.key == key)
        np.testing.assert_allclose(display.GetColor(), structure.color, atol=1e-6)
        assert display.GetVisibility2D() and display.GetVisibility3D()
    again = mrml.add_model_nodes(surfaces, "Recon", scene=scene)  # a second run updates them
    assert [m.GetID() for m in again] == [m.GetID() for m in models]
    assert scene.GetNumberOfNodesByClass("vtkMRMLModelNode") == 3


def test_mask2surface_surfaces_get_their_own_names_and_colours(scene, stack):
    from CardiacReconstructionLib.core.sdf import SURFACE_STYLES

    surfaces = label_surfaces(stack)
    models = mrml.add_model_nodes({"LV_epicardium": surfaces["MYO"], "RV_endocardium": surfaces["RV"]}, "M2S",
                                  scene=scene)
    assert [m.GetName() for m in models] == ["M2S LV epicardium", "M2S RV endocardium"]
    np.testing.assert_allclose(models[0].GetDisplayNode().GetColor(), SURFACE_STYLES["LV_epicardium"][1], atol=1e-6)


def test_table_holds_the_displacements(scene):
    d = np.array([[0.5, -1.0], [0.0, 0.0], [2.25, 1.5]])
    table = mrml.add_displacement_table(d, "shifts", residuals=[0.1, 0.2, 0.3], scene=scene)
    assert table.GetNumberOfRows() == 3
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == \
        ["slice", "dx (mm)", "dy (mm)", "residual"]
    assert table.GetTable().GetColumnByName("slice").GetDataType() in (vtk.VTK_INT, vtk.VTK_LONG, vtk.VTK_LONG_LONG)
    np.testing.assert_array_equal(slicer.util.arrayFromTableColumn(table, "slice"), [0, 1, 2])
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(table, "dx (mm)"), d[:, 0])
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(table, "dy (mm)"), d[:, 1])
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(table, "residual"), [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match=r"\(n_slices, 2\)"):
        mrml.add_displacement_table(np.zeros(3), "bad", scene=scene)


def test_corrected_image_moves_each_slice_back(scene, stack):
    """Slice 1 observed moved by +2 voxels along i and -1 voxel along j is moved back exactly
    (whole-voxel shifts make linear interpolation exact); the grid and transform are kept."""
    rng = np.random.default_rng(0)
    image = rng.random(stack.shape).astype(np.float32)
    node = slicer.util.addVolumeFromArray(image, stack.ijk_to_ras, "cine")
    transform = linear_transform(scene, np.diag([1.0, 1.0, 1.0, 1.0]))
    node.SetAndObserveTransformNodeID(transform.GetID())
    d = np.zeros((stack.shape[0], 2))
    d[1] = (2 * 1.5, -1 * 1.4)  # mm along i (1.5 mm voxels) and j (1.4 mm voxels)
    corrected = mrml.add_corrected_image(node, d, scene=scene)
    out = slicer.util.arrayFromVolume(corrected)
    np.testing.assert_allclose(out[0], image[0], atol=1e-6)
    # corrected(p) = observed(p + d): out[j, i] = image[j - 1, i + 2]
    np.testing.assert_allclose(out[1, 1:, :-2], image[1, :-1, 2:], atol=1e-6)
    np.testing.assert_allclose(matrix_of(corrected), matrix_of(node), atol=1e-12)
    assert corrected.GetTransformNodeID() == transform.GetID()
    assert corrected.GetName() == "cine motion corrected"
    with pytest.raises(InputError, match=r"\(6, 2\)"):
        mrml.add_corrected_image(node, np.zeros((5, 2)), scene=scene)


def test_result_to_nodes_on_a_phantom_reconstruction(scene):
    case = cases.make_case(phantom.make_phantom(0).truth, "normal", seed=0)
    result = methods.run("centroid_shape_interp", case, surfaces=True)
    image = slicer.util.addVolumeFromArray(case.sax.array.astype(np.float32), case.sax.ijk_to_ras, "cine")
    nodes = mrml.result_to_nodes(result, case, image_node=image, scene=scene)

    segmentation = nodes["segmentation"]
    assert segment_ids(segmentation) == ["LV", "MYO", "RV"]
    for key in ("LV", "MYO", "RV"):
        assert segmentation.GetClosedSurfaceInternalRepresentation(key).GetNumberOfPoints() > 100
    np.testing.assert_array_equal(mrml.volume_from_node(segmentation)[0].array, result.labels.array)
    assert len(nodes["models"]) == 3
    assert nodes["table"].GetNumberOfRows() == case.n_slices
    np.testing.assert_allclose(slicer.util.arrayFromTableColumn(nodes["table"], "dx (mm)"),
                               result.displacements[:, 0])
    assert slicer.util.arrayFromVolume(nodes["corrected_image"]).shape == case.sax.shape

    again = mrml.result_to_nodes(result, case, output_segmentation=segmentation, image_node=image, scene=scene)
    assert again["segmentation"] is segmentation
    assert scene.GetNumberOfNodesByClass("vtkMRMLModelNode") == 3
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1
    assert mrml.result_to_nodes(result, case, scene=scene)["corrected_image"] is None


def test_summary_line_reports_volumes_and_mass():
    """Hand-computable: 1 x 1 x 10 mm voxels are 0.01 ml; myocardium weighs 1.05 g/ml."""
    sax = np.zeros((2, 10, 10), np.uint8)
    sax[:, :5, :] = 1  # 100 voxels -> 1.0 ml
    sax[:, 5:7, :] = 2  # 40 voxels -> 0.4 ml -> 0.42 g
    sax[:, 7:, :2] = 3  # 12 voxels -> 0.12 ml
    case = Case(sax=Volume(sax, make_ijk_to_ras((1.0, 1.0, 10.0))))
    hr = np.repeat(sax, 5, axis=0)
    hr[:, 0, :] = 0  # LV loses 100 of 500 voxels of 2 mm slices -> 0.8 ml
    result = methods.Result(Volume(hr, make_ijk_to_ras((1.0, 1.0, 2.0))), np.zeros((2, 2)))
    line = mrml.summary_line(case, result, 2.345, "cuda")
    assert line.startswith("Reconstructed in 2.3 s on cuda.")
    assert "LV 1.0 -> 0.8 ml" in line
    assert "RV 0.1 -> 0.1 ml" in line
    assert "myocardial mass 0.4 -> 0.4 g" in line
