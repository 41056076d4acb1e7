"""``--restart``: set aside a run that stopped before its first checkpoint, so its name is free.

The old run directory becomes ``<run>.superseded-<UTC time>`` (with ``superseded.json``
saying by what), and its Trackio run is renamed the same way, so the new run's rows
never mix with the old ones (Trackio keys runs by name). The old W&B run keeps its
own id; the new run gets a new one.

Renaming in Trackio imports trackio, which the training process never does: it runs
as ``python -m adamwprune.tracking.supersede PROJECT OLD NEW`` in a child process.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson

from adamwprune.fileio import atomic_write_bytes
from adamwprune.tracking.journal import JOURNAL_NAME, read_journal
from adamwprune.tracking.logs import log

RECORD_NAME = "superseded.json"
RENAME_TIMEOUT_S = 120


def supersede(run_dir: Path, project: str, run_name: str) -> Path:
    """Move ``run_dir`` aside and rename its Trackio run; returns where it went."""
    from adamwprune import child_env

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    new_name = f"{run_name}.superseded-{stamp}"
    moved = run_dir.with_name(new_name)
    run_dir.rename(moved)
    record = {"superseded_at": stamp, "by": str(run_dir), "trackio_run": None}
    if "trackio" in _trackers_used(moved):
        rename = subprocess.run([sys.executable, "-m", __name__, project, run_name, new_name],
                                env=child_env(), capture_output=True, text=True, timeout=RENAME_TIMEOUT_S)
        if rename.returncode == 0:
            record["trackio_run"] = new_name
        else:
            reason = (rename.stderr.strip().splitlines() or ["unknown error"])[-1]
            log.warning("restart: could not rename Trackio run %r of project %r (%s); its old rows "
                        "stay under that name", run_name, project, reason)
    atomic_write_bytes(moved / RECORD_NAME, orjson.dumps(record, option=orjson.OPT_INDENT_2))
    return moved


def _trackers_used(run_dir: Path) -> set[str]:
    """Every tracker a session of this run delivered to (from the journal's start records)."""
    journal = run_dir / JOURNAL_NAME
    if not journal.is_file():
        return set()
    used: set[str] = set()
    for record in read_journal(journal):
        if record.get("event") == "start":
            trackers = str(record.get("trackers", ""))
            used |= {"trackio", "wandb"} if trackers == "both" else set(trackers.split(","))
    return used


def _rename_trackio_run(project: str, old: str, new: str) -> None:
    from trackio.sqlite_storage import SQLiteStorage

    if old in (SQLiteStorage.get_runs(project) or []):
        SQLiteStorage.rename_run(project, old, new)


if __name__ == "__main__":
    _rename_trackio_run(*sys.argv[1:4])
