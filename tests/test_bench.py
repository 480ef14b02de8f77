"""The search benchmarks (benchmarks/schedulers.py, benchmarks/searchers.py) kept working at a toy size (the real
runs are minutes per search, not part of the suite)."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from benchmarks.peers import ARMS as PEER_ARMS
from hpo.searcher import check_study
from mnist.errors import UserError
from tests.helpers import PNG_MAGIC, run_module, stop_ray_start, wait_for_port
from tools.browser import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("bench_cluster")]  # ten small searches on one cluster


@pytest.fixture(scope="module")
def cluster_address() -> Iterator[str]:
    """One `ray start` cluster for every search of this file (each would otherwise start and stop a private one)."""
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(["ray", "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        stop_ray_start(head)


def toy_bench(module: str, address: str, storage: Path, samples: int, *extra: str) -> subprocess.CompletedProcess:
    return run_module(module, ["--seeds", "0", "1", "--num-samples", str(samples), "--max-epochs", "2", "--limit", "600",
                               "--storage-path", str(storage), "--address", address, *extra],
                      timeout=900, env={"RAY_AUTH_MODE": "disabled"})


def test_the_bench_prints_its_figures_and_plot_at_a_toy_size(tmp_path: Path, cluster_address: str) -> None:
    arms = ("tied_tpe", "hedged_tpe", "fifo_random")
    result = toy_bench("benchmarks.schedulers", cluster_address, tmp_path, 2, "--arms", *arms, "--name", "toy")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    check_the_figures(out, arms)
    # A run of hours continues: the same command reads the finished searches back, runs an unfinished one again.
    (tmp_path / "toy" / "rows" / "hedged_tpe-seed1.json").unlink()
    again = toy_bench("benchmarks.schedulers", cluster_address, tmp_path, 2, "--arms", *arms, "--name", "toy")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished before, read from") == 5
    assert "hedged_tpe seed 1: " in again.stdout and "did not finish; running it again from its start" in again.stdout
    check_the_figures(again.stdout, arms)

    def lines(text: str) -> list[str]:
        return [line for line in text.splitlines() if re.match(r"\w+\s+seed \d  epochs", line)
                and not line.startswith("hedged_tpe   seed 1")]

    assert lines(again.stdout) == lines(out)
    # Other sizes under the same name would mix two benchmarks: refused before any search.
    other = toy_bench("benchmarks.schedulers", cluster_address, tmp_path, 3, "--arms", *arms, "--name", "toy")
    assert other.returncode == 2
    assert other.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'toy' / 'bench.json'}: this run was made with --num-samples 2, not 3; give the same "
        "flags to continue it, or another --name"]


def check_the_figures(out: str, arms: tuple[str, ...]) -> None:
    epochs = {(label, int(seed)): int(count) for label, seed, count
              in re.findall(r"^(\w+)\s+seed (\d)  epochs\s+(\d+)", out, re.MULTILINE)}
    assert set(epochs) == {(arm, seed) for arm in arms for seed in (0, 1)}
    assert epochs["fifo_random", 0] == epochs["fifo_random", 1] == 2 * 2  # FIFO trains every trial to the budget

    def figure(name: str) -> float:
        return float(re.search(rf"{name}: (-?[\d.]+)", out).group(1))

    for arm in ("tied_tpe", "hedged_tpe"):
        expected = np.mean([epochs[arm, s] for s in (0, 1)]) / np.mean([epochs["fifo_random", s] for s in (0, 1)])
        assert figure(f"{arm}_epochs_ratio_vs_fifo") == pytest.approx(expected, abs=1e-3)
        figure(f"{arm}_best_val_acc_gap_points")  # there with a number
    figure("train_share_of_wall")
    # The choice: the best mean accuracy, the fewest epochs among the arms within 0.05 points of it.
    means = {label: (float(accuracy), float(spent)) for label, spent, accuracy in re.findall(
        r"^(\w+)\s+over seeds: epochs ([\d.]+) \(sd [\d.]+\)\s+best val_acc % ([\d.]+)", out, re.MULTILINE)}
    best = max(accuracy for accuracy, _ in means.values())
    chosen = min((label for label, (accuracy, _) in means.items() if best - accuracy <= 0.05 + 1e-9),
                 key=lambda label: means[label][1])
    assert re.search(r"^choice: (\w+) ", out, re.MULTILINE).group(1) == chosen
    assert "paired over seeds, hedge minus FIFO: best val_acc" in out
    for other in set(arms) - {chosen}:  # what the choice buys against each other arm, paired
        gain = float(re.search(rf"^paired over seeds, {chosen} minus {other}: best val_acc ([-+][\d.]+) points",
                               out, re.MULTILINE).group(1))
        assert gain == pytest.approx(means[chosen][0] - means[other][0], abs=2e-3)
    plot = Path(re.search(r"^best-so-far plot: (.+)$", out, re.MULTILINE).group(1))
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_the_searcher_bench_prints_both_arms_and_their_paired_difference(tmp_path: Path, cluster_address: str) -> None:
    """benchmarks/searchers.py at a toy size on one `ray start` cluster: our searcher (PRUNED) against Ray's stock
    OptunaSearch (COMPLETE); the closing figures follow from the per-seed lines."""
    result = toy_bench("benchmarks.searchers", cluster_address, tmp_path, samples=3)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    rows = {(label, int(seed)): (int(epochs), float(accuracy)) for label, seed, epochs, accuracy in re.findall(
        r"^(\w+)\s+seed (\d)  epochs\s+(\d+)  wall\s+[\d.]+ s  best val_acc ([\d.]+)", out, re.MULTILINE)}
    assert set(rows) == {(arm, seed) for arm in ("pruned", "complete") for seed in (0, 1)}
    gain = float(re.search(r"^winner_val_acc_gain_points: (-?[\d.]+)$", out, re.MULTILINE).group(1))
    expected = 100 * np.mean([rows["pruned", s][1] - rows["complete", s][1] for s in (0, 1)])
    assert gain == pytest.approx(expected, abs=0.0105)  # the lines round each accuracy to 1e-4: 0.01 point at most
    ratio = float(re.search(r"^epochs_ratio_pruned_vs_complete: ([\d.]+)$", out, re.MULTILINE).group(1))
    assert ratio == pytest.approx(sum(rows["pruned", s][0] for s in (0, 1)) / sum(rows["complete", s][0]
                                                                                   for s in (0, 1)), abs=1e-3)
    assert "paired over seeds, pruned minus complete: winner val_acc" in out
    # Each arm's study says which searcher wrote it: ours is resumable, the stock one is not.
    folders = {path.parent.name.split("-")[0]: path.parent for path in tmp_path.glob("*/*/optuna.db")}
    assert set(folders) == {"pruned", "complete"}
    check_study(folders["pruned"], folders["pruned"].name)
    with pytest.raises(UserError, match="written by another searcher"):
        check_study(folders["complete"], folders["complete"].name)


def test_the_peers_bench_runs_every_arm_on_one_wall_clock_and_pairs_each_with_ours(tmp_path: Path,
                                                                                   cluster_address: str) -> None:
    """benchmarks/peers.py at a toy size: every arm (the Ray ones on this file's cluster) reports both seeds, each
    peer is paired with the default over seeds, the figures at the end follow from the per-seed lines."""
    flags = ["--seeds", "0", "1", "--budget", "15", "--max-epochs", "2", "--limit", "200", "--storage-path",
             str(tmp_path), "--address", cluster_address, "--name", "toy"]
    result = run_module("benchmarks.peers", flags, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    skipped = set(re.findall(r"^(\S+): skipped, not installed \(no module \w+; pip install .+\)$", out, re.MULTILINE))
    ran = [arm for arm in PEER_ARMS if arm not in skipped]
    assert "default" in ran and "optuna" in ran  # the peers without an extra
    rows = {(arm, int(seed)): int(epochs) for arm, seed, epochs in
            re.findall(r"^(\S+)\s+seed (\d)  epochs\s+(\d+)  best val_acc", out, re.MULTILINE)}
    assert set(rows) == {(arm, seed) for arm in ran for seed in (0, 1)}
    for arm in ran:
        saved = [json.loads((tmp_path / "toy" / "rows" / f"{arm}-seed{seed}.json").read_text()) for seed in (0, 1)]
        assert [row["epochs"] for row in saved] == [rows[arm, 0], rows[arm, 1]]
        assert all(line[0] <= 15 for row in saved for line in row["epochs_log"])  # only epochs within the budget
        share = float(re.search(rf"^{arm}_best_val_acc_pct: .*{arm}_train_share: ([\d.]+)$", out, re.MULTILINE)[1])
        assert share == pytest.approx(np.mean([row["train_share"] for row in saved]), abs=1e-3)
        if arm != "default":
            assert re.search(rf"^default minus {arm}, best val_acc so far in points, paired over seeds", out, re.MULTILINE)
    assert Path(re.search(r"^anytime plot: (.+)$", out, re.MULTILINE)[1]).read_bytes()[:8] == PNG_MAGIC
    again = run_module("benchmarks.peers", flags, timeout=300)  # a finished run reads every row back
    assert again.returncode == 0 and again.stdout.count("finished before, read from") == 2 * len(ran)


def test_the_synthetic_bench_compares_the_arms_seed_by_seed_on_every_set(tmp_path: Path) -> None:
    """benchmarks.synthetic at a toy size: both arms trained per seed, every set in the table, the difference the
    mean of the seeds' differences, MNIST validation beside it."""
    from benchmarks.synthetic import main as synthetic_main
    from mnist.reading.corruptions import set_writers
    from tests.helpers import small_sets

    sets, _, _ = small_sets(tmp_path)
    out = tmp_path / "synthetic"
    synthetic_main(["--seeds", "0", "1", "--epochs", "1", "--limit", "600", "--sets", str(sets), "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["sets"]) == {"scans", "notebook", "drawings", "canvas", "mnist", *set_writers()}
    for row in summary["sets"].values():
        assert len(row["none"]) == len(row["synthetic"]) == 2
        assert row["difference"] == pytest.approx(np.mean(row["synthetic"]) - np.mean(row["none"]))
    assert len(summary["validation"]) == 4  # two arms, two seeds
    assert (out / "synthetic0.15-seed1" / "best.pt").exists()
    for arm in ("none", "synthetic"):
        assert (out / f"confusion-{arm}.png").read_bytes()[:8] == PNG_MAGIC
