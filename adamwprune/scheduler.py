"""SLURM's client commands (sinfo, sacct, scontrol, ...) as the matrix executor and ``multinode``
use them: their output, or one line saying what to check; and which job states are not over."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from adamwprune.errors import UserError

# sacct states of a job that is not over (UNKNOWN: just submitted, accounting has not seen it yet)
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "COMPLETING", "CONFIGURING", "UNKNOWN")
ARRAY_RE = re.compile(r"^(\d+)_\[([^\]%]+)(?:%\d+)?\]$")  # sacct's line for an array's pending tasks
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


def job_states(job_ids: list[str], who: str = "EXECUTOR=slurm") -> dict[str, dict]:
    """``job id -> {state, elapsed_s, nodes, exit_code}`` from sacct, for plain jobs (``12``) and
    array tasks (``12_3``); a pending array's unexpanded tasks (``12_[3-5%2]``) are listed one by
    one. The state is its first word ("CANCELLED by 0" -> CANCELLED). A job sacct does not list
    (yet: accounting lags the sbatch by seconds) is absent."""
    if not job_ids:
        return {}
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    out = slurm_output(["sacct", "-n", "-X", "-P", "-o", "JobID,State,ElapsedRaw,NodeList,ExitCode", "-j",
                        ",".join(arrays)], f"{who}: cannot read the jobs' states")
    states: dict[str, dict] = {}
    for line in out.splitlines():
        fields = line.split("|")
        if len(fields) < 5:
            continue
        job_id, state, elapsed, nodes, exit_code = fields[:5]
        info = {"state": state.split()[0] if state else "UNKNOWN",
                "elapsed_s": int(elapsed) if elapsed.isdigit() else None,
                "nodes": nodes if nodes and nodes != "None assigned" else None, "exit_code": exit_code}
        pending = ARRAY_RE.match(job_id)
        if pending:
            for task in _expand(pending.group(2)):
                states[f"{pending.group(1)}_{task}"] = info
        else:
            states[job_id] = info
    return states


def _expand(tasks: str) -> list[int]:
    """``0-2,5`` -> [0, 1, 2, 5]"""
    numbers: list[int] = []
    for part in tasks.split(","):
        low, _, high = part.partition("-")
        numbers.extend(range(int(low), int(high or low) + 1))
    return numbers
