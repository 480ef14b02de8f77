"""Benchmark: the project's search beside the tools people would pick instead; the same task, the same wall clock.

    python -m benchmarks.peers [--budget 360] [--seeds 0 1 2 3 4] [--arms default optuna dehb ...]
                               [--max-epochs 9] [--limit 12000] [--max-concurrent 2]

Every arm searches the default search space for CCNet on the same data (the first --limit training images,
validation as every search), at most --max-epochs epochs a trial, two trials at once (one CPU thread each), for
--budget seconds of wall clock counted from the moment the arm starts, so that each tool's own overhead (Ray's
start, a dask cluster, a sampler's model) counts as it would for a user. An epoch that ends after the budget
does not count. The arms (peers: `pip install -e '.[peers]'` and `pip install --no-deps dehb`, see pyproject.toml;
one not installed is skipped, and says why):
    default       hpo/search.py's defaults: our Optuna searcher (stopped trials told PRUNED), ASHA with the
                  budget-tied grace period, the tutorial's setting first
    random-asha   random sampling with the same ASHA: the floor a model of the results must beat
    stock-optuna  Ray Tune's stock OptunaSearch (stopped trials told COMPLETE) with the same ASHA
    optuna        plain Optuna without Ray: TPE with its Hyperband pruner, the tutorial's setting enqueued
                  first, two processes on one study (a journal file)
    dehb          DEHB (differential evolution + Hyperband; two dask workers); it cannot start from a given
                  setting, so the tutorial's is not tried first
    smac          SMAC3's MultiFidelityFacade (random forest + Hyperband; two dask workers), the tutorial's
                  setting in its initial design
(BOHB itself is not an arm: SMAC3's multi-fidelity facade is its maintained successor, by the same group;
hpbandster, BOHB's own package, has had no release since 2019.)

Measured for each arm and seed, from every epoch trained: the best val_acc found by every moment of the budget
(the anytime curve), the minutes to first pass the tutorial's setting's final val_acc (the default arm's first
trial, which trains the tutorial's setting for the full epochs on the same data and seed), the best at the end,
the epochs trained, and the share of the wall clock spent training (training seconds / (budget x trials at
once)). Then the default minus each other arm, paired over seeds, with scipy's 95% interval, at every point of
the curve. Writes anytime.png into the run's folder (--storage-path/--name); the same command with the same
--name continues a stopped run (benchmarks/arms.py). Ends with lines to parse:
    ARM_best_val_acc_pct: X   ARM_minutes_to_tutorial: M   ARM_train_share: S
    default_minus_ARM_worst_interval_points: [LOW, HIGH] at T min (the point of the curve least in our favour)
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from benchmarks.arms import BenchRun, bench_parser, checked_bench_flags, spread
from benchmarks.peer_tools import PEER_RUNNERS, PeerTask, not_installed, read_epoch_log
from hpo.comparison import paired_gain
from hpo.driver import run_search
from hpo.experiment import resolve_experiment
from hpo.storage import ExperimentStore
from hpo.summary import NothingFinished, trial_tables
from mnist.errors import UserError, run_cli
from mnist.plots import save_figure

# The project's own arms: the searcher each runs with hpo/search.py's other defaults.
RAY_ARMS = {"default": "tpe", "random-asha": "random", "stock-optuna": "tpe-complete"}
ARMS = [*RAY_ARMS, *PEER_RUNNERS]
# Points of the anytime curve: the best so far every 1/60 of the budget (6 s of a 6-minute budget).
CURVE_POINTS = 61
# A Ray arm's trials are counted by the budget, not by a number: more than any budget here can start.
UNBOUNDED_SAMPLES = 100_000


def task_experiment(seed: int, searcher: str, max_epochs: int, limit: int, workers: int, budget_s: float,
                    ) -> dict[str, Any]:
    """The experiment every arm shares (the default space, data, budget and seed); `searcher` for Ray's arms."""
    return resolve_experiment({"num_samples": UNBOUNDED_SAMPLES, "max_epochs": max_epochs, "searcher": searcher,
                               "max_concurrent": workers, "seed": seed, "time_budget_s": budget_s,
                               "train": {"limit": limit}}, {}, f"benchmarks.peers seed {seed}")


