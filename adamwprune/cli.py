"""The ``adamwprune`` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from adamwprune import multinode
from adamwprune.deps import REPLAY, missing_message
from adamwprune.errors import UserError, run_main
from adamwprune.gpu import report as gpu_report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adamwprune", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    replay = commands.add_parser("replay", help="re-send a run journal to Trackio and/or W&B")
    replay.add_argument("run_dir", type=Path, help="the run directory printed at start (holds metrics.jsonl)")
    replay.add_argument("--tracker", required=True, help="trackio, wandb or both")
    replay.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for each backend to finish (default 300)")
    report = commands.add_parser("report", help="rebuild a test matrix's graphs and report.html from its results folder")
    report.add_argument("results", type=Path, help="a test_matrix_results_* folder (holds summary.json)")
    status = commands.add_parser("matrix-status", help="a test matrix's runs; on SLURM, its jobs' states read "
                                 "back from sacct first (submits nothing: CONTINUE= does)")
    status.add_argument("results", type=Path, help="a test_matrix_results_* folder (holds summary.json)")
    gpu_report.add_arguments(commands.add_parser(
        "gpu-report", help="draw a run's GPU graphs from its gpu.jsonl (PNGs in the run directory)"))
    multinode.add_arguments(commands.add_parser(
        "multinode", help="one GPT-2 run over N SLURM nodes (scripts/gpt2_multinode.sbatch)"))
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    # e.g. the system python: say how to set up, not a traceback
    message = missing_message(REPLAY if args.command == "replay" else (*REPLAY, "matplotlib"))
    if message:
        raise UserError(message)
    if args.command == "report":
        from adamwprune.matrix.report import build_report

        print(f"report: {build_report(args.results)}", flush=True)
        return 0
    if args.command == "matrix-status":
        from adamwprune.matrix.slurm import matrix_status

        return matrix_status(args.results, Path.cwd())
    if args.command == "gpu-report":
        return gpu_report.run(args)
    if args.command == "multinode":
        return multinode.run(args)
    from adamwprune.tracking.replay import replay

    result = replay(args.run_dir, args.tracker, args.timeout)
    whole = all(b["confirmed"] is not None and not b["missing"] and b["state"] == "done"
                for b in result["backends"].values())
    return 0 if whole else 1  # 1: a backend lacks records (or cannot tell), as the lines above say


def main(argv: Sequence[str] | None = None) -> int:
    code = run_main(_main, argv)
    if argv is None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # replay may leave a hung backend thread behind; do not wait for it
    return code


if __name__ == "__main__":
    sys.exit(main())
