"""The commands hints print (adamwprune.tracking.commands): run as printed, activated venv or not."""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from adamwprune.tracking import commands
from adamwprune.tracking.backends import trackio_show_command as show_from_backends
from adamwprune.tracking.commands import (install_command, python, replay_command, source_checkout, tool,
                                          trackio_show_command, wandb_sync_command)
from helpers import REPO


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """An environment tmp/env/bin with python (a symlink to this one, as in a venv) and a
    trackio script; PATH without it; the current directory tmp."""
    bin_dir = tmp_path / "env" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    script = bin_dir / "trackio"
    script.write_text("#!/bin/sh\necho fake trackio \"$@\"\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("TRACKIO_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return bin_dir


def test_the_script_beside_python_relative_to_the_current_directory(fake_env, tmp_path, monkeypatch):
    assert tool("trackio") == "env/bin/trackio"  # the venv's python symlink is not followed
    monkeypatch.chdir(fake_env)
    assert tool("trackio") == "./trackio"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert tool("trackio") == str(fake_env / "trackio")


def test_bare_name_only_when_path_finds_this_environments_script(fake_env, tmp_path, monkeypatch):
    other = tmp_path / "other-bin"
    other.mkdir()
    (other / "trackio").write_text("#!/bin/sh\n")
    (other / "trackio").chmod(0o755)
    monkeypatch.setenv("PATH", f"{other}:/usr/bin:/bin")  # another installation's trackio first
    assert tool("trackio") == "env/bin/trackio"
    monkeypatch.setenv("PATH", f"{fake_env}:{other}:/usr/bin:/bin")  # the venv activated
    assert tool("trackio") == "trackio"
    assert python() == "python"


def test_a_missing_script_falls_back_to_python_dash_m(fake_env):
    assert tool("adamwprune", "adamwprune") == "env/bin/python -m adamwprune"
    assert tool("nothing-like-it") == "nothing-like-it"


def test_paths_with_spaces_are_quoted(tmp_path, monkeypatch):
    spaced = tmp_path / "my env" / "bin"
    spaced.mkdir(parents=True)
    (spaced / "python").symlink_to(sys.executable)
    (spaced / "trackio").write_text("")
    monkeypatch.setattr(sys, "executable", str(spaced / "python"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "track dir"))
    command = trackio_show_command("my project")
    assert shlex.split(command) == [f"TRACKIO_DIR={tmp_path / 'track dir'}", "my env/bin/trackio", "show",
                                    "--project", "my project"]
    assert shlex.split(replay_command("runs/a b/r", "wandb")) == [
        "my env/bin/python", "-m", "adamwprune", "replay", "runs/a b/r", "--tracker", "wandb"]


def test_the_hints_are_spelled_by_one_function(fake_env, tmp_path):
    assert trackio_show_command("p") == "env/bin/trackio show --project p"
    assert show_from_backends is trackio_show_command  # the trainer's "view it" line imports it there
    sync_dir = tmp_path / "wandb" / "offline-run-1"
    assert shlex.split(wandb_sync_command(sync_dir)) == ["env/bin/python", "-m", "wandb", "sync", str(sync_dir)]


def test_install_command_names_the_extra_from_where_you_are(monkeypatch, tmp_path):
    root = source_checkout()
    assert root == REPO
    monkeypatch.chdir(REPO)
    assert install_command("wandb") == f"{tool('pip', 'pip')} install -e '.[wandb]'"
    monkeypatch.chdir(tmp_path)
    assert install_command("all").endswith(f"install -e {shlex.quote(f'{REPO}[all]')}")
    monkeypatch.setattr(commands, "source_checkout", lambda: None)  # installed from a wheel
    assert install_command("trackio").endswith("install 'adamwprune[trackio]'")


def _without_this_environment(path: str) -> str:
    here = os.path.abspath(Path(sys.executable).parent)
    return os.pathsep.join(p for p in path.split(os.pathsep) if p and os.path.abspath(p) != here)


def _run_as_printed(command: str) -> subprocess.CompletedProcess:
    """``command`` typed into a shell at the repository root whose PATH lacks this venv."""
    env = {**os.environ, "PATH": _without_this_environment(os.environ.get("PATH", ""))}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def _as_printed_from_root(build, *args) -> str:
    cwd = Path.cwd()
    path = os.environ.get("PATH", "")
    try:
        os.chdir(REPO)
        os.environ["PATH"] = _without_this_environment(path)
        return build(*args)
    finally:
        os.environ["PATH"] = path
        os.chdir(cwd)


def test_replay_hint_runs_as_printed_from_the_repository_root(tmp_path):
    command = _as_printed_from_root(replay_command, tmp_path / "no-such-run", "trackio")
    done = _run_as_printed(command)
    # the command was found and ran: adamwprune's own one-line error about the missing run
    assert done.returncode == 2 and "no-such-run not found; give the run directory" in done.stderr, (command, done.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("name,module", [("trackio", "trackio.cli"), ("wandb", "wandb")])
def test_tracker_hints_run_as_printed_from_the_repository_root(name, module):
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed here")
    program = _as_printed_from_root(tool, name, module)
    done = _run_as_printed(f"{program} --help")
    assert done.returncode == 0 and "usage" in done.stdout.lower(), (program, done.stderr[-2000:])
    if name == "trackio":
        assert _as_printed_from_root(trackio_show_command, "p").split(" show ")[0].endswith(program)
