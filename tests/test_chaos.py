"""The short chaos run: one trial per victim (trainer, delivery, both), read back from storage."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import REPO, child_env


@pytest.mark.slow
def test_three_kill_trials_lose_and_duplicate_nothing_and_the_summary_matches(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "chaos.py"), "--trials", "3", "--seed", "7",
                           "--steps", "300", "--json"], capture_output=True, text=True, timeout=600,
                          env=child_env(), cwd=tmp_path)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [row["victim"] for row in rows] == ["trainer", "delivery", "both"], proc.stderr
    for row in rows:
        assert row["journal_whole"] and row["journaled"] == 300, row
        for backend in ("trackio", "wandb"):
            assert row[backend]["lost"] == 0 and row[backend]["duplicated"] == 0, row
            assert row[backend]["matched"] and row[backend]["stored"] == 300, row
    assert rows[1]["sessions"] == 1 or not rows[1]["killed"]  # a killed delivery is restarted in-run
    assert proc.returncode == 0, proc.stderr
