"""The spec's training commands, as written (pydocs for finewebedu, and a small CPU budget added),
and a short run of every optimizer, read back from the trackers' own storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO, trackio_rows

from adamwprune.tracking.readback import wandb_history, wandb_run_dir
from adamwprune.tracking.runinfo import read_run_info

pytestmark = pytest.mark.slow

TRAIN = str(REPO / "gpt2" / "train.py")
# what the issue adds to each spec command so that it runs on a CPU in seconds
CPU_BUDGET = ["--model-name", "gpt2-tiny", "--max-iters", "3", "--eval-samples", "1", "--device", "cpu"]


def run(cwd, *args, env=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def wandb_steps(run_dir, wandb_dir):
    rows, exit_code = wandb_history(wandb_run_dir(read_run_info(run_dir).wandb_id, wandb_dir))
    assert exit_code == 0
    return [row["_step"] for row in rows if "train_loss" in row]


def test_trackio_only(tracking_env):
    run(tracking_env, TRAIN, "--dataset", "pydocs", "--optimizer", "adamwspam", "--tracker", "trackio",
        "--tracker-project", "my-experiments", "--tracker-run-name", "experiment-1", *CPU_BUDGET)
    rows = trackio_rows("my-experiments", "experiment-1")
    assert [row["step"] for row in rows if "train_loss" in row] == [3]
    assert any("spam_clipped_fraction" in row for row in rows)


def test_wandb_only_offline(tracking_env):
    run(tracking_env, TRAIN, "--dataset", "pydocs", "--optimizer", "adamwspam", "--tracker", "wandb",
        "--tracker-project", "my-experiments", "--tracker-run-name", "experiment-1", *CPU_BUDGET,
        env={"WANDB_MODE": "offline"})
    run_dir = tracking_env / "runs" / "my-experiments" / "experiment-1"
    assert wandb_steps(run_dir, tracking_env / "wandb-root") == [3]


def test_both_trackers_from_the_configuration(tracking_env):
    """`make defconfig ... TRACKER=both`, then the spec's direct command: both trackers, the auto project.

    The defconfig is gpt2-pydocs-cpu: the spec's gpt2-finewebedu-a10gx4 is a 4-GPU job
    (torch.compile, CUDA), checked by tests/test_make_preflight.py."""
    run(tracking_env, "-m", "adamwprune.kconfig", "defconfig", "gpt2-pydocs-cpu", "--set", "TRACKER=both")
    run(tracking_env, TRAIN, "--dataset", "pydocs", "--optimizer", "adamwspam", *CPU_BUDGET)
    (run_dir,) = [path.parent for path in (tracking_env / "runs").glob("*/*/run.json")]
    project = run_dir.parent.name
    assert project.startswith("gpt2-") and len(project) == len("gpt2-") + 5  # {model}-{checksum}
    assert [row["step"] for row in trackio_rows(project, run_dir.name) if "train_loss" in row][-1] == 3
    assert wandb_steps(run_dir, tracking_env / "wandb-root")[-1] == 3


def test_no_tracking(tracking_env):
    run(tracking_env, TRAIN, "--dataset", "pydocs", "--optimizer", "adamwspam", "--tracker", "none", *CPU_BUDGET)
    (journal,) = (tracking_env / "runs").glob("*/*/metrics.jsonl")
    steps = [json.loads(line).get("step") for line in journal.read_text().splitlines()]
    assert 3 in steps and not (tracking_env / "trackio").exists()


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "adamwspam", "adamwadv"])
def test_a_short_run_of_every_optimizer_is_in_trackio(tracking_env, optimizer):
    run(tracking_env, TRAIN, "--dataset", "pydocs", "--model-name", "gpt2-tiny", "--block-size", "32",
        "--batch-size", "4", "--eval-samples", "1", "--max-iters", "4", "--log-interval", "2", "--device", "cpu",
        "--optimizer", optimizer, "--tracker", "trackio", "--tracker-project", "p-opt", "--tracker-run-name", optimizer)
    rows = trackio_rows("p-opt", optimizer)
    train_rows = [row for row in rows if "train_loss" in row]
    assert [row["step"] for row in train_rows] == [2, 4]
    assert all(row["grad_norm"] > 0 for row in train_rows)
    assert [row["step"] for row in rows if "optimizer_state_bytes" in row] == [2]
    assert ("spam_resets" in train_rows[0]) == (optimizer == "adamwspam")
