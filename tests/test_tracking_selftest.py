"""`make trackio-test` / `make wandb-test`: the fake run, its read-back, and its failure report."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from adamwprune.tracking.readback import missing_points
from adamwprune.tracking.selftest import fake_run
from helpers import trackio_rows


def test_fake_run_looks_like_training():
    records = fake_run()
    val = [(s, m) for s, m in records if "val_loss" in m]
    train = [(s, m) for s, m in records if "train_loss" in m]
    assert [s for s, _ in val] == [0, 100, 200, 300]
    assert val[-1][1]["val_loss"] < val[0][1]["val_loss"] - 5
    assert all(m["val_perplexity"] == math.exp(min(m["val_loss"], 20)) for _, m in val)
    lrs = [m["learning_rate"] for _, m in train]
    peak = lrs.index(max(lrs))
    assert 0 < peak < len(lrs) - 1 and lrs[-1] < lrs[peak]  # warmup, then decay
    sparsity = [m["sparsity"] for _, m in train]
    assert sparsity == sorted(sparsity) and sparsity[-1] == 0.5
    gpu_names = {"gpu_total_memory_used", "gpu_load_balance_cv", "gpu_load_balance_quality",
                 *(f"gpu_{i}_{k}" for i in range(4) for k in ("memory_used", "utilization",
                                                               "temperature", "power"))}
    assert gpu_names <= set(train[0][1])
    assert set(records[-1][1]) == {"final/best_val_loss", "final/best_val_perplexity",
                                   "final/total_training_time"}


def test_missing_points_names_each_missing_or_wrong_point():
    expected = [(0, {"val_loss": 10.0, "q": "Good"}), (10, {"train_loss": 9.0})]
    rows = [{"step": 0, "val_loss": 10.0, "q": "Fair"}]
    assert missing_points(expected, rows, "step") == [
        "step 0: q = 'Fair', expected 'Good'", "step 10: train_loss missing"]
    assert missing_points(expected[:1], [{"step": 0, "val_loss": 10.0, "q": "Good"}], "step") == []


def _selftest(backend, cwd):
    return subprocess.run([sys.executable, "-m", "adamwprune.tracking.selftest", backend],
                          cwd=cwd, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_trackio_selftest_reads_every_point_back(tracking_env):
    done = _selftest("trackio", tracking_env)
    assert done.returncode == 0, done.stderr
    assert "trackio-test: OK: read back all" in done.stdout
    assert "trackio-test: view it: " in done.stdout and " show --project tracker-selftest-" in done.stdout
    assert "tracking:" not in done.stdout and "tracking: trackio | project" in done.stderr  # logged
    run_dir = next((tracking_env / "runs").glob("tracker-selftest-*/trackio-test_fake_*"))
    rows = trackio_rows(run_dir.parent.name, run_dir.name)
    assert len(rows) == len(fake_run())


@pytest.mark.slow
def test_wandb_selftest_goes_offline_without_login(tracking_env, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    done = _selftest("wandb", tracking_env)
    assert done.returncode == 0, done.stderr
    assert "no W&B login found; running offline" in done.stdout
    assert "wandb-test: OK: read back all" in done.stdout
    assert "wandb-test: upload it: " in done.stdout and " sync " in done.stdout
    assert list((tracking_env / "wandb-root" / "wandb").glob("offline-run-*"))
