"""Images through the journal: ExperimentTracker.log_images -> an ``images`` record -> the
backends that take images (Trackio, W&B), confirmed in their own storage like any record,
replayed from a moved run directory, refused by name where a backend takes none."""

from __future__ import annotations

import shutil
import subprocess
import sys

import orjson
import pytest

from adamwprune.tracking import ExperimentTracker
from adamwprune.tracking.journal import read_journal, record_problem
from adamwprune.tracking.readback import wandb_history
from adamwprune.tracking.runinfo import read_run_info
from helpers import REPO, child_env, trackio_rows

PNG = REPO / "docs" / "images" / "gpu_memory.png"


def run_with_an_image(run_dir, tracker: str, **kwargs) -> dict | None:
    """Three steps of metrics, then the PNG (copied into the run directory) at the last one;
    the run's delivery.json (None when nothing was delivered)."""
    with ExperimentTracker(tracker, project="p-img", run_name=run_dir.name, run_dir=run_dir, **kwargs) as t:
        for step in range(3):
            t.log({"loss": 1.0 / (step + 1)}, step=step)
        shutil.copy(PNG, run_dir / "graph.png")
        t.log_images({"gpu/memory": run_dir / "graph.png"}, {"gpu/memory": "memory per GPU"})
    status = run_dir / "delivery.json"
    return orjson.loads(status.read_bytes()) if status.exists() else None


def replay(run_dir, tracker: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adamwprune", "replay", str(run_dir), "--tracker", tracker],
                          capture_output=True, text=True, timeout=180, env=child_env())


@pytest.mark.slow
def test_an_image_is_journaled_relative_and_confirmed_in_trackio(tracking_env):
    run_dir = tracking_env / "r1"
    delivery = run_with_an_image(run_dir, "trackio")
    images = [r for r in read_journal(run_dir / "metrics.jsonl") if r.get("event") == "images"]
    assert [(r["step"], r["images"]) for r in images] == [
        (2, {"gpu/memory": {"path": "graph.png", "caption": "memory per GPU"}})]
    trackio = delivery["backends"]["trackio"]
    assert (trackio["records"], trackio["confirmed"], trackio["rejected"]) == (4, 4, 0)
    row, = [row for row in trackio_rows("p-img", "r1") if "gpu/memory" in row]
    assert row["step"] == 2 and row["gpu/memory"]["caption"] == "memory per GPU"
    assert (tracking_env / "trackio" / "media" / row["gpu/memory"]["file_path"]).read_bytes() == PNG.read_bytes()


@pytest.mark.slow
def test_a_moved_run_directory_replays_its_image_into_wandb_once(tracking_env):
    journaled = tracking_env / "journaled"
    run_with_an_image(journaled, "none")
    moved = tracking_env / "elsewhere" / "r2"
    moved.parent.mkdir()
    shutil.move(journaled, moved)
    first, second = replay(moved, "wandb"), replay(moved, "wandb")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "wandb: 4 of 4 records confirmed in its offline run files" in second.stdout
    wandb_id = read_run_info(moved).wandb_id
    rows = [row for directory in (tracking_env / "wandb-root" / "wandb").glob(f"*run-*-{wandb_id}")
            for row in wandb_history(directory)[0] if "gpu/memory._type" in row]
    assert [(row["_step"], row["gpu/memory._type"], row["gpu/memory.caption"]) for row in rows] == [
        (2, "image-file", "memory per GPU")]  # once, over two replays


def test_a_backend_that_takes_no_images_rejects_that_record_by_name(tmp_path, monkeypatch):
    """A custom backend keeps the base class's ``takes_images = False``."""
    module = tmp_path / "metrics_only_backend.py"
    module.write_text(
        "from adamwprune.tracking.backends import Backend, Stored\n"
        "class MetricsOnly(Backend):\n"
        "    def start(self):\n        self.rows = []\n"
        "    def log(self, metrics, step):\n        self.rows.append((step, list(metrics)))\n"
        "    def finish(self, status):\n        pass\n"
        "    def stored(self):\n        return Stored(self.rows)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    delivery = run_with_an_image(tmp_path / "r3", "none", extra_backends={"mine": "metrics_only_backend:MetricsOnly"})
    mine = delivery["backends"]["mine"]
    assert (mine["records"], mine["confirmed"], mine["rejected"], mine["missing"]) == (4, 3, 1, 0)
    assert mine["reject_reason"] == "it takes no images"


def test_log_images_refuses_a_missing_file_and_records_nothing(tmp_path):
    with ExperimentTracker("none", project="p", run_name="r", run_dir=tmp_path / "r") as tracker:
        with pytest.raises(ValueError, match=r"^image 'gpu/memory': .*nope\.png is not a file$"):
            tracker.log_images({"gpu/memory": tmp_path / "nope.png"})
    assert not [r for r in read_journal(tmp_path / "r" / "metrics.jsonl") if r.get("event") == "images"]


@pytest.mark.parametrize("record, problem", [
    ({"event": "images", "images": {"a": {"path": "a.png"}}}, "images without a step"),
    ({"event": "images", "step": 1, "images": {}}, "images that are not name -> {path, caption}"),
    ({"event": "images", "step": 1, "images": {"a": {"caption": "no path"}}}, "images that are not name"),
])
def test_a_damaged_images_record_is_not_a_record(record, problem):
    assert record_problem(record).startswith(problem)
    assert record_problem({"event": "images", "step": 1, "images": {"a": {"path": "a.png", "caption": ""}}}) is None
