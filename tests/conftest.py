"""Shared fixtures: every test gets its own Trackio and W&B storage under tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adamwprune.train.settings import METAS

REPO = Path(__file__).resolve().parent.parent

# The settings the Kconfig layer may set on the trainer (config <-> trainer contract), from the
# one source of settings: every one with a Kconfig symbol, plus the tracker (from ENABLE_*).
TRAINER_CONTRACT_DESTS = {name for name, info in METAS.items() if info.symbol} | {"tracker"}


@pytest.fixture
def tracking_env(tmp_path, monkeypatch):
    """TRACKIO_DIR and WANDB_DIR (offline) inside tmp_path; no W&B login anywhere."""
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-root"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    (tmp_path / "wandb-root").mkdir()
    return tmp_path


def trackio_rows(project: str, run_name: str, env: dict | None = None) -> list[dict]:
    """A Trackio run's rows, read in a fresh process (trackio reads TRACKIO_DIR at import)."""
    code = ("import json, sys\n"
            "from adamwprune.tracking.readback import trackio_points\n"
            "rows = trackio_points(sys.argv[1], sys.argv[2])\n"
            "print(json.dumps([{k: v for k, v in r.items() if k != 'timestamp'} for r in rows]))")
    proc = subprocess.run([sys.executable, "-c", code, project, run_name], capture_output=True,
                          text=True, env=env or dict(os.environ), timeout=120, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])
