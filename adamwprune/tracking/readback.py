"""Read logged points back from each backend's own storage (for self-tests and tests)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from adamwprune.errors import UserError


def trackio_points(project: str, run_name: str) -> list[dict]:
    """Every logged row of a Trackio run, from its SQLite store (TRACKIO_DIR as imported)."""
    from trackio.sqlite_storage import SQLiteStorage

    return SQLiteStorage.get_logs(project, run_name) or []


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
