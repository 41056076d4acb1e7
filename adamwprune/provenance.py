"""Where a run came from: code version, command line, software and hardware.

The result goes into ``run.json`` and the tracked run's config, so it is a flat
dict of JSON scalars (W&B and Trackio show flat config keys best). Every key is
always present; a value that cannot be found is ``None`` rather than an error,
because provenance must never stop a training run.

The trackers are deliberately not imported here (the training process never
imports trackio or wandb); their versions come from the installed package
metadata instead.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import socket
import subprocess
from pathlib import Path
from typing import Sequence

GIT_TIMEOUT_S = 2.0
_PACKAGE_DIR = Path(__file__).resolve().parent


def run_metadata(*, argv: Sequence[str], world_size: int, device: str, seed: int,
                 cwd: Path | None = None) -> dict[str, object]:
    """The provenance of this run as a flat dict of JSON scalars.

    ``argv`` is the command as the user gave it, program first (``sys.argv``
    style, e.g. ``["gpt2/train.py", "--tracker", "trackio"]``); ``command_line``
    is ``shlex.join(argv)``, so ``shlex.split`` gives back exactly ``argv`` and
    the line can be pasted into a shell from the directory the run started in.
    The interpreter is not prefixed: whether the user typed ``python``,
    ``.venv/bin/python`` or ``torchrun --nproc-per-node 4`` cannot be known
    reliably from inside; ``python_version`` and ``world_size`` record what matters.

    ``device`` is this process's device (``"cpu"``, ``"cuda"`` or ``"cuda:N"``);
    ``cwd`` is where to look for a git checkout when the code itself is not in one
    (default: the current directory).
    """
    commit, dirty = _git_state(cwd)
    torch_info = _torch_info(device, world_size)
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "command_line": shlex.join(argv),
        "python_version": platform.python_version(),
        **torch_info,
        "trackio_version": _package_version("trackio"),
        "wandb_version": _package_version("wandb"),
        "hostname": socket.gethostname(),
        "world_size": int(world_size),
        "seed": int(seed),
    }


def _git_state(cwd: Path | None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the code runs from, else of ``cwd``; (None, None) if neither.

    An installed copy (site-packages) is not the code's own checkout even when a
    virtual environment happens to live inside one, so it is skipped.
    """
    candidates = []
    if not {"site-packages", "dist-packages"} & set(_PACKAGE_DIR.parts):
        candidates.append(_PACKAGE_DIR)
    candidates.append(Path(cwd) if cwd is not None else Path.cwd())
    for where in candidates:
        commit = _git(where, "rev-parse", "--verify", "HEAD")
        if commit:
            # Untracked files do not change what runs; modified tracked files do.
            status = _git(where, "status", "--porcelain", "--untracked-files=no")
            return commit, (bool(status) if status is not None else None)
    return None, None


def _git(where: Path, *args: str) -> str | None:
    """Stripped stdout of ``git -C where args``, or None when git is missing, fails or hangs."""
    # GIT_OPTIONAL_LOCKS=0: `git status` must not take index.lock and collide with a user's git command.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _torch_info(device: str, world_size: int) -> dict[str, object]:
    """torch, CUDA and cuDNN versions and the names of the devices in use on this host."""
    info: dict[str, object] = {"torch_version": None, "cuda_version": None,
                               "cudnn_version": None, "device_names": None}
    try:
        import torch
    except ImportError:
        return info
    info["torch_version"] = str(torch.__version__)
    info["cuda_version"] = torch.version.cuda  # the CUDA torch was built with; None on CPU builds
    try:
        if torch.cuda.is_available():
            cudnn = torch.backends.cudnn.version()
            info["cudnn_version"] = int(cudnn) if cudnn is not None else None
        info["device_names"] = _device_names(torch, device, world_size)
    except RuntimeError as err:  # a broken driver must not stop the run: say so in the record instead
        info["device_names"] = f"unknown: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    return info


def _device_names(torch, device: str, world_size: int) -> str:
    """``"cpu"``, or the CUDA device names in use on this host joined with ", ".

    Under torchrun each local rank uses ``cuda:<local rank>``, so the devices in use
    here are the first LOCAL_WORLD_SIZE (falling back to world size) visible ones;
    a single process uses just its own device.
    """
    if not device.startswith("cuda"):
        return "cpu"
    count = torch.cuda.device_count()
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or world_size or 1)
    if local > 1:
        indices = range(min(local, count))
    else:
        index = torch.device(device).index
        indices = [torch.cuda.current_device() if index is None else index]
    return ", ".join(torch.cuda.get_device_name(i) for i in indices)


def _package_version(name: str) -> str | None:
    """The installed version of ``name`` from its metadata (no import), or None if not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
