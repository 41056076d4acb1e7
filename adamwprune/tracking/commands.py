"""Commands the library prints as hints, spelled so that they run as printed.

Every hint (the Trackio dashboard, ``wandb sync``, ``adamwprune replay``, installing a
tracker) names a console script of *this* Python environment. A newcomer's shell often
has not activated the venv: a bare ``trackio`` is then "command not found" or, worse,
another installation's. :func:`tool` spells the script the way it runs from the current
directory:

- the bare name when the one on ``PATH`` is this environment's (an activated venv);
- else the script beside ``sys.executable`` (``Path(sys.executable).parent``, the venv's
  ``bin``; the symlink of a venv's python is not followed), relative to the current
  directory when it is under it (``.venv/bin/trackio``), else absolute;
- else ``<python> -m <module>`` when the script is not installed but its module is runnable;
- else the bare name.

Every piece is quoted with :func:`shlex.quote`, so a path with spaces still runs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

# The package's extras (pyproject.toml [project.optional-dependencies]) that install a tracker.
TRACKER_EXTRAS = {"trackio": "trackio", "wandb": "wandb"}
ALL_TRACKERS_EXTRA = "all"


def as_typed(path: str | os.PathLike, cwd: Path | None = None) -> str:
    """``path`` as typed from ``cwd`` (default: the current directory): relative when it is
    under it (``.venv/bin/trackio``, ``runs/p/r``), else absolute; shell-quoted."""
    path = Path(os.path.abspath(path))
    cwd = Path(os.path.abspath(Path.cwd() if cwd is None else cwd))
    if path != cwd and path.is_relative_to(cwd):
        relative = path.relative_to(cwd)
        # a program needs a slash to run from a relative path; a bare data path does not
        return shlex.quote(str(relative) if len(relative.parts) > 1 else f"./{relative}")
    return shlex.quote(str(path))


def _environment_bin() -> Path:
    return Path(os.path.abspath(Path(sys.executable).parent))


def _same_directory(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def python() -> str:
    """This Python, as typed from the current directory (bare when PATH finds this one)."""
    here = _environment_bin()
    name = Path(sys.executable).name
    on_path = shutil.which(name)
    if on_path and _same_directory(Path(on_path).parent, here):
        return name
    return as_typed(here / name)


def tool(name: str, module: str | None = None) -> str:
    """How to run console script ``name`` of this Python environment from the current
    directory (see the module docstring); ``module`` is the ``python -m`` fallback."""
    here = _environment_bin()
    on_path = shutil.which(name)
    if on_path and _same_directory(Path(on_path).parent, here):
        return name
    beside = here / name
    if beside.is_file():
        return as_typed(beside)
    if module:
        return f"{python()} -m {module}"
    return name


def trackio_show_command(project: str) -> str:
    """Opens the Trackio dashboard on ``project``, with ``TRACKIO_DIR=…`` in front when it is set."""
    prefix = f"TRACKIO_DIR={shlex.quote(os.environ['TRACKIO_DIR'])} " if os.environ.get("TRACKIO_DIR") else ""
    return f"{prefix}{tool('trackio', 'trackio.cli')} show --project {shlex.quote(project)}"


def wandb_sync_command(*sync_dirs: str | os.PathLike) -> str:
    """Uploads an offline W&B run: its ``offline-run-…`` directories, oldest first (a resumed or
    replayed run, or a restarted delivery, adds one per session, all with the same run id)."""
    dirs = " ".join(shlex.quote(str(Path(os.path.abspath(d)))) for d in sync_dirs)
    return f"{tool('wandb', 'wandb')} sync {dirs}"


def wandb_login_command() -> str:
    return f"{tool('wandb', 'wandb')} login"


def replay_command(run_dir: str | os.PathLike, tracker: str) -> str:
    """Re-sends a run journal to ``tracker`` (``adamwprune replay``)."""
    return f"{tool('adamwprune', 'adamwprune')} replay {shlex.quote(str(run_dir))} --tracker {shlex.quote(tracker)}"


def source_checkout() -> Path | None:
    """The source tree this package runs from (an editable install or PYTHONPATH), or None
    when it was installed from a wheel."""
    root = Path(__file__).resolve().parent.parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "adamwprune").is_dir() else None


def install_command(extra: str) -> str:
    """Installs the package extra ``extra`` (``trackio``, ``wandb``, ``all``) into this Python:
    ``.venv/bin/pip install -e '.[wandb]'`` from a checkout, else ``pip install 'adamwprune[wandb]'``."""
    pip = tool("pip", "pip")
    root = source_checkout()
    if root is None:
        return f"{pip} install {shlex.quote(f'adamwprune[{extra}]')}"
    cwd = Path.cwd().resolve()
    where = "." if root == cwd else str(root.relative_to(cwd)) if root.is_relative_to(cwd) else str(root)
    return f"{pip} install -e {shlex.quote(f'{where}[{extra}]')}"


def tracker_install_command(trackers) -> str:
    """The install command for the trackers ``trackers`` (one extra, or ``all`` for several)."""
    names = [name for name in TRACKER_EXTRAS if name in trackers]
    return install_command(TRACKER_EXTRAS[names[0]] if len(names) == 1 else ALL_TRACKERS_EXTRA)
