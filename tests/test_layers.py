"""The layout's rules, checked on the source and on the built wheel (docs/architecture.md draws them):

    mnist (the training core)  <-  mnist.reading  <-  hpo  <-  benchmarks, tools

Each layer imports only the layers left of it: mnist never imports ray, optuna or hpo; the training core never
imports the reading sub-package; nothing in the packages imports benchmarks, tools or tests; no module imports
another that imports it back (no cycles, also through imports inside functions); benchmarks ship in no wheel.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

from tests.helpers import ROOT

FOLDERS = ("mnist", "hpo", "benchmarks", "tools")


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


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_under(folder: str) -> dict[str, Path]:
    return {module_name(path): path for path in sorted((ROOT / folder).rglob("*.py"))}


def project_imports() -> dict[str, set[str]]:
    """module name -> the project modules it imports (a package's import counts as its __init__'s)."""
    modules = {name: path for folder in FOLDERS for name, path in modules_under(folder).items()}
    return {name: {imported for imported in imports_of(path) if imported in modules and imported != name}
            for name, path in modules.items()}


def roots(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_mnist_never_imports_ray_optuna_hpo_or_anything_above() -> None:
    for name, path in modules_under("mnist").items():
        above = roots(imports_of(path)) & {"ray", "optuna", "hpo", "benchmarks", "tools", "tests"}
        assert not above, f"{name} imports {above}"


def test_the_training_core_never_imports_the_reading_sub_package() -> None:
    core = {name: path for name, path in modules_under("mnist").items() if not name.startswith("mnist.reading")}
    assert "mnist.train" in core and "mnist.reading.predict" not in core  # the case: both sides are there
    for name, path in core.items():
        reading = {imported for imported in imports_of(path) if imported.startswith("mnist.reading")}
        assert not reading, f"{name} (the training core) imports {reading}"


def test_the_packages_never_import_benchmarks_tools_or_tests() -> None:
    for folder in ("mnist", "hpo"):
        for name, path in modules_under(folder).items():
            above = roots(imports_of(path)) & {"benchmarks", "tools", "tests"}
            assert not above, f"{name} imports {above}"
    assert roots(imports_of(ROOT / "benchmarks" / "schedulers.py")) >= {"hpo"}  # the case: benchmarks sit on top


def test_no_import_cycles() -> None:
    graph = project_imports()
    assert graph["hpo.driver"] and graph["mnist.train"] and graph["mnist.reading.serve"]  # the graph holds imports
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


@pytest.mark.slow
def test_the_wheel_holds_the_packages_and_no_benchmark(tmp_path: Path) -> None:
    """Built from a copy of the checkout (setuptools writes build/ beside the sources)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", *FOLDERS):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    names = zipfile.ZipFile(next((tmp_path / "wheel").glob("*.whl"))).namelist()
    code = [name for name in names if name.endswith(".py")]
    assert {"mnist/train.py", "mnist/reading/predict.py", "hpo/search.py", "mnist/reading/templates/draw.html",
            "mnist/bundled/train-images-idx3-ubyte.gz"} <= set(names)
    assert all(name.split("/")[0] in ("mnist", "hpo") for name in code), code
    assert not [name for name in code if "bench" in name], code


@pytest.mark.slow
def test_plain_pytest_collects_with_another_package_named_tests_installed(tmp_path: Path) -> None:
    """A `tests` package elsewhere on the path (many projects install one) must not hide ours: tests/ is a
    regular package, found first from the repository root."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")  # a regular package: it would win over a namespace one
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                             "tests/test_model.py"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0 and " passed" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]


def test_only_public_ray_and_optuna_api() -> None:
    """No import from a private module of Ray or Optuna (ray._private, ray._raylet, ...), and no underscore
    attribute of any object but our own (self, cls) and namedtuples' documented _replace/_asdict/_fields: the
    search must run on every Ray and Optuna of the declared range, and their private parts change freely."""
    namedtuple_api = {"_replace", "_asdict", "_fields", "_make"}
    for folder in ("mnist", "hpo"):
        for name, path in modules_under(folder).items():
            private_imports = {imported for imported in imports_of(path) if imported.split(".")[0] in ("ray", "optuna")
                               and any(part.startswith("_") for part in imported.split("."))}
            assert not private_imports, f"{name} imports {private_imports}"
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                        and node.attr not in namedtuple_api
                        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                        and not ast.unparse(node.value).startswith("torch")
                        and ast.unparse(node) != "os._exit"):  # documented: the exit that runs no cleanup
                    raise AssertionError(f"{name}:{node.lineno} uses {ast.unparse(node)}")
