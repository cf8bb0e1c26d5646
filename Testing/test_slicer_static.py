"""Static checks of the Slicer module, which cannot be imported outside 3D Slicer.

The module file needs Slicer's Qt application (ScriptedLoadableModule, qt, parameter nodes);
its logic's real work is in the engine and tested there. Here the module is read as source and
checked against the machine-readable list of Slicer's Python API (``shared/slicer-api/
slicer_api.json`` beside the repository, or $SLICER_API_JSON; without it those checks are
skipped on a developer's machine and fail under CI, where $CI is set), its Qt Designer file, its
CMake listing (Slicer silently drops files that are not listed) and Slicer 5.8 compatibility
(Python 3.9).
"""

import ast
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from import_graph import import_graph, module_files
from module_source import (MODULE_DIR, MODULE_FILE, REPO, RESOURCES, distribution_name, module_constant,
                           pyproject_dependencies, requirement_functions)
from CardiacReconstructionLib import methods
from CardiacReconstructionLib.core import device
from CardiacReconstructionLib.core import labels

UI_FILE = RESOURCES / "UI" / "CardiacReconstruction.ui"
LIB_DIR = MODULE_DIR / "CardiacReconstructionLib"
#: The API list: $SLICER_API_JSON, else the shared folder beside the repository (../shared).
API_JSON = Path(os.environ.get("SLICER_API_JSON") or REPO.parent / "shared" / "slicer-api" / "slicer_api.json")

#: Methods every VTK object or data set has; the API list holds MRML classes' own methods only.
VTK_BASE_METHODS = {"IsA", "GetClassName", "AddObserver", "RemoveObserver", "Modified", "GetMTime",
                    "GetNumberOfPoints", "GetNumberOfCells", "DeepCopy", "ShallowCopy"}
#: Names whose CamelCase attributes are classes, not MRML methods (``packaging`` is slicer.packaging,
#: whose names test_packaging_is_guarded_and_exists checks).
CLASS_NAMESPACES = {"qt", "ctk", "vtk", "slicer", "packaging", "PyTorchUtils"}
#: Keyword arguments that Slicer 5.8 accepts where the API list shows a newer, longer signature.
SLICER_5_8_KEYWORDS = {"launchConsoleProcess": {"useStartupEnvironment", "updateEnvironment", "cwd"}}
#: Parameter-node fields bound by hand (filled at run time, or a widget built in setup()) instead of
#: through the .ui file.
HAND_BOUND_FIELDS = {"method", "methodOptions", "segmenter"}
QT_LAYOUTS = {"QVBoxLayout", "QHBoxLayout", "QFormLayout", "QGridLayout"}


@pytest.fixture(scope="module")
def source():
    return MODULE_FILE.read_text()


@pytest.fixture(scope="module")
def tree(source):
    return ast.parse(source)


@pytest.fixture(scope="module")
def api():
    """The Slicer API list. Missing, the checks that need it skip on a developer's machine but
    fail under CI ($CI set, as CI services do): there a skip would pass without checking."""
    if not API_JSON.is_file():
        message = f"Slicer API list not found at {API_JSON} (set SLICER_API_JSON)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must check the module against it")
        pytest.skip(message)
    return json.loads(API_JSON.read_text())


@pytest.fixture(scope="module")
def ui():
    return ET.parse(UI_FILE).getroot()


