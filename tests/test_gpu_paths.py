"""The GPU paths, checked on CPU: what Ray cannot place, a torch that cannot use the GPUs it is given,
multi-node storage, concurrency with fractional GPUs, CUDA's math chosen deliberately.

Ray's view of the cluster is faked here (monkeypatched `ray.cluster_resources` / `ray.nodes`);
tests/test_search.py runs a real Ray cluster that advertises GPUs this machine does not have.
"""
from __future__ import annotations

import pytest
import ray
import torch

from hpo import cluster
from hpo.cluster import (check_storage_shared, torch_without_cuda, trial_resources,
                         wait_for_trial_resources)
from hpo.experiment import EXPERIMENT_DEFAULTS
from hpo.trainable import GpuWithoutCuda, where_it_runs
from mnist.device import set_cuda_math
from mnist.errors import UserError
from tests.helpers import refused


def experiment(**settings) -> dict:
    return {**EXPERIMENT_DEFAULTS, **settings}


@pytest.fixture
def cluster_of(monkeypatch: pytest.MonkeyPatch):
    """Make Ray report a cluster of these resources (one dict per call to cluster_resources, the last repeats)."""
    def fake(*views: dict[str, float]) -> list[dict]:
        calls: list[dict] = []

        def cluster_resources() -> dict[str, float]:
            calls.append(views[min(len(calls), len(views) - 1)])
            return calls[-1]
        monkeypatch.setattr(ray, "cluster_resources", cluster_resources)
        monkeypatch.setattr(cluster.time, "sleep", lambda _: None)
        return calls
    return fake


@pytest.mark.parametrize("gpus, gpus_per_trial, expected", [
    (8, 1, 8), (8, 0.5, 16), (8, 0.25, 32), (1, 0.25, 4), (2, 1, 2)])
def test_concurrency_follows_the_gpu_fraction(cluster_of, gpus: int, gpus_per_trial: float, expected: int) -> None:
    cluster_of({"CPU": 64, "GPU": gpus})
    resources, concurrent = trial_resources(experiment(gpus_per_trial=gpus_per_trial, num_samples=50))
    assert resources == {"cpu": 1, "gpu": gpus_per_trial} and concurrent == expected


def test_fewer_gpus_than_trials_prints_the_packing_command(cluster_of, capsys: pytest.CaptureFixture) -> None:
    cluster_of({"CPU": 16, "GPU": 1})
    _, concurrent = trial_resources(experiment(num_samples=20))  # default: 1 GPU a trial where there are GPUs
    assert concurrent == 1 and "--gpus-per-trial 0.25" in capsys.readouterr().out
    trial_resources(experiment(num_samples=20, gpus_per_trial=0.25))
    assert "--gpus-per-trial 0.25" not in capsys.readouterr().out  # packed already: nothing to say


def test_a_search_waits_for_gpu_workers_to_join_then_refuses_in_one_line(cluster_of,
                                                                       capsys: pytest.CaptureFixture) -> None:
    calls = cluster_of({"CPU": 4}, {"CPU": 4}, {"CPU": 12, "GPU": 2})  # an autoscaler adds a GPU node
    assert wait_for_trial_resources(1, 1, wait_s=60)["GPU"] == 2 and len(calls) == 3
    assert "waiting up to 60 s for the cluster to offer a trial's 1 CPU and 1 GPU" in capsys.readouterr().out
    cluster_of({"CPU": 4})  # none joins
    with pytest.raises(UserError, match="has no GPUs .4 CPUs. after waiting 0.01 s: use --gpus-per-trial 0"):
        wait_for_trial_resources(1, 1, wait_s=0.01)


def test_a_multi_node_cluster_needs_storage_every_node_reaches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}, {"Alive": True}, {"Alive": False}])
    with pytest.raises(UserError, match="has 2 nodes and --storage-path /data/results is a folder on this machine"):
        check_storage_shared(True, False, "/data/results")
    check_storage_shared(True, True, "/data/results")  # the user says every node mounts it
    check_storage_shared(False, False, "s3://bucket/results")  # a bucket
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}])
    check_storage_shared(True, False, "results")  # one machine


def test_a_trial_given_a_gpu_its_torch_cannot_use_fails_naming_node_and_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    problem = torch_without_cuda([0])
    assert f"its torch {torch.__version__} is " in problem and "gives trials GPUs" in problem
    assert "pip install torch --index-url https://download.pytorch.org/whl/" in problem
    assert ("built without CUDA" in problem) == (torch.version.cuda is None)
    with pytest.raises(GpuWithoutCuda, match="gives trials GPUs"):
        where_it_runs(fake_gpus=False)  # the silent fallback to one CPU thread, refused
    assert torch_without_cuda([]) is None  # no GPU given: nothing to say


def test_cuda_math_is_chosen_deliberately() -> None:
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        assert set_cuda_math(torch.device("cuda"), exact=True) == "fp32"
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert set_cuda_math(torch.device("cuda"), exact=False) == "tf32"
        assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
        before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        assert set_cuda_math(torch.device("cpu"), exact=True) == "fp32"
        assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == before  # CPU: untouched
    finally:
        (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
         torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) = saved


@pytest.mark.parametrize("value", ["0.5", "1.5", "-1"])
def test_fractional_data_parallel_gpus_are_refused_in_one_line(capsys: pytest.CaptureFixture, value: str) -> None:
    from hpo.best import main as best_main

    err = refused(best_main, ["--search", "nowhere", "--workers", "2", "--gpus-per-worker", value], capsys)
    assert "--gpus-per-worker must be 0 or a whole number of GPUs" in err and "NCCL" in err
