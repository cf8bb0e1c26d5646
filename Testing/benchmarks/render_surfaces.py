"""Render the README's 3D picture of a reconstruction's surfaces (offscreen, no display needed).

Regenerate it with:

    cardiac-recon demo --output /tmp/demo_for_picture
    python Testing/benchmarks/render_surfaces.py --demo /tmp/demo_for_picture \
        --output Resources/Screenshots/surfaces.png
    python Testing/benchmarks/render_surfaces.py --demo /tmp/demo_for_picture \
        --method mask2surface --output Resources/Screenshots/mask2surface.png

It reads ``<method>_surface_<LV|MYO|RV>.vtp`` (or Mask2Surface's endo-/epicardial surfaces) from a
demo folder, colours each structure like its segment (labels.STRUCTURES, sdf.SURFACE_STYLES), shows
the myocardium (epicardium) translucent so the LV blood pool inside
it stays visible, and looks at the heart side-on: long axis up, LV and RV side by side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import vtk

from CardiacReconstructionLib.core.io import read_volume
from CardiacReconstructionLib.core.labels import STRUCTURES
from CardiacReconstructionLib.core.surfaces import polydata_points, read_surface

OPACITY = {"MYO": 0.45, "LV_epicardium": 0.45}  # everything else opaque
#: The surfaces drawn: a label method's structures, or Mask2Surface's own surfaces (the LV
#: myocardium surface is the epicardium and endocardium together, so it is not drawn again).
LABEL_KEYS = ("RV", "LV", "MYO")
MASK2SURFACE_KEYS = ("RV_endocardium", "LV_endocardium", "LV_epicardium")


def _colour(key: str):
    from CardiacReconstructionLib.core.sdf import SURFACE_STYLES

    if key in SURFACE_STYLES:
        return SURFACE_STYLES[key][1]
    return next(s for s in STRUCTURES.values() if s.key == key).color


def _actor(polydata, key: str) -> vtk.vtkActor:
    mapper = vtk.vtkPolyDataMapper()
    mapper.SetInputData(polydata)
    mapper.ScalarVisibilityOff()
    actor = vtk.vtkActor()
    actor.SetMapper(mapper)
    prop = actor.GetProperty()
    prop.SetColor(*_colour(key))
    prop.SetOpacity(OPACITY.get(key, 1.0))
    prop.SetInterpolationToGouraud()
    prop.SetSpecular(0.25)
    prop.SetSpecularPower(20)
    return actor


def _side_view(surfaces, long_axis: np.ndarray):
    """Camera direction and view-up: long axis up, looking perpendicular to the LV-RV line."""
    lv_key, rv_key = ("LV", "RV") if "LV" in surfaces else ("LV_endocardium", "RV_endocardium")
    lv, rv = (polydata_points(surfaces[k]).mean(axis=0) for k in (lv_key, rv_key))
    up = long_axis / np.linalg.norm(long_axis)
    across = (rv - lv) - np.dot(rv - lv, up) * up
    direction = np.cross(across, up)
    return direction / np.linalg.norm(direction), up


def render(demo: Path, output: Path, method: str = "centroid_shape_interp", size=(900, 700)) -> Path:
    keys = MASK2SURFACE_KEYS if (demo / f"{method}_surface_LV_epicardium.vtp").is_file() else LABEL_KEYS
    surfaces = {key: read_surface(demo / f"{method}_surface_{key}.vtp") for key in keys}
    labels = read_volume(demo / f"{method}_labels.seg.nrrd")
    direction, up = _side_view(surfaces, -labels.geometry.direction[:, 2])  # k runs base -> apex: apex down

    renderer = vtk.vtkRenderer()
    renderer.SetBackground(1.0, 1.0, 1.0)
    renderer.SetUseDepthPeeling(True)  # correct translucency of the myocardium
    for key in keys:  # opaque first
        renderer.AddActor(_actor(surfaces[key], key))
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetAlphaBitPlanes(1)
    window.SetMultiSamples(0)
    window.SetSize(*size)
    window.AddRenderer(renderer)

    camera = renderer.GetActiveCamera()
    centre = np.mean([polydata_points(s).mean(axis=0) for s in surfaces.values()], axis=0)
    camera.SetFocalPoint(*centre)
    camera.SetPosition(*(centre + 500.0 * direction))
    camera.SetViewUp(*up)
    camera.Azimuth(-30)  # a little from the front, so the RV wraps visibly around the septum
    camera.Elevation(15)
    renderer.ResetCamera()
    camera.Zoom(1.25)
    window.Render()

    capture = vtk.vtkWindowToImageFilter()
    capture.SetInput(window)
    capture.ReadFrontBufferOff()
    capture.Update()
    output.parent.mkdir(parents=True, exist_ok=True)
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(output))
    writer.SetInputData(_cropped_to_content(capture))
    writer.Write()
    return output


def _cropped_to_content(capture, margin: float = 0.06) -> vtk.vtkImageData:
    """The captured image cropped to the heart plus a margin (the oblique heart's RAS bounding
    box, which the camera centres on, has empty corners)."""
    from vtkmodules.util.numpy_support import vtk_to_numpy

    image = vtk.vtkImageData()
    image.DeepCopy(capture.GetOutput())  # detached from the render window
    nx, ny, _ = image.GetDimensions()
    rgb = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(ny, nx, -1)[..., :3]
    rows, cols = np.nonzero((rgb < 250).any(axis=2))
    pad = int(margin * max(np.ptp(rows), np.ptp(cols)))
    crop = vtk.vtkExtractVOI()
    crop.SetInputData(image)
    crop.SetVOI(max(cols.min() - pad, 0), min(cols.max() + pad, nx - 1),
                max(rows.min() - pad, 0), min(rows.max() + pad, ny - 1), 0, 0)
    crop.Update()
    cropped = vtk.vtkImageData()
    cropped.DeepCopy(crop.GetOutput())
    return cropped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, required=True, help="folder written by 'cardiac-recon demo'")
    parser.add_argument("--method", default="centroid_shape_interp", help="whose surfaces (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("Resources/Screenshots/surfaces.png"))
    args = parser.parse_args(argv)
    print(render(args.demo, args.output, args.method))
    return 0


if __name__ == "__main__":
    sys.exit(main())
