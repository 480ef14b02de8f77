"""Benchmark: the cost of going multi-node and data-parallel, measured on one machine.

    python -m benchmarks.cluster_cost [--num-samples 8] [--max-epochs 2] [--limit 8000]

(1) The same fixed search (FIFO, random sampling, so both runs train the same trials) on a
one-node local Ray cluster with 2 CPUs and on a two-node one with 1 CPU per node (both
started with ray.cluster_utils.Cluster): trials per minute of each, and their ratio.
(2) The winner's retraining in one process vs on 2 Ray Train workers (DDP, gloo): mean
epoch time of each, and their ratio. On a 2-core machine neither is meant to be faster: the
point is that the overhead is measured.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from hpo.data_parallel import train_data_parallel
from hpo.driver import run_search
from hpo.experiment import resolve_experiment, trial_config
from hpo.storage import ExperimentStore
from mnist.data import load_mnist
from mnist.errors import run_cli
from mnist.train import train


def trials_per_minute(nodes: int, experiment: dict, storage: Path) -> float:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2 // nodes, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=2 // nodes)
    cluster.wait_for_nodes()
    try:
        started = time.perf_counter()
        run_search(experiment, ExperimentStore(str(storage), f"{nodes}_nodes"), resume=False, address=cluster.address,
                   shared_storage=True)  # every node is this machine
        return experiment["num_samples"] / ((time.perf_counter() - started) / 60)
    finally:
        ray.shutdown()
        cluster.shutdown()


def mean_epoch_time(history: list[dict]) -> float:
    return statistics.fmean(row["epoch_time_s"] for row in history[1:] or history)  # the first epoch warms up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=8, help="trials of the fixed search")
    parser.add_argument("--max-epochs", type=int, default=2, help="epochs of every trial")
    parser.add_argument("--limit", type=int, default=8000, help="training images")
    args = parser.parse_args(argv)
    experiment = resolve_experiment({"num_samples": args.num_samples, "max_epochs": args.max_epochs,
                                     "grace_period": 1, "scheduler": "fifo", "searcher": "random",
                                     "max_concurrent": 2, "train": {"limit": args.limit}}, {}, "bench_cluster")
    with tempfile.TemporaryDirectory() as folder:
        one, two = (trials_per_minute(nodes, experiment, Path(folder)) for nodes in (1, 2))
        config = {**trial_config(experiment, {"lr": 1e-3, "batch_size": 64, "dropout": 0.3, "step_size": 2,
                                              "gamma": 0.8}), "epochs": 3, "threads": 1}
        data = load_mnist()
        single = mean_epoch_time(train(config, data=data))
        parallel = mean_epoch_time(train_data_parallel(config, data, 2, 0, str(Path(folder) / "ddp"))[0])
    print(f"search of {args.num_samples} trials x {args.max_epochs} epochs on {args.limit} images, 2 CPUs in all")
    print(f"one node (2 CPUs):        {one:.2f} trials/min")
    print(f"two nodes (1 CPU each):   {two:.2f} trials/min")
    print(f"retraining epoch time, 1 process (1 thread): {single:.2f} s; 2 DDP workers (1 thread each): {parallel:.2f} s")
    print(f"trials_per_min_ratio_two_vs_one_node: {two / one:.3f}")
    print(f"epoch_time_ratio_2_vs_1_workers: {parallel / single:.3f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
