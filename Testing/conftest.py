"""Shared fixtures: small oblique label volumes built here (no data files), a phantom case written
to files, a fresh MRML scene, and the skip markers of the tests that read the shared data
(../shared/data or $CARDIAC_RECON_DATA)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from CardiacReconstructionLib.training import cohort
from CardiacReconstructionLib.core.geometry import Volume, make_ijk_to_ras

DATA = cohort.default_data_root()
needs_ct = pytest.mark.skipif(not (DATA / cohort.CT_DIR).is_dir(),
                              reason=f"whole-heart CT data not found at {DATA / cohort.CT_DIR}")
needs_acdc = pytest.mark.skipif(not (DATA / cohort.ACDC_DIR).is_dir(),
                                reason=f"ACDC data not found at {DATA / cohort.ACDC_DIR}")


def oblique_matrix(spacing=(1.5, 1.4, 8.0), seed=3, origin=(-40.0, 25.0, 12.5)):
    direction = Rotation.random(random_state=seed).as_matrix()
    return make_ijk_to_ras(spacing, origin, direction)


def ring_stack(n_slices=10, size=48, shifts_px=None, spacing=(1.5, 1.5, 10.0), matrix=None):
    """A SAX-like stack: LV blood pool disc (1) in a myocardial ring (2), an RV disc (3) beside
    it; slice k's LV/MYO moved by shifts_px[k] = (di, dj) pixels."""
    k, j, i = np.mgrid[0:n_slices, 0:size, 0:size].astype(float)
    shifts = np.zeros((n_slices, 2)) if shifts_px is None else np.asarray(shifts_px, float)
    ci = size / 2 + shifts[:, 0][:, None, None]
    cj = size / 2 + shifts[:, 1][:, None, None]
    taper = 1 - 0.5 * (k / max(1, n_slices - 1)) ** 2  # smaller towards the apex
    r = np.hypot(i - ci, j - cj)
    a = np.zeros(k.shape, np.uint8)
    a[np.hypot(i - (ci + 13 * taper), j - cj) < 7 * taper] = 3
    a[r < 10 * taper] = 2
    a[r < 6 * taper] = 1
    m = matrix if matrix is not None else make_ijk_to_ras(spacing)
    return Volume(a, m)


@pytest.fixture
def oblique():
    return oblique_matrix()


def write_phantom_case(folder, seed: int, sax_name: str, image_scale: float, arrange=lambda volume: volume):
    """A degraded phantom case (normal motion, 10 mm slices, a 4-chamber view) written to ``folder``:
    the stack as ``sax_name``, ``lax_4ch.nii.gz`` and ``image.nii.gz`` (the stack's labels x
    ``image_scale``); ``arrange`` lays the stack and the image out in their files. Returns the case."""
    from CardiacReconstructionLib.core import io
    from CardiacReconstructionLib.simulation.cases import make_case
    from CardiacReconstructionLib.simulation.phantom import make_phantom

    phantom = make_phantom(seed=seed)
    case = make_case(phantom.truth, "normal", seed=seed, slice_spacing=10.0, lax_views=("4ch",),
                     landmarks=phantom.landmarks)
    io.write_segmentation(arrange(case.sax), folder / sax_name)
    io.write_segmentation(case.lax[0].labels, folder / "lax_4ch.nii.gz")
    image = case.sax.with_array(case.sax.array.astype(np.float32) * image_scale)
    io.write_volume(arrange(image), folder / "image.nii.gz")
    return case


@pytest.fixture
def scene():
    """A fresh MRML scene that is also slicer.mrmlScene (what slicer.util helpers use); the tests
    that ask for it skip themselves without slicer-core."""
    import slicer

    previous = getattr(slicer, "mrmlScene", None)
    new = slicer.vtkMRMLScene()
    slicer.mrmlScene = new
    yield new
    new.Clear(1)
    slicer.mrmlScene = previous
