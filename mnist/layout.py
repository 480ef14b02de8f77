"""The results folder's layout, named once: every file and folder that a training run, a search, best.py
or the reading tools write under `results/`. Every module that writes or reads one imports its name
from here, so a file is renamed (or a reader pointed elsewhere) in one place.
"""
from __future__ import annotations

from pathlib import Path

# Where everything goes unless a flag says otherwise (--out, --storage-path, --local-dir, ...).
RESULTS = "results"

# A training run, `python -m mnist.train`: results/train/<time>/.
TRAIN_RUNS = "train"
LAST_PT = "last.pt"  # every epoch: what --resume continues from
BEST_PT = "best.pt"  # the best validation epoch, calibrated at the end
CONFIG_JSON = "config.json"  # the resolved config, argv and git commit
METRICS_CSV = "metrics.csv"  # one row per epoch
CURVES_PNG = "curves.png"
TENSORBOARD = "tensorboard"  # a run's, and a search's, TensorBoard events

# An evaluation on the test set (mnist.evaluate, best.py): beside the checkpoint it evaluates.
METRICS_JSON = "metrics.json"
CONFUSION_MATRIX_PNG = "confusion_matrix.png"
MISCLASSIFIED_PNG = "misclassified.png"

# A search, `hpo/search.py`: results/<name>/ (Tune writes the trial_* folders beside these).
EXPERIMENT_JSON = "experiment.json"  # the resolved settings, argv, git commit and where the search started
OPTUNA_DB = "optuna.db"  # the Optuna study (SQLite): TPE's history, the dashboard's source
TRIALS_CSV = "trials.csv"  # one row per trial: its parameters, how it ended, its best and last val_acc
HISTORY_CSV = "history.csv"  # one row per trial and epoch
BEST_JSON = "best.json"  # the winner, by validation
REPORT_MD = "report.md"  # the search told for a person, with the plots below
ENDED_JSON = "ended.json"  # a search that ended by its time budget: final, not resumable
MLFLOW_JSON = "mlflow.json"  # a search tracked in MLflow: the store and its parent run (hpo.tracking)
SEARCH_LOG = "search.log"  # Ray's full log of the driver
TRIAL_CHECKPOINT = "checkpoint.pt"  # inside each of a trial's checkpoint_NNNNNN folders
# The report's plots.
SEARCH_HISTORY_PNG = "search_history.png"
PARALLEL_COORDINATES_PNG = "parallel_coordinates.png"
LEARNING_CURVES_PNG = "learning_curves.png"
IMPORTANCE_PNG = "importance.png"
ANYTIME_PNG = "anytime.png"  # the search's best-so-far against the epochs it trained
PLOTS = (SEARCH_HISTORY_PNG, PARALLEL_COORDINATES_PNG, LEARNING_CURVES_PNG, IMPORTANCE_PNG, ANYTIME_PNG)
# The driver's small files that a resume or best.py needs back from a URI storage.
DRIVER_FILES = (EXPERIMENT_JSON, OPTUNA_DB, TRIALS_CSV, HISTORY_CSV, BEST_JSON, ENDED_JSON, MLFLOW_JSON)
# What a finished search's summary is made of (MLflow keeps them as the parent run's artifacts).
SUMMARY_FILES = (EXPERIMENT_JSON, TRIALS_CSV, HISTORY_CSV, BEST_JSON, REPORT_MD, *PLOTS)

# best.py's retraining of the winner: results/<name>/best/ (and its baseline/ for the tutorial's setting).
BEST = "best"
BASELINE = "baseline"
MODEL_PT = "model.pt"  # the winner's first seed
ENSEMBLE_PT = "ensemble.pt"  # the winner's seeds as one model: what predict and the draw page serve
COMPARISON_JSON = "comparison.json"
COMPARISON_PNG = "comparison.png"
RETRAIN_RUNS = "runs"  # while best.py retrains: each run's state after every epoch, what --resume continues

# The reading tools (mnist.reading): their default outputs.
PREDICT_MISREAD_PNG = f"{RESULTS}/predict/misread.png"
HANDWRITING_SETS = f"{RESULTS}/handwriting"  # the rendered scans set lives in its scans/ folder
FIELD_REPORT_JSON = f"{RESULTS}/field_report.json"
EXPORTS = f"{RESULTS}/export"  # where the shipped reader is exported to (its own folder is inside the package)
FIELD_REPORT_PLOTS = f"{RESULTS}/field_report"  # the field report's reliability diagram and confusion matrices of each model


def served_model(best_folder: Path) -> Path:
    """The model a best/ folder serves: its seeds' ensemble where there is one, else the first seed's model."""
    ensemble = best_folder / ENSEMBLE_PT
    return ensemble if ensemble.exists() else best_folder / MODEL_PT
