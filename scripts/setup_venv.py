#!/usr/bin/env python3
"""Set up the project's virtual environment: torch, then adamwprune (editable) with extras.

    python3 scripts/setup_venv.py trackio           # what `make demo` runs first
    python3 scripts/setup_venv.py dev all --check   # say what would be installed; exit 1 if anything

SETUP_VENV_CHECK=1 in the environment is --check for every call (tests/test_readme.py runs make in
a clone whose .venv is the tests' own, which must not change).

Standard library only: make runs it with the system python3, before the venv exists, for
every target that needs the venv. It prints one line per step and leaves pip's own progress
on the terminal. When VENV/.installed records that this pyproject.toml, these extras and this
torch requirement are installed already, it does nothing and prints nothing.

Which torch:
  * TORCH_REQUIREMENT (default ``torch``) is kept when the venv's python already imports a
    torch that satisfies it (your own CUDA or ROCm build, or CI's pin), whatever the index.
  * Else it comes from TORCH_INDEX_URL when that is set; set to empty, it means the default
    index (PyPI, or whatever pip is configured with).
  * Else, on a machine without an NVIDIA driver (no nvidia-smi on PATH and no
    /proc/driver/nvidia), from PyTorch's CPU wheel index (about 0.2 GB instead of PyPI's
    Linux build with its 3 GB of CUDA libraries); with a driver, from PyPI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
RECORD_NAME = ".installed"  # the Makefile's install stamp; holds this script's record (JSON)

# pyproject.toml's extras (tests/test_setup.py checks that these agree with it)
EXTRAS = {"trackio": ("trackio",), "wandb": ("wandb",), "all": ("trackio", "wandb"),
          "dev": ("dev",), "data": ("data",), "digits": ("digits",), "slurm": ("slurm",)}
LABELS = {"trackio": "trackio", "wandb": "wandb", "dev": "dev tools", "data": "datasets (FineWeb-Edu)",
          "digits": "scikit-learn (the offline digits)", "slurm": "submitit (SLURM)"}
ORDER = ("trackio", "wandb", "data", "digits", "slurm", "dev")

# Run by the venv's python: does it import a torch that satisfies the requirement (argv[1])?
TORCH_PROBE = r"""
import sys
try:
    from pip._vendor.packaging.requirements import Requirement
except ImportError:
    from packaging.requirements import Requirement
try:
    import torch
except Exception:
    sys.exit(3)
version = str(torch.__version__)
print(version)
try:
    requirement = Requirement(sys.argv[1])
except Exception:
    sys.exit(4)
