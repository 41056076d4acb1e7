"""Trackio's inbox: in jsonl storage mode (TRACKIO_STORAGE_MODE=jsonl, or "auto" on a network
filesystem, as a cluster's shared home) Trackio writes JSONL fragments under $TRACKIO_DIR/inbox
that its SQLite store only sees once imported. Delivery, replay and read-back read the inbox
(never import it); one collector imports it at the end. Everything is read back from the real
files and SQLite, in fresh processes (trackio reads TRACKIO_DIR when imported)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from adamwprune.tracking import ExperimentTracker
from adamwprune.tracking.readback import same_value
from helpers import child_env, trackio_rows

pytestmark = pytest.mark.slow

STEPS = 30


def value(step: int) -> dict:
    return {"loss": 1.0 / (step + 1), "acc": float("nan") if step == 3 else step / 10}


def in_fresh_process(code: str, *args: str) -> object:
    """Run ``code`` (its last line printed as JSON is the result) in a new interpreter."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=child_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sqlite_only(project: str, run_name: str) -> dict:
    """What Trackio's SQLite store alone holds: the run's steps (get_logs) and the project's runs."""
    return in_fresh_process(
        "import json, sys\n"
        "from trackio.sqlite_storage import SQLiteStorage as S\n"
        "p, r = sys.argv[1:]\n"
        "print(json.dumps({'steps': [row['step'] for row in S.get_logs(p, r)],\n"
        "                  'runs': [[x['id'], x['name']] for x in S.get_run_records(p)]}))",
        project, run_name)


def import_inbox() -> int:
    return in_fresh_process("from adamwprune.tracking.readback import import_trackio_inbox\n"
                            "print(import_trackio_inbox())")


def inbox_records(inbox: Path, kind: str = "metric") -> list[dict]:
    """Every record of ``kind`` in the inbox's fragments, read as the raw files."""
    records = []
    for path in sorted(inbox.rglob("*.jsonl")):
        records += [r for r in map(orjson.loads, path.read_bytes().splitlines()) if r["kind"] == kind]
    return records


@pytest.fixture
def jsonl_env(tracking_env, monkeypatch):
    monkeypatch.setenv("TRACKIO_STORAGE_MODE", "jsonl")
    return tracking_env


def test_a_run_in_jsonl_mode_is_confirmed_from_the_inbox_and_imported_once(jsonl_env):
    inbox = jsonl_env / "trackio" / "inbox"
    run_dir = jsonl_env / "r"
    with ExperimentTracker("trackio", project="p-inbox", run_name="r", run_dir=run_dir) as tracker:
        for step in range(STEPS):
            tracker.log(value(step), step=step)
    # the delivery process confirmed every record against the inbox
    trackio = orjson.loads((run_dir / "delivery.json").read_bytes())["backends"]["trackio"]
    assert (trackio["records"], trackio["confirmed"], trackio["missing"]) == (STEPS, STEPS, 0), trackio
    assert trackio["storage"] == "its SQLite store and inbox"
    # ... where the records really are, and SQLite alone knows nothing of them
    assert list(inbox.glob("*/*.jsonl"))  # $TRACKIO_DIR/inbox/<writer>/<seq>.jsonl
    assert sorted(r["step"] for r in inbox_records(inbox)) == list(range(STEPS))
    assert {(r["project"], r["run"]) for r in inbox_records(inbox)} == {("p-inbox", "r")}
    assert sqlite_only("p-inbox", "r") == {"steps": [], "runs": []}

    def check_points():
        rows = trackio_rows("p-inbox", "r")  # readback.trackio_points: SQLite plus inbox
        assert [row["step"] for row in rows] == list(range(STEPS))  # each once
        for row in rows:
            for name, expected in value(row["step"]).items():
                assert same_value(expected, row[name]), (row, name)
        assert math.isnan(rows[3]["acc"])  # stored as "NaN" in the fragment, read back as a float

    check_points()

    # a replay finds everything there and adds nothing
    replayed = subprocess.run([sys.executable, "-m", "adamwprune", "replay", str(run_dir), "--tracker", "trackio"],
                              capture_output=True, text=True, timeout=180, env=child_env())
    assert replayed.returncode == 0, replayed.stderr
    assert f"replay: trackio: {STEPS} of {STEPS} records confirmed in its SQLite store and inbox" in replayed.stdout
    assert f"(0 sent now, {STEPS} already there)" in replayed.stdout
    assert sorted(r["step"] for r in inbox_records(inbox)) == list(range(STEPS))
    assert len({r["run_id"] for r in inbox_records(inbox)}) == 1
    check_points()

    # the one collector imports it: SQLite then holds every step exactly once, the inbox is empty
    kept = jsonl_env / "kept-inbox"
    shutil.copytree(inbox, kept)
    assert import_inbox() == len(inbox_records(kept)) + len(inbox_records(kept, "alert"))
    assert not list(inbox.rglob("*.jsonl"))
    stored = sqlite_only("p-inbox", "r")
    assert stored["steps"] == list(range(STEPS)) and len(stored["runs"]) == 1
    check_points()

    # a fragment still there after its import (read while being imported, or an importer that
    # died before deleting it) is not counted twice
    shutil.copytree(kept, inbox, dirs_exist_ok=True)
    check_points()
    assert import_inbox() == len(inbox_records(kept)) + len(inbox_records(kept, "alert"))
    assert sqlite_only("p-inbox", "r")["steps"] == list(range(STEPS))  # import is idempotent (log ids)


def test_a_resumed_jsonl_run_stays_one_run_and_its_name_stays_taken(jsonl_env):
    inbox = jsonl_env / "trackio" / "inbox"
    run_dir = jsonl_env / "r"
    with ExperimentTracker("trackio", project="p-inbox-res", run_name="r", run_dir=run_dir) as tracker:
        for step in range(10):
            tracker.log({"loss": float(step)}, step=step)
    with ExperimentTracker("trackio", project="p-inbox-res", run_name="r", run_dir=run_dir,
                           resume=True) as tracker:
        for step in range(10, 20):
            tracker.log({"loss": float(step)}, step=step)
        result = tracker.finish()
    trackio = result["backends"]["trackio"]
    assert (trackio["confirmed"], trackio["skipped"], trackio["sent"]) == (20, 10, 10), trackio
    # Trackio alone would have given the resumed part a new run id (its resume reads SQLite only)
    assert len({r["run_id"] for r in inbox_records(inbox)}) == 1
    assert [row["step"] for row in trackio_rows("p-inbox-res", "r")] == list(range(20))
    # a fresh run of the same name, from another run directory, is refused though only the inbox has it
    with ExperimentTracker("trackio", project="p-inbox-res", run_name="r", run_dir=jsonl_env / "other") as tracker:
        tracker.log({"loss": 99.0}, step=0)
        result = tracker.finish()
    assert result["backends"]["trackio"]["state"] == "failed"
    assert "already has a run named r" in result["backends"]["trackio"]["error"]
    assert sorted(r["step"] for r in inbox_records(inbox)) == list(range(20))
    assert import_inbox() >= 20
    stored = sqlite_only("p-inbox-res", "r")
    assert stored["steps"] == list(range(20)) and len(stored["runs"]) == 1
