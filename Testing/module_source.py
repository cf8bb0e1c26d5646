"""The Slicer module file read as source, for tests that run outside Slicer.

CardiacReconstruction.py imports Slicer's Qt application at its top, so it cannot be imported
here. Its plain parts (the dependency helpers, the install plan, the slice-grid reader) use only
the standard library or a node's own methods: the tests compile those functions on their own,
from the module's syntax tree, and run them against real files, real MRML nodes (slicer-core)
and the real engine.
"""

import ast
import copy
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "CardiacReconstruction"
MODULE_FILE = MODULE_DIR / "CardiacReconstruction.py"
RESOURCES = MODULE_DIR / "Resources"


def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text())


def module_constant(tree: ast.Module, name: str):
    """The literal value of a module-level ``NAME = ...`` of the module file."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not a module-level constant of {MODULE_FILE.name}")


def class_def(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def exec_module_functions(tree: ast.Module, names, namespace: dict) -> dict:
    """Compile some of the module's functions on their own into ``namespace`` (which supplies
    the names they use) and return it. A name is a module-level function or ``Class.method`` of
    a static method, which then becomes a plain function of that name."""
    body = []
    for name in names:
        owner, _, function = name.rpartition(".")
        scope = class_def(tree, owner).body if owner else tree.body
        found = [n for n in scope if isinstance(n, ast.FunctionDef) and n.name == function]
        assert found, f"{name} is not defined in {MODULE_FILE.name}"
        node = found[0]
        if owner:
            assert [ast.unparse(d) for d in node.decorator_list] == ["staticmethod"], f"{name} is not a staticmethod"
            node = copy.copy(node)
            node.decorator_list = []
        body.append(node)
    module = ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))
    exec(compile(module, str(MODULE_FILE), "exec"), namespace)
    return namespace


def requirement_functions(tree: ast.Module) -> dict:
    """The module's requirement-file helpers (readRequirements, requirementImportName,
    missingRequirements; standard library only), compiled on their own."""
    import importlib
    import importlib.util  # noqa: F401  (missingRequirements uses importlib.util)
    import re
    from typing import List

    return exec_module_functions(tree, ["readRequirements", "requirementImportName", "missingRequirements"],
                                 {"re": re, "importlib": importlib, "List": List,
                                  "REQUIREMENT_IMPORT_NAMES": module_constant(tree, "REQUIREMENT_IMPORT_NAMES")})


def pyproject_dependencies():
    """The ``[project] dependencies`` of pyproject.toml."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import pytest

        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def distribution_name(requirement: str) -> str:
    """``monai>=1.4`` -> ``monai``."""
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]
