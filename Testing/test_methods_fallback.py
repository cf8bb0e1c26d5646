"""methods.run retries a learned method on the CPU when the GPU runs out of memory.

A real (tiny) method is added to the registry's catalogue for these tests only. It raises torch's
CUDA out-of-memory error whenever it is handed a CUDA device, so the retry path is exercised
on machines without a GPU by calling the helper that ``run`` uses with a CUDA context.
"""

import numpy as np
import pytest
import torch

from CardiacReconstructionLib import methods
from CardiacReconstructionLib.core.case import Case
from CardiacReconstructionLib.core.geometry import Volume
from conftest import ring_stack

OOM_METHOD = "test_gpu_hungry"


def _gpu_hungry(case, ctx, fill_label=1):
    """Nearest-neighbour-like result that 'needs' more GPU memory than there is."""
    if str(ctx.device).startswith("cuda"):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")
    out = np.full(ctx.geometry.shape, fill_label, np.uint8)
    return methods.Result(Volume.on(ctx.geometry, out), np.zeros((case.n_slices, 2)),
                          diagnostics={"ran_on": ctx.device})


def _broken(case, ctx):
    raise RuntimeError("a bug, not a memory problem")


@pytest.fixture
def registered(monkeypatch):
    added = [methods.Method(OOM_METHOD, "GPU-hungry test method", "test only", _gpu_hungry,
                            options=(methods.Option("fill_label", int, 1, "label to fill"),), kind="learned"),
             methods.Method("test_broken", "Broken test method", "test only", _broken, kind="learned")]
    monkeypatch.setattr(methods, "_CATALOG", methods.catalog() + [(m, m.name, "") for m in added])
    return {m.name: m for m in added}


@pytest.fixture
def case():
    return Case(sax=ring_stack(n_slices=4, size=24))


def _cuda_context(case):
    return methods.RunContext(methods.output_geometry(case.sax.geometry, 5.0), device="cuda")


def test_out_of_memory_on_cuda_reruns_on_cpu_with_a_warning(registered, case):
    result, ctx = methods._call_with_cpu_fallback(registered[OOM_METHOD], case, _cuda_context(case),
                                                  {"fill_label": 2})
    assert ctx.device == "cpu"
    assert result.diagnostics["ran_on"] == "cpu"
    assert np.all(result.labels.array == 2)  # the options reached the CPU rerun
    (warning,) = result.diagnostics["warnings"]
    assert "ran out of memory" in warning and "CPU" in warning and "64.00 GiB" in warning


def test_other_errors_on_cuda_propagate(registered, case):
    with pytest.raises(RuntimeError, match="a bug"):
        methods._call_with_cpu_fallback(registered["test_broken"], case, _cuda_context(case), {})


def test_out_of_memory_on_cpu_is_not_retried(registered, case):
    def always_oom(case, ctx):
        raise torch.cuda.OutOfMemoryError("out of memory")

    method = methods.Method("x", "x", "x", always_oom, kind="learned")
    ctx = methods.RunContext(methods.output_geometry(case.sax.geometry, 5.0), device="cpu")
    with pytest.raises(torch.cuda.OutOfMemoryError):
        methods._call_with_cpu_fallback(method, case, ctx, {})


def test_run_records_the_device_and_no_warning_without_fallback(registered, case):
    result = methods.run(OOM_METHOD, case, slice_spacing=5.0, device="cpu", fill_label=3)
    assert result.diagnostics["device"] == "cpu"
    assert "warnings" not in result.diagnostics
    assert result.labels.shape[0] == 8  # 4 slices of 10 mm at 5 mm


def test_registry_is_restored_after_the_fixture(registered):
    assert OOM_METHOD in {m.name for m in methods.available()}


def test_test_methods_are_gone_afterwards():
    assert OOM_METHOD not in {m.name for m in methods.available()}
    assert all(isinstance(m.test_options, dict) for m in methods.available())
