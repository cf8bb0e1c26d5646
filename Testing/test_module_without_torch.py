"""Opening the Slicer module, and running a classical method, without torch or MONAI.

A Slicer without the PyTorch extension (or before its first learned run) has neither torch nor
MONAI, and importing torch takes seconds even where it is installed: opening the module must
import neither, and the learned methods must still be listed (unavailable, with the reason).
The module file cannot be imported outside Slicer, so the engine modules it imports are read off
its source: which ones its opening reaches (a static walk from the widget's setup) and all of
them. They are imported in a fresh interpreter where torch and MONAI cannot be imported (a
meta-path finder raises ModuleNotFoundError for them, as for a package that is not installed),
the methods are listed as the widget lists them, and no torch module may have been loaded.
The worker the Apply button starts is run the same way for the classical methods, with every
dependency outside the core requirement file made unimportable.
"""

import ast
import json
import subprocess
import sys

import pytest

from conftest import ring_stack
from import_graph import module_files
from module_source import (MODULE_DIR, RESOURCES, distribution_name, module_constant, module_tree,
                           pyproject_dependencies, requirement_functions)
from CardiacReconstructionLib import methods, worker
from CardiacReconstructionLib.core.case import Case

ENGINE = "CardiacReconstructionLib"
WIDGET, LOGIC = "CardiacReconstructionWidget", "CardiacReconstructionLogic"
#: What Slicer runs when the module is opened: the module's and the widget's constructors, the
#: widget's setup and enter.
OPENING = [("CardiacReconstruction", "__init__"), (WIDGET, "__init__"), (WIDGET, "setup"), (WIDGET, "enter")]
#: Signals only a user action emits (a click, opening a section) or a started timer; their
#: handlers do not run while the module opens. Other handlers (e.g. currentIndexChanged, which
#: fires while the widget fills its combo box) count as reached.
USER_SIGNALS = {"clicked(bool)", "contentsCollapsed(bool)", "timeout()"}
#: Import names of pyproject dependencies that the module never installs, so it has no mapping.
UNLISTED_IMPORT_NAMES = {"scikit-image": "skimage"}
LEARNED_PACKAGES = ("torch", "monai")

#: Runs first in the fresh interpreter: argv[1] is a comma-separated list of top-level packages to
#: make unimportable, argv[2] the folder holding the engine.
UNIMPORTABLE = r'''
import json, sys

class Unimportable:
    """Finds the listed packages first and says they are not installed."""
    def __init__(self, names):
        self.names = set(names)
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (made unimportable by the test)", name=name)
        return None

BLOCKED = sys.argv[1].split(",")
sys.meta_path.insert(0, Unimportable(BLOCKED))
sys.path.insert(0, sys.argv[2])

def leaked():
    return sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
'''

#: argv[3:]: engine modules to import. Lists the methods and reads their option metadata as the
#: widget's setup does; prints one JSON line.
LIST_METHODS = UNIMPORTABLE + r'''
import importlib
for name in sys.argv[3:]:
    importlib.import_module(name)
from CardiacReconstructionLib import methods, worker
from CardiacReconstructionLib.core.geometry import Geometry

for method in methods.available():
    for option in method.options:
        if worker.option_widget_kind(option) == "doublespinbox":
            worker.spin_box_format(option)
    worker.method_options("", method.name)
stack = Geometry((8, 1, 1), [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 9.5, 0], [0, 0, 0, 1]])
print(json.dumps({"available": [m.name for m in methods.available()], "unavailable": dict(methods.unavailable()),
                  "default_spacing": float(methods.output_geometry(stack).spacing[2]),
                  "leaked": leaked(), "imported": sorted(sys.argv[3:])}))
'''

#: argv[3]: JSON list of argument lists for the CLI (as the worker gets them); prints the exit
#: statuses as one JSON line.
RUN_WORKER = UNIMPORTABLE + r'''
from CardiacReconstructionLib.cli import main

statuses = [main(arguments) for arguments in json.loads(sys.argv[3])]
print(json.dumps({"statuses": statuses, "leaked": leaked()}))
'''


