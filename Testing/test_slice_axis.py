"""Stacks whose slice axis is i, j or k (and oblique) read the same way: the slice axis is found
from the spacings, the engine works with it as k, and results go back in the file's axis order."""

import numpy as np
import pytest

from CardiacReconstructionLib.core import axes
from CardiacReconstructionLib.core.errors import InputError
from conftest import oblique_matrix, ring_stack


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_the_slice_axis_is_found_and_moved_to_k_and_back(axis):
    working = ring_stack(n_slices=6, size=20, matrix=oblique_matrix())
    order = axes.order_with_slices_last(axis)
    stored = axes.restore_axes(working, order)  # as a file with its slices along `axis`
    assert axes.slice_axis(stored, "f") == axis
    back, found = axes.with_slices_as_k(stored, "f")
    assert found == order
    np.testing.assert_array_equal(back.array, working.array)
    np.testing.assert_allclose(back.ijk_to_ras, working.ijk_to_ras)
    # every voxel keeps its physical position in the stored layout
    k, j, i = 2, 7, 11
    ijk_stored = np.array([i, j, k])[list(axes.inverse(order))]
    np.testing.assert_allclose(stored.geometry.index_to_ras(ijk_stored), working.geometry.index_to_ras([i, j, k]))
    assert stored.array[tuple(ijk_stored[::-1])] == working.array[k, j, i]


def test_isotropic_stacks_are_refused_unless_the_axis_is_given():
    volume = ring_stack(n_slices=6, size=20, spacing=(1.5, 1.5, 1.6))
    with pytest.raises(InputError, match=r"cannot tell the slice axis.*--slice-axis i\|j\|k"):
        axes.slice_axis(volume, "sax.nii.gz")
    assert axes.slice_axis(volume, "sax.nii.gz", given="j") == 1
    with pytest.raises(InputError, match="one of i, j, k"):
        axes.slice_axis(volume, "sax.nii.gz", given="z")


@pytest.fixture(scope="module")
def phantom_stack():
    from CardiacReconstructionLib.simulation.cases import make_case
    from CardiacReconstructionLib.simulation.phantom import make_phantom

    return make_case(make_phantom(seed=1).truth, "normal", seed=1, slice_spacing=10.0).sax


def _method_args(method):
    args = []
    for name, value in method.test_options.items():
        args += ["--option", f"{name}={value}"]
    return args


@pytest.mark.slow
@pytest.mark.parametrize("axis", [0, 1])
def test_every_method_gives_the_same_result_whatever_the_slice_axis(phantom_stack, axis, tmp_path):
    """The same oblique stack stored with its slices along k and along i or j: every method
    writes the same labels (in the file's own axis order) and the same displacements."""
    from CardiacReconstructionLib import methods
    from CardiacReconstructionLib.cli import main
    from CardiacReconstructionLib.core import io
    from CardiacReconstructionLib.simulation.mr_render import render_cine

    order = axes.order_with_slices_last(axis)
    io.write_segmentation(phantom_stack, tmp_path / "k.seg.nrrd")
    io.write_segmentation(axes.restore_axes(phantom_stack, order), tmp_path / "other.seg.nrrd")
    image = render_cine(phantom_stack)  # for the image-domain methods, in the same two layouts
    io.write_volume(image, tmp_path / "k.nii.gz")
    io.write_volume(axes.restore_axes(image, order), tmp_path / "other.nii.gz")
    for method in methods.available():
        outputs = {}
        for name in ("k.seg.nrrd", "other.seg.nrrd"):
            out = tmp_path / f"{method.name}-{name}"
            with_image = ["--image", str(tmp_path / name.replace(".seg.nrrd", ".nii.gz"))] if method.needs_image else []
            assert main(["run", "--input", str(tmp_path / name), "--method", method.name, "--no-surfaces",
                         "--device", "cpu", "--output", str(out), *with_image, *_method_args(method)]) == 0
            outputs[name] = (io.read_volume(out / "labels.seg.nrrd"), (out / "displacements.csv").read_text())
        (ref, ref_d), (got, got_d) = outputs["k.seg.nrrd"], outputs["other.seg.nrrd"]
        back = axes.permute(got, order)  # the other file's layout, moved to k like the reference
        np.testing.assert_array_equal(back.array, ref.array, err_msg=method.name)
        np.testing.assert_allclose(back.ijk_to_ras, ref.ijk_to_ras, atol=1e-5, err_msg=method.name)
        assert got_d == ref_d, method.name
