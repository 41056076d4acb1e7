"""ExperimentTracker through real Trackio and real W&B (offline), read back from their stores."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import orjson
import pytest

from adamwprune.errors import UserError
from adamwprune.tracking import ExperimentTracker
from adamwprune.tracking.commands import trackio_show_command
from adamwprune.tracking.readback import wandb_history, wandb_run_dir
from adamwprune.tracking.runinfo import read_run_info
from helpers import trackio_rows


def _log_a_run(tracker):
    tracker.log({"val_loss": 10.9, "val_perplexity": math.exp(10.9)}, step=0)
    for step in range(10, 60, 10):
        tracker.log({"train_loss": 10.0 - step / 10, "learning_rate": 6e-4 * step / 50}, step=step)
    tracker.log({"val_loss": float("nan"), "gpu_load_balance_quality": "Good"}, step=50)


@pytest.mark.slow
def test_both_backends_receive_every_point_with_the_same_steps(tracking_env):
    run_dir = tracking_env / "runs" / "r1"
    with ExperimentTracker("wandb,trackio", project="proj-both", run_name="r1", run_dir=run_dir,
                           config={"lr": 6e-4, "optimizer": "adamw"}) as tracker:
        _log_a_run(tracker)
    rows = trackio_rows("proj-both", "r1")
    assert [row["step"] for row in rows] == [0, 10, 20, 30, 40, 50, 50]
    assert rows[0]["val_loss"] == pytest.approx(10.9)
    assert rows[3]["train_loss"] == pytest.approx(7.0) and rows[3]["learning_rate"] == pytest.approx(3.6e-4)
    assert math.isnan(rows[-1]["val_loss"]) and rows[-1]["gpu_load_balance_quality"] == "Good"

    history, exit_code = wandb_history(wandb_run_dir(read_run_info(run_dir).wandb_id,
                                                     tracking_env / "wandb-root"))
    assert exit_code == 0
    by_step = {}
    for row in history:
        by_step.setdefault(row["_step"], {}).update(row)
    assert sorted(by_step) == [0, 10, 20, 30, 40, 50]
    assert by_step[30]["train_loss"] == pytest.approx(7.0)
    assert math.isnan(by_step[50]["val_loss"]) and by_step[50]["train_loss"] == pytest.approx(5.0)


@pytest.mark.slow
def test_steps_auto_increment_when_not_given(tracking_env):
    with ExperimentTracker("trackio", project="proj-auto", run_name="r", run_dir=tracking_env / "r") as t:
        t.log({"a": 1.0})
        t.log({"a": 2.0})
        t.log({"a": 3.0}, step=10)
        t.log({"a": 4.0})
        t.log_system({"gpu_total_power": 500.0})
    rows = trackio_rows("proj-auto", "r")
    assert [(r["step"], r.get("a", r.get("gpu_total_power"))) for r in rows] == \
        [(0, 1.0), (1, 2.0), (10, 3.0), (11, 4.0), (11, 500.0)]


def test_tracker_none_writes_a_journal_and_imports_no_tracker(tmp_path):
    code = ("import sys\nfrom adamwprune.tracking import ExperimentTracker\n"
            f"t = ExperimentTracker('none', project='p', run_name='r', run_dir={str(tmp_path / 'r')!r})\n"
            "t.log({'x': 1.0}, step=3)\nt.finish()\n"
            "print('trackio' in sys.modules, 'wandb' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"
    journal = (tmp_path / "r" / "metrics.jsonl").read_bytes().splitlines()
    assert orjson.loads(journal[1])["metrics"] == {"x": 1.0}
    assert not (tmp_path / "r" / "delivery.json").exists()


def test_nonzero_rank_tracks_nothing(tracking_env, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    tracker = ExperimentTracker("both", project="p", run_name="r", run_dir=tracking_env / "r")
    tracker.log({"x": 1.0}, step=0)
    assert tracker.finish() is None
    assert not tracker.enabled and not (tracking_env / "r").exists()


def test_online_wandb_without_login_fails_fast(tracking_env, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    started = time.monotonic()
    with pytest.raises(UserError, match="wandb login") as err:
        ExperimentTracker("wandb", project="p", run_name="r", run_dir=tracking_env / "r")
    assert time.monotonic() - started < 2.0
    assert "WANDB_MODE=offline" in str(err.value)
    assert not (tracking_env / "r").exists()


@pytest.mark.slow
def test_wandb_offline_switch_overrides_online_mode(tracking_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    with ExperimentTracker("wandb", project="p-off", run_name="r", run_dir=tracking_env / "r",
                           wandb_offline=True) as tracker:
        tracker.log({"x": 1.0}, step=1)
    history, _ = wandb_history(wandb_run_dir(read_run_info(tracking_env / "r").wandb_id,
                                             tracking_env / "wandb-root"))
    assert [row["x"] for row in history] == [1.0]


def test_unwritable_trackio_dir_is_a_clear_error(tracking_env, monkeypatch):
    blocker = tracking_env / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TRACKIO_DIR", str(blocker / "trackio"))
    with pytest.raises(UserError, match="Trackio directory .* is not writable.*TRACKIO_DIR"):
        ExperimentTracker("trackio", project="p", run_name="r", run_dir=tracking_env / "r")


def test_bad_wandb_mode_and_reused_run_dir_are_clear_errors(tracking_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "ofline")
    with pytest.raises(UserError, match="WANDB_MODE='ofline'"):
        ExperimentTracker("wandb", project="p", run_name="r", run_dir=tracking_env / "r")
    ExperimentTracker("none", project="p", run_name="r", run_dir=tracking_env / "r2").finish()
    with pytest.raises(UserError, match="already holds a run journal; resume it"):
        ExperimentTracker("none", project="p", run_name="r", run_dir=tracking_env / "r2")


@pytest.mark.slow
def test_resume_continues_the_same_runs(tracking_env):
    run_dir = tracking_env / "r"
    with ExperimentTracker("both", project="p-res", run_name="r", run_dir=run_dir) as tracker:
        tracker.log({"train_loss": 3.0}, step=10)
    first_id = read_run_info(run_dir).wandb_id
    with ExperimentTracker("both", project="p-res", run_name="r", run_dir=run_dir, resume=True) as tracker:
        tracker.log_system({"gpu_total_power": 500.0})  # before the first step of the resumed part
        tracker.log({"train_loss": 2.0}, step=20)
    assert read_run_info(run_dir).wandb_id == first_id
    assert [(r["step"], r.get("train_loss", r.get("gpu_total_power")))
            for r in trackio_rows("p-res", "r")] == [(10, 3.0), (10, 500.0), (20, 2.0)]
    # each W&B session wrote its own offline file, both under the same run id
    runs = sorted((tracking_env / "wandb-root" / "wandb").glob(f"offline-run-*-{first_id}"))
    steps = [row["_step"] for path in runs for row in wandb_history(path)[0]]
    assert len(runs) == 2 and steps == [10, 10, 20]


@pytest.mark.slow
def test_finish_logs_run_dir_and_one_line_per_backend(tracking_env, capsys, caplog):
    run_dir = tracking_env / "r"
    with ExperimentTracker("both", project="p-print", run_name="r", run_dir=run_dir) as tracker:
        tracker.log({"x": 1.0}, step=0)
    assert capsys.readouterr().out == ""  # library lines go through logging, not stdout
    out = [r.getMessage() for r in caplog.records if r.name == "adamwprune.tracking"]
    assert out[0].startswith("tracking: trackio+wandb | project p-print | run r | run dir ")
    assert f"run dir {run_dir}" in out[-3]
    assert out[-2].startswith("tracking: trackio: 1 of 1 records confirmed in its SQLite store -> ")
    assert out[-2].endswith(trackio_show_command("p-print"))
    assert out[-1].startswith("tracking: wandb: 1 of 1 records confirmed in its offline run files -> ")
    assert " sync " in out[-1] and "offline-run-" in out[-1]
