"""mnist's `train` as a Ray Tune trainable: same function, with Tune's report and checkpoint hooks.

Each epoch's checkpoint goes through `tune.report(..., checkpoint=...)`, so Tune keeps it in
the experiment's storage and hands it back after a crash (`tune.get_checkpoint`). The data
arrive once through Ray's object store (`tune.with_parameters`), never from a driver path.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from hpo.checkpoints import read_checkpoint, report_with_checkpoint
from hpo.cluster import torch_without_cuda
from mnist.data import MnistData
from mnist.train import train

# Fault injection for the crash-recovery tests: with this set to N, every trial raises once,
# right after reporting epoch N; a marker file in the trial folder makes it happen only once.
CRASH_ONCE_AT_EPOCH = "HPO_CRASH_ONCE_AT_EPOCH"


def _crash_once_if_asked(epoch: int) -> None:
    if str(epoch) != os.environ.get(CRASH_ONCE_AT_EPOCH):
        return
    marker = Path(tune.get_context().get_trial_dir()) / "crashed_once"
    if not marker.exists():
        marker.touch()
        raise RuntimeError(f"injected crash after epoch {epoch} ({CRASH_ONCE_AT_EPOCH})")


def where_it_runs(fake_gpus: bool = False) -> dict[str, Any]:
    """What a trial records about its placement: device, Ray's GPU ids, node. A trial given GPUs that its
    torch cannot use fails (a node that joined after the search's check), unless the GPUs are fake on purpose."""
    gpu_ids = [str(i) for i in ray.get_gpu_ids()]
    problem = torch_without_cuda(gpu_ids)
    if problem and not fake_gpus:
        raise GpuWithoutCuda(problem)
    # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPUs, so cuda:0 is the first of them.
    device = "cuda:0" if gpu_ids and torch.cuda.is_available() else "cpu"
    return {"device": device, "gpu_ids": ",".join(gpu_ids), "node": socket.gethostname(),
            "node_ip": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id()[:12]}


def restored_state() -> dict[str, Any] | None:
    """The trial's last checkpoint after a restart, else None; a trial that had trained before and has no
    checkpoint to continue from says that it starts over (on the console and in search.log)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        return read_checkpoint(checkpoint)
    context = tune.get_context()
    progress = Path(context.get_trial_dir()) / "result.json"
    if progress.exists() and progress.stat().st_size > 0:
        print(f"{context.get_trial_name()}: restarting from its first epoch: it reported epochs before but has no "
              "checkpoint to continue from", flush=True)
    return None


class GpuWithoutCuda(RuntimeError):
    """Ray gave the trial GPUs that this node's torch cannot use."""


def ccnet_trainable(config: dict[str, Any], data: MnistData | None = None, fake_gpus: bool = False) -> None:
    """Ray Tune function trainable: `config` is one full mnist config (see hpo.experiment.trial_config);
    `fake_gpus` lets GPUs that torch cannot see be held anyway (tests; hpo.cluster.FAKE_GPUS)."""
    placement = where_it_runs(fake_gpus)
    config = {**config, "device": "cuda" if placement["device"].startswith("cuda") else "cpu"}

    def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        report_with_checkpoint(tune.report, {**metrics, **placement, "precision": state["precision"]}, state)
        _crash_once_if_asked(metrics["epoch"])

    train(config, data=data, on_epoch=report, resume_from=restored_state())
