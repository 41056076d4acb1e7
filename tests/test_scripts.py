"""scripts/: the spec's "CLI Variable Support" and "Project Name Generation" helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, child_env

SCRIPTS = REPO / "scripts"


def script(name: str, *args: str, cwd: Path | None = None, scripts: Path = SCRIPTS,
           **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(scripts / name), *args], cwd=cwd, env=child_env(**env),
                          capture_output=True, text=True, timeout=60)


def answer(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_check_cli_set_var_sees_make_command_line_variables(tmp_path):
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"check:\n\t@{SCRIPTS / 'check-cli-set-var.sh'} TRACKER\n")
    run = lambda *args: subprocess.run(["make", "-s", "-f", str(makefile), "check", *args],  # noqa: E731
                                       env=child_env(), capture_output=True, text=True, timeout=60)
    assert answer(run("TRACKER=wandb")) == "y"
    assert answer(run("TRACKER=")) == "y"  # set, though empty
    assert answer(run()) == "n"
    assert answer(run("TRACKERX=1")) == "n"  # exact name, not a prefix


def test_check_cli_set_var_reads_the_environment():
    assert answer(script("check-cli-set-var.sh", "GPU_MONITOR", GPU_MONITOR="y")) == "y"
    assert answer(script("check-cli-set-var.sh", "GPU_MONITOR")) == "n"
    bad = script("check-cli-set-var.sh", "NOT-A-NAME")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a variable name" in bad.stderr


@pytest.mark.parametrize("name,value,expected", [
    ("wandb", "both", "y"), ("trackio", "both", "y"),
    ("wandb", "wandb,trackio", "y"), ("trackio", "wandb,trackio", "y"),
    ("trackio", "trackio,wandb", "y"), ("wandb", " Wandb ", "y"),
    ("wandb", "trackio", "n"), ("trackio", "wandb", "n"),
    ("wandb", "none", "n"), ("trackio", "", "n"),
])
def test_check_tracker_enabled(name, value, expected):
    assert answer(script("check-tracker-enabled.sh", name, value)) == expected


@pytest.mark.parametrize("name,value,message", [
    ("wandb", "nowandb", "unknown tracker 'nowandb'"),  # no substring match
    ("trackio", "wandb,none", "combines 'none' with a tracker"),
    ("neptune", "both", "unknown tracker 'neptune'; valid choices: trackio, wandb"),
])
def test_check_tracker_enabled_rejects_bad_input_in_one_line(name, value, message):
    proc = script("check-tracker-enabled.sh", name, value)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr


def test_check_tracker_enabled_without_value_is_no():
    assert answer(script("check-tracker-enabled.sh", "wandb")) == "n"


def python_project_name(model: str, cwd: Path) -> str:
    code = f"from adamwprune.tracking.naming import project_name; print(project_name({model!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=child_env(), capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.mark.parametrize("args", [("gpt2", "tracking"), ("gpt2",), ("resnet50", "tracking")])
def test_generate_project_name_matches_the_python_function(tmp_path, args):
    printed = answer(script("generate-project-name.sh", *args, cwd=tmp_path))
    assert printed == python_project_name(args[0], tmp_path)
    assert printed.startswith(args[0] + "-") and len(printed) == len(args[0]) + 6
    # the directory name is part of the checksum
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert answer(script("generate-project-name.sh", *args, cwd=other)) != printed


@pytest.mark.parametrize("args,message", [
    (("gpt 2",), "is not usable in a project name"),
    (("gpt2", "plotting"), "unknown purpose 'plotting'; valid: tracking"),
    ((), "the following arguments are required: model"),
])
def test_generate_project_name_bad_input(args, message):
    proc = script("generate-project-name.sh", *args)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr


def test_scripts_use_python3_when_there_is_no_venv(tmp_path):
    """A checkout without .venv: the scripts fall back to python3 on PATH."""
    python3 = shutil.which("python3")
    if python3 is None:
        pytest.skip("no python3 on PATH to fall back to")
    checkout = tmp_path / "checkout"
    shutil.copytree(SCRIPTS, checkout / "scripts")
    os.symlink(REPO / "adamwprune", checkout / "adamwprune")
    proc = script("check-tracker-enabled.sh", "wandb", "both", scripts=checkout / "scripts",
                  PYTHONPATH="")
    assert answer(proc) == "y"
