"""Data-parallel training of one configuration with Ray Train's TorchTrainer (DDP).

Every worker runs mnist's `train` unchanged: Ray Train sets up the process group (gloo on
CPU, NCCL on GPU), `train` sees it, wraps CCNet in DistributedDataParallel and trains each
global batch of `batch_size` split across the N workers, so the batch size, the number of
steps and the learning rate are those of one process (nothing is rescaled). Only rank 0
writes checkpoints. The data reach the workers through Ray's object store.
"""
from __future__ import annotations

from typing import Any

import ray
import torch
from ray import train as ray_train
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer, get_device

from hpo.checkpoints import read_checkpoint, report_with_checkpoint
from hpo.cluster import check_gpus_usable, check_storage_shared, connect, shutdown_ray
from hpo.ray_versions import trainer_resources
from hpo.storage import is_uri
from mnist.data import MnistData
from mnist.errors import UserError
from mnist.train import train



def _worker_loop(loop_config: dict[str, Any]) -> None:
    """What each Ray Train worker runs."""
    data = ray.get(loop_config["data"])
    rank = ray_train.get_context().get_world_rank()
    if loop_config["config"]["device"] == "cuda":
        torch.cuda.set_device(get_device())  # "cuda" in mnist's config = this worker's GPU

    def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        if rank != 0:
            ray_train.report(metrics)
            return
        report_with_checkpoint(ray_train.report, metrics, state)

    train(loop_config["config"], data=data, on_epoch=report)


def train_data_parallel(config: dict[str, Any], data: MnistData, workers: int, gpus_per_worker: int,
                        storage: str, address: str | None = None,
                        shared_storage: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train `config` on `workers` Ray Train workers; returns (per-epoch metrics, final checkpoint state).

    `storage` (a folder every node reaches, or a URI) receives rank 0's checkpoints. Each worker takes
    whole GPUs: NCCL refuses two ranks on one GPU, and Ray would pack fractional workers together.
    """
    if gpus_per_worker < 0 or int(gpus_per_worker) != gpus_per_worker:
        raise UserError(f"gpus per data-parallel worker must be 0 or a whole number, got {gpus_per_worker}")
    use_gpu = gpus_per_worker > 0
    config = {**config, "device": "cuda" if use_gpu else "cpu", "threads": 1}
    started_here = not ray.is_initialized()
    if started_here:
        connect(address)
    try:
        check_storage_shared(not is_uri(storage), shared_storage, storage)
        check_gpus_usable(gpus_per_worker)
        trainer = TorchTrainer(
            _worker_loop,
            train_loop_config={"config": config, "data": ray.put(data)},
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                         resources_per_worker={"CPU": 1, "GPU": gpus_per_worker} if use_gpu
                                         else {"CPU": 1}, **trainer_resources()),
            run_config=RunConfig(name="data_parallel", storage_path=storage),
        )
        result = trainer.fit()
    finally:
        if started_here:
            shutdown_ray()
    if result.checkpoint is None:
        raise RuntimeError(f"data-parallel training ended without a checkpoint ({result.error})")
    state = read_checkpoint(result.checkpoint)
    return state["history"], state
