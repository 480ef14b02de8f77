"""Retrain the search's winner from scratch, test it once, and compare with the tutorial's setting.

    python hpo/best.py                                  # the newest search under results/
    python hpo/best.py --search results/NAME --seeds 3 --epochs 20
    python hpo/best.py --select last --full --no-baseline
    python hpo/best.py --search results/NAME --resume  # continue a stopped retraining where it stopped
    python hpo/best.py --search s3://bucket/dir/NAME    # a search kept on a URI storage
    python hpo/best.py --mlflow [URI]                   # log it to MLflow, register the winner (ONNX)

Writes <search>/best/: ensemble.pt (the seeds' models as one), model.pt (the first seed's, with its
config), metrics.json, confusion_matrix.png,
misclassified.png, curves.png, comparison.json and comparison.png (winner vs the tutorial's
setting, same seeds: the gain with its 95% interval, McNemar per seed, time-to-accuracy), and
baseline/ with the tutorial setting's own model and evaluation.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hpo.retrain import Fit, print_comparison, retrain_winner, staging_folder
from hpo.storage import ExperimentStore, join_uri, newest_experiment, split_experiment
from hpo.tracking import DEFAULT_STORE, REGISTERED_MODEL, check_store, log_retraining, resolve_store, tracking_of
from mnist.calibration import calibrate_checkpoint
from mnist.errors import UserError, run_cli
from mnist.layout import (BEST, COMPARISON_JSON, COMPARISON_PNG, CONFUSION_MATRIX_PNG, ENSEMBLE_PT, HANDWRITING_SETS,
                          METRICS_JSON, MISCLASSIFIED_PNG, MODEL_PT, RESULTS)
from mnist.reading.calibrate import REAL_SET_RISK, SetCalibration

# --mlflow given without a URI: the store the search was tracked in, else DEFAULT_STORE.
SEARCH_STORE = "<the search's store>"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search", default=None,
                        help="a search folder or URI (default: the newest finished under --storage-path)")
    parser.add_argument("--experiment", dest="old_search_flag", default=None, metavar="SEARCH",
                        help="the old name of --search (search.py's --experiment is an experiment file)")
    parser.add_argument("--storage-path", default=RESULTS, help="where searches are (default results/)")
    parser.add_argument("--local-dir", default=RESULTS,
                        help="with a URI --experiment: the local folder its files are copied to and best/ is "
                             "written in before it is copied back (default results/)")
    parser.add_argument("--select", choices=("best", "last"), default="best",
                        help="rank trials by val_acc at their best epoch (default) or at their last epoch")
    parser.add_argument("--seeds", type=int, default=5,
                        help="retrain winner and baseline with the same K seeds; report the paired gain (default 5)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of retraining (default: the search's budget)")
    parser.add_argument("--full", action="store_true", help="train on train+validation (all 60,000 images)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a stopped retraining: finished runs are kept, a stopped one continues from "
                             "its last epoch (same search, --select, --seeds, --epochs and --full)")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also retrain the tutorial's setting at the same budget (default on)")
    parser.add_argument("--workers", type=int, default=1,
                        help="data-parallel workers (Ray Train, DDP); the global batch stays the trial's, "
                             "each worker takes batch/N, the learning rate is unchanged (default 1: plain)")
    parser.add_argument("--gpus-per-worker", type=float, default=0,
                        help="GPUs of each data-parallel worker: 0 or whole GPUs (NCCL refuses two workers on one GPU)")
    parser.add_argument("--shared-storage", action="store_true",
                        help="with --workers > 1 on a multi-node cluster: the experiment folder is mounted at the "
                             "same path on every node")
    parser.add_argument("--address", default=None,
                        help="Ray cluster for --workers > 1 (default: RAY_ADDRESS, else a local one)")
    parser.add_argument("--calibration", choices=("sets", "validation"), default="sets",
                        help="fit each model's temperature and 'not sure' threshold on MNIST validation and the tune "
                             "halves of the real sets under --sets (default; mnist.reading.calibrate: sure answers "
                             f"wrong at most {100 * REAL_SET_RISK:g}%% of the time on each), or on MNIST validation alone")
    parser.add_argument("--sets", default=HANDWRITING_SETS,
                        help=f"the real sets, written there when missing (default {HANDWRITING_SETS})")
    parser.add_argument("--mlflow", nargs="?", const=SEARCH_STORE, default=None, metavar="URI",
                        help="log the retraining and the comparison to MLflow and register the winner (as ONNX) "
                             f"as a version of the model {REGISTERED_MODEL!r} (default store: the search's own, "
                             f"else {DEFAULT_STORE}); needs pip install -e '.[mlflow]'")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if not (args.gpus_per_worker >= 0 and float(args.gpus_per_worker).is_integer()):
        raise UserError(f"--gpus-per-worker must be 0 or a whole number of GPUs, got {args.gpus_per_worker:g}: Ray would "
                        "pack fractional workers onto one GPU, and NCCL refuses two ranks on one GPU")
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {args.epochs}")
    if args.old_search_flag:  # kept so that old commands still run; says its new name
        print("note: best.py's --experiment is now --search (a search folder; search.py's --experiment is an "
              "experiment file)", file=sys.stderr)
    location = args.search or args.old_search_flag or str(newest_experiment(Path(args.storage_path), finished=True))
    store = ExperimentStore(*split_experiment(location), local_root=args.local_dir)
    if not store.exists():
        raise UserError(f"{location}: no such experiment folder")
    with store.lock("best.py"):  # no search and no other best.py writes this experiment meanwhile
        store.pull()
        mlflow_uri = None
        if args.mlflow is not None:  # checked before the retraining's minutes
            mlflow_uri = resolve_store((tracking_of(store.local) or {}).get("tracking_uri", DEFAULT_STORE)
                                       if args.mlflow is SEARCH_STORE else args.mlflow)
            check_store(mlflow_uri)
        # Ray Train's runs (workers > 1) go where every node reaches: beside the experiment.
        train_storage = (join_uri(store.location, BEST) if store.remote
                         else str(staging_folder(store.local).resolve()))
        fit = Fit(args.workers, int(args.gpus_per_worker), args.address, train_storage, args.shared_storage)
        calibrate = SetCalibration(Path(args.sets)) if args.calibration == "sets" else calibrate_checkpoint
        summary = retrain_winner(store.local, args.select, args.seeds, args.epochs, args.full, args.baseline, fit,
                                 args.resume, calibrate)
        version = mlflow_uri and log_retraining(mlflow_uri, store.local, store.name, summary)
        store.push(BEST)
    print_comparison(summary)
    print(f"wrote {store}/{BEST}: {ENSEMBLE_PT}, {MODEL_PT}, {METRICS_JSON}, {COMPARISON_JSON}, {COMPARISON_PNG}, "
          f"{CONFUSION_MATRIX_PNG}, {MISCLASSIFIED_PNG}")
    if version:
        print(f"MLflow: the retraining logged in {mlflow_uri}; the winner registered as {REGISTERED_MODEL!r} "
              f"version {version} (ONNX, with its signature and an example)")
    return 0


if __name__ == "__main__":
    run_cli(main)
