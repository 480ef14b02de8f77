"""What training on digits drawn from pen strokes buys (the `synthetic` knob, mnist/strokes.py): one recipe trained
with and without them over several seeds, each model read by the field report on every real set's report half.

    python -m benchmarks.synthetic [--share F] [--seeds 1 2 3] [--epochs 6] [--limit 20000] [--out results/bench/synthetic]

The recipe is the quick search's winner of the README's main command (fixed below), on its 16,000 training
images; each model calibrated on MNIST validation as `python -m mnist.train` does. Prints, per set, each seed's
accuracy without and with, the mean difference, and the share of sure answers that are wrong; and MNIST
validation, which selects; each arm's confusion matrices (its seeds summed) beside summary.json. About 1.5 minutes a model on 2 cores.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hpo.experiment import EXPERIMENT_DEFAULTS
from mnist.atomic import write_json_atomic
from mnist.checkpoint import load_checkpoint
from mnist.errors import run_cli
from mnist.layout import BEST_PT, HANDWRITING_SETS
from mnist.plots import plot_confusion_matrices
from mnist.reading.field_report import field_report
from mnist.reading.preprocess import Steps
from mnist.reading.sets import mnist_test_set, read_set, set_folders
from mnist.train import main as train_main

# The quick search's winner (README's main command, session 11): what a user who ran it would train.
RECIPE = ["-b", "64", "-l", "0.00108", "--dropout", "0.468", "--weight-decay", "0.01", "--label-smoothing", "0.055",
          "--schedule", "step", "--step-size", "6", "--gamma", "0.538", "--rotate", "7.4", "--scale", "0.01",
          "--shear", "3.6", "--stretch", "0.013", "--elastic", "0.51", "--thickness", "0.318", "--erase", "0.018"]


def train_arm(out: Path, share: float, seed: int, epochs: int, limit: int) -> Path:
    folder = out / f"synthetic{share}-seed{seed}"
    train_main([*RECIPE, "-e", str(epochs), "--limit", str(limit), "--seed", str(seed), "--synthetic", str(share),
                "--out", str(folder)])
    return folder / BEST_PT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--share", type=float, default=EXPERIMENT_DEFAULTS["train"]["synthetic"],
                        help="the synthetic share of the arm with them (default: the experiments', %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="training seeds: one pair each")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--limit", type=int, default=20000, help="the first N training images (20% validate)")
    parser.add_argument("--sets", default=HANDWRITING_SETS, help=f"the real sets (default {HANDWRITING_SETS})")
    parser.add_argument("--out", default="results/bench/synthetic", help="models and summary.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    models = {f"{share} seed {seed}": train_arm(out, share, seed, args.epochs, args.limit)
              for seed in args.seeds for share in (0.0, args.share)}
    sets = {name: read_set(folder / "report", Steps()) for name, folder in set_folders(Path(args.sets)).items()}
    sets["mnist"] = mnist_test_set()
    report = field_report(models, sets)
    print(f"\nsynthetic {args.share} against none, seeds {args.seeds}, report halves:")
    print("| set | none: each seed | mean | synthetic: each seed | mean | difference | sure but wrong: none -> synthetic |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for name in sets:
        rows = {share: [report[f"{share} seed {seed}"][name] for seed in args.seeds] for share in (0.0, args.share)}
        accuracy = {share: [row["accuracy"] for row in rows[share]] for share in rows}
        wrong = {share: np.mean([row.get("sure_wrong_share") or 0.0 for row in rows[share]]) for share in rows}
        difference = np.mean(accuracy[args.share]) - np.mean(accuracy[0.0])
        summary[name] = {"none": accuracy[0.0], "synthetic": accuracy[args.share], "difference": difference,
                         "sure_wrong": {"none": wrong[0.0], "synthetic": wrong[args.share]}}
        print(f"| {name} | {' '.join(f'{a:.2%}' for a in accuracy[0.0])} | {np.mean(accuracy[0.0]):.2%} | "
              f"{' '.join(f'{a:.2%}' for a in accuracy[args.share])} | {np.mean(accuracy[args.share]):.2%} | "
              f"{100 * difference:+.2f} points | {wrong[0.0]:.2%} -> {wrong[args.share]:.2%} |")
    for share, name in ((0.0, "none"), (args.share, "synthetic")):  # each arm's answers, its seeds summed
        matrices = {set_name: sum(np.array(report[f"{share} seed {seed}"][set_name]["confusion_matrix"])
                                  for seed in args.seeds) for set_name in sets}
        plot_confusion_matrices(matrices, f"{name}: what each digit was read as (seeds {args.seeds} summed)",
                                out / f"confusion-{name}.png")
    validation = {label: max(row["val_acc"] for row in load_checkpoint(path)["history"]) for label, path in models.items()}
    print("MNIST validation (selects): " + ", ".join(f"{label} {value:.2%}" for label, value in validation.items()))
    write_json_atomic(out / "summary.json", {"share": args.share, "seeds": args.seeds, "epochs": args.epochs,
                                             "limit": args.limit, "sets": summary, "validation": validation})
    print(f"summary: {out / 'summary.json'}; confusion matrices: {out}/confusion-none.png, confusion-synthetic.png")
    return 0


if __name__ == "__main__":
    run_cli(main)
