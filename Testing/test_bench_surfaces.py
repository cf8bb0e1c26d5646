"""Surface scoring of the benchmark: mesh ASSD, curvature spread, method variants, baseline meshing."""

import numpy as np
import pytest
from vtkmodules.vtkFiltersSources import vtkSphereSource

from CardiacReconstructionLib.evaluation.bench import parse_method_label, result_surfaces, surface_scores
from CardiacReconstructionLib.core.errors import InputError
from CardiacReconstructionLib.core.geometry import Volume, make_ijk_to_ras
from CardiacReconstructionLib.core.labels import LV, MYO, RV
from CardiacReconstructionLib.methods import Result
from CardiacReconstructionLib.evaluation.metrics import curvature_spread, mesh_assd
from CardiacReconstructionLib.core.sdf import SURFACE_KEYS
from CardiacReconstructionLib.core.surfaces import open_edge_count


def _sphere(radius, resolution=60):
    s = vtkSphereSource()
    s.SetRadius(radius)
    s.SetThetaResolution(resolution)
    s.SetPhiResolution(resolution)
    s.Update()
    return s.GetOutput()


def test_mesh_assd_of_concentric_spheres_is_their_gap():
    # exact point-to-mesh distances: every vertex of either sphere is ~1 mm from the other
    assert mesh_assd(_sphere(10.0), _sphere(11.0)) == pytest.approx(1.0, abs=0.01)  # measured 0.9995; margin 0.01
    assert mesh_assd(_sphere(10.0), _sphere(10.0)) == pytest.approx(0.0, abs=1e-6)


def test_curvature_spread_is_zero_on_a_sphere_and_grows_with_bumps():
    smooth = _sphere(10.0)
    assert curvature_spread(smooth) < 0.001  # measured 1.6e-4 /mm; margin 8e-4
    bumpy = _sphere(10.0)
    pts = bumpy.GetPoints()
    rng = np.random.default_rng(0)
    for i in range(pts.GetNumberOfPoints()):
        p = np.array(pts.GetPoint(i))
        pts.SetPoint(i, *(p * (1 + 0.05 * rng.standard_normal())))
    assert curvature_spread(bumpy) > 10 * curvature_spread(smooth)


def test_method_variants_parse_into_name_and_options():
    assert parse_method_label("nearest") == ("nearest", {})
    assert parse_method_label("mask2surface[refine=none; ddim_steps=5]") == \
        ("mask2surface", {"refine": "none", "ddim_steps": "5"})
    with pytest.raises(InputError, match="key=value"):
        parse_method_label("mask2surface[refine]")
    with pytest.raises(InputError, match="must look like"):
        parse_method_label("mask2surface[refine=none")


def test_baselines_are_meshed_per_surface_and_scored():
    arr = np.zeros((20, 30, 30), np.uint8)
    arr[4:16, 8:22, 6:14] = MYO
    arr[6:14, 10:20, 8:12] = LV
    arr[4:16, 8:22, 16:24] = RV
    labels = Volume(arr, make_ijk_to_ras((2.0, 2.0, 2.0), (0, 0, 0), np.eye(3)))
    surfaces = result_surfaces(Result(labels, np.zeros((1, 2))))
    assert set(surfaces) == set(SURFACE_KEYS)
    assert all(open_edge_count(s) == 0 for s in surfaces.values())
    scores = surface_scores(surfaces, surfaces)
    assert scores["chamfer_mean_mm"] == pytest.approx(0.0, abs=1e-6)
    assert scores["surface_assd_mean_mm"] == pytest.approx(0.0, abs=1e-6)
    assert "curvature_spread_LV_myocardium" in scores
