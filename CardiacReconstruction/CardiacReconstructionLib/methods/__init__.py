"""The registry of reconstruction methods: one list of method modules, one way to run them.

Every method module of this package declares its methods as a module-level ``METHODS`` tuple of
:class:`~..core.api.Method` (see that module for the interface); :data:`METHOD_MODULES` lists the
modules. Importing a method module needs no torch: networks are imported when a method first runs.
A module that fails to import, or a method whose packages (``Method.requires``) are missing, is
not dropped: :func:`unavailable` lists it with the reason, ``cardiac-recon methods`` and the
Slicer widget show it, and the test suite fails on it. Callers never call a method directly:
:func:`run` validates the options, builds the :class:`RunContext` (output grid, device, seed,
progress, cancel flag), pins torch's CPU threads, times the work and adds surfaces on request.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..core.api import (DEFAULT_SLICE_SPACING_MM, Method, Option, Result, RunContext, check_memory,
                        mark_unmeasured_slices, output_geometry)
from ..core.case import Case
from ..core.errors import InputError

__all__ = ["DEFAULT_SLICE_SPACING_MM", "Method", "Option", "Result", "RunContext", "output_geometry",
           "METHOD_MODULES", "available", "catalog", "unavailable", "refresh", "get", "run", "DEFAULT_THREADS"]

#: The method modules of this package, in the order their methods are listed.
METHOD_MODULES = ("baselines", "latent_optimisation", "dsl_asv", "mask2surface", "deeprecon")

#: torch CPU threads while a learned method runs (0 leaves torch's setting). One, for two reasons
#: measured on a 2-core CPU per phantom case: results must not depend on the machine (latent
#: optimisation's fit changes with the thread count: 0.1% of voxels and up to 0.2 mm of displacement
#: between 1 and 2 threads, as torch's reductions change order; DSL+ASV and Mask2Surface do not), and
#: with other work on the CPU two threads were 2-15x slower than one. On an idle CPU two threads are
#: faster (Mask2Surface 12.3 vs 20.9 s, latent optimisation 3.3 vs 5.5 s): ``threads=2`` / ``--threads 2``.
DEFAULT_THREADS = 1

_CATALOG: Optional[List[Tuple[Optional[Method], str, str]]] = None  # (method or None, name, reason)


def _installed(package: str) -> bool:
    """Whether ``package`` can be found, without importing it (opening the Slicer module must not
    import torch)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # hidden or half-removed packages
        return False


def _missing_packages(method: Method) -> List[str]:
    return [name for name in method.requires if not _installed(name)]


def catalog() -> List[Tuple[Optional[Method], str, str]]:
    """Every method the package declares, as ``(method, name, reason)``: ``reason`` is empty for a
    usable method; ``method`` is None when its whole module failed to import (``name`` is then
    the module's)."""
    global _CATALOG
    if _CATALOG is None:
        entries = []
        for module_name in METHOD_MODULES:
            try:
                module = importlib.import_module(f"{__name__}.{module_name}")
            except Exception as exc:  # listed with the reason, never silently dropped
                entries.append((None, module_name, f"its module failed to import: {type(exc).__name__}: {exc}"))
                continue
            for method in module.METHODS:
                missing = _missing_packages(method)
                reason = (f"needs {', '.join(missing)} (not installed; in Slicer, the PyTorch extension provides "
                          "torch)" if missing else "")
                entries.append((method, method.name, reason))
        _CATALOG = entries
    return list(_CATALOG)


def refresh() -> None:
    """Look for the methods' packages again (after an installation: the Slicer module installs
    torch and MONAI while running)."""
    global _CATALOG
    importlib.invalidate_caches()
    _CATALOG = None


def available() -> List[Method]:
    """The usable methods, baselines first, in declaration order."""
    usable = [m for m, _, reason in catalog() if m is not None and not reason]
    return sorted(usable, key=lambda m: m.kind != "baseline")


def unavailable() -> List[Tuple[str, str]]:
    """``(name, reason)`` of every declared method that cannot run here."""
    return [(name, reason) for _, name, reason in catalog() if reason]


def get(name: str) -> Method:
    for method, entry, reason in catalog():
        if entry == name:
            if reason:
                raise InputError(f"Method {name!r} is unavailable: {reason}.")
            return method
    raise InputError(f"Unknown method {name!r}; available: {', '.join(m.name for m in available())}.")


@contextmanager
def torch_threads(threads: int, device: str):
    """Pin torch's CPU threads for the block (only where torch is already imported or needed)."""
    if threads <= 0 or not str(device).startswith("cpu"):
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run(name: str, case: Case, *, slice_spacing: Optional[float] = None, factor: Optional[float] = None,
        device: str = "auto", seed: int = 0, progress: Optional[Callable[[float, str], None]] = None,
        cancel: Optional[Callable[[], bool]] = None, surfaces: bool = False, threads: int = DEFAULT_THREADS,
        max_memory_mib: Optional[float] = None, **options) -> Result:
    """Run registered method ``name`` on ``case``; see the module docstring. ``threads``: torch CPU
    threads for a learned method (0: leave torch's setting). ``max_memory_mib``: refuse the run
    when its estimated peak is larger (default: what the machine has available)."""
    method = get(name)
    known = {o.name: o for o in method.options}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(f"Method {name!r} has no option(s) {unknown}; its options are "
                         f"{sorted(known) or 'none'}.")
    values = {o.name: o.coerce(options.get(o.name, o.default)) for o in method.options}
    if method.needs_image and case.image is None:
        raise InputError(f"Method {name!r} reconstructs from the SAX images: give the cine image (--image) on the "
                         "segmentation's grid, or the image alone.")
    from ..core.device import resolve_device  # torch only where a method needs it

    grid = output_geometry(case.sax.geometry, slice_spacing, factor)
    check_memory(method, grid, max_memory_mib)
    ctx = RunContext(grid,
                     resolve_device(device) if method.kind == "learned" else "cpu", int(seed), progress, cancel)
    ctx.report(0.0, f"{method.title}: starting")
    t0 = time.perf_counter()
    with torch_threads(int(threads) if method.kind == "learned" else 0, ctx.device):
        result, ctx = _call_with_cpu_fallback(method, case, ctx, values)
    result.timings.setdefault("total_s", time.perf_counter() - t0)
    result.method = name
    mark_unmeasured_slices(result, case.sax, method.estimates_displacements)
    result.diagnostics.setdefault("device", str(ctx.device))
    result.diagnostics.setdefault("options", values)
    if surfaces and not result.surfaces:
        from ..core.surfaces import label_surfaces

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
