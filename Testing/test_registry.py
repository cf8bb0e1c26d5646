"""The method registry: one declaration style, nothing silently dropped.

Every method module declares a ``METHODS`` tuple; the registry imports the modules it lists. A
module that fails to import, or a method whose packages are missing, is listed as unavailable with
the reason (by ``cardiac-recon methods`` and the Slicer widget) instead of vanishing — and this
suite fails when that happens to a shipped method here, where every dependency is installed.
"""

import pytest

from CardiacReconstructionLib import methods
from CardiacReconstructionLib.cli import main
from CardiacReconstructionLib.core.errors import InputError

SHIPPED = {"nearest", "linear", "shape_interp", "centroid_shape_interp", "latent_optimisation", "dsl_asv",
           "mask2surface"}


def test_every_shipped_method_is_available_here():
    assert methods.unavailable() == []
    assert SHIPPED <= {m.name for m in methods.available()}


def test_every_method_module_declares_methods_and_names_are_unique():
    names = [name for _, name, _ in methods.catalog()]
    assert len(names) == len(set(names))
    for method, _, _ in methods.catalog():
        assert method.kind in ("baseline", "learned")
        assert method.kind == "baseline" or "torch" in method.requires  # learned methods say what they need


@pytest.fixture
def fresh_catalog(monkeypatch):
    monkeypatch.setattr(methods, "_CATALOG", None)
    yield
    methods._CATALOG = None


def test_a_module_that_fails_to_import_is_listed_with_the_reason(fresh_catalog, monkeypatch, capsys):
    monkeypatch.setattr(methods, "METHOD_MODULES", methods.METHOD_MODULES + ("no_such_method_module",))
    (entry,) = [e for e in methods.unavailable() if e[0] == "no_such_method_module"]
    assert "failed to import" in entry[1] and "ModuleNotFoundError" in entry[1]
    assert {m.name for m in methods.available()} >= SHIPPED  # the others are unaffected
    assert main(["methods"]) == 0
    assert "no_such_method_module  (unavailable) - its module failed to import" in capsys.readouterr().out


def test_a_method_whose_packages_are_missing_is_unavailable_and_refused(fresh_catalog, monkeypatch):
    real = methods._installed
    monkeypatch.setattr(methods, "_installed", lambda package: package != "monai" and real(package))
    reasons = dict(methods.unavailable())
    assert set(reasons) == {"dsl_asv", "mask2surface", "deeprecon"}  # their networks are built from MONAI blocks
    assert all("needs monai" in r for r in reasons.values())
    with pytest.raises(InputError, match="unavailable: needs monai"):
        methods.get("mask2surface")
    with pytest.raises(InputError, match="Unknown method 'nope'"):
        methods.get("nope")


def test_run_pins_torch_threads_for_learned_methods_only():
    import torch

    from conftest import ring_stack
    from CardiacReconstructionLib.core.case import Case

    before = torch.get_num_threads()
    seen = {}
    with methods.torch_threads(1, "cpu"):
        seen["inside"] = torch.get_num_threads()
    assert seen["inside"] == 1 and torch.get_num_threads() == before
    with methods.torch_threads(1, "cuda:0"):  # only the CPU's thread pool is pinned
        assert torch.get_num_threads() == before
    methods.run("nearest", Case(sax=ring_stack(n_slices=3, size=16)), slice_spacing=5.0, threads=1)
    assert torch.get_num_threads() == before
