"""SLURM's client commands (sinfo, sacct, scontrol, ...) as the matrix executor and ``multinode``
use them: their output, or one line saying what to check; and which job states are not over."""

from __future__ import annotations

import os
import shutil
import subprocess

from adamwprune.errors import UserError

# sacct states of a job that is not over (UNKNOWN: just submitted, accounting has not seen it yet)
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "COMPLETING", "CONFIGURING", "UNKNOWN")
POLL_S = float(os.environ.get("ADAMWPRUNE_SLURM_POLL_S", "5"))  # between two sacct reads while waiting


def slurm_output(argv: list[str], what: str) -> str:
    """A SLURM client command's output; a UserError saying ``what`` went wrong and its last line."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise UserError(f"{argv[0]} did not answer in 120 s; check that the SLURM controller is up "
                        "(scontrol ping)") from None
    if done.returncode:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"{what} ({argv[0]}: {last[0]})")
    return done.stdout


def missing_clients(*names: str) -> list[str]:
    """The SLURM client commands not on PATH (not a login node of a cluster)."""
    return [name for name in names if not shutil.which(name)]
