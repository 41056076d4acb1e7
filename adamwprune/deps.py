"""Entry points started without their dependencies say how to set up, in one line.

Standard library only, and nothing is imported here: ``importlib.util.find_spec`` only
looks. An entry point calls :func:`require` before its heavy imports, e.g. ``python3
gpt2/train.py ...`` with a system python that has no torch::

    gpt2/train.py: error: torch is not installed in this Python (/usr/bin/python3): run `make venv`
    and use .venv/bin/python, or pip install -e '.[trackio]'

(one line), exit status 2, instead of a traceback. ``--help`` works without them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent

# What each entry point imports besides the standard library (module names).
TRAINER = ("torch", "numpy", "orjson", "tiktoken")
REPLAY = ("orjson",)

PIP_NAMES = {"pynvml": "nvidia-ml-py"}


def missing(modules: Iterable[str]) -> list[str]:
    """The modules of ``modules`` that this Python cannot import (none is imported)."""
    gone = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            gone.append(name)
    return gone


def setup_hint(cwd: Path | None = None) -> str:
    """How to get a Python that has them, spelled for the current directory."""
    cwd = Path.cwd() if cwd is None else cwd
    try:
        here = cwd.resolve() == ROOT
    except OSError:
        here = False
    if here:
        return "run `make venv` and use .venv/bin/python, or pip install -e '.[trackio]'"
    return (f"run `make -C {ROOT} venv` and use {ROOT / '.venv/bin/python'}, "
            f"or pip install -e '{ROOT}[trackio]'")


def missing_message(modules: Iterable[str]) -> str | None:
    """None when all of ``modules`` can be imported, else the one line that says what to do."""
    gone = [PIP_NAMES.get(name, name) for name in missing(modules)]
    if not gone:
        return None
    verb = "is" if len(gone) == 1 else "are"
    return f"{', '.join(gone)} {verb} not installed in this Python ({sys.executable}): {setup_hint()}"


def require(prog: str, modules: Iterable[str], argv: Sequence[str] = ()) -> None:
    """Exit with status 2 and one line on stderr when a module is missing; ``--help`` is let through."""
    if any(arg in ("-h", "--help") for arg in argv):
        return
    message = missing_message(modules)
    if message:
        print(f"{prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)