def figures(epochs: list[dict[str, Any]], started: float, budget_s: float, workers: int, wall_s: float,
            tutorial_val_acc: float | None) -> dict[str, Any]:
    """An arm's JSON figures from its epochs (each with "time", "val_acc", "epoch_time_s"): only the epochs that
    ended within the budget count."""
    counted = sorted(([line["time"] - started, line["val_acc"], line["epoch_time_s"]] for line in epochs
                      if line["time"] - started <= budget_s), key=lambda line: line[0])
    train_s = float(sum(line[2] for line in counted))
    return {"epochs_log": counted, "epochs": len(counted), "wall_s": wall_s, "budget_s": budget_s,
            "best_val_acc": max((line[1] for line in counted), default=None), "train_s": train_s,
            "train_share": train_s / (budget_s * workers), "tutorial_val_acc": tutorial_val_acc}


def measure_ray_arm(searcher: str, seed: int, args: Any, address: str | None, folder: Path) -> dict[str, Any]:
    experiment = task_experiment(seed, searcher, args.max_epochs, args.limit, args.max_concurrent, args.budget)
    started = time.time()
    results, _ = run_search(experiment, ExperimentStore(str(folder.parent), folder.name), resume=False,
                            address=address)
    wall_s = time.time() - started
    try:
        trials, history = trial_tables(results, experiment)
    except NothingFinished:  # no trial started within the budget
        trials, history = None, pd.DataFrame()
    if history.empty:  # no epoch ended: an arm with nothing to show
        return figures([], started, args.budget, args.max_concurrent, wall_s, None)
    # Tune's timestamp: when the epoch was reported (whole seconds).
    epochs = [{"time": float(row["timestamp"]), "val_acc": float(row["val_acc"]),
               "epoch_time_s": float(row["epoch_time_s"])} for _, row in history.iterrows()]
    tutorial = history[(history["trial"].isin(trials.loc[trials["baseline"], "trial"]))
                       & (history["epoch"] == experiment["max_epochs"])
                       & (history["timestamp"] - started <= args.budget)]
    tutorial_val_acc = float(tutorial["val_acc"].iloc[0]) if not tutorial.empty else None
    return figures(epochs, started, args.budget, args.max_concurrent, wall_s, tutorial_val_acc)


def measure_peer(arm: str, seed: int, args: Any, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True)
    experiment = task_experiment(seed, "tpe", args.max_epochs, args.limit, args.max_concurrent, args.budget)
    started = time.time()
    task = PeerTask(experiment, args.budget, args.max_concurrent, folder / "epochs.jsonl", started)
    PEER_RUNNERS[arm](task, folder)
    return figures(read_epoch_log(task.log), started, args.budget, args.max_concurrent, time.time() - started, None)


def best_so_far(row: dict[str, Any], grid: np.ndarray) -> np.ndarray:
    """The best val_acc found by each moment of `grid` (seconds); NaN before the first epoch ended."""
    times = np.array([line[0] for line in row["epochs_log"]], float)
    values = np.array([line[1] for line in row["epochs_log"]], float)
    curve = np.full(len(grid), np.nan)
    for index, moment in enumerate(grid):
        done = values[times <= moment]
        if done.size:
            curve[index] = done.max()
    return curve


def minutes_to_pass(row: dict[str, Any], target: float | None) -> float | None:
    """When the arm's best first rose above `target` (strictly), in minutes since it started; None if never."""
    if target is None:
        return None
    passed = [line[0] for line in row["epochs_log"] if line[1] > target]
    return min(passed) / 60 if passed else None


def paired_curve(ours: list[np.ndarray], theirs: list[np.ndarray]) -> list[dict[str, Any] | None]:
    """Ours minus theirs at every point of the curve, paired over seeds (None where a seed has no value yet)."""
    ours_array, theirs_array = np.array(ours), np.array(theirs)
    points: list[dict[str, Any] | None] = []
    for index in range(ours_array.shape[1]):
        a, b = ours_array[:, index], theirs_array[:, index]
        points.append(None if np.isnan(a).any() or np.isnan(b).any() else paired_gain(a, b))
    return points


def worst_point(points: list[dict[str, Any] | None]) -> int | None:
    """The point least in our favour: the lowest interval (or mean, with one seed)."""
    scored = [(point["gain_ci95_points"][0] if point["gain_ci95_points"] else point["gain_points"], index)
              for index, point in enumerate(points) if point is not None]
    return min(scored)[1] if scored else None