def _class(tree, name) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def _function(tree, name) -> ast.FunctionDef:
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _parent_text(tree, attribute) -> str:
    """The string assigned to ``self.parent.<attribute>`` in the module class (through _())."""
    for node in ast.walk(_class(tree, "CardiacReconstruction")):
        if isinstance(node, ast.Assign) and _dotted(node.targets[0]) == f"self.parent.{attribute}":
            texts = [n.value for n in ast.walk(node.value) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
            return max(texts, key=len)
    raise AssertionError(f"self.parent.{attribute} is not set")


# ---------------------------------------------------------------------------------------------
# (1) Slicer API names used by the module exist
# ---------------------------------------------------------------------------------------------

def test_slicer_util_functions_exist(tree, api):
    util = api["slicer.util"]
    known = set(util["functions"]) | set(util["classes"])
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and _dotted(n.value) == "slicer.util"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "slicer.util":
            used |= {a.name for a in node.names}
    assert used, "the module uses no slicer.util function?"
    assert used <= known, f"not in slicer.util: {sorted(used - known)}"


def test_slicer_classes_exist(tree, api):
    classes = set(api["cpp_classes"])
    pattern = re.compile(r"^(vtk|qMRML|qSlicer)\w+$")
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and _dotted(n.value) == "slicer"
            and pattern.match(n.attr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "slicer":
            used |= {a.name for a in node.names}
    used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and re.match(r"^qMRML\w+$", n.id)}
    assert {"vtkMRMLSegmentationNode", "vtkMRMLLabelMapVolumeNode", "vtkMRMLScalarVolumeNode"} <= used
    assert used <= classes, f"not Slicer classes: {sorted(used - classes)}"


def test_mrml_methods_called_exist(tree, api):
    """CamelCase method calls are VTK/MRML methods: each must exist on one of the key classes."""
    known = set().union(*api["cpp_methods"].values()) | VTK_BASE_METHODS
    scripted = set(api["slicer.ScriptedLoadableModule"]["classes"])
    engine_modules = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                      and (n.module or "").startswith("CardiacReconstructionLib") for a in n.names}
    namespaces = CLASS_NAMESPACES | scripted | engine_modules | {"slicer.util"}  # classes live there
    called = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, base = node.func.attr, _dotted(node.func.value)
            if re.match(r"^[A-Z][A-Za-z0-9]*$", name) and base not in namespaces:
                called.setdefault(name, node.lineno)
    assert {"GetName", "GetNumberOfRows", "IsNodePresent"} <= set(called)
    unknown = {n: line for n, line in called.items() if n not in known}
    assert not unknown, f"methods not found on Slicer's key classes (name: line): {unknown}"


def test_scripted_module_base_methods_exist(tree, api):
    classes = api["slicer.ScriptedLoadableModule"]["classes"]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _dotted(node.value) in classes:
            assert node.attr in classes[_dotted(node.value)], f"{_dotted(node.value)}.{node.attr}"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "slicer.ScriptedLoadableModule":
            assert {a.name for a in node.names} <= set(classes)


def test_packaging_is_guarded_and_exists(source, tree, api):
    """slicer.packaging (5.12+) is imported inside a try and used only after a hasattr check."""
    assert "pip_ensure" in api["slicer.packaging"]
    assert 'hasattr(packaging, "pip_ensure")' in source
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            imports = [a.name for n in node.body if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names]
            if "slicer.packaging" in imports:
                assert any(isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in node.handlers)
                break
    else:
        raise AssertionError("slicer.packaging must be imported inside try/except ImportError")
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and _dotted(n.value) == "packaging"}
    assert used <= set(api["slicer.packaging"]), used


def test_qt_and_ctk_names_exist(tree, api):
    """``qt.<name>`` is plain Qt (a Q class or the Qt namespace); ``ctk.<name>`` a CTK class that
    Slicer itself uses."""
    def names(namespace):
        return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and _dotted(n.value) == namespace}

    used = names("qt")
    assert {"QTimer", "QFormLayout", "QMessageBox", "Qt"} <= used
    assert all(re.match(r"^(Q[A-Z]\w*|Qt)$", n) for n in used), sorted(used)
    known = set(api["ui_widget_classes_used_in_slicer"]) | set(api["cpp_classes"])
    assert names("ctk") <= known, sorted(names("ctk") - known)


def test_calls_use_keywords_that_slicer_5_8_accepts(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in SLICER_5_8_KEYWORDS:
            keywords = {k.arg for k in node.keywords}
            assert keywords <= SLICER_5_8_KEYWORDS[node.func.attr], (node.func.attr, keywords, node.lineno)
    assert "executePythonModule" not in {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}


def test_every_ui_name_used_exists_in_the_ui_file(tree, ui):
    names = {w.get("name") for w in ui.iter("widget")}
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and _dotted(n.value) == "self.ui"}
    assert {"applyButton", "progressBar", "methodComboBox", "statusLabel"} <= used
    assert used <= names, f"self.ui names missing from the .ui file: {sorted(used - names)}"


