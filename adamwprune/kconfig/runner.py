"""What ``make``, ``make test_matrix`` and ``make show`` do with the configuration."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import sys
from pathlib import Path

from adamwprune import child_env, matrix
from adamwprune.errors import UserError
from adamwprune.kconfig.generated import DOTCONFIG, load_config
from adamwprune.kconfig.tree import available_hint, parse_command_line, tree_root
from adamwprune.tracking.selection import format_trackers
from adamwprune.train.settings import TRAINED_BY

CHILD_GRACE_S = 60  # how long an interrupted trainer gets to finish its tracker


def require_config(root: Path):
    cfg = load_config(root)
    if cfg is None:
        raise UserError(f"no {DOTCONFIG} in {root}: run `make defconfig DEFCONFIG=<name>` first; "
                        f"{available_hint(tree_root(root))}")
    return cfg


def trainer_script(cfg, root: Path) -> Path:
    """``<model>/train.py``, or the trainer of the family that trains the model (resnet18: resnet50's,
    which reads --model-name resnet18 from the configuration)."""
    family = TRAINED_BY.get(cfg.MODEL, (cfg.MODEL, {}))[0]
    script = tree_root(root) / family / "train.py"
    if not script.is_file():
        raise UserError(f"the {cfg.MODEL} trainer {family}/train.py is missing from {tree_root(root)}")
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


def launch(command: list[str], cwd: Path, log: Path | None = None, env: dict[str, str] | None = None) -> int:
    """Run a trainer to completion (output to ``log`` when given); on Ctrl-C let it finish its
    tracker, then re-raise."""
    print("+ " + shlex.join(command) + (f" > {log}" if log else ""), flush=True)
    with open(log, "ab") if log else contextlib.nullcontext() as out:
        process = subprocess.Popen(command, cwd=cwd, env={**child_env(), **(env or {})}, stdout=out,
                                   stderr=subprocess.STDOUT if out else None)
        try:
            return process.wait()
        except KeyboardInterrupt:
            try:
                process.wait(timeout=CHILD_GRACE_S)  # it got the same SIGINT
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            raise


def matrix_options(cfg, command_line) -> matrix.MatrixOptions:
    """SEEDS=, PARALLEL_JOBS=, CONTINUE=, EXECUTOR= over the configuration's TEST_MATRIX_SEEDS,
    TEST_MATRIX_PARALLEL_JOBS and MATRIX_EXECUTOR."""
    return matrix.MatrixOptions(
        seeds=command_line.seeds or getattr(cfg, "TEST_MATRIX_SEEDS", 1),
        parallel_jobs=command_line.parallel_jobs or getattr(cfg, "TEST_MATRIX_PARALLEL_JOBS", 1),
        continue_dir=Path(command_line.continue_dir) if command_line.continue_dir else None,
        executor=command_line.executor or getattr(cfg, "MATRIX_EXECUTOR", "local"))


def run(root: Path, variables: dict[str, str], force_matrix: bool = False) -> int:
    """One training run, or the test matrix when it has several runs (or one is continued)."""
    cfg = require_config(root)
    base = trainer_command(cfg, root)
    check = preflight_command(cfg, root)
    command_line = parse_command_line(variables)
    extra = variable_flags(variables)

    def commands(flags: list[str]) -> list[list[str]]:
        """One trainer run with ``flags``: under torchrun its checks first, in one process."""
        return ([check + flags + extra] if check else []) + [base + flags + extra]

    def start(flags: list[str], log: Path | None = None, env: dict[str, str] | None = None) -> int:
        for command in commands(flags):
            status = launch(command, root, log, env)
            if status != 0:
                return status
        return 0

    options = matrix_options(cfg, command_line)
    if (not force_matrix and options.continue_dir is None and options.executor == "local"
            and len(matrix.expand(cfg, options.seeds)) == 1):
        return start([])
    return matrix.run_matrix(cfg, root, options, start, commands)


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
