"""The import rules, checked on the source: mnist never imports ray, optuna or hpo (layers import downwards
only: hpo builds on mnist), and no module imports another that imports it back (no cycles, also through
imports inside functions)."""
from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = ("mnist", "hpo")


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (top level or inside a function), as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def project_modules() -> dict[str, set[str]]:
    """module name -> the project modules it imports."""
    modules = {f"{package}.{path.stem}": path for package in PACKAGES for path in (ROOT / package).glob("*.py")}
    return {name: {imported for imported in imports_of(path) if imported in modules and imported != name}
            for name, path in modules.items()}


def test_mnist_never_imports_ray_optuna_or_hpo() -> None:
    for path in (ROOT / "mnist").glob("*.py"):
        roots = {name.split(".")[0] for name in imports_of(path)}
        assert not roots & {"ray", "optuna", "hpo"}, f"{path.relative_to(ROOT)} imports {roots & {'ray', 'optuna', 'hpo'}}"


def test_no_import_cycles() -> None:
    graph = project_modules()
    assert graph["hpo.driver"] and graph["mnist.train"]  # the case: the graph holds the imports
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None
