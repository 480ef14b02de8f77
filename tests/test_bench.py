"""benchmarks/schedulers.py kept working at a toy size (the real run is minutes per search, not part of the suite)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import PNG_MAGIC, run_module, stop_ray_start, wait_for_port
from tools.browser import free_port

pytestmark = pytest.mark.slow  # six small searches


def test_the_bench_prints_its_figures_and_plot_at_a_toy_size(tmp_path: Path) -> None:
    import os
    import subprocess

    # One cluster for the six searches (each would otherwise start and stop a private one).
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(["ray", "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port)
        result = run_module("benchmarks.schedulers", ["--seeds", "0", "1", "--num-samples", "2", "--max-epochs", "2", "--limit", "600",
                                                  "--storage-path", str(tmp_path), "--address", f"127.0.0.1:{port}"],
                            timeout=900, env={"RAY_AUTH_MODE": "disabled"})
    finally:
        stop_ray_start(head)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    epochs = {(label, int(seed)): int(count) for label, seed, count
              in re.findall(r"^(\w+)\s+seed (\d)  epochs\s+(\d+)", out, re.MULTILINE)}
    assert set(epochs) == {(arm, seed) for arm in ("asha_tpe", "hedged_tpe", "fifo_random") for seed in (0, 1)}
    assert epochs["fifo_random", 0] == epochs["fifo_random", 1] == 2 * 2  # FIFO trains every trial to the budget

    def figure(name: str) -> float:
        return float(re.search(rf"^{name}: (-?[\d.]+)$", out, re.MULTILINE).group(1))

    for arm, line in (("asha_tpe", "epochs_ratio_asha_vs_fifo"), ("hedged_tpe", "hedged_epochs_ratio_vs_fifo")):
        expected = np.mean([epochs[arm, s] for s in (0, 1)]) / np.mean([epochs["fifo_random", s] for s in (0, 1)])
        assert figure(line) == pytest.approx(expected, abs=1e-3)
    for line in ("best_val_acc_gap_points", "hedged_best_val_acc_gap_points", "train_share_of_wall"):
        figure(line)  # each line is there with a number
    assert "paired over seeds, hedge minus FIFO: best val_acc" in out
    plot = Path(re.search(r"^best-so-far plot: (.+)$", out, re.MULTILINE).group(1))
    assert plot.read_bytes()[:8] == PNG_MAGIC