def _run_python(code, blocked, *arguments):
    done = subprocess.run([sys.executable, "-c", code, ",".join(blocked), str(MODULE_DIR), *arguments],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# What opening the module reaches (read off its source)
# ---------------------------------------------------------------------------------------------

def _definitions(tree):
    """(class name or '', function name) -> FunctionDef for the module's functions and methods."""
    found = {("", n.name): n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        found.update({(cls.name, n.name): n for n in cls.body if isinstance(n, ast.FunctionDef)})
    return found


def _user_handlers(function):
    """Nodes passed as the handler of ``x.connect(<user signal>, handler)`` inside ``function``."""
    handlers = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect" \
                and len(node.args) == 2 and isinstance(node.args[0], ast.Constant) \
                and node.args[0].value in USER_SIGNALS:
            handlers.add(id(node.args[1]))
    return handlers


def _references(owner, function, definitions):
    """The module's functions that ``function`` (a method of ``owner``) calls or hands on (as an
    observer or a handler of a non-user signal); nested functions and lambdas count, since they
    may run at once (a combo box's currentIndexChanged fires while it is filled)."""
    skip = _user_handlers(function)
    classes = {cls for cls, _ in definitions if cls}
    out = set()
    stack = [function]
    while stack:
        node = stack.pop()
        if id(node) in skip:
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Attribute):
            base = ast.unparse(node.value)
            if base == "self":
                out.add((owner, node.attr))
            elif base in ("self.logic", LOGIC):
                out.add((LOGIC, node.attr))
        elif isinstance(node, ast.Name):
            out.add((node.id, "__init__") if node.id in classes else ("", node.id))
    return {ref for ref in out if ref in definitions}


def opening_reaches(tree):
    """The module's functions that opening the module can run (an over-approximation: every
    call and reference is followed except handlers of user actions)."""
    definitions = _definitions(tree)
    reached, todo = set(), [ref for ref in OPENING if ref in definitions]
    while todo:
        ref = todo.pop()
        if ref not in reached:
            reached.add(ref)
            todo.extend(_references(ref[0], definitions[ref], definitions) - reached)
    return {ref: definitions[ref] for ref in reached}


def _imports(functions):
    """Names imported inside the given functions: the module, or for the engine module.name
    (which may be a submodule or a class; see _engine_modules)."""
    names = set()
    for function in functions:
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                engine = node.module == ENGINE or node.module.startswith(ENGINE + ".")
                names |= {f"{node.module}.{a.name}" if engine else node.module for a in node.names}
    return names


def _engine_modules(names):
    """The engine modules among dotted import names (``pkg.core.geometry.Geometry`` ->
    ``pkg.core.geometry``), by the engine's files."""
    files = module_files()
    modules = set()
    for name in names:
        if name == ENGINE or name.startswith(ENGINE + "."):
            relative = name[len(ENGINE):].lstrip(".")
            while relative not in files:
                relative = relative.rpartition(".")[0]
            modules.add(f"{ENGINE}.{relative}".rstrip("."))
    return modules


@pytest.fixture(scope="module")
def tree():
    return module_tree()


def test_opening_the_module_reaches_no_torch(tree):
    """Setup lists the methods and builds their option forms (registry metadata, worker helpers)
    and shows the default slice spacing; the device description (which imports torch) and the
    installers are left to the Advanced section and Apply."""
    reached = opening_reaches(tree)
    names = {name for _, name in reached}
    assert {"setup", "_populateMethods", "_buildOptionForms", "methodCatalog", "defaultSliceSpacing",
            "sliceGrid", "_onParameterNodeModified", "onMethodChanged"} <= names, sorted(names)
    assert not names & {"deviceDescription", "_showDeviceInfo", "ensureDependencies", "onApplyButton",
                        "startBackgroundRun", "process"}, sorted(names)
    imported = _imports(reached.values())
    assert not {n.partition(".")[0] for n in imported} & set(LEARNED_PACKAGES), imported
    engine = _engine_modules(imported)
    assert {f"{ENGINE}.methods", f"{ENGINE}.worker", f"{ENGINE}.core.geometry"} <= engine, engine
    assert f"{ENGINE}.core.device" not in engine


def _mrml_importable():
    try:
        import slicer
    except ImportError:
        return False
    return hasattr(slicer, "vtkMRMLScene")  # slicer-core (Python 3.10+) or the application


@pytest.mark.slow
def test_engine_entry_points_import_and_list_methods_without_torch_or_monai(tree):
    """Every engine module the module file imports (those opening reaches and the rest) imports
    where torch and MONAI cannot; the classical methods are listed as available, the learned
    ones as unavailable with a reason that names what is missing; no torch module is loaded."""
    reached = _engine_modules(_imports(opening_reaches(tree).values()))
    everything = _engine_modules(_imports(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)))
    modules = reached | everything | {f"{ENGINE}.methods", f"{ENGINE}.worker", f"{ENGINE}.core.api"}
    if not _mrml_importable():  # mrml needs Slicer's MRML (slicer-core, Python 3.10+)
        assert f"{ENGINE}.mrml" in modules
        modules.discard(f"{ENGINE}.mrml")
    found = _run_python(LIST_METHODS, LEARNED_PACKAGES, *sorted(modules))
    assert found["leaked"] == [], f"importing {sorted(modules)} loaded {found['leaked']}"
    declared = {name: method for method, name, _ in methods.catalog()}
    baselines = {name for name, m in declared.items() if m is not None and m.kind == "baseline"}
    learned = {name for name, m in declared.items() if m is not None and m.requires}
    assert baselines and learned
    assert baselines <= set(found["available"]), found
    assert set(found["unavailable"]) == learned, found
    for name, reason in found["unavailable"].items():
        missing = [p for p in declared[name].requires if p in LEARNED_PACKAGES]
        assert "torch" in reason and all(p in reason for p in missing), (name, reason)
    assert found["default_spacing"] == methods.DEFAULT_SLICE_SPACING_MM  # 8 slices of 9.5 mm
    assert f"{ENGINE}.mrml" in found["imported"] or not _mrml_importable()


