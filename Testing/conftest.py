"""Shared fixtures: small oblique label volumes built here (no data files), and the skip markers
of the tests that read the shared data (../shared/data or $CARDIAC_RECON_DATA)."""

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
