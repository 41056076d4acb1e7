"""What ``make``, ``make test_matrix`` and ``make show`` do with the configuration."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from adamwprune import child_env, matrix
from adamwprune.errors import UserError
from adamwprune.kconfig.generated import DOTCONFIG, load_config
from adamwprune.kconfig.tree import available_hint, parse_command_line, tree_root
from adamwprune.tracking.naming import run_dir_for
from adamwprune.tracking.selection import format_trackers

CHILD_GRACE_S = 60  # how long an interrupted trainer gets to finish its tracker


def require_config(root: Path):
    cfg = load_config(root)
    if cfg is None:
        raise UserError(f"no {DOTCONFIG} in {root}: run `make defconfig DEFCONFIG=<name>` first; "
                        f"{available_hint(tree_root(root))}")
    return cfg


def trainer_script(cfg, root: Path) -> Path:
    script = tree_root(root) / cfg.MODEL / "train.py"
    if not script.is_file():
        raise UserError(f"the {cfg.MODEL} trainer is not available yet ({cfg.MODEL}/train.py is "
                        "missing); GPT-2 trains today, e.g. make defconfig DEFCONFIG=gpt2-pydocs-cpu")
    return script


def trainer_command(cfg, root: Path) -> list[str]:
    """``python <model>/train.py``, or torchrun with NPROC processes when NPROC > 1."""
    script = trainer_script(cfg, root)
    nproc = getattr(cfg, "NPROC", 1)
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc}", str(script)]
    return [sys.executable, str(script)]


def preflight_command(cfg, root: Path) -> list[str] | None:
    """``python <model>/train.py --check-only`` when NPROC > 1, else None (nothing to add).

    Under torchrun every rank would report the same mistake (data not prepared, no CUDA
    GPU, ...) and torchrun would add its own traceback; checked first in one process, the
    mistake is one line and no process group is started for it.
    """
    if getattr(cfg, "NPROC", 1) <= 1:
        return None
    return [sys.executable, str(trainer_script(cfg, root)), "--check-only"]


def variable_flags(variables: dict[str, str]) -> list[str]:
    """Trainer flags for make's command-line variables (``make TRACKER=trackio``)."""
    command_line = parse_command_line(variables)
    flags = []
    if command_line.trackers is not None:
        flags += ["--tracker", format_trackers(command_line.trackers)]
    if command_line.gpu_monitor is not None:
        flags.append("--gpu-monitor" if command_line.gpu_monitor else "--no-gpu-monitor")
    return flags


def launch(command: list[str], cwd: Path) -> int:
    """Run a trainer to completion; on Ctrl-C let it finish its tracker, then re-raise."""
    print("+ " + shlex.join(command), flush=True)
    process = subprocess.Popen(command, cwd=cwd, env=child_env())
    try:
        return process.wait()
    except KeyboardInterrupt:
        try:
            process.wait(timeout=CHILD_GRACE_S)  # it got the same SIGINT
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise


def run(root: Path, variables: dict[str, str], force_matrix: bool = False) -> int:
    """One training run, or the test matrix when it has several combinations."""
    cfg = require_config(root)
    base = trainer_command(cfg, root)
    check = preflight_command(cfg, root)
    extra = variable_flags(variables)

    def start(flags: list[str]) -> int:
        """One trainer run with ``flags``; under torchrun only once its checks have passed."""
        if check:
            status = launch(check + flags + extra, root)
            if status != 0:
                return status
        return launch(base + flags + extra, root)

    combinations = matrix.expand(cfg)
    if not force_matrix and len(combinations) == 1:
        return start([])
    prefix = cfg.TRACKER_RUN_NAME  # names this matrix, if set

    def run_dir(name: str) -> Path:
        return run_dir_for(cfg.OUTPUT_DIR, cfg.TRACKER_PROJECT, name)

    def shown(name: str) -> str:
        return str(run_dir(name)) if (root / run_dir(name)).is_dir() else "(no run directory)"

    taken = [str(run_dir(name)) for name in (c.run_name(cfg.MODEL, prefix) for c in combinations)
             if (root / run_dir(name)).exists()]
    if taken:
        raise UserError(f"test-matrix run directories already exist ({', '.join(taken)}); remove them, "
                        "or name this matrix with CONFIG_TRACKER_RUN_NAME (make menuconfig), "
                        "which prefixes its run names")
    outcomes = matrix.run_all(combinations, cfg.MODEL, prefix, start)
    print("\n".join(matrix.summary(outcomes, shown)), flush=True)
    failed = [o.run_name for o in outcomes if not o.ok]
    if failed:
        print(f"adamwprune.kconfig: error: {len(failed)} of {len(outcomes)} test-matrix runs "
              f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def show(root: Path) -> int:
    """Serve the Trackio dashboard for the configured project on TRACKIO_PORT."""
    cfg = require_config(root)
    project, port = cfg.TRACKER_PROJECT, cfg.TRACKIO_PORT
    print(f"Trackio dashboard for project {project} on http://127.0.0.1:{port} "
          "(Ctrl-C to stop)", flush=True)
    import trackio

    try:
        trackio.show(project=project, server_port=port, block_thread=True)
    except OSError as err:
        raise UserError(f"cannot serve the dashboard on port {port} ({err}); "
                        "change CONFIG_TRACKIO_PORT with make menuconfig") from None
    return 0
