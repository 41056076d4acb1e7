"""Shared fixtures (shared helper functions are in helpers.py): a test that asks for
``tracking_env`` gets its own Trackio and W&B storage under tmp_path."""

from __future__ import annotations

import pytest


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

