"""The order in which the Slicer module installs Python packages (its ``installPlan``).

MONAI declares torch as a dependency. pip-installed while torch is missing, pip would fetch a
torch wheel from the package index behind the PyTorch extension's back (which picks the CUDA or
CPU build for the computer). ``installPlan`` is the module's one decision about the order; it is
compiled here on its own from the module's source (the module needs Slicer) and checked in every
combination of what is missing, then played through a simulated installer until the method can
run. The learned step itself runs with the installed torch pinned, so that pip cannot replace it
later either.
"""

import ast
import importlib.metadata
import itertools
import os
import subprocess
import sys
from typing import List, Optional, Tuple

import pytest

from module_source import RESOURCES, class_def, exec_module_functions, module_constant, module_tree, \
    requirement_functions
from CardiacReconstructionLib import methods

STEPS = ("core", "torch", "learned", "replan")


@pytest.fixture(scope="module")
def tree():
    return module_tree()


@pytest.fixture(scope="module")
def install_plan(tree):
    """installPlan alone (it needs nothing but the typing names of its annotation)."""
    return exec_module_functions(tree, ["installPlan"], {"List": List, "Tuple": Tuple})["installPlan"]


@pytest.fixture(scope="module")
def requirements(tree):
    """(core lines, learned lines, import name of a line) as the module reads them."""
    ns = requirement_functions(tree)
    core = ns["readRequirements"](RESOURCES / module_constant(tree, "CORE_REQUIREMENTS"))
    learned = ns["readRequirements"](RESOURCES / module_constant(tree, "LEARNED_REQUIREMENTS"))
    return core, learned, ns["requirementImportName"]


def _needs_torch(import_name: str) -> bool:
    """Whether the installed distribution declares torch as a dependency (pip would install
    torch with it); a package not installed here counts as needing it."""
    try:
        declared = importlib.metadata.requires(import_name) or []
    except importlib.metadata.PackageNotFoundError:
        return True
    return any(r.split(";")[0].strip().lower().startswith("torch") and "extra ==" not in r for r in declared)


def _method_requires():
    """What every declared method needs beyond the core, plus a classical method's () and a
    need nothing installs."""
    declared = {tuple(m.requires) for m, _, _ in methods.catalog() if m is not None}
    return sorted(declared | {(), ("torch",), ("torch", "monai"), ("monai",), ("torch", "not-a-package")})


def _subsets(items):
    return [list(c) for n in range(len(items) + 1) for c in itertools.combinations(items, n)]


def test_monai_is_never_installed_before_torch_in_any_combination(install_plan, requirements):
    core, learned, import_name = requirements
    learned_names = [import_name(r) for r in learned]
    assert "monai" in learned_names and _needs_torch("monai")
    checked = 0
    for requires, missing_core, torch_missing, missing_learned in itertools.product(
            [None] + _method_requires(), _subsets(core[:2]) + [core], (False, True), _subsets(learned)):
        plan = install_plan(requires, missing_core, torch_missing, learned_names, missing_learned)
        label = (requires, missing_core, torch_missing, missing_learned, plan)
        steps = [step for step, _ in plan]
        assert set(steps) <= set(STEPS) and len(steps) == len(set(steps)), label
        assert steps == sorted(steps, key=STEPS.index), label  # core, torch, learned, replan
        for step, lines in plan:
            assert all(import_name(r) != "torch" for r in lines), label  # pip never gets torch
            if step != "learned":
                assert not any(import_name(r) == "monai" for r in lines), label
        if "learned" in steps and torch_missing:
            assert "torch" in steps and steps.index("torch") < steps.index("learned"), label
        assert dict(plan).get("core", []) == missing_core, label
        assert ("replan" in steps) == (requires is None and bool(missing_core)), label
        if requires is None or not set(requires) & {"torch", *learned_names}:
            assert not {"torch", "learned"} & set(steps), label  # classical methods: core only
        else:
            wanted = bool(set(requires) & set(learned_names))
            assert dict(plan).get("learned", []) == (missing_learned if wanted else []), label
            assert ("torch" in steps) == (torch_missing and ("torch" in requires or bool(dict(plan).get("learned")))), \
                label
        checked += 1
    assert checked > 100


