"""CardiacReconstruction engine: motion correction and super-resolution of cardiac SAX
segmentations, importable without 3D Slicer.

The array and geometry convention is documented once, in :mod:`.geometry`; the displacement
convention in :mod:`.case`; the method interface in :mod:`.methods`.
"""

__version__ = "0.1.0"

from .core.case import Case, LaxView  # noqa: E402
from .core.errors import Cancelled, InputError  # noqa: E402
from .core.geometry import Geometry, Volume  # noqa: E402

__all__ = ["Case", "LaxView", "Cancelled", "InputError", "Geometry", "Volume", "__version__"]
