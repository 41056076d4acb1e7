"""Read logged points back from each backend's own storage (for self-tests and tests)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from adamwprune.errors import UserError


def trackio_points(project: str, run_name: str) -> list[dict]:
    """Every logged row of a Trackio run: its SQLite store's rows (``SQLiteStorage.get_logs``) plus
    those still in Trackio's inbox, in get_logs' row shape (metrics, ``step``, ``timestamp``).

    In jsonl storage mode (``TRACKIO_STORAGE_MODE``; "auto" picks it on a network filesystem)
    Trackio writes fragments that SQLite only sees once imported, and importing is left to one
    collector (:func:`import_trackio_inbox`): here the inbox is only read. It is read *before*
    SQLite, so a fragment imported in between shows up twice (dropped below: an imported record
    keeps its step, timestamp and values) rather than not at all. A step logged twice stays twice,
    as in get_logs.
    """
    from trackio import fragments
    from trackio.sqlite_storage import SQLiteStorage

    pending = [record for record in _inbox_records(project)
               if record["kind"] == fragments.METRIC_KIND and record.get("run") == run_name]
    rows = SQLiteStorage.get_logs(project, run_name) or []
    if not pending:
        return rows
    seen = {_row_key(row) for row in rows}
    log_ids: set[str] = set()
    added = []
    for record in pending:
        log_id = record.get("log_id")
        if log_id is not None:
            if log_id in log_ids:
                continue
            log_ids.add(log_id)
        row = _fragment_row(record)
        if _row_key(row) not in seen:
            added.append(row)
    # get_logs orders by timestamp (ISO strings in UTC); a stable sort keeps SQLite's order
    return sorted(rows + added, key=lambda row: str(row.get("timestamp") or ""))


def trackio_inbox_runs(project: str) -> dict[str, str | None]:
    """The runs of ``project`` that Trackio's inbox holds records of: run name -> run id.

    Trackio's resume looks a run up in SQLite only, so a run that exists only in fragments would
    be resumed as a second run of the same name (a new run id); :class:`TrackioBackend` uses
    this to refuse a fresh run of a taken name and to resume the same run id. Where one name has
    several ids, the newest (latest first record) wins, as in Trackio's own lookup by name.
    """
    first_seen: dict[tuple[str, str | None], str] = {}
    for record in _inbox_records(project):
        if isinstance(record.get("run"), str):
            key = (record["run"], record.get("run_id"))
            stamp = str(record.get("timestamp") or "")
            first_seen[key] = min(first_seen.get(key, stamp), stamp)
    runs: dict[str, str | None] = {}
    for (name, run_id), _ in sorted(first_seen.items(), key=lambda item: item[1]):
        runs[name] = run_id
    return runs


def import_trackio_inbox() -> int:
    """Import Trackio's whole local inbox (every project) into SQLite; returns the record count.

    Importing deletes the fragments and is not safe with two importers at once, so only the one
    process that collects at the end (of a cluster matrix) calls it, after the writers are done;
    the delivery and read-back code only reads the inbox (:func:`trackio_points`).
    """
    from trackio import fragments

    return fragments.import_inbox_dir()


def _inbox_records(project: str) -> list[dict]:
    """Every record of ``project`` in Trackio's local inbox ($TRACKIO_DIR/inbox/<writer>/<seq>.jsonl,
    each written whole: temporary file, then rename), in the order an import takes them."""
    from trackio import fragments, utils

    inbox = fragments.local_inbox_dir()
    if not inbox.is_dir():
        return []
    wanted = utils.canonical_project_name(project)  # as SQLite's file name: "my.p" is "myp"
    records = []
    for path in sorted(inbox.rglob("*.jsonl")):
        try:
            data = path.read_bytes()
        except OSError:  # imported (and deleted) since the listing: SQLite holds it now
            continue
        records += [record for record in fragments.parse_fragment_bytes(data)
                    if isinstance(record.get("project"), str)
                    and utils.canonical_project_name(record["project"]) == wanted]
    return records


def _fragment_row(record: dict) -> dict:
    """A metric fragment record as the row get_logs returns once it is imported (values
    serialized by trackio.utils.serialize_values are read back like get_logs does)."""
    from trackio import utils

    row = utils.deserialize_values(dict(record.get("metrics") or {}))
    row["timestamp"] = record.get("timestamp")
    row["step"] = record.get("step")
    return row


def _row_key(row: dict) -> tuple:
    """A row's identity across SQLite and the inbox: step, timestamp and values (NaN included)."""
    from trackio import utils

    metrics = {key: value for key, value in row.items() if key not in ("step", "timestamp")}
    return (row.get("step"), str(row.get("timestamp")),
            json.dumps(utils.serialize_values(metrics), sort_keys=True, default=repr))


def wandb_run_dir(wandb_id: str, wandb_dir: Path) -> Path:
    """The newest local W&B run directory (offline or online) of run ``wandb_id``."""
    candidates = sorted((wandb_dir / "wandb").glob(f"*run-*-{wandb_id}"))
    if not candidates:
        raise UserError(f"no W&B run directory for run id {wandb_id} under {wandb_dir / 'wandb'}")
    return candidates[-1]


def wandb_records(run_dir: Path) -> list[dict]:
    """Every record of a W&B run's ``.wandb`` file, read by wandb's own reader
    (``wandb leet inspect --json``)."""
    wandb_cli = Path(sys.executable).with_name("wandb")
    proc = subprocess.run([str(wandb_cli), "leet", "inspect", "--json", str(run_dir)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise UserError(f"wandb could not read {run_dir}: {proc.stderr.strip()[:300]}")
    return [json.loads(line) for line in proc.stdout.splitlines()]


def wandb_history(run_dir: Path) -> tuple[list[dict], int | None]:
    """The history rows and the exit code recorded in a W&B run's ``.wandb`` file."""
    rows, exit_code = [], None
    for record in wandb_records(run_dir):
        if record.get("type") == "history":
            item = record["history"]["item"]
            rows.append({key: _wandb_value(value) for key, value in item.items()})
        elif record.get("type") == "exit":
            exit_code = record["exit"].get("exit_code", 0)
    return rows, exit_code


def wandb_config(run_dir: Path) -> dict:
    """The run config recorded in a W&B run's ``.wandb`` file (later updates win)."""
    config: dict = {}
    for record in wandb_records(run_dir):
        if record.get("type") == "run":
            config.update(record["run"].get("config", {}).get("update", {}))
        elif record.get("type") == "config":
            config.update(record["config"].get("update", {}))
    config.pop("_wandb", None)
    return config


def _wandb_value(value):
    if value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    return value


def same_value(expected, stored) -> bool:
    if isinstance(expected, str) or isinstance(stored, str):
        return expected == stored
    if math.isnan(expected):
        return isinstance(stored, float) and math.isnan(stored)
    return math.isclose(expected, stored, rel_tol=1e-6, abs_tol=1e-9)


def missing_points(expected: list[tuple[int, dict]], rows: list[dict], step_key: str) -> list[str]:
    """Describe every expected (step, name, value) absent from ``rows``; empty when all are there."""
    by_step: dict[int, dict] = {}
    for row in rows:
        by_step.setdefault(row.get(step_key), {}).update(row)
    problems = []
    for step, metrics in expected:
        row = by_step.get(step, {})
        for name, value in metrics.items():
            if name not in row:
                problems.append(f"step {step}: {name} missing")
            elif not same_value(value, row[name]):
                problems.append(f"step {step}: {name} = {row[name]!r}, expected {value!r}")
    return problems
