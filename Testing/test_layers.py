"""The engine's layers: which may import which, and no import cycles (read from the source).

Layers, lowest first (a module may import its own layer and the layers below):

* runtime: ``core`` (geometry, io, labels, case, the method API, indices) < ``anatomy`` (SAX frame,
  canonical grid) < ``networks`` (architectures, checkpoint, weights, cache) < ``methods``
  (registry, baselines, pipelines) < the adapters ``mrml`` and ``worker``;
* development: ``simulation`` (phantom, degradation, LAX cutting, cases) < ``training.cohort``
  (the CT and ACDC loaders, which the benchmark reads too) < ``evaluation`` (metrics, bench,
  surface truth, figures) < ``training`` (the training commands) < ``cli``.

So the runtime never imports simulation, evaluation or training, and the Slicer extension can ship
the runtime alone (plus what its self-test needs; see ``test_slicer_static.py``).
"""

import pytest

from import_graph import LAYERS, RUNTIME, find_cycle, import_graph, layer_of, module_files

GRAPH = import_graph()
#: Packages whose ``__init__`` imports no engine module: importing ``training.cohort`` runs
#: ``training/__init__.py``, which is a namespace, not a dependency on the training commands.
MARKERS = {m for m, path in module_files().items() if path.name == "__init__.py" and not GRAPH[m] - {""}}


def test_every_module_belongs_to_a_layer():
    for module in GRAPH:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m))
def test_imports_only_its_own_layer_and_below(module):
    rank = layer_of(module)
    upward = sorted(t for t in GRAPH[module] - MARKERS if t and layer_of(t) > rank)
    assert not upward, f"{module} (layer {LAYERS[rank]}) imports " \
                       f"higher layers: {upward}"


def test_runtime_never_imports_simulation_evaluation_or_training():
    for module, targets in GRAPH.items():
        if module.split(".")[0] in RUNTIME:
            bad = sorted(t for t in targets if t.split(".")[0] in {"simulation", "evaluation", "training", "cli"})
            assert not bad, f"runtime module {module} imports {bad}"


def test_package_init_imports_only_the_core():
    assert all(t == "core" or t.startswith("core.") for t in GRAPH[""]), GRAPH[""]


def test_no_import_cycles():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_the_checker_sees_a_forbidden_import_and_a_cycle():
    """The checks above are not vacuous: a made-up graph with an upward edge and a cycle fails."""
    assert layer_of("evaluation.metrics") > layer_of("methods.baselines")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    real = import_graph()
    assert "core.api" in real["methods"] and "methods" in real["methods.dsl_asv"]  # lazy imports count too
