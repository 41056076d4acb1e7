"""``python -m adamwprune.gpu.report RUN_DIR`` (later ``adamwprune gpu-report RUN_DIR``): the GPU
graphs of a run, drawn from ``RUN_DIR/gpu.jsonl`` into RUN_DIR as gpu_memory.png,
gpu_load_balance.png and gpu_timeline.png.

Titles carry the run name (``run_name`` of RUN_DIR/run.json, else the directory's name) and
"(simulated)" for a simulated run. Bad input is one line, no traceback: a run directory
without gpu.jsonl, or without samples, is an error (exit status 2); a torn last line (the
writer was killed mid-line) is left out with a one-line warning.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

PROG = "adamwprune gpu-report"
log = logging.getLogger("adamwprune.gpu")


def run_name(run_dir: Path) -> str:
    """``run_name`` from run.json when it has one, else the directory's name."""
    import orjson

    try:
        name = orjson.loads((Path(run_dir) / "run.json").read_bytes()).get("run_name")
    except (OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) and name else Path(run_dir).resolve().name


def write_report(run_dir: Path | str, dpi: int = 100,
                 warn: Callable[[str], None] | None = None) -> list[Path]:
    """Draw the graphs of ``run_dir/gpu.jsonl`` into ``run_dir``; the PNG paths written.

    Warnings (a torn last line, unreadable lines) go to ``warn``, else to the
    ``adamwprune.gpu`` logger. Raises UserError (one line) for a missing directory or
    gpu.jsonl, a gpu.jsonl without header or without samples, or a missing matplotlib.
    """
    from adamwprune.errors import UserError

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory: give the run directory printed at start")
    try:
        from adamwprune.deps import missing_message

        message = missing_message(("matplotlib", "numpy", "orjson"))
    except ImportError:
        message = None
    if message:
        raise UserError(message)
    from adamwprune.gpu.plots import write_graphs
    from adamwprune.gpu.samplelog import GPU_LOG_NAME, read_gpu_log

    gpu_log = read_gpu_log(run_dir / GPU_LOG_NAME)
    for line in gpu_log.warnings:
        (warn or log.warning)(line)
    if not gpu_log.samples:
        raise UserError(f"{gpu_log.path} holds no GPU samples (the run stopped before the first one)")
    if not any(sample["gpus"] for sample in gpu_log.samples):
        raise UserError(f"{gpu_log.path} holds no GPU readings: every read failed (see its read_failed lines)")
    return write_graphs(gpu_log, run_dir, run_name(run_dir), dpi=dpi)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments, for ``adamwprune gpu-report``'s subparser as for this module's own parser."""
    parser.add_argument("run_dir", type=Path, help="the run directory (holds gpu.jsonl)")
    parser.add_argument("--dpi", type=int, default=100, help="resolution of the PNGs (default 100)")
    return parser


def run(args: argparse.Namespace, prog: str = PROG) -> int:
    """Write the report for parsed ``args``; prints the paths written. Raises UserError."""
    from adamwprune.errors import UserError

    if args.dpi < 10 or args.dpi > 600:
        raise UserError(f"--dpi must be between 10 and 600, got {args.dpi}")
    for path in write_report(args.run_dir, dpi=args.dpi,
                             warn=lambda line: print(f"{prog}: warning: {line}", file=sys.stderr)):
        print(path)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Entry point: a UserError is one line on stderr and exit status 2."""
    from adamwprune.errors import run_main

    def _main(argv: Sequence[str] | None) -> int:
        parser = add_arguments(argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0]))
        return run(parser.parse_args(argv), prog)

    return run_main(_main, argv, prog=prog)


if __name__ == "__main__":
    sys.exit(main())
