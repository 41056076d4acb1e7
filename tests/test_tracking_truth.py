"""The delivery summary tells the truth: counts confirmed from each backend's own storage, a
dead delivery process started again, steps a backend drops rejected at the call, whole journal
records only, and a full disk that costs records (counted) but never the run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from adamwprune.tracking import ExperimentTracker
from adamwprune.tracking.journal import JournalWriter, read_journal
from adamwprune.tracking.readback import wandb_history
from adamwprune.tracking.runinfo import read_run_info
from helpers import trackio_alerts, trackio_rows

pytestmark = pytest.mark.slow


def wandb_steps(tracking_env: Path, run_dir: Path) -> list[int]:
    """Every history step W&B holds for the run, over all its local run directories."""
    wandb_id = read_run_info(run_dir).wandb_id
    steps = []
    for directory in sorted((tracking_env / "wandb-root" / "wandb").glob(f"*run-*-{wandb_id}")):
        steps += [row["_step"] for row in wandb_history(directory)[0]]
    return sorted(steps)


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "adamwprune.tracking"]


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of ``size`` at ``path``: a real full disk (needs root, as CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_a_killed_delivery_process_is_started_again_and_nothing_is_lost_or_repeated(tracking_env, caplog):
    run_dir = tracking_env / "r"
    tracker = ExperimentTracker("both", project="p-restart", run_name="r", run_dir=run_dir)
    for step in range(100):
        tracker.log({"loss": 1.0 / (step + 1)}, step=step)
    time.sleep(3)  # part of it delivered
    first = tracker._delivery.pid
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    step = 100
    while tracker.restarts == 0 and time.monotonic() < deadline:  # log() notices within a second
        tracker.log({"loss": 1.0 / (step + 1)}, step=step)
        step += 1
        time.sleep(0.01)
    assert tracker.restarts == 1 and tracker._delivery.pid != first
    for step in range(step, step + 50):
        tracker.log({"loss": 1.0 / (step + 1)}, step=step)
    result = tracker.finish()
    logged = list(range(step + 1))
    for name in ("trackio", "wandb"):
        backend = result["backends"][name]
        assert (backend["records"], backend["confirmed"], backend["missing"]) == (len(logged), len(logged), 0), name
    assert [row["step"] for row in trackio_rows("p-restart", "r")] == logged  # each once
    assert wandb_steps(tracking_env, run_dir) == logged
    assert result["backends"]["wandb"]["where"].count("offline-run-") == 2  # wandb sync takes both sessions
    restarted = [m for m in messages(caplog) if "started it again" in m]
    assert len(restarted) == 1 and f"(pid {first}) was killed by SIGKILL" in restarted[0]
    assert "(1 of 3)" in restarted[0]


def test_a_delivery_process_killed_at_the_end_is_started_again_to_drain(tracking_env, caplog):
    run_dir = tracking_env / "r"
    tracker = ExperimentTracker("trackio", project="p-end", run_name="r", run_dir=run_dir)
    for step in range(40):
        tracker.log({"loss": float(step)}, step=step)
    os.kill(tracker._delivery.pid, signal.SIGKILL)
    tracker._delivery.process.wait()
    result = tracker.finish()  # before log() could notice
    assert tracker.restarts == 1
    assert result["backends"]["trackio"]["confirmed"] == 40
    assert len(trackio_rows("p-end", "r")) == 40


def test_when_every_restart_dies_the_summary_claims_nothing(tracking_env, caplog, monkeypatch):
    monkeypatch.setattr("adamwprune.tracking.tracker.MAX_RESTARTS", 0)
    tracker = ExperimentTracker("trackio", project="p-dead", run_name="r", run_dir=tracking_env / "r")
    tracker.log({"loss": 1.0}, step=0)
    os.kill(tracker._delivery.pid, signal.SIGKILL)
    tracker._delivery.process.wait()
    assert tracker.finish() is None
    text = "\n".join(messages(caplog))
    assert "unconfirmed" in text and "resend: " in text and "adamwprune replay" in text
    assert "confirmed in" not in text and "delivered" not in text


def test_a_lower_step_is_rejected_at_the_call_for_wandb_only(tracking_env, caplog):
    run_dir = tracking_env / "r"
    with ExperimentTracker("both", project="p-lower", run_name="r", run_dir=run_dir) as tracker:
        tracker.log({"a": 1.0}, step=10)
        tracker.log({"a": 2.0}, step=5)
        tracker.log({"a": 3.0}, step=4)
        tracker.log({"a": 4.0})  # the automatic step continues from the highest: 11
        assert tracker.rejected == {"wandb": 2}
        result = tracker.finish()
    assert [r["step"] for r in read_journal(run_dir / "metrics.jsonl") if "step" in r] == [10, 5, 4, 11]
    wandb = result["backends"]["wandb"]
    assert (wandb["records"], wandb["confirmed"], wandb["rejected"], wandb["missing"]) == (4, 2, 2, 0)
    assert wandb_steps(tracking_env, run_dir) == [10, 11]
    assert [row["step"] for row in trackio_rows("p-lower", "r")] == [10, 5, 4, 11]
    at_call = [m for m in messages(caplog) if "lower than step 10" in m]
    assert len(at_call) == 1 and "W&B drops such a record" in at_call[0]
    summary = [m for m in messages(caplog) if m.startswith("tracking: wandb:")]
    assert summary[0].startswith("tracking: wandb: 2 of 4 records confirmed in its offline run files, "
                                 "2 rejected (W&B drops a step lower than its last one (10))")


def test_trackio_on_a_full_disk_confirms_only_what_its_store_holds(tracking_env, monkeypatch, caplog):
    with small_disk(tracking_env / "full", "96k") as disk:
        monkeypatch.setenv("TRACKIO_DIR", str(disk))
        metrics = {f"metric_{i}": float(i) for i in range(40)}
        with ExperimentTracker("trackio", project="p-full", run_name="r",
                               run_dir=tracking_env / "r") as tracker:
            for step in range(300):
                tracker.log(metrics, step=step)
            result = tracker.finish()
        trackio = result["backends"]["trackio"]
        stored = len(trackio_rows("p-full", "r"))
    assert trackio["records"] == 300 and stored < 300
    assert trackio["confirmed"] == stored and trackio["missing"] == 300 - stored
    line, = [m for m in messages(caplog) if m.startswith("tracking: trackio:")]
    assert f"{stored} of 300 records confirmed in its SQLite store, {300 - stored} missing" in line
    assert "resend: " in line and "--tracker trackio" in line


def test_a_full_run_directory_loses_counted_records_never_the_run(tracking_env, caplog):
    with small_disk(tracking_env / "full", "64k") as disk:
        run_dir = disk / "r"
        with ExperimentTracker("trackio", project="p-torn", run_name="r", run_dir=run_dir) as tracker:
            for step in range(2000):
                tracker.log({"loss": 1.0 / (step + 1), "note": "x" * 40}, step=step)
            with open(disk / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
                while filler.write(b"\0" * 64):  # not a byte left: the end record cannot be written either
                    pass
            result = tracker.finish()  # no exception
        lines = (run_dir / "metrics.jsonl").read_bytes().splitlines(keepends=True)
        journaled = [orjson.loads(line) for line in lines]  # every line whole: no torn record
    assert all(line.endswith(b"\n") for line in lines)
    steps = [r["step"] for r in journaled if "step" in r]
    # not always a prefix: the delivery process shares the disk, and space it frees lets a later record in
    assert steps == sorted(set(steps)) and set(steps) <= set(range(2000)) and 0 < len(steps) < 2000
    assert tracker.lost_records == 2000 - len(steps)
    assert result["backends"]["trackio"]["confirmed"] == len(steps) == len(trackio_rows("p-torn", "r"))
    text = "\n".join(messages(caplog))
    assert f"{2000 - len(steps)} records could not be written to the journal and are lost" in text
    assert journaled[-1].get("event") == "end" or "cannot write the end of the run" in text


def test_an_end_record_that_cannot_be_written_still_ends_the_run(tracking_env, caplog):
    import resource

    run_dir = tracking_env / "r"
    tracker = ExperimentTracker("trackio", project="p-noend", run_name="r", run_dir=run_dir)
    for step in range(10):
        tracker.log({"a": float(step)}, step=step)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, ((run_dir / "metrics.jsonl").stat().st_size, hard))
    try:  # this process can no longer grow a file; the delivery process (started before) still can
        result = tracker.finish("interrupted")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert "end" not in [r.get("event") for r in read_journal(run_dir / "metrics.jsonl")]
    assert result["status"] == "interrupted" and result["backends"]["trackio"]["confirmed"] == 10
    assert trackio_alerts("p-noend", "r") == [("run interrupted", "warn")]
    assert any("cannot write the end of the run" in m for m in messages(caplog))


def test_a_short_write_is_cut_back_and_raised(tmp_path):
    import resource

    path = tmp_path / "metrics.jsonl"
    writer = JournalWriter(path)
    writer.write_event("start")
    whole = path.stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (whole + 20, hard))  # the next record fits only in part
    try:
        with pytest.raises(OSError):
            writer.write_metrics(1, {"loss": 1.0, "name": "y" * 100}, None)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert path.stat().st_size == whole  # the partial record was cut back
    writer.write_metrics(2, {"loss": 2.0}, None)
    writer.close()
    assert [r.get("step") for r in read_journal(path)] == [None, 2]


def test_end_status_reaches_both_backends(tracking_env):
    run_dir = tracking_env / "r"
    with pytest.raises(KeyboardInterrupt):
        with ExperimentTracker("both", project="p-status", run_name="r", run_dir=run_dir) as tracker:
            tracker.log({"a": 1.0}, step=0)
            raise KeyboardInterrupt
    assert trackio_alerts("p-status", "r") == [("run interrupted", "warn")]
    wandb_id = read_run_info(run_dir).wandb_id
    directory, = (tracking_env / "wandb-root" / "wandb").glob(f"*run-*-{wandb_id}")
    assert wandb_history(directory)[1] == 1  # W&B's exit code: not a clean finish


def test_a_checkpoint_that_does_not_fit_is_one_line_and_the_previous_one_stays(tmp_path, capsys):
    import torch

    from adamwprune.train.checkpoint import save_atomic, save_or_warn

    with small_disk(tmp_path / "full", "64k") as disk:
        path = disk / "ckpt_last.pt"
        save_atomic({"w": torch.ones(10)}, path)
        assert save_or_warn({"w": torch.zeros(100_000)}, path) is False
        assert torch.equal(torch.load(path)["w"], torch.ones(10))
        assert sorted(p.name for p in disk.iterdir()) == ["ckpt_last.pt"]  # no temporary file left
    line, = capsys.readouterr().err.splitlines()
    assert line.startswith(f"warning: cannot save {path} (No space left on device); the previous")


def test_the_delivery_status_file_failing_is_reported_and_the_result_still_arrives(tracking_env, caplog):
    run_dir = tracking_env / "r"
    tracker = ExperimentTracker("trackio", project="p-status-file", run_name="r", run_dir=run_dir)
    (run_dir / "delivery.json").mkdir()  # the status file cannot be replaced: writing it fails
    for step in range(20):
        tracker.log({"a": float(step)}, step=step)
    result = tracker.finish()
    assert result["backends"]["trackio"]["confirmed"] == 20
    reported = [m for m in messages(caplog) if "cannot write" in m and "delivery.json" in m]
    assert len(reported) == 1 and "delivery goes on" in reported[0]
