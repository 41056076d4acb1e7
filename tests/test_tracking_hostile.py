"""A hostile user: two writers on one run, repeated replays, a damaged journal, bad values and
names. Each gets one line (or a clear exception from the API), and nothing is duplicated."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap

import orjson
import pytest

from adamwprune.errors import UserError
from adamwprune.tracking import ExperimentTracker
from adamwprune.tracking.readback import wandb_history
from adamwprune.tracking.runinfo import read_run_info
from helpers import REPO, child_env, kconfig, trackio_rows


def replay(run_dir, tracker, *extra):
    return subprocess.run([sys.executable, "-m", "adamwprune", "replay", str(run_dir), "--tracker", tracker,
                           *extra], capture_output=True, text=True, timeout=180, env=child_env())


def one_line_error(proc, *words):
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    line, = [text for text in proc.stderr.splitlines() if "error" in text]
    for word in words:
        assert word in line, line
    return line


# --- one writer per run -------------------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    run_dir = tmp_path / "r"
    first = ExperimentTracker("none", project="p", run_name="r", run_dir=run_dir)
    first.log({"a": 1.0}, step=0)
    with pytest.raises(UserError, match=rf"{run_dir} is in use by pid {os.getpid()}; one process writes"):
        ExperimentTracker("none", project="p", run_name="r", run_dir=run_dir, resume=True)
    first.finish()
    second = ExperimentTracker("none", project="p", run_name="r", run_dir=run_dir, resume=True)  # free now
    second.finish()


@pytest.mark.slow
def test_a_writer_killed_with_sigkill_leaves_the_run_free_and_replay_respects_a_live_one(tmp_path):
    run_dir = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from adamwprune.tracking import ExperimentTracker
        tracker = ExperimentTracker("none", project="p", run_name="r", run_dir={str(run_dir)!r})
        tracker.log({{"a": 1.0}}, step=0)
        print("ready", flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True, env=child_env())
    assert holder.stdout.readline().strip() == "ready"
    line = one_line_error(replay(run_dir, "trackio"), f"is in use by pid {holder.pid}", "replay it")
    assert line.startswith("adamwprune: error:")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    resumed = ExperimentTracker("none", project="p", run_name="r", run_dir=run_dir, resume=True)
    resumed.log({"a": 2.0}, step=1)
    resumed.finish()


# --- replay that never duplicates ------------------------------------------------------------

@pytest.mark.slow
def test_replaying_to_wandb_twice_adds_nothing_the_second_time(tracking_env):
    run_dir = tracking_env / "r"
    with ExperimentTracker("none", project="p-replay", run_name="r", run_dir=run_dir) as tracker:
        for step in range(30):
            tracker.log({"loss": 1.0 / (step + 1)}, step=step)
    delivery_before = (run_dir / "delivery.json").read_bytes() if (run_dir / "delivery.json").exists() else None
    first, second = replay(run_dir, "both"), replay(run_dir, "both")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "wandb: 30 of 30 records confirmed in its offline run files" in second.stdout
    assert second.stdout.count("(0 sent now, 30 already there)") == 2
    wandb_id = read_run_info(run_dir).wandb_id
    steps = sorted(row["_step"] for directory in (tracking_env / "wandb-root" / "wandb").glob(f"*run-*-{wandb_id}")
                   for row in wandb_history(directory)[0])
    assert steps == list(range(30))  # one row per step over every replay
    assert [row["step"] for row in trackio_rows("p-replay", "r")] == list(range(30))
    assert orjson.loads((run_dir / "replay.json").read_bytes())["state"] == "done"
    after = (run_dir / "delivery.json").read_bytes() if (run_dir / "delivery.json").exists() else None
    assert after == delivery_before  # replay keeps its own status


@pytest.mark.slow
def test_journal_lines_that_are_not_records_are_skipped_counted_and_named(tracking_env):
    run_dir = tracking_env / "r"
    with ExperimentTracker("none", project="p-bad", run_name="r", run_dir=run_dir) as tracker:
        for step in range(5):
            tracker.log({"loss": float(step)}, step=step)
    journal = run_dir / "metrics.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:3]) + b'{"step": 3}\n42\nnot json\n' + b"".join(lines[3:]))
    done = replay(run_dir, "trackio")
    assert done.returncode == 0, done.stderr
    assert "skipped 3 journal lines that are not records (1 not JSON, 2 not record-shaped)" in done.stdout
    assert "trackio: 5 of 5 records confirmed" in done.stdout
    reported = [line for line in done.stderr.splitlines() if "not a record" in line]
    assert len(reported) == 1 and '{"step":3}' in reported[0] and "no metrics object" in reported[0]
    assert [row["step"] for row in trackio_rows("p-bad", "r")] == list(range(5))


@pytest.mark.slow
def test_a_fresh_run_never_appends_to_an_older_trackio_run_of_the_same_name(tracking_env, caplog):
    for where in ("a", "b"):
        with ExperimentTracker("trackio", project="p-same", run_name="r", run_dir=tracking_env / where) as tracker:
            tracker.log({"loss": 1.0}, step=0)
            result = tracker.finish()
    assert result["backends"]["trackio"]["state"] == "failed"
    assert "already has a run named r" in result["backends"]["trackio"]["error"]
    assert len(trackio_rows("p-same", "r")) == 1


# --- one line for every bad input ------------------------------------------------------------

@pytest.mark.parametrize("timeout", ["-5", "nan", "0"])
def test_replay_refuses_a_timeout_that_is_not_positive(tmp_path, timeout):
    one_line_error(replay(tmp_path, "trackio", "--timeout", timeout), "--timeout must be a positive number")


def test_replay_of_a_regular_file_or_a_bad_run_json_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(replay(tmp_path / "file", "trackio"), "is not a run directory (it is a file)")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    one_line_error(replay(tmp_path / "run", "trackio"), "run.json is not a run's run.json")
    one_line_error(replay(tmp_path / "run", "none"), "replay needs a tracker")


def test_bad_steps_and_values_are_refused_by_name(tmp_path):
    tracker = ExperimentTracker("none", project="p", run_name="r", run_dir=tmp_path / "r")
    with pytest.raises(TypeError, match=r"step must be a whole number, got 2\.9"):
        tracker.log({"a": 1.0}, step=2.9)
    with pytest.raises(ValueError, match=r"step must be >= 0, got -1"):
        tracker.log({"a": 1.0}, step=-1)
    with pytest.raises(ValueError, match=r"metric 'huge' cannot be logged"):
        tracker.log({"fine": 1.0, "huge": 10**30}, step=0)
    with pytest.raises(ValueError, match=r"metric 'text' cannot be logged"):
        tracker.log({"text": "\ud800"}, step=0)
    with pytest.raises(TypeError, match=r"metric names must be strings, got 3"):
        tracker.log({3: math.nan}, step=0)
    assert tracker.nonfinite_counts == {}  # refused before anything was counted
    tracker.log({"a": 1.0}, step=0)
    tracker.finish()


def test_run_names_are_one_directory_name(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "gpt2" / "train.py"), "--dataset", "pydocs",
                           "--tracker-run-name", "../../escaped", "--output-dir", str(tmp_path / "out"),
                           "--max-iters", "1", "--device", "cpu"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=child_env())
    one_line_error(proc, "run name '../../escaped' must be one directory name")
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


def test_a_defconfig_that_is_not_utf8_is_one_line(tmp_path):
    (tmp_path / "bad").write_bytes(b'CONFIG_MODEL_GPT2=y\nCONFIG_DATASET="py\xffdocs"\n')
    proc = kconfig(tmp_path, "defconfig", str(tmp_path / "bad"))
    one_line_error(proc, "line 2 is not UTF-8 text (byte 0xff)")


def test_a_damaged_config_py_is_regenerated(tmp_path):
    assert kconfig(tmp_path, "defconfig", "gpt2-pydocs-cpu").returncode == 0
    with open(tmp_path / "config.py", "a") as config:
        config.write("x = (\n")
    proc = subprocess.run([sys.executable, "-c", "from adamwprune.kconfig import load_config; "
                           "print(load_config().DATASET)"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env=child_env())
    assert proc.returncode == 0 and proc.stdout == "pydocs\n", proc.stderr
    assert "config.py was damaged (SyntaxError" in proc.stderr and "regenerated it" in proc.stderr
    assert "x = (" not in (tmp_path / "config.py").read_text()
