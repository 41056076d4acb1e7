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


def partitions(who: str, clients: tuple[str, ...], elsewhere: str, accounting_for: str | None,
               partition: str = "", setting: str = "") -> tuple[str, dict[str, int]]:
    """Check that SLURM is here and answers, before anything is submitted: its ``clients`` on PATH,
    the controller (sinfo), accounting when ``accounting_for`` says what needs it, and ``partition``
    (named by ``setting``) when one is given. Returns (the partition to use: ``partition`` or the
    cluster's default, {partition: nodes}). Each failure is one line, starting with ``who``."""
    missing = missing_clients(*clients)
    if missing:
        raise UserError(f"{who}: no SLURM here ({', '.join(missing)} not on PATH); {elsewhere}")
    listing = slurm_output(["sinfo", "-h", "-o", "%P %D"], f"{who}: the SLURM controller does not answer; "
                                                           "check SLURM_CONF and that slurmctld is up (scontrol ping)")
    if accounting_for:
        slurm_output(["sacct", "-n", "-X", "-j", "1"],
                     f"{who}: SLURM accounting does not answer, and {accounting_for}; check that slurmdbd is up "
                     "(sacctmgr show cluster)")
    sizes: dict[str, int] = {}
    default = ""
    for line in listing.splitlines():
        name, count = line.split()
        if name.endswith("*"):
            default = name = name[:-1]
        sizes[name] = sizes.get(name, 0) + int(count)
    if partition and partition not in sizes:
        named = f" ({setting})" if setting else ""
        raise UserError(f"unknown SLURM partition {partition!r}{named}; this cluster has: "
                        f"{', '.join(sizes) or 'none'} (sinfo)")
    return partition or default, sizes
