"""hpo/ray_versions.py, the one place where Ray's versions differ for the search: the declared range (read from
pyproject.toml as installed), how each version keeps the private cluster closed, Ray's version-mismatch refusal."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import optuna
import pytest
import ray
from packaging.requirements import Requirement

from hpo.ray_versions import (OPEN_CLUSTER_OK, TOKEN_AUTH_SINCE, check_private_cluster_closed, check_version,
                              check_versions, declared_range, minor, trainer_resources, version_mismatch)
from mnist.errors import UserError
from tests.helpers import ROOT, refused_process


def test_the_declared_range_is_pyprojects_and_holds_what_is_installed() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {Requirement(line).name: Requirement(line).specifier for line in dependencies}
    assert declared_range("ray") == declared["ray"] and declared_range("optuna") == declared["optuna"]
    check_versions()  # the versions this suite runs on are inside it
    assert ray.__version__ in declared["ray"] and optuna.__version__ in declared["optuna"]


@pytest.mark.parametrize("version, inside", [("2.43.0", False), ("2.44.0", True), ("2.50.1", True), ("2.60.0", True),
                                             ("2.61.0", False), ("3.0.0", False)])
def test_a_ray_outside_the_range_is_one_line_naming_both(version: str, inside: bool) -> None:
    if inside:
        check_version("ray", version)
        return
    with pytest.raises(UserError) as refused:
        check_version("ray", version)
    message = str(refused.value)
    assert f"ray {version} is installed" in message and "ray[tune]" in message and "2.44" in message
    assert "\n" not in message


@pytest.mark.parametrize("version, environ, closed", [
    ("2.60.0", {}, True),  # token authentication by default for a cluster ray.init() starts
    ("2.59.1", {"RAY_AUTH_MODE": "token"}, True),
    ("2.60.0", {"RAY_AUTH_MODE": "disabled"}, False),
    ("2.55.0", {}, False),  # token authentication exists, but only when asked for
    ("2.55.0", {"RAY_AUTH_MODE": "TOKEN"}, True),
    ("2.44.1", {}, False),  # no authentication at all
    ("2.44.1", {"RAY_AUTH_MODE": "token"}, False),
    ("2.50.0", {OPEN_CLUSTER_OK: "1"}, True),  # a trusted network, said so
])
def test_a_private_cluster_starts_only_where_it_is_closed(version: str, environ: dict, closed: bool) -> None:
    if closed:
        check_private_cluster_closed(environ, version)
        return
    with pytest.raises(UserError, match="(without|has no) authentication") as refused:
        check_private_cluster_closed(environ, version)
    assert "\n" not in str(refused.value) and re.search("RAY_AUTH_MODE=token|ray>=2.52", str(refused.value))


def test_a_trusted_network_switch_set_to_something_else_is_refused_not_read_as_off() -> None:
    with pytest.raises(UserError, match=f"{OPEN_CLUSTER_OK}='yes': must be 1 \\(on\\) or 0 \\(off\\)"):
        check_private_cluster_closed({OPEN_CLUSTER_OK: "yes"}, "2.50.0")
    with pytest.raises(UserError, match="has no authentication"):  # 0 is off: refused as unset
        check_private_cluster_closed({OPEN_CLUSTER_OK: "0"}, "2.50.0")


def test_rays_version_mismatch_becomes_one_line_naming_both() -> None:
    # Ray's own words (ray._private.utils.check_version_info) when a driver joins a cluster of another version.
    error = RuntimeError("Version mismatch: The cluster was started with:\n    Ray: 2.44.1\n    Python: 3.11.7\n"
                         "This process on node 10.0.0.2 was started with:\n    Ray: 2.60.0\n    Python: 3.11.7\n")
    message = str(version_mismatch(error))
    assert "runs Ray 2.44.1 and this driver Ray 2.60.0" in message and "ray[tune]==2.44.1" in message
    python_only = RuntimeError(str(error).replace("Ray: 2.60.0", "Ray: 2.44.1").replace("3.11.7\n", "3.12.1\n", 1))
    assert "Python 3.12.1 and this driver Python 3.11.7" in str(version_mismatch(python_only))
    assert version_mismatch(RuntimeError("something else went wrong")) is None


@pytest.mark.skipif(minor(ray.__version__) >= TOKEN_AUTH_SINCE, reason="this Ray has token authentication")
def test_on_a_ray_without_authentication_a_private_search_is_refused_unless_the_network_is_trusted(
        tmp_path: Path) -> None:
    """Run by CI on the floor of the range (.ci/floor), where Ray has no authentication."""
    env = {key: value for key, value in os.environ.items() if key != OPEN_CLUSTER_OK}
    result = subprocess.run([sys.executable, str(ROOT / "hpo" / "search.py"), "--num-samples", "1", "--max-epochs",
                             "1", "--limit", "500", "--storage-path", str(tmp_path), "--name", "open"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert "has no authentication" in refused_process(result) and OPEN_CLUSTER_OK in result.stderr
    assert not (tmp_path / "open").exists()


@pytest.mark.parametrize("version, environ, held", [("2.44.1", {}, True), ("2.50.0", {}, True), ("2.60.0", {}, False),
                                                     ("2.60.0", {"RAY_TRAIN_V2_ENABLED": "0"}, True),
                                                     ("2.44.1", {"RAY_TRAIN_V2_ENABLED": "1"}, False)])
def test_ray_train_v1_is_told_not_to_hold_a_cpu_for_its_trainer(version: str, environ: dict, held: bool) -> None:
    """Train V1 would hold a CPU beside 2 workers' on a 2-CPU machine: training would never start; V2 refuses the
    argument. The DDP test (test_data_parallel) runs it on both ends of the range."""
    assert trainer_resources(environ, version) == ({"trainer_resources": {"CPU": 0}} if held else {})