# ---------------------------------------------------------------------------------------------
# (2) The Qt Designer file
# ---------------------------------------------------------------------------------------------

def test_ui_file_is_valid_designer_xml(ui, api):
    assert ui.tag == "ui" and ui.get("version") == "4.0"
    assert ui.findtext("class") == "CardiacReconstruction"
    top = ui.find("widget")
    assert top is not None and top.get("name") == "CardiacReconstruction"
    known = set(api["ui_widget_classes_used_in_slicer"]) | set(api["cpp_classes"])
    widgets = list(ui.iter("widget"))
    names = [w.get("name") for w in widgets]
    assert len(names) == len(set(names)), "widget names must be unique"
    custom = {c.findtext("class") for c in ui.iter("customwidget")}
    for w in widgets:
        cls = w.get("class")
        assert re.match(r"^(Q[A-Z]\w*|ctk[A-Z]\w*|qMRML\w+|qSlicer\w+)$", cls), cls
        assert cls in known, f"{cls} is not a widget class Slicer uses"
        if not cls.startswith("Q"):
            assert cls in custom, f"{cls} needs a <customwidget> entry"
    for layout in ui.iter("layout"):
        assert layout.get("class") in QT_LAYOUTS, layout.get("class")


def test_ui_parameter_bindings_match_the_parameter_node(tree, ui):
    fields = {n.target.id: n.annotation for n in _class(tree, "CardiacReconstructionParameterNode").body
              if isinstance(n, ast.AnnAssign)}
    assert set(fields) == {"saxSegmentation", "lax2ch", "lax3ch", "lax4ch", "saxImage", "convention", "method",
                           "methodOptions", "sliceSpacing", "device", "outputSegmentation", "segmenter"}
    bound = {}
    for w in ui.iter("widget"):
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0", "dynamic properties need stdset=0"
                bound[prop.findtext("string")] = w
    assert set(bound) == set(fields) - HAND_BOUND_FIELDS
    aliases = {n.targets[0].id: n.value for n in tree.body if isinstance(n, ast.Assign)
               and isinstance(n.targets[0], ast.Name)}
    for name, widget in bound.items():
        annotation = ast.unparse(aliases.get(ast.unparse(fields[name]), fields[name]))
        cls = widget.get("class")
        if cls == "qMRMLNodeComboBox":
            node_types = [s.text for s in widget.find("property[@name='nodeTypes']").iter("string")]
            assert node_types and all(t in annotation for t in node_types), (name, node_types, annotation)
            assert "Optional" in annotation, f"{name}: a node combo box can select None"
        elif cls == "QComboBox":
            assert "Choice(" in annotation, f"{name}: a QComboBox binding needs a Choice annotation"
        elif cls == "QDoubleSpinBox":
            assert "float" in annotation and "WithinRange" in annotation, name
        else:
            raise AssertionError(f"unexpected bound widget {cls} for {name}")


# ---------------------------------------------------------------------------------------------
# (3) Everything the module needs is listed in CMake (the CI check)
# ---------------------------------------------------------------------------------------------