@pytest.mark.slow
def test_the_worker_runs_every_classical_method_with_only_the_core_requirements(tree, tmp_path):
    """What Apply starts for a classical method (the worker's arguments from worker.run_arguments)
    succeeds where every pyproject dependency outside Resources/requirements.txt (torch, MONAI,
    einops, matplotlib, tqdm, ...) cannot be imported, and imports none of them."""
    ns = requirement_functions(tree)
    core = {ns["requirementImportName"](r)
            for r in ns["readRequirements"](RESOURCES / module_constant(tree, "CORE_REQUIREMENTS"))}
    dependencies = [UNLISTED_IMPORT_NAMES.get(distribution_name(d)) or ns["requirementImportName"](d)
                    for d in pyproject_dependencies()]
    blocked = sorted(set(dependencies) - core)
    assert {"torch", "monai", "einops", "matplotlib", "tqdm"} <= set(blocked), blocked

    inputs = worker.write_inputs(Case(sax=ring_stack(n_slices=5, size=24)), tmp_path / "input")
    baselines = [m.name for m in methods.available() if m.kind == "baseline"]
    runs = [worker.run_arguments(inputs, tmp_path / name, name, device="cpu") for name in baselines]
    found = _run_python(RUN_WORKER, blocked, json.dumps(runs))
    assert found["statuses"] == [0] * len(baselines), found
    assert found["leaked"] == [], found
    for name in baselines:
        result = worker.read_run_folder(tmp_path / name)
        assert result.method == name and result.labels.array.any()
        assert result.displacements.shape == (5, 2)