class SimulatedInstaller:
    """What is installed, and what pip would do: installing a package that declares torch while
    torch is missing would fetch torch from the package index (the failure installPlan avoids)."""

    def __init__(self, core, learned, import_name, missing, torch_missing):
        self.core, self.learned, self.import_name = core, learned, import_name
        self.installed = {import_name(r) for r in core + learned if r not in missing}
        if not torch_missing:
            self.installed.add("torch")

    def missing(self, lines):
        return [r for r in lines if self.import_name(r) not in self.installed]

    def plan(self, install_plan, requires):
        """Plan as the module does: the registry says what the method needs only once the core
        packages are in."""
        known = requires if not self.missing(self.core) else None
        return install_plan(known, self.missing(self.core), "torch" not in self.installed,
                            [self.import_name(r) for r in self.learned], self.missing(self.learned))

    def play(self, plan):
        """Carry the plan out; True when it asks to plan again."""
        for step, lines in plan:
            if step == "replan":
                return True
            if step == "torch":
                self.installed.add("torch")  # the PyTorch extension's installer
            for line in lines:
                assert "torch" in self.installed or not _needs_torch(self.import_name(line)), \
                    f"pip would fetch torch for {line} (plan {plan})"
                self.installed.add(self.import_name(line))
        return False


def test_playing_the_plan_installs_what_each_method_needs_without_pip_fetching_torch(install_plan, requirements):
    """Carried out (and re-planned once the engine can be imported), the plan never lets pip
    install a package that needs torch before torch, and leaves every package the method needs
    installed."""
    core, learned, import_name = requirements
    installable = {"torch"} | {import_name(r) for r in learned}
    for requires, missing_core, torch_missing, missing_learned in itertools.product(
            _method_requires(), _subsets(core[:1]) + [core], (False, True), _subsets(learned)):
        installer = SimulatedInstaller(core, learned, import_name, missing_core + missing_learned, torch_missing)
        replanned = installer.play(installer.plan(install_plan, requires))
        if replanned:
            assert not installer.play(installer.plan(install_plan, requires)), "planned again twice"
        assert replanned == bool(missing_core)
        assert not installer.missing(core)
        assert set(requires) & installable <= installer.installed, (requires, installer.installed)


def test_every_declared_method_can_be_completed_by_the_plan(requirements):
    """Whatever a method needs beyond the core is torch or a line of the learned file, so the
    plan can make every declared method runnable."""
    _, learned, import_name = requirements
    installable = {"torch"} | {import_name(r) for r in learned}
    for method, name, _ in methods.catalog():
        assert method is not None, f"{name}: its module does not import"
        assert set(method.requires) <= installable, (name, method.requires)


def test_installation_goes_through_the_plan_only(tree):
    """Only ensureDependencies installs, and it follows installPlan: nothing else calls the
    torch or pip installers (a second path could install MONAI before torch again)."""
    logic = class_def(tree, "CardiacReconstructionLogic")
    installers = {"_ensureTorch", "_installRequirements", "pip_install", "pip_ensure", "installTorch"}
    callers = {}
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in installers:
                callers.setdefault(node.func.attr, set()).add(function.name)
    assert callers["_ensureTorch"] == callers["_installRequirements"] == {"ensureDependencies"}
    assert callers["installTorch"] == {"_ensureTorch"}
    assert callers["pip_install"] | callers["pip_ensure"] == {"_installRequirements"}
    ensure = next(n for n in logic.body if isinstance(n, ast.FunctionDef) and n.name == "ensureDependencies")
    called = {n.func.id for n in ast.walk(ensure) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert {"installPlan", "writeTorchConstraints"} <= called


def test_learned_packages_are_installed_with_the_installed_torch_pinned(tree, requirements, tmp_path):
    """The constraints file of the learned step pins the torch that is installed, and pip accepts
    it together with the learned requirements without installing anything (they are all here,
    torch included): pip is held to the PyTorch extension's torch build."""
    write = exec_module_functions(tree, ["writeTorchConstraints"], {"os": os, "Optional": Optional})
    path = write["writeTorchConstraints"](str(tmp_path))
    try:
        installed = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        assert path is None
        return
    assert open(path).read().split() == [f"torch=={installed}"]
    _, learned, _ = requirements
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--disable-pip-version-check"]
    done = subprocess.run(command + ["-c", path, *learned], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Would install" not in done.stdout, done.stdout
