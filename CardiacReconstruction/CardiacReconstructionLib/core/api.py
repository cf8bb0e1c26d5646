"""The method interface every reconstruction method implements, and the output grid.

A method is a function ``fn(case, ctx, **options) -> Result`` described by a :class:`Method`
(its name, options, kind and the packages it needs). The types live here, in the core, so that a
method module, the registry (:mod:`..methods`), the CLI and the Slicer widget can all read a
method's description without importing torch; the learned code is imported on first use.

Output grid: the result covers exactly the slab of the input stack (half an input slice beyond
the first and last slice centres) on the input's in-plane grid, with the requested slice
spacing; see :func:`output_geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from .case import Case  # noqa: F401  (the type of a method's first argument)
from .errors import Cancelled, InputError
from .geometry import Geometry, Volume

DEFAULT_SLICE_SPACING_MM = 2.0  # the HR slice spacing of the SRHeart and Mask2Surface grids


@dataclass(frozen=True)
class Option:
    """A method option as the CLI, the benchmark and the Slicer widget present it."""

    name: str
    type: type
    default: Any
    help: str
    choices: Optional[Sequence] = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    #: An expert knob: the Slicer widget folds it away under "Advanced".
    advanced: bool = False

    def coerce(self, value):
        try:
            value = self.type(value) if not (self.type is bool and isinstance(value, str)) else \
                value.strip().lower() in ("1", "true", "yes", "on")
        except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
            raise InputError(f"Option {self.name!r} expects {self.type.__name__}, got {value!r}.") from None
        if self.choices is not None and value not in self.choices:
            raise InputError(f"Option {self.name!r} must be one of {list(self.choices)}, got {value!r}.")
        # written as 'not inside' so that NaN, which compares false with everything, is rejected
        if (self.minimum is not None and not value >= self.minimum
                or self.maximum is not None and not value <= self.maximum):
            raise InputError(f"Option {self.name!r} must lie in [{self.minimum}, {self.maximum}], got {value!r}.")
        return value


@dataclass
class Result:
    """What every method returns (HR labels in the SAX frame, displacements in mm)."""

    labels: Volume
    displacements: np.ndarray  # (n_input_slices, 2) mm along the stack's i and j axes
    surfaces: Dict[str, Any] = field(default_factory=dict)  # structure key -> vtkPolyData (RAS mm)
    timings: Dict[str, float] = field(default_factory=dict)
    diagnostics: Dict[str, Any] = field(default_factory=dict)
    method: str = ""
    #: Per input slice: whether its displacement was measured. False where the slice shows no
    #: heart (its displacement is NaN: nothing to measure, which a 0 would hide) or where the
    #: method estimates no displacements (they are 0: no correction). Set by ``methods.run``.
    estimated: Optional[np.ndarray] = None
    #: An image on the output grid where the method makes one (DeepRecon's synthetic
    #: super-resolved image); written as ``image_sr`` beside the labels.
    image: Optional[Volume] = None


def mark_unmeasured_slices(result: Result, sax: Volume, estimates: bool) -> Result:
    """Set ``result.estimated`` and make the displacements of slices without labels NaN."""
    shows_heart = np.asarray(sax.array).reshape(sax.shape[0], -1).any(axis=1)
    d = np.asarray(result.displacements, float).copy()
    d[~shows_heart] = np.nan
    result.displacements = d
    result.estimated = shows_heart & bool(estimates)
    return result


@dataclass
class RunContext:
    """Everything a method needs besides the case and its own options."""

    geometry: Geometry  # the output grid
    device: str = "cpu"
    seed: int = 0
    progress: Optional[Callable[[float, str], None]] = None
    cancel: Optional[Callable[[], bool]] = None

    def report(self, fraction: float, message: str = "") -> None:
        """Report progress in [0, 1]; raises :class:`Cancelled` if the caller asked to stop."""
        if self.cancel is not None and self.cancel():
            raise Cancelled("Cancelled by the user.")
        if self.progress is not None:
            self.progress(float(min(max(fraction, 0.0), 1.0)), message)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    description: str
    fn: Callable[..., Result]
    options: Sequence[Option] = ()
    kind: str = "baseline"  # 'baseline' or 'learned'
    #: Import names of the packages the method needs beyond the core (e.g. ``("torch",)``); the
    #: registry lists a method whose packages are missing as unavailable, with the reason.
    requires: Tuple[str, ...] = ()
    #: Peak memory as (bytes per output voxel, fixed MiB), measured on the CPU by
    #: Testing/benchmarks/method_memory.py and rounded up; the resource guard (:func:`check_memory`)
    #: adds :data:`MEMORY_MARGIN` on top.
    memory: Tuple[float, float] = (64.0, 64.0)
    estimates_displacements: bool = False
    #: The method reconstructs from the SAX images (``case.image``), not from the labels alone: the
    #: CLI, the Slicer module and ``methods.run`` refuse a case without one before it starts.
    needs_image: bool = False
    #: Option values that make the method fast enough for self-tests (few iterations, small
    #: models); the Slicer self-test runs every registered method with them. Not for real use.
    test_options: Dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


#: Headroom on a method's measured peak memory before the guard refuses a run.
MEMORY_MARGIN = 1.5


def available_memory_mib() -> Optional[float]:
    """Memory this process can still get (MemAvailable on Linux, else physical memory), or None."""
    import os

    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (AttributeError, OSError, ValueError):
        return None


def _size(mib: float) -> str:
    return f"{mib:.0f} MiB" if mib < 1024 else f"{mib / 1024:.1f} GiB"


def check_memory(method: Method, grid: Geometry, max_memory_mib: Optional[float] = None) -> float:
    """Refuse, before it starts, a run whose estimated peak memory exceeds ``max_memory_mib`` (or
    what the machine has available): a too fine ``--slice-spacing`` otherwise runs until the kernel
    kills it. Returns the estimate (MiB)."""
    per_voxel, fixed = method.memory
    voxels = float(np.prod(grid.shape))
    estimate = MEMORY_MARGIN * (fixed + per_voxel * voxels / 2**20)
    limit = max_memory_mib if max_memory_mib is not None else available_memory_mib()
    if limit is not None and estimate > limit:
        where = "--max-memory" if max_memory_mib is not None else "this machine has available"
        shape = " x ".join(str(n) for n in grid.shape)
        need = f"{method.name} would need about {_size(estimate)} for an output of {shape} voxels, more than the " \
               f"{_size(limit)} {where}"
        per_slice = per_voxel * voxels / grid.n_slices / 2**20
        fitting_slices = int((limit / MEMORY_MARGIN - fixed) / per_slice)
        if fitting_slices < 2:
            raise InputError(f"{need}; give it more memory or crop the stack.")
        slab = grid.n_slices * float(grid.spacing[2])
        raise InputError(f"{need}; use a larger --slice-spacing (at least {slab / fitting_slices:.2g} mm fits) or crop "
                         "the stack.")
    return estimate


def output_geometry(sax: Geometry, slice_spacing: Optional[float] = None, factor: Optional[float] = None) -> Geometry:
    """The HR grid covering the stack's slab with the requested slice spacing (or factor)."""
    spacing_in = float(sax.spacing[2])
    if slice_spacing is not None and factor is not None:
        raise InputError("Give either a target slice spacing or an upsampling factor, not both.")
    if factor is not None:
        if not factor >= 1:
            raise InputError(f"The upsampling factor must be at least 1, got {factor}.")
        slice_spacing = spacing_in / float(factor)
    if slice_spacing is None:
        slice_spacing = min(DEFAULT_SLICE_SPACING_MM, spacing_in)
    if not (np.isfinite(slice_spacing) and slice_spacing > 0):
        raise InputError(f"The target slice spacing must be a positive number of mm, got {slice_spacing}.")
    slab = sax.n_slices * spacing_in
    n_out = max(1, int(round(slab / slice_spacing)))
    s_eff = slab / n_out
    return sax.with_slices(n_out, s_eff, first_slice_offset_mm=-spacing_in / 2 + s_eff / 2)