def _cmake_list(text: str, variable: str):
    match = re.search(rf"set\(\s*{variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} is not set"
    return {line.split("#")[0].strip() for line in match.group(1).splitlines()} - {""}


#: What the extension ships: the runtime layers, the worker's CLI and what the self-test needs
#: (the phantom simulation, evaluation/metrics.py); the benchmark, figures and training stay in
#: the pip package.
SHIPPED_PACKAGES = ("core", "anatomy", "networks", "methods", "simulation")
SHIPPED_MODULES = ("", "__main__", "cli", "check", "mrml", "worker", "evaluation", "evaluation.metrics")
#: The CLI's development commands, which import unshipped layers on use (the shipped CLI refuses
#: them in one line, see test_the_shipped_files_alone_run_a_method).
CLI_DEVELOPMENT_IMPORTS = {"evaluation.bench", "evaluation.figures", "training"}


def _shipped(module: str) -> bool:
    return module in SHIPPED_MODULES or module.split(".")[0] in SHIPPED_PACKAGES


def _module_files():
    ignored = lambda p: "__pycache__" in p.parts or p.suffix == ".pyc"  # noqa: E731
    scripts = {path.relative_to(MODULE_DIR).as_posix() for name, path in module_files().items() if _shipped(name)}
    resources = {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*")
                 if p.is_file() and not ignored(p)}
    return scripts, resources


def test_cmake_lists_exactly_the_shipped_files():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    listed_scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    listed_resources = _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    scripts, resources = _module_files()
    missing = sorted(scripts - listed_scripts) + sorted(resources - listed_resources)
    assert not missing, "add to CardiacReconstruction/CMakeLists.txt:\n  " + "\n  ".join(missing)
    extra = sorted(listed_scripts - scripts - {"${MODULE_NAME}.py"})
    assert not extra, f"listed in CMake but not part of the extension: {extra}"
    assert "${MODULE_NAME}.py" in listed_scripts
    stale = [f for f in listed_resources if not (MODULE_DIR / f).is_file()]
    assert not stale, f"listed in CMake but absent: {stale}"
    assert {"Resources/UI/CardiacReconstruction.ui", "Resources/requirements.txt", "Resources/requirements-learned.txt",
            "Resources/Icons/CardiacReconstruction.png"} <= listed_resources
    assert not any(f.startswith("CardiacReconstructionLib/training/") for f in listed_scripts)


def test_shipped_modules_import_only_shipped_modules():
    graph = import_graph()
    for module, targets in graph.items():
        if not _shipped(module):
            continue
        allowed = CLI_DEVELOPMENT_IMPORTS if module == "cli" else set()
        outside = sorted(t for t in targets if not _shipped(t) and t not in allowed)
        assert not outside, f"shipped module {module or '__init__'} imports unshipped {outside}"


def test_the_module_imports_only_shipped_engine_modules(tree):
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("CardiacReconstructionLib"):
            base = node.module[len("CardiacReconstructionLib"):].lstrip(".")
            imported |= {f"{base}.{a.name}".lstrip(".") for a in node.names}
    files = module_files()
    imported = {m if m in files else m.rsplit(".", 1)[0] for m in imported}
    assert imported and all(_shipped(m) for m in imported), sorted(m for m in imported if not _shipped(m))


@pytest.mark.slow
def test_the_shipped_files_alone_run_a_method(tmp_path):
    """The files CMake lists, copied alone (as Slicer installs them), list the methods, run one,
    and refuse a development command in one line."""
    import shutil
    import subprocess

    from CardiacReconstructionLib.core.io import write_segmentation
    from conftest import ring_stack

    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    install = tmp_path / "module"
    for rel in _cmake_list(text, "MODULE_PYTHON_SCRIPTS") | _cmake_list(text, "MODULE_PYTHON_RESOURCES"):
        rel = rel.replace("${MODULE_NAME}", "CardiacReconstruction")
        (install / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(MODULE_DIR / rel, install / rel)
    sax = write_segmentation(ring_stack(n_slices=5, size=24), tmp_path / "sax.seg.nrrd")
    env = {**os.environ, "PYTHONPATH": str(install)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "CardiacReconstructionLib", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    where = subprocess.run([sys.executable, "-c", "import CardiacReconstructionLib as c; print(c.__file__)"],
                           env=env, capture_output=True, text=True, cwd=tmp_path).stdout
    assert str(install) in where
    listed = cli("methods")
    assert listed.returncode == 0 and "centroid_shape_interp" in listed.stdout and "unavailable" not in listed.stdout
    ran = cli("run", "--input", str(sax), "--method", "centroid_shape_interp", "--output", str(tmp_path / "out"))
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "out" / "labels.seg.nrrd").is_file()
    refused = cli("train", "lo", "--help")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "pip install" in refused.stderr


def test_cmake_builds_tests_and_the_extension_is_complete():
    module = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert re.search(r"set\(MODULE_NAME CardiacReconstruction\)", module)
    assert re.search(r"slicerMacroBuildScriptedModule\(.*WITH_GENERIC_TESTS.*\)", module, re.S)
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module
    assert "add_subdirectory(Testing)" in module
    assert "add_subdirectory(Python)" in (MODULE_DIR / "Testing" / "CMakeLists.txt").read_text()
    assert "slicer_add_python_unittest(" in (MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt").read_text()
    top = (REPO / "CMakeLists.txt").read_text()
    assert "add_subdirectory(CardiacReconstruction)" in top
    for variable in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS"):
        assert re.search(rf'set\(EXTENSION_{variable} "[^"]+"\)', top), variable
    assert re.search(r'set\(EXTENSION_DEPENDS "[^"]*\bPyTorch\b[^"]*"\)', top)
    for url in re.findall(r"https://raw\.githubusercontent\.com/\S+?/main/(\S+?)[\s\"]", top):
        assert (REPO / url).is_file(), f"metadata points at a missing file: {url}"


# ---------------------------------------------------------------------------------------------
# (4) Slicer 5.8 compatibility (Python 3.9)
# ---------------------------------------------------------------------------------------------

def _python_files():
    return [MODULE_FILE] + sorted(p for p in LIB_DIR.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: p.relative_to(MODULE_DIR).as_posix())
def test_python_3_9_grammar_and_no_imp(path):
    text = path.read_text()
    tree = ast.parse(text, feature_version=(3, 9))
    imports = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imports |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "imp" not in imports, "the imp module is gone in Slicer 5.10+ (Python 3.12)"
    postponed = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                    and any(a.name == "annotations" for a in n.names) for n in tree.body)
    if not postponed:  # annotations are evaluated at run time: 'X | None' fails on Python 3.9
        annotations = [n.annotation for n in ast.walk(tree) if isinstance(n, (ast.AnnAssign, ast.arg))
                       and n.annotation is not None]
        annotations += [n.returns for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.returns]
        bad = [ast.unparse(a) for a in annotations if any(isinstance(b, ast.BinOp) and isinstance(b.op, ast.BitOr)
                                                       for b in ast.walk(a))]
        assert not bad, f"runtime-evaluated 'X | Y' annotations: {bad}"


def test_module_imports_the_engine_only_inside_functions(tree):
    """Slicer imports the module file at startup, before the first Apply installed the engine's
    packages; a top-level engine import would make the module fail to load."""
    for node in tree.body:
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("CardiacReconstructionLib") for a in node.names)
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("CardiacReconstructionLib")


# ---------------------------------------------------------------------------------------------
# (5) The module's pure parts agree with the engine
# ---------------------------------------------------------------------------------------------

def test_help_text_mentions_every_registered_method(tree):
    help_text = _parent_text(tree, "helpText")
    missing = [m.name for m in methods.available() if f"<code>{m.name}</code>" not in help_text]
    assert not missing, f"describe these methods in the module's helpText: {missing}"
    assert "README" in help_text and "Inputs" in help_text and "Outputs" in help_text


def test_acknowledgement_cites_the_papers_and_data(tree):
    text = _parent_text(tree, "acknowledgementText")
    for cited in ("Wang S", "MICCAI 2021", "Dong J", "DeepWHR", "Zhang Z", "Mask2Surface", "Chang Q", "DeepRecon",
                  "Rodero C", "Bernard O"):
        assert cited in text, cited


def test_module_constants_match_the_engine(tree):
    assert tuple(module_constant(tree, "CONVENTIONS")) == tuple(labels.CONVENTION_NAMES)
    assert tuple(module_constant(tree, "DEVICES")) == tuple(device.DEVICE_CHOICES)
    from CardiacReconstructionLib import worker
    from CardiacReconstructionLib.methods import deeprecon

    assert tuple(module_constant(tree, "SEGMENTERS")) == tuple(worker.SEGMENTERS) == tuple(deeprecon.SEGMENTERS)
    assert set(module_constant(tree, "SEGMENTER_TITLES")) == set(deeprecon.SEGMENTERS)
    methods.get(module_constant(tree, "DEFAULT_METHOD"))
    from CardiacReconstructionLib.core.labels import STRUCTURES

    assert set(module_constant(tree, "RECONSTRUCTION_SEGMENTS")) == {STRUCTURES[i].name for i in (1, 2, 3)}


def test_logic_process_signature(tree):
    process = _function(_class(tree, "CardiacReconstructionLogic"), "process")
    args = process.args
    names = [a.arg for a in args.args]
    assert names == ["self", "saxNode", "outputSegmentation", "method", "lax2ch", "lax3ch", "lax4ch", "imageNode",
                     "convention", "device", "sliceSpacing", "progress", "cancel", "segmenter"]
    defaults = dict(zip(names[-len(args.defaults):], (ast.unparse(d) for d in args.defaults)))
    assert defaults["outputSegmentation"] == "None" and defaults["convention"] == "'auto'"
    assert defaults["device"] == "'auto'" and defaults["sliceSpacing"] == "None" and defaults["segmenter"] == "None"
    assert args.kwarg is not None and args.kwarg.arg == "options"
    doc = ast.get_docstring(process)
    for word in ("Parameters", "Returns", "segmentation", "summary", "InputError"):
        assert word in doc


#: pyproject.toml dependencies that neither requirement file lists, because the Slicer runtime
#: never imports them (test_slicer_runtime_never_imports_the_unlisted_dependencies checks it, and
#: test_module_without_torch.py runs the worker with them made unimportable).
NOT_INSTALLED_IN_SLICER = {
    "matplotlib": "figures of the development commands (evaluation/figures.py, not shipped)",
    "tqdm": "the command line's progress bar; the Slicer worker prints progress lines instead",
}


def test_requirement_files_mirror_pyproject_without_torch(tree):
    """The core and learned requirement files together are pyproject.toml's dependencies without
    torch (the PyTorch extension installs it) and without what Slicer never imports; no package
    is in both, and the module's helpers read them and find the installed packages."""
    import importlib.util

    ns = requirement_functions(tree)
    files = [RESOURCES / module_constant(tree, name) for name in ("CORE_REQUIREMENTS", "LEARNED_REQUIREMENTS")]
    core, learned = (ns["readRequirements"](path) for path in files)
    for path, lines in zip(files, (core, learned)):
        stripped = [s.strip() for s in path.read_text().splitlines()]
        assert lines == [s for s in stripped if s and not s.startswith("#")]
    expected = [d for d in pyproject_dependencies()
                if not re.match(r"^torch\b", d) and distribution_name(d) not in NOT_INSTALLED_IN_SLICER]
    assert sorted(core + learned) == sorted(expected)
    assert not {distribution_name(r) for r in core} & {distribution_name(r) for r in learned}
    assert {distribution_name(r) for r in learned} >= {"monai", "einops"}, "the learned packages belong after torch"
    names = [ns["requirementImportName"](r) for r in core + learned]
    assert "SimpleITK" in names and "monai" in names
    assert all(importlib.util.find_spec(n) is not None for n in names), names  # the mapping is right
    assert ns["missingRequirements"](core + learned) == []
    assert ns["missingRequirements"](["surely-not-installed-pkg>=1"]) == ["surely-not-installed-pkg>=1"]


def test_slicer_runtime_never_imports_the_unlisted_dependencies():
    """What NOT_INSTALLED_IN_SLICER says: no shipped module imports matplotlib or scikit-image,
    and tqdm only in the CLI (its progress bar and the unshipped bench command)."""
    imported = {}
    for name, path in module_files().items():
        if not _shipped(name):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for module in modules:
                imported.setdefault(module.split(".")[0], set()).add(name)
    assert set(NOT_INSTALLED_IN_SLICER) <= {distribution_name(d) for d in pyproject_dependencies()}
    assert "matplotlib" not in imported and "skimage" not in imported
    assert imported.get("tqdm", set()) <= {"cli"}


def test_engine_runs_as_a_module_for_the_worker():
    """The widget starts 'PythonSlicer -m CardiacReconstructionLib run ...'."""
    assert (LIB_DIR / "__main__.py").is_file()
    from CardiacReconstructionLib import worker

    assert worker.worker_command(sys.executable, ["run"])[1:3] == ["-m", "CardiacReconstructionLib"]
