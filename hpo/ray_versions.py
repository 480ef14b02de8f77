"""Which Ray and Optuna the search runs with, and the one place where Ray's versions differ for it.

The declared range (pyproject.toml's, read here from the installed package) is the tested range: CI runs the
whole suite on the newest versions and the tests that touch Ray and Optuna again on the floor versions
(.ci/run). Outside it, a search is refused in one line naming the version there and the range that works.

What differs between the Ray versions of the range, for this project, is two things. Ray Train's default
(trainer_resources, below), and how the private cluster that a search starts on one machine (no --address) is
kept closed. Its processes listen on every interface in every version
(Ray binds `*:port`), so what keeps other hosts and users out is authentication:
- Ray >= 2.59: token authentication, on by default for a cluster that ray.init() starts (RAY_AUTH_MODE unset
  or "token"); RAY_AUTH_MODE=disabled would open it.
- Ray 2.52 to 2.58: token authentication only with RAY_AUTH_MODE=token in the environment.
- Ray < 2.52: no authentication at all; such a cluster is open to every host that reaches the machine. The
  search refuses to start one unless the environment says the network is trusted (OPEN_CLUSTER_OK: a
  sandbox, CI), or is pointed at a cluster the user secures (--address).
"""
from __future__ import annotations

import importlib.metadata
import os
import re
from typing import Mapping

import optuna
import ray
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from hpo.env_vars import switch
from mnist.errors import UserError

INSTALL_NAMES = {"ray": "ray[tune]"}  # what pip installs for the search
TRAIN_V2_DEFAULT_SINCE = (2, 51)  # Ray Train V2 unless RAY_TRAIN_V2_ENABLED says otherwise
TOKEN_AUTH_SINCE = (2, 52)  # RAY_AUTH_MODE=token
TOKEN_AUTH_DEFAULT_SINCE = (2, 59)  # ...and on by default for a cluster ray.init() starts
# "1": this machine's network is trusted (a sandbox, a CI runner), so a private cluster without authentication
# (Ray < 2.52) may start. Anything else, or unset: refused.
OPEN_CLUSTER_OK = "HPO_OPEN_RAY_CLUSTER"


def minor(version: str) -> tuple[int, int]:
    """(major, minor) of a version string such as 2.44.1 or 3.6.2.dev0."""
    major, minor_, *_ = (int(re.match(r"\d+", part).group()) for part in version.split("."))
    return major, minor_


def declared_range(package: str) -> SpecifierSet | None:
    """The versions of `package` this project declares (pyproject.toml, as installed), or None when it runs
    from a copy that is not installed."""
    try:
        requirements = importlib.metadata.requires("ccnet-hpo") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for line in requirements:
        requirement = Requirement(line)
        if requirement.name == package and requirement.marker is None:
            return requirement.specifier
    return None


def check_version(package: str, version: str) -> None:
    """One line naming the version there and the range that works, when `version` is outside the declared one."""
    supported = declared_range(package)
    if supported is not None and not supported.contains(version, prereleases=True):
        raise UserError(f"{package} {version} is installed; this project runs with {package}{supported} "
                        f"(pip install '{INSTALL_NAMES.get(package, package)}{supported}')")


def check_versions(ray_version: str = ray.__version__, optuna_version: str = optuna.__version__) -> None:
    check_version("ray", ray_version)
    check_version("optuna", optuna_version)


def check_private_cluster_closed(environ: Mapping[str, str] = os.environ, ray_version: str = ray.__version__) -> None:
    """Refuse, in one line, to start a private cluster that this Ray and this environment would leave open to
    other hosts (see the module's docstring)."""
    mode = environ.get("RAY_AUTH_MODE", "").strip().lower()
    version = minor(ray_version)
    if version >= TOKEN_AUTH_SINCE:
        if mode == "token" or (mode == "" and version >= TOKEN_AUTH_DEFAULT_SINCE):
            return
        said = f"RAY_AUTH_MODE={environ['RAY_AUTH_MODE']}" if mode else f"RAY_AUTH_MODE unset (Ray {ray_version})"
        raise UserError(f"{said} would start the search's private Ray cluster without authentication, open to every "
                        "host that reaches this machine: export RAY_AUTH_MODE=token (or join a cluster you "
                        "secure with --address)")
    if not switch(OPEN_CLUSTER_OK, environ):
        raise UserError(f"Ray {ray_version} has no authentication: the search's private cluster would be open to every "
                        f"host that reaches this machine; install ray>={'.'.join(map(str, TOKEN_AUTH_SINCE))}, join a "
                        f"cluster you secure with --address, or on a trusted network set {OPEN_CLUSTER_OK}=1")


def trainer_resources(environ: Mapping[str, str] = os.environ, ray_version: str = ray.__version__) -> dict:
    """ScalingConfig's arguments for the trainer itself. Ray Train V1 (the default before 2.51) holds a CPU for it
    besides the workers', so 2 workers on a 2-CPU machine would wait forever: told 0 here. V2 runs its controller
    on no CPU and refuses the argument."""
    flag = environ.get("RAY_TRAIN_V2_ENABLED")
    v2 = flag.strip().lower() in ("1", "true") if flag is not None else minor(ray_version) >= TRAIN_V2_DEFAULT_SINCE
    return {} if v2 else {"trainer_resources": {"CPU": 0}}


def version_mismatch(error: Exception) -> UserError | None:
    """Ray's refusal to join a cluster started with another Ray (or Python) version, as one line naming both;
    None for any other error."""
    text = " ".join(str(error).split())
    if "version mismatch" not in text.lower():
        return None
    rays, pythons = re.findall(r"Ray: (\S+)", text), re.findall(r"Python: (\S+)", text)
    if len(rays) == 2 and rays[0] != rays[1]:
        return UserError(f"the Ray cluster runs Ray {rays[0]} and this driver Ray {rays[1]}: a driver must run the "
                         f"cluster's Ray version (pip install 'ray[tune]=={rays[0]}'; this project runs with "
                         f"ray{declared_range('ray')})")
    if len(pythons) == 2:
        return UserError(f"the Ray cluster runs Python {pythons[0]} and this driver Python {pythons[1]}: Ray needs "
                         "the same Python on the driver and the cluster")
    return UserError(f"the Ray cluster's versions differ from this driver's ({text[:200]})")
