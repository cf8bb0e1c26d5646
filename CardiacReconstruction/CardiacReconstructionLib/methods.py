"""One interface for every reconstruction method, and the registry that lists them.

A method is a function ``fn(case, ctx, **options) -> Result`` registered with :func:`register`
together with a description of its options. Callers never call it directly: :func:`run`
validates the options, builds the :class:`RunContext` (output grid, device, seed, progress,
cancel flag), times the work and adds surfaces on request. The CLI, the benchmark and the
Slicer module all discover methods through :func:`available` and run them through :func:`run`.

Output grid: the result covers exactly the slab of the input stack (half an input slice beyond
the first and last slice centres) on the input's in-plane grid, with the requested slice
spacing; see :func:`output_geometry`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .case import Case
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

    def coerce(self, value):
        try:
            value = self.type(value) if not (self.type is bool and isinstance(value, str)) else \
                value.strip().lower() in ("1", "true", "yes", "on")
        except (TypeError, ValueError):
            raise InputError(f"Option {self.name!r} expects {self.type.__name__}, got {value!r}.") from None
        if self.choices is not None and value not in self.choices:
            raise InputError(f"Option {self.name!r} must be one of {list(self.choices)}, got {value!r}.")
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
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
    estimates_displacements: bool = False
    #: Option values that make the method fast enough for self-tests (few iterations, small
    #: models); the Slicer self-test runs every registered method with them. Not for real use.
    test_options: Dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


_REGISTRY: Dict[str, Method] = {}


def register(method: Method) -> Method:
    _REGISTRY[method.name] = method
    return method


def _load_builtin_methods() -> None:
    from . import baselines  # noqa: F401  (registers on import)

    try:
        from . import pipelines  # noqa: F401  (learned methods; they need torch)
    except ImportError as exc:
        if getattr(exc, "name", None) != "torch":
            raise


def available() -> List[Method]:
    """Registered methods, baselines first, in registration order."""
    _load_builtin_methods()
    return sorted(_REGISTRY.values(), key=lambda m: m.kind != "baseline")


def get(name: str) -> Method:
    _load_builtin_methods()
    if name not in _REGISTRY:
        raise InputError(f"Unknown method {name!r}; available: {', '.join(m.name for m in available())}.")
    return _REGISTRY[name]


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


def run(name: str, case: Case, *, slice_spacing: Optional[float] = None, factor: Optional[float] = None,
        device: str = "auto", seed: int = 0, progress: Optional[Callable[[float, str], None]] = None,
        cancel: Optional[Callable[[], bool]] = None, surfaces: bool = False, **options) -> Result:
    """Run registered method ``name`` on ``case``; see the module docstring."""
    method = get(name)
    known = {o.name: o for o in method.options}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(f"Method {name!r} has no option(s) {unknown}; its options are "
                         f"{sorted(known) or 'none'}.")
    values = {o.name: o.coerce(options.get(o.name, o.default)) for o in method.options}
    from .device import resolve_device  # torch only where a method needs it

    ctx = RunContext(output_geometry(case.sax.geometry, slice_spacing, factor),
                     resolve_device(device) if method.kind == "learned" else "cpu", int(seed), progress, cancel)
    ctx.report(0.0, f"{method.title}: starting")
    t0 = time.perf_counter()
    result, ctx = _call_with_cpu_fallback(method, case, ctx, values)
    result.timings.setdefault("total_s", time.perf_counter() - t0)
    result.method = name
    result.diagnostics.setdefault("device", str(ctx.device))
    result.diagnostics.setdefault("options", values)
    if surfaces and not result.surfaces:
        from .surfaces import label_surfaces

        t1 = time.perf_counter()
        result.surfaces = label_surfaces(result.labels)
        result.timings["surfaces_s"] = time.perf_counter() - t1
    ctx.report(1.0, f"{method.title}: done")
    return result


def _is_cuda_out_of_memory(exc: BaseException) -> bool:
    """True for torch's CUDA out-of-memory error (only a method that already imported torch
    can raise it, so torch is never imported here just to ask)."""
    import sys

    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    return oom is not None and isinstance(exc, oom)


def _call_with_cpu_fallback(method: Method, case: Case, ctx: RunContext, values: Dict[str, Any]):
    """Call the method; if it runs out of GPU memory, run it again on the CPU.

    Big stacks or small GPUs are the most common reason a learned method fails for users; a
    slower CPU result beats an error. The retry is recorded in ``diagnostics['warnings']``.
    Returns the result and the context it was computed with."""
    try:
        return method.fn(case, ctx, **values), ctx
    except Exception as exc:  # only CUDA out-of-memory is handled; everything else propagates
        if not (str(ctx.device).startswith("cuda") and _is_cuda_out_of_memory(exc)):
            raise
        first_line = (str(exc).strip().splitlines() or ["out of memory"])[0]
    import torch

    torch.cuda.empty_cache()
    warning = (f"{method.title}: the GPU ({ctx.device}) ran out of memory ({first_line}); "
               "the method was run again on the CPU.")
    ctx = replace(ctx, device="cpu")
    result = method.fn(case, ctx, **values)
    result.diagnostics.setdefault("warnings", []).append(warning)
    return result, ctx
