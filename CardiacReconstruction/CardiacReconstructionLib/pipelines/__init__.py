"""Learned reconstruction pipelines; importing this package registers them with :mod:`..methods`.

They need PyTorch: :func:`..methods._load_builtin_methods` imports this package only when torch
imports, so the baselines keep working without it.
"""

import torch  # noqa: F401  (fail here, as ImportError, when PyTorch is missing)

from . import latent_optimisation  # noqa: F401,E402  (registers 'latent_optimisation')

try:  # DeepWHR; guarded so that one pipeline's failure cannot hide the others
    from . import dsl_asv  # noqa: F401,E402  (registers 'dsl_asv')
except Exception as _exc:  # pragma: no cover - reported, not raised
    import warnings

    warnings.warn(f"The dsl_asv pipeline could not be loaded: {_exc}")

try:  # Mask2Surface (needs MONAI)
    from . import mask2surface  # noqa: F401,E402  (registers 'mask2surface')
except Exception as _exc:  # pragma: no cover - reported, not raised
    import warnings

    warnings.warn(f"The mask2surface pipeline could not be loaded: {_exc}")
