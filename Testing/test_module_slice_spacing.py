"""The Slicer widget's default output slice spacing ('Auto (x mm)') is the engine's.

The widget leaves the slice spacing to the engine unless the user sets one, and says what that
will be for the selected input: ``CardiacReconstructionLogic.defaultSliceSpacing`` asks the
engine's ``output_geometry`` about the grid ``sliceGrid`` reads off the node (without exporting
it). Both functions are compiled from the module's source (the module needs Slicer's Qt) and
run on real MRML nodes (slicer-core), against what the engine picks for the labels the MRML
adapter reads from the same nodes.
"""

from typing import Optional, Tuple

import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("this 'slicer' module has no MRML (slicer-core or the Slicer application is needed)",
                allow_module_level=True)

from conftest import oblique_matrix, ring_stack  # noqa: E402
from module_source import exec_module_functions, module_constant, module_tree  # noqa: E402
from CardiacReconstructionLib import methods, mrml  # noqa: E402
from CardiacReconstructionLib.core.geometry import make_ijk_to_ras  # noqa: E402
from CardiacReconstructionLib.core.surfaces import label_surfaces  # noqa: E402


@pytest.fixture(scope="module")
def module():
    tree = module_tree()
    return exec_module_functions(tree, ["sliceGrid", "CardiacReconstructionLogic.defaultSliceSpacing"],
                                 {"Optional": Optional, "Tuple": Tuple,
                                  "BINARY_LABELMAP": module_constant(tree, "BINARY_LABELMAP")})


def _engine_spacing(node) -> float:
    """The slice spacing the engine gives the output when none is asked for."""
    labels, _ = mrml.volume_from_node(node)
    return float(methods.output_geometry(labels.geometry).spacing[2])


@pytest.mark.parametrize("slice_mm, n_slices", [(8.0, 6), (9.5, 7), (1.5, 12)])
def test_auto_spacing_is_the_engines_for_labelmaps_and_segmentations(module, scene, slice_mm, n_slices):
    stack = ring_stack(n_slices=n_slices, size=32, matrix=oblique_matrix(spacing=(1.5, 1.4, slice_mm)))
    labelmap = slicer.util.addVolumeFromArray(stack.array, stack.ijk_to_ras, "sax",
                                              nodeClassName="vtkMRMLLabelMapVolumeNode")
    segmentation = mrml.write_segmentation_node(stack, name="sax segmentation", scene=scene)
    for node in (labelmap, segmentation):
        assert module["sliceGrid"](node) == (n_slices, pytest.approx(slice_mm)), node.GetClassName()
        spacing = module["defaultSliceSpacing"](node)
        assert spacing == pytest.approx(_engine_spacing(node), abs=1e-9), node.GetClassName()
        assert spacing <= min(methods.DEFAULT_SLICE_SPACING_MM, slice_mm) + 0.1


def test_without_a_readable_grid_auto_is_the_engine_default(module, scene):
    """No input, an empty segmentation and closed surfaces without labelmaps have no grid to
    read: the caption shows the engine's default."""
    stack = ring_stack(n_slices=6, size=32, matrix=make_ijk_to_ras((1.5, 1.5, 8.0)))
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    mrml.ensure_converter_rules()
    surfaces = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "surfaces")
    surfaces.SetSourceRepresentationToClosedSurface()
    for key, surface in label_surfaces(stack).items():
        surfaces.AddSegmentFromClosedSurfaceRepresentation(surface, key, [1.0, 0.0, 0.0], key)
    for node in (None, empty, surfaces):
        assert module["sliceGrid"](node) is None
        assert module["defaultSliceSpacing"](node) == methods.DEFAULT_SLICE_SPACING_MM