ok = requirement.name.lower() == "torch" and requirement.specifier.contains(version, prereleases=True)
sys.exit(0 if ok else 5)
"""


@dataclass(frozen=True)
class Step:
    """One line said before it; ``argv`` is None for a line that installs nothing."""

    message: str
    argv: list[str] | None = None
    what: str = ""  # "venv", "pip", "torch", "project" or "" (a note)


@dataclass(frozen=True)
class Request:
    venv: Path
    extras: frozenset[str] = frozenset()
    torch_requirement: str = "torch"
    torch_index_url: str | None = None  # None: decide from the machine; "": the default index


@dataclass
class State:
    """What the plan depends on; the callables are called only when needed (they are slow)."""

    python: str  # the python that creates the venv (this one, run by make as python3)
    venv_python_exists: bool
    record: dict | None
    pyproject_digest: str
    nvidia_driver: Callable[[], bool]
    torch_probe: Callable[[], tuple[bool, str | None]]  # (satisfies the requirement, version)
    root: Path = field(default=ROOT)


def parse_extras(words: Sequence[str]) -> frozenset[str]:
    """``["trackio dev", "all"]`` -> {"trackio", "wandb", "dev"}; separators: space, comma, plus."""
    found: set[str] = set()
    for word in re.split(r"[\s,+]+", " ".join(words).lower()):
        if not word:
            continue
        if word not in EXTRAS:
            raise SystemExit(f"setup: error: unknown extra {word!r}; choose from: {', '.join(EXTRAS)}")
        found.update(EXTRAS[word])
    return frozenset(found)


def configured_trackers(dotconfig: Path, settings: Sequence[str] = ()) -> frozenset[str]:
    """The trackers a run of this configuration uses: TRACKER=... given to make wins over .config."""
    for setting in settings:
        name, _, value = setting.partition("=")
        if name.strip() == "TRACKER":
            words = set(re.split(r"[\s,]+", value.strip().lower()))
            if "both" in words:
                words |= {"trackio", "wandb"}
            return frozenset(words & {"trackio", "wandb"})
    try:
        text = dotconfig.read_text()
    except OSError:
        return frozenset()
    return frozenset(name for name in ("trackio", "wandb")
                     if re.search(rf"^CONFIG_ENABLE_{name.upper()}=y$", text, re.MULTILINE))


def configured_extras(dotconfig: Path, settings: Sequence[str] = ()) -> frozenset[str]:
    """What a run of this configuration needs besides its trackers: the offline digits (scikit-learn's),
    submitit for a matrix on SLURM (EXECUTOR=slurm given to make wins over .config)."""
    try:
        text = dotconfig.read_text()
    except OSError:
        text = ""
    extras = {"digits"} if re.search(r'^CONFIG_DATASET="digits"$', text, re.MULTILINE) else set()
    executor = [value.strip().lower() for name, _, value in (s.partition("=") for s in settings)
                if name.strip() == "EXECUTOR"]
    if (executor[-1] == "slurm") if executor else re.search(r"^CONFIG_MATRIX_EXECUTOR_SLURM=y$", text, re.MULTILINE):
        extras.add("slurm")
    return frozenset(extras)


def nvidia_driver_present(which: Callable[[str], str | None] = shutil.which,
                          exists: Callable[[str], bool] = os.path.exists) -> bool:
    return which("nvidia-smi") is not None or exists("/proc/driver/nvidia")


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def describe(extras: frozenset[str]) -> str:
    names = [LABELS[e] for e in ORDER if e in extras]
    return "with " + " + ".join(names) if names else "without trackers"


def torch_step(request: Request, python: str, nvidia_driver: Callable[[], bool]) -> Step:
    """How torch is installed: the pip command, and one line saying what and how to choose otherwise.

    An index given for torch is the only one: PyTorch's indexes hold torch's dependencies too,
    and with PyPI as an extra index pip would take PyPI's newer (CUDA) torch whenever the CPU
    index lags behind or cannot be reached.
    """
    req, url = request.torch_requirement, request.torch_index_url
    what = f"torch ({req})" if req != "torch" else "torch"
    pip = [python, "-m", "pip", "install", req]
    if url is None and not nvidia_driver():
        return Step(f"installing {what}: the CPU build from {CPU_INDEX}, as there is no NVIDIA driver here "
                    f"(another build: make TORCH_INDEX_URL=URL, or TORCH_INDEX_URL= for PyPI's)",
                    pip + ["--index-url", CPU_INDEX], "torch")
    if url is None:
        return Step(f"installing {what} from PyPI: the CUDA build, as there is an NVIDIA driver here "
                    f"(the CPU build: make TORCH_INDEX_URL={CPU_INDEX})", pip, "torch")
    if url == "":
        return Step(f"installing {what} from the default index, as TORCH_INDEX_URL is empty "
                    f"(unset it to choose from the machine: CPU build without an NVIDIA driver)", pip, "torch")
    return Step(f"installing {what} from {url} (TORCH_INDEX_URL; unset it to choose from the machine)",
                pip + ["--index-url", url], "torch")


def is_current(request: Request, state: State) -> bool:
    record = state.record or {}
    return (state.venv_python_exists and record.get("pyproject") == state.pyproject_digest
            and request.extras <= set(record.get("extras", ()))
            and record.get("torch") == request.torch_requirement)


def plan(request: Request, state: State) -> list[Step]:
    """The steps that bring the venv to what ``request`` asks; [] when it is there already."""
    if is_current(request, state):
        return []
    venv = request.venv
    python = str(venv_python(venv))
    record = state.record if state.venv_python_exists and state.record else {}
    installed = frozenset(record.get("extras", ()))
    steps: list[Step] = []
    if not state.venv_python_exists:
        steps.append(Step(f"creating {venv} with {state.python}", [state.python, "-m", "venv", str(venv)], "venv"))
        steps.append(Step(f"upgrading pip in {venv}", [python, "-m", "pip", "install", "--upgrade", "pip"], "pip"))
        have_torch, torch_version = False, None
    else:
        have_torch, torch_version = state.torch_probe()
    if have_torch:
        steps.append(Step(f"torch {torch_version} in {venv} satisfies {request.torch_requirement!r}: kept"))
    else:
        step = torch_step(request, python, state.nvidia_driver)
        if torch_version:
            step = Step(f"{step.message}; replaces torch {torch_version}", step.argv, step.what)
        steps.append(step)
    project_current = record.get("pyproject") == state.pyproject_digest and request.extras <= installed
    if not project_current:
        extras = request.extras | installed
        target = str(state.root) + (f"[{','.join(sorted(extras))}]" if extras else "")
        steps.append(Step(f"installing adamwprune (editable) {describe(extras)}",
                          [python, "-m", "pip", "install", "-e", target], "project"))
    return steps


def new_record(request: Request, state: State) -> dict:
    """What the venv holds once ``plan``'s steps ran: the extras asked for and those it had."""
    previous = state.record if state.venv_python_exists and state.record else {}
    extras = set(request.extras) | set(previous.get("extras", ()))
    return {"pyproject": state.pyproject_digest, "extras": sorted(extras), "torch": request.torch_requirement}


def read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # none yet, or the empty stamp of an older Makefile
    return record if isinstance(record, dict) else None


def probe_torch(python: Path, requirement: str) -> tuple[bool, str | None]:
    try:
        proc = subprocess.run([str(python), "-c", TORCH_PROBE, requirement], capture_output=True,
                              text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return False, None
    version = proc.stdout.strip() or None
    return proc.returncode == 0, version


def current_state(request: Request, python: str = sys.executable, root: Path = ROOT) -> State:
    vpy = venv_python(request.venv)
    return State(
        python=python, venv_python_exists=vpy.exists(),
        record=read_record(request.venv / RECORD_NAME),
        pyproject_digest=hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest(),
        nvidia_driver=nvidia_driver_present,
        torch_probe=lambda: probe_torch(vpy, request.torch_requirement), root=root)


def say(message: str) -> None:
    print(f"setup: {message}", flush=True)


def run(request: Request, state: State, steps: list[Step]) -> int:
    for step in steps:
        say(step.message)
        if step.argv is None:
            continue
        code = subprocess.call(step.argv)
        if code != 0:
            hint = ""
            if step.what == "venv":
                hint = "; on Debian or Ubuntu, `apt install python3-venv` provides venv"
            if step.what == "torch" and "--index-url" in step.argv:
                url = step.argv[step.argv.index("--index-url") + 1]
                hint = (f"; if {url} is out of reach from here, add TORCH_INDEX_URL= to the make command "
                        "for the default index's torch (PyPI's, on Linux with CUDA libraries: 3 GB more)")
            doing = {"venv": f"creating {request.venv}", "pip": "upgrading pip", "torch": "installing torch",
                     "project": "installing adamwprune"}.get(step.what, step.message)
            print(f"setup: error: {doing} failed (exit status {code}){hint}", file=sys.stderr)
            return code
    tmp = request.venv / (RECORD_NAME + ".tmp")
    tmp.write_text(json.dumps(new_record(request, state), indent=1) + "\n")
    os.replace(tmp, request.venv / RECORD_NAME)
    if any(step.argv for step in steps):
        say(f"{request.venv} is ready: {venv_python(request.venv)} (or `source {request.venv}/bin/activate`)")
    return 0


def request_from(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Request:
    extras = parse_extras([*args.extra, *args.extras])
    if args.configured_trackers:
        extras |= configured_trackers(Path(args.configured_trackers), args.set)
        extras |= configured_extras(Path(args.configured_trackers), args.set)
    index = args.torch_index_url if args.torch_index_url is not None else env.get("TORCH_INDEX_URL")
    requirement = args.torch or env.get("TORCH_REQUIREMENT") or "torch"
    return Request(venv=Path(args.venv), extras=extras, torch_requirement=requirement,
                   torch_index_url=index)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="setup_venv.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--venv", default=".venv", help="the virtual environment (default .venv)")
    p.add_argument("extra", nargs="*", help=f"extras to install: {', '.join(EXTRAS)}")
    p.add_argument("--extras", action="append", default=[],
                   help="more extras (space, comma or plus separated: make's EXTRAS)")
    p.add_argument("--configured-trackers", metavar="DOTCONFIG",
                   help="also install the trackers this .config enables (or --set TRACKER=... names), "
                        "and scikit-learn for its DATASET digits")
    p.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                   help="make's command-line variables (only TRACKER is used)")
    p.add_argument("--torch", help="torch requirement (default: $TORCH_REQUIREMENT, else torch)")
    p.add_argument("--torch-index-url", help="index for torch; empty: the default index "
                                             "(default: $TORCH_INDEX_URL; unset: decide from the machine)")
    p.add_argument("--check", action="store_true",
                   help="only say what would be done; exit 1 if anything would be installed")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    request = request_from(args)
    if sys.version_info < (3, 10) and not venv_python(request.venv).exists():
        print(f"setup: error: {sys.executable} is Python {sys.version.split()[0]}; AdamWPrune needs 3.10 or "
              "newer: name one, e.g. make PYTHON=python3.11", file=sys.stderr)
        return 2
    state = current_state(request)
    steps = plan(request, state)
    if args.check or os.environ.get("SETUP_VENV_CHECK"):  # the variable: for tests that share a venv
        for step in steps:
            say(("would run: " if step.argv else "") + step.message)
        return 1 if any(step.argv for step in steps) else 0
    if not steps:
        return 0
    try:
        return run(request, state, steps)
    except KeyboardInterrupt:
        print("setup: interrupted; run it again to finish", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
