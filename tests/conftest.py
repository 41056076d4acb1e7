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



@pytest.fixture(scope="session")
def slurm_cluster():
    """A real SLURM on this machine (scripts/local_slurm.py: slurmdbd, slurmctld, nodes n1 and n2),
    up for the whole session and stopped by PID at its end; SLURM_CONF is set for the tests.
    Skipped, with the reason, where the packages are missing or the tests do not run as root."""
    import os
    import sys
    from pathlib import Path

    scripts = Path(__file__).resolve().parent.parent / "scripts"
    sys.path.insert(0, str(scripts))
    try:
        import local_slurm
    finally:
        sys.path.remove(str(scripts))
    if os.geteuid() != 0:
        pytest.skip("a local SLURM needs root")
    missing = local_slurm.missing_programs()
    if missing:
        pytest.skip(f"no local SLURM: {', '.join(missing)} missing (.ci/run installs them)")
    import shutil
    import tempfile

    # not under pytest's tmp folders: those are private to root, and munged runs as munge
    base = Path(tempfile.mkdtemp(prefix="adamwprune-slurm-"))
    base.chmod(0o755)
    try:
        env = local_slurm.start(base)
    except local_slurm.SetupError as err:
        pytest.fail(f"the local SLURM did not start: {err}")
    previous = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    yield base
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    local_slurm.stop(base)
    shutil.rmtree(base, ignore_errors=True)
