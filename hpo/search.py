"""Search CCNet's hyperparameters with Ray Tune + Optuna TPE + ASHA.

    python hpo/search.py --num-samples 50                      # the full search (experiments/default.yaml)
    python hpo/search.py --experiment experiments/cpu-quick.yaml
    python hpo/search.py --address HOST:PORT ...               # on an existing Ray cluster
    python hpo/search.py --resume --name NAME                  # continue an interrupted search
    python hpo/search.py ... --dashboard [PORT]                # watch it in the browser (optuna-dashboard)
    python hpo/search.py ... --mlflow [URI]                    # track it in MLflow (default sqlite:///results/mlflow.db)

Results go to <storage-path>/<name>/: trials.csv, best.json, plots, report.md, TensorBoard events.
--storage-path may be a URI (s3://bucket/dir, gs://..., any that pyarrow takes): trials write their
checkpoints there from every node, and the driver's files are mirrored in <local-dir>/<name>/.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from hpo.checkpoints import drop_stale_checkpoints
from hpo.cluster import check_address, fake_gpus
from hpo.dashboard import DEFAULT_PORT, HOST
from hpo.driver import SearchInterrupted, run_search
from hpo.experiment import FLAG_SETTINGS, load_experiment_file, resolve_experiment, saved_experiment
from hpo.progress import search_log
from hpo.storage import ExperimentStore, is_uri, newest_experiment
from hpo.summary import NothingFinished, console_summary, summarize
from hpo.tracking import DEFAULT_STORE, check_store, finish_search_run, resolve_store, tracking_of
from hpo.trial_terms import METRIC
from mnist.config import KNOBS, add_table_flags
from mnist.errors import UserError, run_cli, shell_path
from mnist.layout import ENDED_JSON, RESULTS, SEARCH_LOG
from mnist.webserver import check_port_free


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default=None, help="experiment YAML (default: built-in = experiments/default.yaml)")
    parser.add_argument("--name", default=None, help="experiment folder name (default: <experiment>-<time>)")
    parser.add_argument("--storage-path", default=RESULTS,
                        help="where experiment folders go: a folder every node reaches, or a URI such as "
                             f"s3://bucket/dir (default {RESULTS}/)")
    parser.add_argument("--local-dir", default=RESULTS,
                        help="with a URI --storage-path: where the driver keeps its own copy of the summaries, "
                             f"optuna.db and TensorBoard events (default {RESULTS}/)")
    add_table_flags(parser, FLAG_SETTINGS)  # --num-samples, --max-epochs, ...: the experiment settings' table
    add_table_flags(parser, {"limit": KNOBS["limit"]})  # the one training knob a quick search sets from the CLI
    parser.add_argument("--resume", action="store_true", help="continue the experiment --name (default: the newest)")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local one)")
    parser.add_argument("--wait-for-resources", type=float, default=None, metavar="SECONDS",
                        help="on a joined cluster, wait this long for the CPUs/GPUs a trial asks (an autoscaler "
                             "adding workers) before refusing (default 600; on this machine's own cluster 0)")
    parser.add_argument("--shared-storage", action="store_true",
                        help="a local --storage-path is mounted at the same path on every node of the cluster "
                             "(else a multi-node cluster needs a bucket URI)")
    parser.add_argument("--dashboard", type=int, nargs="?", const=DEFAULT_PORT, default=None, metavar="PORT",
                        help=f"serve optuna-dashboard on 127.0.0.1:PORT (default {DEFAULT_PORT}) while the search runs")
    parser.add_argument("--mlflow", nargs="?", const=DEFAULT_STORE, default=None, metavar="URI",
                        help="track the search in MLflow: a parent run, a nested run per trial (default store "
                             f"{DEFAULT_STORE}; or a tracking server's http://HOST:PORT); needs pip install -e '.[mlflow]'")
    return parser.parse_args(argv)


def check_name(name: str) -> str:
    """An experiment's name is one folder inside --storage-path: not a path, not '.' or '..'."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise UserError(f"--name {name!r}: must name one folder inside --storage-path (no '/', not '.' or '..', "
                        "not starting with '.')")
    return name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_address(args.address)  # a malformed --address or RAY_ADDRESS is refused before anything starts
    fake_gpus()  # so is a test switch set to something it does not take
    if args.wait_for_resources is not None and not 0 <= args.wait_for_resources < float("inf"):
        raise UserError(f"--wait-for-resources must be a number of seconds >= 0, got {args.wait_for_resources}")
    if args.dashboard is not None:  # a busy port is refused now, not after the cluster has started
        check_port_free(args.dashboard, HOST)
    mlflow_uri = resolve_store(args.mlflow) if args.mlflow is not None else None
    if mlflow_uri and not args.resume:  # MLflow missing, or a store it cannot use, refused before anything starts
        check_store(mlflow_uri)
    if args.resume:
        check_resume_flags(args)
        if not args.name and is_uri(args.storage_path):
            raise UserError(f"{args.storage_path}: --resume with a URI storage needs --name")
        name = args.name or newest_experiment(Path(args.storage_path)).name
        store = ExperimentStore(args.storage_path, check_name(name), args.local_dir)
    else:
        file_values = load_experiment_file(args.experiment) if args.experiment else {}
        overrides = {key: getattr(args, key) for key in FLAG_SETTINGS}
        if args.limit is not None:
            file_values = {**file_values, "train": {**file_values.get("train", {}), "limit": args.limit}}
        experiment = resolve_experiment(file_values, overrides, args.experiment or "built-in experiment")
        stem = Path(args.experiment).stem if args.experiment else "default"
        store = ExperimentStore(args.storage_path, check_name(args.name or f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"),
                                args.local_dir)
    with store.lock("search.py"):  # one driver per experiment folder, for its whole life
        return search(store, args, None if args.resume else experiment, mlflow_uri)


def resume_command(store: ExperimentStore, storage_path: str) -> str:
    """The command that continues this search, as it can be pasted from the folder the user is in."""
    return (f"python {shell_path(__file__)} --resume --name {shlex.quote(store.name)} "
            f"--storage-path {shell_path(storage_path)}")


def check_resume_flags(args: argparse.Namespace) -> None:
    """A resume continues the search as it was started: a flag that would change what it searches is refused in
    one line, not ignored (Tune restores its trials, budget and searcher as saved)."""
    given = [f"--{key.replace('_', '-')}" for key in [*FLAG_SETTINGS, "limit"] if getattr(args, key) is not None]
    given += ["--experiment"] if args.experiment else []
    if given:
        raise UserError(f"--resume continues the search with the settings it started with (its experiment file, "
                        f"trials, budget, scheduler, searcher, seed and space); {', '.join(given)} would change them. "
                        "For more trials or epochs start a new search (another --name); its winner is compared "
                        "the same way")


def check_resumed_tracking(store: ExperimentStore, mlflow_uri: str | None) -> None:
    """A resumed search keeps the MLflow tracking it started with: --mlflow may only name that store."""
    tracking = tracking_of(store.local)
    if mlflow_uri and (tracking is None or tracking["tracking_uri"] != mlflow_uri):
        started = f"with --mlflow {tracking['tracking_uri']}" if tracking else "without --mlflow"
        raise UserError(f"{store}: started {started}; a resumed search keeps its tracking (drop --mlflow)")
    if tracking:
        print(f"MLflow: continuing parent run {tracking['parent_run_id']} in {tracking['tracking_uri']}", flush=True)


def summarize_search(store: ExperimentStore, results: Any, experiment: dict, resources: dict
                     ) -> tuple[pd.DataFrame, dict, dict | None] | None:
    """The finished search's trials.csv, best.json, report and plots, its stale checkpoints dropped, its MLflow run
    ended: the trials, the winner and the tracking; None when a time budget ended it before any trial finished."""
    tracking = tracking_of(store.local)
    try:
        trials, best = summarize(store.local, results, experiment, resources, sys.argv)
    except NothingFinished:
        if not (store.local / ENDED_JSON).exists():
            raise
        if tracking:
            finish_search_run(tracking, store.local, None)
        print(f"time budget reached ({experiment['time_budget_s']:g} s) before any trial finished an "
              "epoch: nothing to summarize", flush=True)
        return None
    drop_stale_checkpoints(trials, store)
    if tracking:
        finish_search_run(tracking, store.local, best)
    return trials, best, tracking


def search(store: ExperimentStore, args: argparse.Namespace, experiment: dict | None, mlflow_uri: str | None) -> int:
    """Run (experiment given) or resume (None: its saved settings) the search in `store`, holding its lock."""
    if experiment is None:
        store.pull()
        experiment = saved_experiment(store.local)
        check_resumed_tracking(store, mlflow_uri)
        print(f"resuming {store} with its saved experiment settings", flush=True)
    print(f"search {store.name}: {experiment['num_samples']} trials, {experiment['max_epochs']} epochs at most; "
          f"Ray's full log: {store.local / SEARCH_LOG}", flush=True)
    try:
        with search_log(store.local):
            results, resources = run_search(experiment, store, args.resume, args.address, args.dashboard,
                                            args.wait_for_resources, args.shared_storage, mlflow_uri,
                                            resume_command(store, args.storage_path))
            try:
                summary = summarize_search(store, results, experiment, resources)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM while the results are written (each file whole)
                raise SearchInterrupted("while its results were written") from None
            if summary is None:
                return 0
            trials, best, tracking = summary
    except SearchInterrupted as interrupted:
        print(f"interrupted, {interrupted}; continue with: {resume_command(store, args.storage_path)}", file=sys.stderr)
        return 130
    store.push()
    print(console_summary(trials, experiment["search_space"]))
    if (store.local / ENDED_JSON).exists():
        print(f"time budget reached ({experiment['time_budget_s']:g} s): the summary holds the trials that "
              "finished by then", flush=True)
    print(f"winner: trial {best['trial']}, val_acc {best[METRIC]:.4f} at epoch {best['epoch']}")
    if tracking:
        print(f"MLflow: parent run {tracking['parent_run_id']}, a nested run per trial, in {tracking['tracking_uri']} "
              f"(mlflow ui --backend-store-uri {tracking['tracking_uri']})")
    mirror = f", summaries also in {store.local}" if store.remote else ""
    print(f"results in {store} ({store.disk_usage() / 2**20:.1f} MiB on disk{mirror}); "
          f"next: python {shell_path(Path(__file__).with_name('best.py'))} --search {shell_path(str(store))}")
    return 0


if __name__ == "__main__":
    run_cli(main)
