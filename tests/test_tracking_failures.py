"""Nothing is lost and nothing stops training: kill -9, replay, raising and hanging backends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import orjson
import pytest

from adamwprune.tracking import ExperimentTracker
from adamwprune.tracking.journal import read_journal
from adamwprune.tracking.readback import wandb_history, wandb_run_dir
from adamwprune.tracking.runinfo import read_run_info
from helpers import trackio_rows

LOGGER = textwrap.dedent("""
    import sys, time
    from adamwprune.tracking import ExperimentTracker
    tracker = ExperimentTracker(sys.argv[2], project="p-kill", run_name="r", run_dir=sys.argv[1])
    print("delivery", tracker._delivery.pid, flush=True)
    step = 0
    while True:
        tracker.log({"train_loss": 1.0 / (step + 1), "learning_rate": 1e-3}, step=step)
        print("acked", step, flush=True)   # log() has returned: the record must survive
        step += 1
        time.sleep(0.002)
""")


def _start_logger(run_dir, trackers):
    proc = subprocess.Popen([sys.executable, "-c", LOGGER, str(run_dir), trackers],
                            stdout=subprocess.PIPE, text=True)
    delivery_pid, acked = None, -1
    for line in proc.stdout:
        word, _, number = line.partition(" ")
        if word == "delivery":
            delivery_pid = int(number)
        elif word == "acked":
            acked = int(number)
            if acked >= 300:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for line in proc.stdout:  # acknowledgements already in the pipe count too
        acked = int(line.split()[1])
    return acked, delivery_pid


def _wait_for_delivery(run_dir, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = orjson.loads((run_dir / "delivery.json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            status = {}
        if status.get("state") == "done":
            return status
        time.sleep(0.2)
    raise AssertionError("delivery did not finish")


@pytest.mark.slow
def test_sigkill_of_trainer_loses_no_acknowledged_record(tracking_env):
    run_dir = tracking_env / "run"
    acked, _ = _start_logger(run_dir, "both")
    journal_steps = [r["step"] for r in read_journal(run_dir / "metrics.jsonl") if "step" in r]
    assert journal_steps[: acked + 1] == list(range(acked + 1))

    status = _wait_for_delivery(run_dir)
    assert status["status"] == "crashed"
    assert status["backends"]["trackio"]["confirmed"] == status["backends"]["trackio"]["records"] == len(journal_steps)
    assert status["backends"]["wandb"]["confirmed"] == len(journal_steps)
    trackio_steps = [row["step"] for row in trackio_rows("p-kill", "r")]
    assert trackio_steps == journal_steps
    history, exit_code = wandb_history(wandb_run_dir(read_run_info(run_dir).wandb_id,
                                                     tracking_env / "wandb-root"))
    assert [row["_step"] for row in history] == journal_steps
    assert exit_code == 1  # W&B marks the run failed


@pytest.mark.slow
def test_replay_recovers_when_trainer_and_delivery_are_both_killed(tracking_env):
    run_dir = tracking_env / "run"
    acked, delivery_pid = _start_logger(run_dir, "trackio")
    os.kill(delivery_pid, signal.SIGKILL)
    journal_steps = [r["step"] for r in read_journal(run_dir / "metrics.jsonl") if "step" in r]
    assert len(journal_steps) >= acked + 1

    replay = [sys.executable, "-m", "adamwprune", "replay", str(run_dir), "--tracker", "trackio"]
    first = subprocess.run(replay, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert [row["step"] for row in trackio_rows("p-kill", "r")] == journal_steps  # no gaps, no repeats
    second = subprocess.run(replay, capture_output=True, text=True, timeout=120)
    n = len(journal_steps)
    assert f"replay: trackio: {n} of {n} records confirmed in its SQLite store" in second.stdout
    assert f"(0 sent now, {n} already there)" in second.stdout
    assert len(trackio_rows("p-kill", "r")) == len(journal_steps)


@pytest.mark.slow
def test_replay_pushes_a_local_run_to_wandb_later(tracking_env):
    run_dir = tracking_env / "local"
    with ExperimentTracker("none", project="p-later", run_name="r", run_dir=run_dir) as tracker:
        for step in range(5):
            tracker.log({"train_loss": 5.0 - step}, step=step)
    replay = [sys.executable, "-m", "adamwprune", "replay", str(run_dir), "--tracker", "wandb"]
    done = subprocess.run(replay, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "replay: wandb: 5 of 5 records confirmed in its offline run files" in done.stdout
    assert "(5 sent now, 0 already there)" in done.stdout
    history, exit_code = wandb_history(wandb_run_dir(read_run_info(run_dir).wandb_id,
                                                     tracking_env / "wandb-root"))
    assert [(r["_step"], r["train_loss"]) for r in history] == [(s, 5.0 - s) for s in range(5)]
    assert exit_code == 0


FAULTY = textwrap.dedent("""
    import time
    from adamwprune.tracking.backends import Backend

    class RaisingBackend(Backend):
        def start(self):
            pass
        def log(self, metrics, step):
            raise RuntimeError("disk on fire")
        def finish(self, status):
            pass

    class FailingStartBackend(Backend):
        def start(self):
            raise ConnectionError("server unreachable")

    class HangingBackend(Backend):
        def start(self):
            pass
        def log(self, metrics, step):
            time.sleep(3600)
