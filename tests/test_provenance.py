"""Run metadata (issue #7): real git state, real versions, an argv that round-trips, no tracker imports."""

from __future__ import annotations

import importlib.metadata
import platform
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
import torch

from adamwprune import provenance
from adamwprune.provenance import run_metadata

REPO = Path(__file__).resolve().parent.parent
KEYS = {"git_commit", "git_dirty", "command_line", "python_version", "torch_version", "cuda_version",
        "cudnn_version", "device_names", "trackio_version", "wandb_version", "hostname", "world_size",
        "seed"}

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(where: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(where), "-c", "user.name=t", "-c", "user.email=t@example.com",
                           "-c", "commit.gpgsign=false", *args],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def metadata(**overrides) -> dict[str, object]:
    kwargs = {"argv": ["gpt2/train.py", "--max-iters", "3"], "world_size": 1, "device": "cpu", "seed": 7}
    return run_metadata(**{**kwargs, **overrides})


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """The code looks like it lives outside any checkout, and git never searches above tmp_path."""
    elsewhere = tmp_path / "installed" / "adamwprune"
    elsewhere.mkdir(parents=True)
    monkeypatch.setattr(provenance, "_PACKAGE_DIR", elsewhere)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    return tmp_path


@pytest.fixture
def checkout(isolated):
    repo = isolated / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("print('v1')\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "first")
    return repo


@needs_git
def test_git_commit_and_dirty_flag_of_a_checkout(checkout):
    clean = metadata(cwd=checkout)
    assert clean["git_commit"] == git(checkout, "rev-parse", "HEAD")
    assert len(clean["git_commit"]) == 40
    assert clean["git_dirty"] is False

    (checkout / "notes.txt").write_text("untracked files do not change what runs\n")
    assert metadata(cwd=checkout)["git_dirty"] is False

    (checkout / "train.py").write_text("print('v2')\n")
    dirty = metadata(cwd=checkout)
    assert dirty["git_dirty"] is True
    assert dirty["git_commit"] == clean["git_commit"]


@needs_git
def test_a_new_commit_is_recorded(checkout):
    first = metadata(cwd=checkout)["git_commit"]
    (checkout / "train.py").write_text("print('v2')\n")
    git(checkout, "commit", "-q", "-am", "second")
    second = metadata(cwd=checkout)
    assert second["git_commit"] != first
    assert second["git_commit"] == git(checkout, "rev-parse", "HEAD")
    assert second["git_dirty"] is False


@needs_git
def test_the_code_checkout_wins_over_the_current_directory(checkout, monkeypatch):
    """Running the trainer from some other repository still records the trainer's own commit."""
    monkeypatch.setattr(provenance, "_PACKAGE_DIR", checkout)
    other = checkout.parent / "other"
    other.mkdir()
    git(other, "init", "-q")
    (other / "x").write_text("x\n")
    git(other, "add", "x")
    git(other, "commit", "-q", "-m", "other")
    assert metadata(cwd=other)["git_commit"] == git(checkout, "rev-parse", "HEAD")


@needs_git
def test_this_repository_is_found_from_the_package(tmp_path):
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("the tests do not run from a git checkout")
    assert metadata(cwd=tmp_path)["git_commit"] == git(REPO, "rev-parse", "HEAD")


@needs_git
def test_an_installed_copy_inside_a_checkout_is_not_its_checkout(checkout, monkeypatch):
    """A venv inside some checkout must not lend that checkout's commit to an installed package."""
    installed = checkout / ".venv" / "lib" / "python3" / "site-packages" / "adamwprune"
    installed.mkdir(parents=True)
    monkeypatch.setattr(provenance, "_PACKAGE_DIR", installed)
    outside = checkout.parent / "outside"
    outside.mkdir()
    found = metadata(cwd=outside)
    assert found["git_commit"] is None and found["git_dirty"] is None


@needs_git
def test_outside_a_checkout_git_keys_are_none(isolated, capfd):
    outside = isolated / "plain"
    outside.mkdir()
    found = metadata(cwd=outside)
    assert found["git_commit"] is None and found["git_dirty"] is None
    assert set(found) == KEYS
    assert capfd.readouterr() == ("", "")  # git's complaint is swallowed, nothing printed


@needs_git
def test_a_repository_without_commits_has_no_commit(isolated):
    empty = isolated / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    found = metadata(cwd=empty)
    assert found["git_commit"] is None and found["git_dirty"] is None


def test_without_git_installed_nothing_raises(isolated, monkeypatch):
    monkeypatch.setenv("PATH", str(isolated / "no-bin"))
    found = metadata(cwd=isolated)
    assert found["git_commit"] is None and found["git_dirty"] is None
    assert found["torch_version"] == str(torch.__version__)


def test_versions_match_the_installed_packages():
    found = metadata()
    assert set(found) == KEYS
    assert found["trackio_version"] == importlib.metadata.version("trackio")
    assert found["wandb_version"] == importlib.metadata.version("wandb")
    assert found["torch_version"] == str(torch.__version__)
    assert found["python_version"] == platform.python_version()
    assert found["python_version"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    assert found["cuda_version"] == torch.version.cuda
    expected_cudnn = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    assert found["cudnn_version"] == expected_cudnn
    assert found["hostname"] == socket.gethostname()


def test_a_missing_package_has_no_version():
    assert provenance._package_version("adamwprune-no-such-package") is None


@pytest.mark.parametrize("argv", [
    ["gpt2/train.py", "--tracker", "trackio", "--max-iters", "3"],
    ["gpt2/train.py", "--tracker-run-name", "it's a \"quoted\" run", "--data-dir", "/tmp/with space/$HOME"],
    ["gpt2/train.py"],
])
def test_command_line_round_trips(argv):
    line = metadata(argv=argv)["command_line"]
    assert shlex.split(line) == argv
    assert line.startswith("gpt2/train.py")


def test_run_settings_are_recorded():
    found = metadata(world_size=4, seed=1337)
    assert (found["world_size"], found["seed"]) == (4, 1337)
    assert found["device_names"] == "cpu"


def test_cuda_device_names_follow_the_devices_in_use(monkeypatch):
    """One process uses its own device; torchrun's local ranks use cuda:0..LOCAL_WORLD_SIZE-1."""
    names = ["GPU A", "GPU B", "GPU C", "GPU D"]
    fake = SimpleNamespace(device=torch.device, cuda=SimpleNamespace(
        device_count=lambda: len(names), get_device_name=lambda i: names[i], current_device=lambda: 2))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert provenance._device_names(fake, "cuda:1", world_size=1) == "GPU B"
    assert provenance._device_names(fake, "cuda", world_size=1) == "GPU C"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert provenance._device_names(fake, "cuda:0", world_size=4) == "GPU A, GPU B"  # two nodes of two
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert provenance._device_names(fake, "cuda:0", world_size=8) == "GPU A, GPU B, GPU C, GPU D"
    assert provenance._device_names(fake, "cpu", world_size=8) == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_real_cuda_device_name():
    found = metadata(device="cuda:0")
    assert found["device_names"] == torch.cuda.get_device_name(0)
    assert found["cuda_version"] == torch.version.cuda
    assert isinstance(found["cudnn_version"], int)


def test_every_value_is_a_json_scalar():
    found = metadata(argv=["gpt2/train.py", "--tracker", "both"], world_size=2, seed=3)
    for key, value in found.items():
        assert value is None or type(value) in (str, int, bool), (key, type(value))
    assert orjson.loads(orjson.dumps(found)) == found


def test_trackers_are_not_imported():
    code = ("import sys, adamwprune.provenance as p; "
            "p.run_metadata(argv=['gpt2/train.py'], world_size=1, device='cpu', seed=0); "
            "print('trackio' in sys.modules, 'wandb' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          check=True, timeout=120)
    assert done.stdout.split() == ["False", "False"]
