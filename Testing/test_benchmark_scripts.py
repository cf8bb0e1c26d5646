"""The arithmetic of diagnostic scripts under Testing/benchmarks whose figures RESULTS.md quotes."""

import importlib.util
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).parent / "benchmarks"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _discs(shape_kji, spacing_kji, radii, shifts_ji):
    """Signed distances [S, k, j, i] (mm) to circles of ``radii`` in every slice, slice k's centre
    moved by ``shifts_ji[k]`` (mm)."""
    k, j, i = np.indices(shape_kji, dtype=float)
    y = (j - (shape_kji[1] - 1) / 2) * spacing_kji[1] - shifts_ji[:, 0, None, None]
    x = (i - (shape_kji[2] - 1) / 2) * spacing_kji[2] - shifts_ji[:, 1, None, None]
    r = np.hypot(x, y)
    return np.stack([r - radius for radius in radii])


def test_slice_translations_recover_known_shifts_and_ignore_offsets():
    align = _script("m2s_alignment")
    shape, spacing = (6, 48, 48), (4.0, 2.5, 2.5)
    shifts = np.stack([np.linspace(-0.8, 0.8, shape[0]), np.full(shape[0], 0.4)], axis=1)
    radii = (12.0, 20.0, 25.0, 30.0)
    condition = _discs(shape, spacing, radii, np.zeros_like(shifts))
    moved = _discs(shape, spacing, radii, shifts) + np.array([0.5, -0.3, 0.0, 0.2])[:, None, None, None]
    t, field, weight = align.slice_translations(condition, moved - condition, spacing)
    assert (weight > 0).all()
    np.testing.assert_allclose(t, shifts, atol=0.05)
    # the field is the translation's first-order change: it explains most of the change near the surfaces
    near = np.abs(condition) < align.NEAR_SURFACE_MM
    offsets = np.array([0.5, -0.3, 0.0, 0.2])[:, None, None, None] * np.ones_like(condition)
    residual = (moved - condition - offsets - field)[near]
    assert np.sqrt(np.mean(residual ** 2)) < 0.03 * np.sqrt(np.mean(field[near] ** 2))  # measured 0.017; margin 0.013