""")


@pytest.fixture
def faulty_backends(tracking_env, monkeypatch):
    (tracking_env / "faulty_backends.py").write_text(FAULTY)
    monkeypatch.setenv("PYTHONPATH", str(tracking_env))
    return {name: f"faulty_backends:{name.title()}Backend" for name in ("raising", "failingstart")}


@pytest.mark.slow
def test_raising_backends_are_reported_once_and_spare_the_others(tracking_env, faulty_backends, capfd,
                                                                 caplog):
    extra = {"raising": "faulty_backends:RaisingBackend",
             "broken": "faulty_backends:FailingStartBackend"}
    with ExperimentTracker("trackio", project="p-raise", run_name="r", run_dir=tracking_env / "r",
                           extra_backends=extra) as tracker:
        for step in range(50):
            tracker.log({"x": float(step)}, step=step)
    status = orjson.loads((tracking_env / "r" / "delivery.json").read_bytes())["backends"]
    assert status["trackio"]["confirmed"] == 50 and status["trackio"]["state"] == "done"
    assert status["raising"]["failed"] == 50 and "disk on fire" in status["raising"]["error"]
    assert status["broken"]["state"] == "failed" and status["broken"]["failed"] == 50
    assert [row["x"] for row in trackio_rows("p-raise", "r")] == [float(s) for s in range(50)]
    assert capfd.readouterr().out == ""
    err = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")  # logged, once
    assert err.count("raising failed at log") == 1
    assert err.count("broken failed at start (ConnectionError: server unreachable)") == 1
    assert "adamwprune replay" in err


@pytest.mark.slow
def test_hanging_backend_neither_blocks_training_nor_the_other_backend(tracking_env, faulty_backends,
                                                                       caplog):
    tracker = ExperimentTracker("trackio", project="p-hang", run_name="r", run_dir=tracking_env / "r",
                                extra_backends={"stuck": "faulty_backends:HangingBackend"},
                                finish_timeout=4)
    for step in range(200):
        tracker.log({"x": float(step)}, step=step)
    started = time.monotonic()
    result = tracker.finish()
    assert time.monotonic() - started < 20
    assert result["backends"]["stuck"]["state"] == "hung"
    assert result["backends"]["trackio"]["confirmed"] == 200
    assert len(trackio_rows("p-hang", "r")) == 200
    assert ("tracking: stuck: 0 of 200 records sent, unconfirmed (it did not finish) (hung: no answer within 2 s)"
            in caplog.text)
