"""The engine's import graph, read from the source (nothing is imported).

Used by ``test_layers.py`` (directions and cycles) and ``test_slicer_static.py`` (what the Slicer
extension must ship). Every ``import``/``from ... import`` counts, also those inside functions:
a lazy import is still a dependency.
"""

import ast
from pathlib import Path
from typing import Dict, Set

LIB_DIR = Path(__file__).resolve().parents[1] / "CardiacReconstruction" / "CardiacReconstructionLib"
PACKAGE = "CardiacReconstructionLib"


#: The layers, lowest first (``|`` joins layers of equal rank); a module may import its own layer
#: and those below. See test_layers.py for what each holds.
LAYERS = ["core", "anatomy", "networks", "methods", "mrml|worker|check",
          "simulation", "training.cohort", "evaluation", "training", "cli|__main__"]
RUNTIME = {"core", "anatomy", "networks", "methods", "mrml", "worker", "check"}


def layer_of(module: str) -> int:
    if module == "":
        return -1  # the package's __init__: re-exports core types only (checked below)
    best = None
    for rank, names in enumerate(LAYERS):
        for name in names.split("|"):
            if module == name or module.startswith(name + "."):
                if best is None or len(name) > best[1]:
                    best = (rank, len(name))
    assert best is not None, f"module {module!r} belongs to no layer; add its package to LAYERS"
    return best[0]


def module_files() -> Dict[str, Path]:
    """Dotted module name (relative to the package; '' is the package itself) -> file."""
    out = {}
    for path in sorted(LIB_DIR.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(LIB_DIR).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules) -> Set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [p for p in package if p]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                target = node.module[len(PACKAGE):].lstrip(".")
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                targets.append(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            targets = [a.name[len(PACKAGE):].lstrip(".") for a in node.names
                       if a.name == PACKAGE or a.name.startswith(PACKAGE + ".")]
        for target in targets:
            # importing a.b.c also imports the packages a and a.b
            parts = target.split(".") if target else []
            for n in range(len(parts) + 1):
                candidate = ".".join(parts[:n])
                if candidate in modules and candidate != name:
                    found.add(candidate)
    return found


def import_graph() -> Dict[str, Set[str]]:
    """Module -> the engine modules it imports (anywhere in its source)."""
    modules = module_files()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def closure(graph: Dict[str, Set[str]], roots) -> Set[str]:
    seen, todo = set(), list(roots)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return seen


def find_cycle(graph: Dict[str, Set[str]]):
    """One import cycle as a list of modules, or None. The package's own ``__init__`` modules
    are left out: importing ``a.b`` always runs ``a``, which is not a cycle of the code's making."""
    colour: Dict[str, int] = {}
    stack = []

    def visit(m):
        colour[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if _is_parent(n, m):
                continue
            if colour.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if colour.get(n) is None:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        colour[m] = 2
        return None

    for m in sorted(graph):
        if colour.get(m) is None:
            found = visit(m)
            if found:
                return found
    return None


def _is_parent(package: str, module: str) -> bool:
    return package == "" or module.startswith(package + ".")
