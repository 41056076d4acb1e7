"""End-to-end runs of gpt2/train.py on pydocs (gpt2-tiny, a few iterations each), read back
from the Trackio store, the run journal and the checkpoints on disk."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import REPO, trackio_rows

from adamwprune.errors import UserError
from adamwprune.train.schedule import learning_rate

TRAIN = str(REPO / "gpt2" / "train.py")
SMALL = ["--model-name", "gpt2-tiny", "--dataset", "pydocs", "--block-size", "32", "--batch-size", "4",
         "--gradient-accumulation", "1", "--eval-samples", "2", "--eval-batch-size", "4", "--warmup-iters", "2",
         "--learning-rate", "2e-3", "--min-lr", "2e-4", "--device", "cpu"]
TRAIN_METRICS = {"train_loss", "learning_rate", "sparsity", "grad_norm", "grad_norm_max", "tokens_per_sec"}
ONCE_METRICS = {"optimizer_state_bytes", "pruning_state_bytes"}  # at the first log point of each session
VAL_METRICS = {"val_loss", "val_perplexity"}
FINAL_METRICS = {"final/best_val_loss", "final/best_val_perplexity", "final/total_training_time"}


def env_for(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    for name in ("ADAMWPRUNE_DATA_DIR", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    return env


def train(tmp_path: Path, *args: str, launcher: list[str] | None = None, timeout: float = 180):
    """Run the trainer in tmp_path (no .config there unless a test writes one)."""
    command = (launcher or [sys.executable]) + [TRAIN, *args]
    return subprocess.run(command, cwd=tmp_path, env=env_for(tmp_path), capture_output=True,
                          text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def trackio_runs(project: str) -> list[str]:
    code = ("import json, sys\nfrom trackio.sqlite_storage import SQLiteStorage\n"
            "print(json.dumps(SQLiteStorage.get_runs(sys.argv[1])))")
    proc = subprocess.run([sys.executable, "-c", code, project], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def steps_of(rows: list[dict], metric: str) -> list[int]:
    return [row["step"] for row in rows if metric in row]


def journal(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_no_repeated_steps(rows: list[dict], metrics: set[str]) -> None:
    for metric in metrics:
        steps = steps_of(rows, metric)
        assert steps == sorted(set(steps)), (metric, steps)


@pytest.mark.slow
def test_metrics_steps_and_perplexity_in_the_trackio_store(tracking_env):
    tmp = tracking_env
    proc = ok(train(tmp, *SMALL, "--max-iters", "6", "--log-interval", "2", "--eval-interval", "3",
                    "--tracker", "trackio", "--tracker-project", "p-metrics", "--tracker-run-name", "r1",
                    "--output-dir", str(tmp / "runs")))
    rows = trackio_rows("p-metrics", "r1")
    for metric in TRAIN_METRICS:
        assert steps_of(rows, metric) == [2, 4, 6], metric
    for metric in VAL_METRICS:
        assert steps_of(rows, metric) == [0, 3, 6], metric
    for metric in FINAL_METRICS:
        assert steps_of(rows, metric) == [6], metric
    assert len({row["step"] for row in rows}) == len(rows)  # one record per step: nothing logged twice
    assert set().union(*rows) == TRAIN_METRICS | VAL_METRICS | FINAL_METRICS | ONCE_METRICS | {"step"}
    assert steps_of(rows, "optimizer_state_bytes") == [2]
    weights = torch.load(tmp / "runs/p-metrics/r1/ckpt_last.pt", weights_only=False)["model"].values()
    params = sum({w.untyped_storage().data_ptr(): w.numel() for w in weights}.values())  # tied weights once
    state_bytes = next(row["optimizer_state_bytes"] for row in rows if "optimizer_state_bytes" in row)
    assert 8 * params <= state_bytes < 8 * params + 4096  # AdamW: two fp32 moments per weight, + step counts
    assert all(0 < row["grad_norm"] <= row["grad_norm_max"] for row in rows if "grad_norm" in row)

    val = {row["step"]: row for row in rows if "val_loss" in row}
    for row in val.values():
        assert row["val_perplexity"] == math.exp(min(row["val_loss"], 20))
    assert val[6]["val_loss"] < val[0]["val_loss"] - 0.3  # it learns
    final = next(row for row in rows if "final/best_val_loss" in row)
    best = min(row["val_loss"] for row in val.values())
    assert final["final/best_val_loss"] == best
    assert final["final/best_val_perplexity"] == math.exp(best)
    assert 0 < final["final/total_training_time"] < 120
    for row in rows:
        if "learning_rate" in row:  # the LR used for the step just taken (index step - 1)
            assert row["learning_rate"] == learning_rate(
                row["step"] - 1, base_lr=2e-3, min_lr=2e-4, warmup_iters=2, max_iters=6)
            assert row["sparsity"] == 0.0 and row["tokens_per_sec"] > 0
            assert math.isfinite(row["train_loss"])

    run_dir = tmp / "runs" / "p-metrics" / "r1"
    assert sorted(p.name for p in run_dir.glob("ckpt_*")) == ["ckpt_best.pt", "ckpt_last.pt"]
    assert not list(run_dir.glob(".*tmp"))
    last = torch.load(run_dir / "ckpt_last.pt", weights_only=False)
    assert (last["iteration"], last["best_val_loss"]) == (6, best)
    assert last["run"] == {"model": "gpt2", "project": "p-metrics", "run_name": "r1"}
    progress = [line for line in proc.stdout.splitlines() if line.startswith("iter ")]
    assert len(progress) == 3 and "ETA" in progress[0] and "tok/s" in progress[0]
    assert "trackio show --project p-metrics" in proc.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_resume_continues_the_same_tracked_run_without_repeated_steps(tracking_env, monkeypatch):
    tmp = tracking_env
    common = [*SMALL, "--log-interval", "2", "--eval-interval", "2", "--tracker", "trackio",
              "--tracker-project", "p-resume", "--tracker-run-name", "r1", "--output-dir", str(tmp / "runs")]
    ok(train(tmp, *common, "--max-iters", "4"))
    run_dir = tmp / "runs" / "p-resume" / "r1"
    wandb_id = json.loads((run_dir / "run.json").read_text())["wandb_id"]
    second = ok(train(tmp, *common, "--max-iters", "8", "--resume"))
    assert "resuming after iteration 4" in second.stdout

    assert trackio_runs("p-resume") == ["r1"]
    assert json.loads((run_dir / "run.json").read_text())["wandb_id"] == wandb_id
    rows = trackio_rows("p-resume", "r1")
    assert_no_repeated_steps(rows, TRAIN_METRICS | VAL_METRICS)
    assert steps_of(rows, "train_loss") == [2, 4, 6, 8]
    assert steps_of(rows, "val_loss") == [0, 2, 4, 6, 8]
    assert steps_of(rows, "final/best_val_loss") == [4, 8]  # each session ends with its summary
    assert torch.load(run_dir / "ckpt_last.pt", weights_only=False)["iteration"] == 8

    records = journal(run_dir)
    events = [r for r in records if "event" in r]
    assert [(e["event"], e.get("resumed"), e.get("status")) for e in events] == [
        ("start", False, None), ("end", None, "finished"), ("start", True, None), ("end", None, "finished")]
    again = train(tmp, *common, "--max-iters", "8", "--resume")
    assert again.returncode == 2 and "pass a larger --max-iters" in again.stderr
    assert journal(run_dir) == records  # refused before the tracked run was touched
    other = train(tmp, *common, "--max-iters", "12", "--resume", "--model-name", "gpt2")
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert other.stderr.strip().splitlines() == [
        f"gpt2/train.py: error: cannot resume {run_dir / 'ckpt_last.pt'}: --model-name is 'gpt2', "
        "the checkpoint has 'gpt2-tiny'; resume with the original settings, or start a new run"]
    assert journal(run_dir) == records  # the run still ended "finished": no new start/end records
    assert steps_of(trackio_rows("p-resume", "r1"), "train_loss") == [2, 4, 6, 8]

    from adamwprune.train.cli import main
    from adamwprune.train.gpt2 import FAMILY

    monkeypatch.chdir(tmp)  # no .config here
    (run_dir / "notes.pt").write_text("not a checkpoint\n")
    refusals = [("ckpt_best.pt", r"it lacks optimizer, best_val_loss, training_time, pruner .*its ckpt_last.pt"),
                ("notes.pt", "cannot read checkpoint .*notes.pt: ")]
    for name, message in refusals:
        with pytest.raises(UserError, match=message):
            main(FAMILY, [*common, "--max-iters", "12", "--resume", str(run_dir / name)])
    assert journal(run_dir) == records
    fresh = train(tmp, *common, "--max-iters", "8")
    assert fresh.returncode == 2 and "continue it with --resume" in fresh.stderr


@pytest.mark.slow
def test_a_resumed_run_matches_an_uninterrupted_one_exactly(tracking_env):
    """Model, optimizer, data and eval RNG states all come back: same losses to the last bit."""
    tmp = tracking_env
    small = SMALL[:SMALL.index("--min-lr")] + SMALL[SMALL.index("--min-lr") + 2:]  # no decay: no min-lr
    # eval batches of 8 in micro-batches of 4: the eval stream must come back too
    common = [*small, "--gradient-accumulation", "2", "--lr-schedule", "constant", "--log-interval", "2",
              "--eval-interval", "2", "--eval-batch-size", "8", "--tracker", "none", "--tracker-project", "p-exact",
              "--output-dir", str(tmp / "runs")]
    ok(train(tmp, *common, "--tracker-run-name", "resumed", "--max-iters", "4"))
    ok(train(tmp, *common, "--tracker-run-name", "resumed", "--max-iters", "8", "--resume"))
    ok(train(tmp, *common, "--tracker-run-name", "straight", "--max-iters", "8"))

    def losses(name):
        records = journal(tmp / "runs" / "p-exact" / name)
        return {(r["step"], key): value for r in records if "step" in r
                for key, value in r["metrics"].items() if key in ("train_loss", "val_loss")}

    straight, resumed = losses("straight"), losses("resumed")
    assert set(straight) == set(resumed) == {(step, key) for step in (2, 4, 6, 8)
                                             for key in ("train_loss", "val_loss")} | {(0, "val_loss")}
    assert resumed == straight


def expected_ddp_train_losses(world_size: int, steps: int, accumulation: int, interval: int) -> dict:
    """train_loss per log step of an untrained model (learning rate 0), averaged over all ranks."""
    from adamwprune.data import get_dataset
    from adamwprune.train.gpt2 import GPT2Adapter

    adapter = GPT2Adapter(get_dataset("pydocs"), model_name="gpt2-tiny", block_size=32)
    torch.manual_seed(1337)  # the loop's seed before building the model
    model = adapter.build_model()
    per_rank = []
    with torch.no_grad():
        for rank in range(world_size):
            generator = torch.Generator().manual_seed(1337 + 1 + rank)  # the rank's data stream
            losses = [adapter.loss(model, adapter.get_batch("train", 4, generator, "cpu")).item()
                      for _ in range(steps * accumulation)]
            per_interval = interval * accumulation
            per_rank.append([sum(losses[i:i + per_interval]) / per_interval
                             for i in range(0, len(losses), per_interval)])
    return {interval * (i + 1): [rank[i] for rank in per_rank] for i in range(steps // interval)}


@pytest.mark.slow
def test_two_process_ddp_run_is_one_tracked_run(tracking_env):
    tmp = tracking_env
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    # learning rate 0: the weights stay put, so the test can recompute every rank's losses
    proc = ok(train(tmp, *SMALL, "--max-iters", "4", "--gradient-accumulation", "2", "--log-interval", "2",
                    "--eval-interval", "2", "--tracker", "trackio", "--tracker-project", "p-ddp",
                    "--learning-rate", "0", "--min-lr", "0", "--output-dir", str(tmp / "runs"),
                    launcher=launcher))
    runs = trackio_runs("p-ddp")
    assert len(runs) == 1
    assert [p.name for p in (tmp / "runs" / "p-ddp").iterdir()] == runs
    rows = trackio_rows("p-ddp", runs[0])
    assert steps_of(rows, "train_loss") == [2, 4]
    assert steps_of(rows, "val_loss") == [0, 2, 4]
    assert_no_repeated_steps(rows, TRAIN_METRICS | VAL_METRICS)
    assert "x2" in proc.stdout  # the banner names both processes
    assert proc.stdout.count("training: max-iters") == 1  # only rank 0 reports
    last = torch.load(tmp / "runs" / "p-ddp" / runs[0] / "ckpt_last.pt", weights_only=False)
    assert len(last["rng"]["per_rank"]) == 2
    # tokens per step count every process: 2 ranks x 2 micro-batches x 4 x 32
    assert "512 tok/iter" in proc.stdout
    # train_loss is the mean over the interval and over both processes, not rank 0's alone
    logged = {row["step"]: row["train_loss"] for row in rows if "train_loss" in row}
    expected = expected_ddp_train_losses(world_size=2, steps=4, accumulation=2, interval=2)
    for step, (rank0, rank1) in expected.items():
        assert abs(rank0 - rank1) > 1e-3  # the ranks saw different batches: the mean tells them apart
        assert logged[step] == pytest.approx((rank0 + rank1) / 2, rel=1e-5), step


def test_unprepared_finewebedu_is_a_one_line_error_naming_make_prepare_data(tracking_env):
    tmp = tracking_env
    start = time.monotonic()
    proc = train(tmp, "--dataset", "finewebedu", "--tracker", "trackio", "--output-dir", str(tmp / "runs"))
    assert time.monotonic() - start < 30
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("gpt2/train.py: error: dataset 'finewebedu' is not prepared")
    assert "make prepare-data" in lines[0]
    assert not (tmp / "runs").exists()  # failed before any tracked run was created


def test_a_pruning_method_adamwprune_cannot_use_fails_at_once(tracking_env):
    proc = train(tracking_env, *SMALL, "--optimizer", "adamwprune", "--pruning-method", "movement",
                 "--tracker", "trackio")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("gpt2/train.py: error: adamwprune prunes by its own state: use "
                                   "--pruning-method state, not movement")


@pytest.mark.slow
def test_nan_loss_is_logged_and_stops_with_a_hint_to_lower_the_lr(tracking_env):
    tmp = tracking_env
    proc = train(tmp, *SMALL, "--optimizer", "sgd", "--learning-rate", "1e12", "--grad-clip", "0",
                 "--warmup-iters", "0", "--max-iters", "50", "--log-interval", "2", "--tracker", "none",
                 "--tracker-project", "p-nan", "--tracker-run-name", "r1", "--output-dir", str(tmp / "runs"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("gpt2/train.py: error: training diverged: loss is nan at iteration ")
    assert "lower the learning rate (--learning-rate, now 1e+12)" in error
    records = journal(tmp / "runs" / "p-nan" / "r1")
    assert any(r.get("nonfinite", {}).get("train_loss") == "nan" for r in records)
    assert records[-1]["event"] == "end" and records[-1]["status"] == "failed"


@pytest.mark.slow
def test_ctrl_c_saves_ckpt_last_marks_the_run_interrupted_and_resume_goes_on(tracking_env):
    tmp = tracking_env
    common = [*SMALL, "--log-interval", "1", "--eval-interval", "1000", "--tracker", "trackio",
              "--tracker-project", "p-int", "--tracker-run-name", "r1", "--output-dir", str(tmp / "runs")]
    process = subprocess.Popen([sys.executable, TRAIN, *common, "--max-iters", "100000"], cwd=tmp,
                               env=env_for(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = 0
        for line in process.stdout:
            seen += line.startswith("iter ")
            if seen == 3:
                process.send_signal(signal.SIGINT)
                break
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    run_dir = tmp / "runs" / "p-int" / "r1"
    records = journal(run_dir)
    assert records[-1]["event"] == "end" and records[-1]["status"] == "interrupted"
    last_step = max(r["step"] for r in records if "step" in r)
    assert torch.load(run_dir / "ckpt_last.pt", weights_only=False)["iteration"] == last_step
    assert f"interrupted at iteration {last_step}" in out

    ok(train(tmp, *common, "--max-iters", str(last_step + 2), "--resume"))
    rows = trackio_rows("p-int", "r1")
    assert_no_repeated_steps(rows, TRAIN_METRICS)
    assert steps_of(rows, "train_loss")[-3:] == [last_step, last_step + 1, last_step + 2]


@pytest.mark.slow
def test_flags_win_over_the_generated_config_in_a_real_run(tracking_env):
    tmp = tracking_env
    subprocess.run([sys.executable, "-m", "adamwprune.kconfig", "defconfig", "gpt2-pydocs-cpu",
                    "--set", "TRACKER=trackio"], cwd=tmp, env=env_for(tmp), check=True, capture_output=True)
    from adamwprune.kconfig import load_config

    cfg = load_config(tmp)
    ok(train(tmp, "--tracker", "none", "--batch-size", "2", "--block-size", "32", "--max-iters", "2",
             "--max-time", "0", "--eval-samples", "1", "--tracker-run-name", "precedence"))
    run_dir = tmp / cfg.OUTPUT_DIR / cfg.TRACKER_PROJECT / "precedence"
    config = json.loads((run_dir / "run.json").read_text())["config"]
    # from flags
    assert (config["tracker"], config["batch_size"], config["block_size"], config["max_iters"]) == (
        "none", 2, 32, 2)
    # from the configuration (no flag given)
    assert (config["model_name"], config["dataset"], config["learning_rate"], config["warmup_iters"]) == (
        "gpt2-tiny", "pydocs", 1e-3, 50)
    assert config["tracker_project"] == cfg.TRACKER_PROJECT


@pytest.mark.slow
def test_max_time_stops_with_a_last_eval_and_the_final_metrics(tracking_env):
    tmp = tracking_env
    proc = ok(train(tmp, *SMALL, "--max-iters", "1000000", "--max-time", "2", "--log-interval", "5",
                    "--eval-interval", "100000", "--tracker", "none", "--tracker-project", "p-time",
                    "--tracker-run-name", "r1", "--output-dir", str(tmp / "runs"), "--gpu-monitor"))
    assert "gpu monitor: no NVIDIA GPU" in proc.stdout  # the monitor says so once and stays quiet
    assert "stop: max-time" in proc.stdout
    # the time limit ends this run, not its million iterations: progress counts the time
    assert "training: max-time 2s or max-iters 1000000, whichever ends first" in proc.stdout
    progress = [line for line in proc.stdout.splitlines() if line.startswith("iter ")]
    assert progress and all("/1000000" not in line and re.search(r"\| time 0:0\d/0:02 \|", line)
                            for line in progress), progress
    run_dir = tmp / "runs" / "p-time" / "r1"
    records = [r for r in journal(run_dir) if "step" in r]
    last = records[-1]
    assert set(last["metrics"]) - ONCE_METRICS == TRAIN_METRICS | VAL_METRICS | FINAL_METRICS
    assert [r["step"] for r in records if "val_loss" in r["metrics"]] == [0, last["step"]]
    assert last["metrics"]["final/total_training_time"] >= 2.0
    assert not any(key.startswith("gpu_") for r in records for key in r["metrics"])
    assert torch.load(run_dir / "ckpt_last.pt", weights_only=False)["iteration"] == last["step"]
    assert last["step"] >= 1  # how many steps fit in 2 s depends on the machine: nothing more is asserted


# --- resume: what it checks, what it restores --------------------------------------------------

@pytest.mark.slow
def test_resume_with_another_optimizer_model_size_or_dataset_is_one_line_and_reopens_nothing(tracking_env):
    from adamwprune.data.tokens import byte_encoder, write_documents

    tmp = tracking_env
    data_dir = tmp / "data"  # a small byte-level "shakespeare", so that only the dataset's name differs
    write_documents(data_dir / "shakespeare", dataset="shakespeare", encoder=byte_encoder(), val_every=5,
                    documents=[f"To be, or not to be, that is question {i}. " * 20 for i in range(40)],
                    shard_tokens=None)
    common = [*SMALL, "--log-interval", "2", "--eval-interval", "2", "--tracker", "trackio",
              "--tracker-project", "p-check", "--tracker-run-name", "r1", "--output-dir", str(tmp / "runs")]
    ok(train(tmp, *common, "--max-iters", "2"))
    run_dir = tmp / "runs" / "p-check" / "r1"
    records = journal(run_dir)
    ckpt = run_dir / "ckpt_last.pt"
    changes = [(["--optimizer", "sgd"], "--optimizer is 'sgd', the checkpoint has 'adamw'"),
               (["--model-name", "gpt2"], "--model-name is 'gpt2', the checkpoint has 'gpt2-tiny'"),
               (["--dataset", "shakespeare", "--data-dir", str(data_dir)],
                "--dataset is 'shakespeare', the checkpoint has 'pydocs'"),
               (["--seed", "7", "--weight-decay", "0"],
                "--seed is 7, the checkpoint has 1337; --weight-decay is 0.0, the checkpoint has 0.1")]
    for flags, difference in changes:
        proc = train(tmp, *common, "--max-iters", "4", "--resume", *flags)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"gpt2/train.py: error: cannot resume {ckpt}: {difference}; "
            "resume with the original settings, or start a new run"]
        assert journal(run_dir) == records  # no new start record: the tracked run was not reopened
    resumed = ok(train(tmp, *common, "--max-iters", "4", "--resume", "--eval-interval", "1",
                       "--log-interval", "1", "--eval-samples", "1"))  # these may change
    assert "resuming after iteration 2" in resumed.stdout


@pytest.mark.slow
def test_a_run_that_failed_before_its_first_checkpoint_restarts_under_its_name(tracking_env):
    tmp = tracking_env
    common = [*SMALL, "--optimizer", "sgd", "--grad-clip", "0", "--warmup-iters", "0", "--max-iters", "4",
              "--log-interval", "2", "--eval-interval", "4", "--tracker", "trackio",
              "--tracker-project", "p-restart", "--tracker-run-name", "r1", "--output-dir", str(tmp / "runs")]
    failed = train(tmp, *common, "--learning-rate", "1e12")
    assert failed.returncode == 2 and "training diverged" in failed.stderr
    run_dir = tmp / "runs" / "p-restart" / "r1"
    assert not (run_dir / "ckpt_last.pt").exists() and (run_dir / "metrics.jsonl").exists()
    diverged_rows = trackio_rows("p-restart", "r1")
    assert diverged_rows and "val_loss" in diverged_rows[0]

    again = train(tmp, *common)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        f"gpt2/train.py: error: {run_dir} holds a run that stopped before its first checkpoint; start it "
        "again with --restart (the old run is moved aside) or choose another --tracker-run-name"]
    resume = train(tmp, *common, "--resume")
    assert resume.returncode == 2 and "start it again with --restart" in resume.stderr

    restarted = ok(train(tmp, *common, "--restart"))
    moved = [p for p in run_dir.parent.iterdir() if p.name.startswith("r1.superseded-")]
    assert len(moved) == 1 and f"restart: the earlier run is now {moved[0]}" in restarted.stdout
    record = json.loads((moved[0] / "superseded.json").read_text())
    assert record["trackio_run"] == moved[0].name and record["by"] == str(run_dir)
    assert sorted(trackio_runs("p-restart")) == sorted(["r1", moved[0].name])
    assert trackio_rows("p-restart", moved[0].name) == diverged_rows  # the old attempt, renamed
    rows = trackio_rows("p-restart", "r1")
    assert steps_of(rows, "train_loss") == [2, 4] and steps_of(rows, "val_loss") == [0, 4]
    assert all(math.isfinite(row["train_loss"]) for row in rows if "train_loss" in row)
    assert [e["event"] for e in journal(run_dir) if "event" in e] == ["start", "end"]


@pytest.mark.slow
def test_resume_after_kill_9_at_a_random_step_matches_an_uninterrupted_run(tracking_env):
    """The journal may be ahead of ckpt_last: no step is logged twice, best and elapsed time go on."""
    import random

    tmp = tracking_env
    kill_at = random.Random().randint(7, 16)  # an eval point (every 5) lies behind it
    common = [*SMALL, "--max-iters", "20", "--log-interval", "1", "--eval-interval", "5",
              "--tracker", "none", "--tracker-project", "p-crash", "--output-dir", str(tmp / "runs")]
    crashed_dir = tmp / "runs" / "p-crash" / "crashed"
    process = subprocess.Popen([sys.executable, TRAIN, *common, "--tracker-run-name", "crashed"], cwd=tmp,
                               env=env_for(tmp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if (crashed_dir / "metrics.jsonl").exists():
                steps = [r["step"] for r in journal(crashed_dir) if "step" in r]
                if steps and max(steps) >= kill_at:
                    break
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, f"the trainer ended before the kill at step {kill_at}"
    saved = torch.load(crashed_dir / "ckpt_last.pt", weights_only=False)
    logged = max(r["step"] for r in journal(crashed_dir) if "step" in r)
    assert saved["iteration"] < logged, (kill_at, saved["iteration"], logged)  # journal ahead of ckpt_last

    ok(train(tmp, *common, "--tracker-run-name", "crashed", "--resume"))
    ok(train(tmp, *common, "--tracker-run-name", "straight"))

    def metrics(name):
        rows = [r for r in journal(tmp / "runs" / "p-crash" / name) if "step" in r]
        steps = [(r["step"], key) for r in rows for key in r["metrics"]]
        assert len(steps) == len(set(steps)), f"a step logged twice (kill at {kill_at})"
        return {(r["step"], key): value for r in rows for key, value in r["metrics"].items()
                if key in ("train_loss", "val_loss", "learning_rate", "final/best_val_loss")}

    assert metrics("crashed") == metrics("straight"), f"kill at step {kill_at}"
    best = {name: torch.load(tmp / "runs" / "p-crash" / name / "ckpt_best.pt", weights_only=False)
            for name in ("crashed", "straight")}
    assert best["crashed"]["val_loss"] == best["straight"]["val_loss"]
    assert best["crashed"]["iteration"] == best["straight"]["iteration"]
    for key, tensor in best["straight"]["model"].items():
        assert torch.equal(best["crashed"]["model"][key], tensor), key
    final_time = [r["metrics"]["final/total_training_time"] for r in journal(crashed_dir)
                  if "final/total_training_time" in r.get("metrics", {})]
    assert final_time and final_time[-1] > saved["training_time"]  # the clock went on from the checkpoint


def test_an_infinite_loss_stops_the_run_as_diverged(tracking_env):
    from adamwprune.data import get_dataset
    from adamwprune.train.distributed import DistContext
    from adamwprune.train.gpt2 import GPT2Adapter
    from adamwprune.train.loop import DivergedError, train as train_loop
    from adamwprune.train.settings import TrainSettings

    class InfiniteLoss(GPT2Adapter):
        def loss(self, model, batch):
            return super().loss(model, batch) * float("inf")

    adapter = InfiniteLoss(get_dataset("pydocs"), model_name="gpt2-tiny", block_size=16)
    settings = TrainSettings(model_name="gpt2-tiny", dataset="pydocs", block_size=16, batch_size=2,
                             eval_samples=1, max_iters=4, log_interval=1, save_checkpoint=False)
    with pytest.raises(DivergedError, match="loss is inf at iteration 1"):
        train_loop(adapter, settings, ctx=DistContext(device="cpu"), tracker=None,
                   run_dir=tracking_env / "run", run_info={})


@pytest.mark.slow
def test_a_run_records_where_it_came_from_in_run_json_trackio_and_wandb(tracking_env):
    import importlib.metadata
    import shlex
    import socket

    from adamwprune.tracking.readback import wandb_config, wandb_run_dir

    tmp = tracking_env
    args = [*SMALL, "--max-iters", "2", "--eval-interval", "2", "--seed", "42", "--tracker", "both",
            "--tracker-project", "p-meta", "--tracker-run-name", "r1", "--output-dir", str(tmp / "runs")]
    ok(train(tmp, *args))
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    expected = {"git_commit": commit, "command_line": shlex.join([TRAIN, *args]), "seed": 42,
                "world_size": 1, "device_names": "cpu", "hostname": socket.gethostname(),
                "python_version": sys.version.split()[0], "torch_version": torch.__version__,
                "trackio_version": importlib.metadata.version("trackio"),
                "wandb_version": importlib.metadata.version("wandb"), "optimizer": "adamw",
                "learning_rate": 2e-3}
    run_json = json.loads((tmp / "runs" / "p-meta" / "r1" / "run.json").read_text())
    code = ("import json, sys\nfrom trackio.sqlite_storage import SQLiteStorage\n"
            "print(json.dumps(SQLiteStorage.get_run_config(sys.argv[1], sys.argv[2])))")
    trackio = json.loads(subprocess.run([sys.executable, "-c", code, "p-meta", "r1"], capture_output=True,
                                        text=True, timeout=120, check=True).stdout.strip().splitlines()[-1])
    wandb = wandb_config(wandb_run_dir(run_json["wandb_id"], tmp / "wandb-root"))
    for where, config in (("run.json", run_json["config"]), ("trackio", trackio), ("wandb", wandb)):
        assert {key: config.get(key) for key in expected} == expected, where
        assert isinstance(config["git_dirty"], bool) and "cuda_version" in config, where
        assert "momentum" not in config, where  # SGD's setting does not apply to an AdamW run