def describe_gain(point: dict[str, Any] | None) -> str:
    if point is None:
        return "no value yet"
    interval = point["gain_ci95_points"]
    return f"{point['gain_points']:+.3f}" + (f" [{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else "")


def plot_curves(curves: dict[str, list[np.ndarray]], grid: np.ndarray, path: Path) -> None:
    """Best val_acc so far against minutes of wall clock: mean over seeds, band = min..max."""
    figure, axis = plt.subplots(figsize=(8, 4.5))
    highest = 0.0
    for arm, arm_curves in curves.items():
        stacked = 100 * np.array(arm_curves)
        seeds_with_value = (~np.isnan(stacked)).sum(axis=0)
        # The mean once every seed has a value (as the paired differences), the band from the first one on.
        every, any_ = seeds_with_value == len(arm_curves), seeds_with_value > 0
        mean = stacked[:, every].mean(axis=0)
        line, = axis.plot(grid[every] / 60, mean, label=f"{arm} ({len(arm_curves)} seeds)")
        axis.fill_between(grid[any_] / 60, np.min(np.where(np.isnan(stacked), np.inf, stacked), axis=0)[any_],
                          np.max(np.where(np.isnan(stacked), -np.inf, stacked), axis=0)[any_],
                          color=line.get_color(), alpha=0.15)
        highest = max([highest, *mean])
    axis.set(xlabel="minutes of wall clock since the arm started", ylabel="best val_acc so far (%)",
             title="The same task, the same wall clock: best so far")
    if highest > 97:  # where the arms differ on MNIST (the first epochs' climb would flatten it), never above 100%
        axis.set_ylim(bottom=max(axis.get_ylim()[0], 95), top=min(100.0, highest + 0.2))
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    save_figure(figure, path)


def chosen_arms(named: list[str] | None) -> list[str]:
    """The arms to run: named ones must exist and be installed (one line naming the extra); by default every
    arm that is installed, the others skipped with a line that says why."""
    for arm in named or []:
        if arm not in ARMS:
            raise UserError(f"--arms {arm}: no such arm (the arms: {', '.join(ARMS)})")
        why = not_installed(arm)
        if why:
            raise UserError(f"--arms {arm}: {arm} is not installed ({why})")
    if named:
        return list(dict.fromkeys(named))
    missing = {arm: not_installed(arm) for arm in ARMS}
    for arm, why in missing.items():
        if why:
            print(f"{arm}: skipped, not installed ({why})", flush=True)
    return [arm for arm, why in missing.items() if not why]


def parse_flags(argv: list[str] | None) -> Any:
    parser = bench_parser(__doc__, "results/bench-peers")
    parser.add_argument("--budget", type=float, default=360.0,
                        help="wall-clock seconds of each arm and seed (default 360: 6 minutes)")
    parser.add_argument("--arms", nargs="+", default=None, help=f"the arms to run (default: every installed one of "
                                                                 f"{', '.join(ARMS)})")
    args = checked_bench_flags(parser.parse_args(argv))
    if not (args.budget > 0 and math.isfinite(args.budget)):
        raise UserError(f"--budget must be a number of seconds > 0, got {args.budget}")
    return args


def arm_figures(rows: list[dict[str, Any]], targets: list[float | None]) -> dict[str, list[float]]:
    """An arm's figures over seeds: best val_acc (%), minutes to pass the tutorial (seeds that did), epochs, share."""
    passed = [minutes_to_pass(row, target) for row, target in zip(rows, targets)]
    return {"best": [100 * row["best_val_acc"] for row in rows if row["best_val_acc"] is not None],
            "passed": [minutes for minutes in passed if minutes is not None],
            "epochs": [row["epochs"] for row in rows], "share": [row["train_share"] for row in rows]}


def print_seeds(arm: str, rows: list[dict[str, Any]], seeds: list[int], targets: list[float | None]) -> None:
    for seed, row, target in zip(seeds, rows, targets):
        passed = minutes_to_pass(row, target)
        best = "none" if row["best_val_acc"] is None else f"{100 * row['best_val_acc']:.2f}%"
        print(f"{arm:13s} seed {seed}  epochs {row['epochs']:4d}  best val_acc {best}  "
              f"tutorial passed {'never' if passed is None else f'at {passed:.1f} min'}  "
              f"training {100 * row['train_share']:.0f}% of the wall clock (arm's wall {row['wall_s']:.0f} s)")


def print_paired(arm: str, ours: list[np.ndarray], theirs: list[np.ndarray], grid: np.ndarray,
                 shares: tuple[list[float], list[float]]) -> None:
    """The default minus `arm` along the curve: at each quarter of the budget, how often the interval lies on
    either side of 0, and the point least in our favour; then the share of the wall clock spent training."""
    share = paired_gain(*shares)
    print(f"default minus {arm}, share of the wall clock spent training in points, paired over seeds [95% CI]: "
          f"{describe_gain(share)}")
    points = paired_curve(ours, theirs)
    quarters = [round(share * (len(grid) - 1)) for share in (0.25, 0.5, 0.75, 1.0)]
    below = sum(1 for p in points if p and p["gain_ci95_points"] and p["gain_ci95_points"][1] < 0)
    above = sum(1 for p in points if p and p["gain_ci95_points"] and p["gain_ci95_points"][0] > 0)
    compared = sum(1 for p in points if p is not None)
    print(f"default minus {arm}, best val_acc so far in points, paired over seeds [95% CI]: "
          + "; ".join(f"{grid[q] / 60:.1f} min {describe_gain(points[q])}" for q in quarters)
          + f"; interval below 0 at {below} and above 0 at {above} of {compared} points")
    worst = worst_point(points)
    if worst is not None:
        interval = points[worst]["gain_ci95_points"]
        print(f"default_minus_{arm}_worst_interval_points: "
              + (f"[{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else "none (one seed)")
              + f" at {grid[worst] / 60:.1f} min")


def report(runs: dict[str, list[dict[str, Any]]], seeds: list[int], budget_s: float, plot: Path) -> None:
    grid = np.linspace(0, budget_s, CURVE_POINTS)
    targets = [row["tutorial_val_acc"] for row in runs["default"]] if "default" in runs else [None] * len(seeds)
    print("target: the tutorial's setting's final val_acc per seed (the default arm's first trial): "
          + ", ".join("none" if target is None else f"{100 * target:.2f}%" for target in targets))
    for arm, rows in runs.items():
        print_seeds(arm, rows, seeds, targets)
    summaries = {arm: arm_figures(rows, targets) for arm, rows in runs.items()}
    for arm, figures_of_arm in summaries.items():
        best, passed = figures_of_arm["best"], figures_of_arm["passed"]
        print(f"{arm:13s} over seeds: best val_acc % {spread(best) if best else 'none'}  minutes to pass the "
              f"tutorial {spread(passed) if passed else 'never'} ({len(passed)}/{len(seeds)})  epochs "
              f"{spread(figures_of_arm['epochs'])}  training share {spread(figures_of_arm['share'])}")
    curves = {arm: [best_so_far(row, grid) for row in rows] for arm, rows in runs.items()}
    for arm in [arm for arm in runs if arm != "default" and "default" in runs]:
        print_paired(arm, curves["default"], curves[arm], grid, (summaries["default"]["share"], summaries[arm]["share"]))
    plot_curves(curves, grid, plot)
    print(f"anytime plot: {plot}")
    for arm, figures_of_arm in summaries.items():
        best, passed = figures_of_arm["best"], figures_of_arm["passed"]
        print(f"{arm}_best_val_acc_pct: {f'{np.mean(best):.3f}' if best else 'none'}   "
              f"{arm}_minutes_to_tutorial: {f'{np.mean(passed):.2f}' if passed else 'never'}   "
              f"{arm}_train_share: {np.mean(figures_of_arm['share']):.3f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_flags(argv)
    arms = chosen_arms(args.arms)
    bench = BenchRun(args, size_flags=("budget", "max_epochs", "limit", "max_concurrent"))
    runs: dict[str, list[dict[str, Any]]] = {}
    with ExperimentStore(str(bench.folder.parent), bench.folder.name).lock("benchmarks.peers"):
        bench.check_flags()
        for seed in args.seeds:
            for arm in arms:
                if arm in RAY_ARMS:
                    measure = (lambda folder, arm=arm, seed=seed:
                               measure_ray_arm(RAY_ARMS[arm], seed, args, bench.address, folder))
                else:
                    measure = lambda folder, arm=arm, seed=seed: measure_peer(arm, seed, args, folder)  # noqa: E731
                runs.setdefault(arm, []).append(bench.measured(arm, seed, measure))
    print(f"{args.budget:.0f} s of wall clock an arm and seed, {args.max_epochs} epochs at most a trial, "
          f"{args.limit} images, {args.max_concurrent} trials at once, seeds {args.seeds}")
    report(runs, args.seeds, args.budget, bench.folder / "anytime.png")
    return 0


if __name__ == "__main__":
    run_cli(main)
