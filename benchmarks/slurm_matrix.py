#!/usr/bin/env python3
"""A test matrix through SLURM vs on this machine: set-up time of a local SLURM, per-job overhead,
and the matrix's wall time with EXECUTOR=slurm vs EXECUTOR=local.

It starts a real SLURM here (scripts/local_slurm.py; needs root and Debian's packages), then runs
the same tiny CPU GPT-2 matrix (4 runs: sgd, adam, adamw, adamwspam; no pruning; ``--iters``
steps; tracked in Trackio) twice in one go, in the same order: ``make test_matrix`` with
PARALLEL_JOBS=2, locally and on SLURM (two nodes of 2 cores on the same machine, one core per
job). For every SLURM job, sacct's Submit, Start and End give the wait in the queue and the time in
the job, and the trainer's own time (its run.json ``created`` to its result.json) gives the
overhead the job adds around the trainer (submitit's Python start, unpickling, srun).

    sudo python3 benchmarks/slurm_matrix.py            # about a minute on 2 cores
    python3 benchmarks/slurm_matrix.py --iters 200
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import local_slurm  # noqa: E402

DEFCONFIG = """CONFIG_GPT2_MODEL_NAME="gpt2-tiny"
CONFIG_DATASET="pydocs"
CONFIG_BLOCK_SIZE=16
CONFIG_BATCH_SIZE=2
CONFIG_WARMUP_ITERS=1
CONFIG_MAX_ITERS={iters}
CONFIG_LOG_INTERVAL=10
CONFIG_EVAL_INTERVAL={iters}
CONFIG_EVAL_SAMPLES=1
CONFIG_EVAL_BATCH_SIZE=2
CONFIG_DEVICE="cpu"
CONFIG_TEST_OPTIMIZER_SGD=y
CONFIG_TEST_OPTIMIZER_ADAM=y
CONFIG_TEST_OPTIMIZER_ADAMW=y
CONFIG_TEST_OPTIMIZER_ADAMWSPAM=y
CONFIG_TEST_PRUNING_NONE=y
CONFIG_MATRIX_EXECUTOR_SLURM=y
CONFIG_MATRIX_SLURM_CPUS_PER_RUN=1
"""


def make(root: Path, *args: str) -> float:
    """Seconds ``make ARGS`` took in root (it must succeed)."""
    python = Path(sys.executable)
    start = time.monotonic()
    subprocess.run(["make", "--no-print-directory", "-C", str(root), "-f", str(REPO / "Makefile"),
                    f"VENV={python.parent.parent}", "-o", str(python.parent.parent / ".installed"), *args],
                   check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp).timestamp()


def job_times(job_ids: list[str]) -> dict[str, tuple[float, float, float]]:
    """job id -> (submit, start, end) from sacct, in seconds since the epoch."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,Submit,Start,End", "-j",
                          ",".join(sorted({j.split("_")[0] for j in job_ids}))],
                         capture_output=True, text=True, check=True).stdout
    return {fields[0]: tuple(seconds(f) for f in fields[1:4])
            for fields in (line.split("|") for line in out.split()) if fields[0] in job_ids}


def trainer_seconds(run_dir: Path) -> float:
    """From the trainer's first record (run.json written) to its last (result.json written)."""
    return (run_dir / "result.json").stat().st_mtime - (run_dir / "run.json").stat().st_mtime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="adamwprune-slurm-bench-"))
    work.chmod(0o755)
    started = time.monotonic()
    env = local_slurm.start(work / "cluster")
    setup_s = time.monotonic() - started
    os.environ.update(env, TRACKIO_DIR=str(work / "trackio"), ADAMWPRUNE_SLURM_POLL_S="1")
    try:
        roots = {}
        for executor in ("local", "slurm"):
            root = roots[executor] = work / executor
            root.mkdir()
            (root / "dc").write_text(DEFCONFIG.format(iters=args.iters))
            subprocess.run([sys.executable, "-m", "adamwprune.kconfig", "defconfig", "./dc", "--set",
                            "TRACKER=trackio", "--set", f"EXECUTOR={executor}"], cwd=root, check=True,
                           stdout=subprocess.DEVNULL)
        wall = {executor: make(roots[executor], "test_matrix", "PARALLEL_JOBS=2") for executor in roots}
        summary = json.loads(next(roots["slurm"].glob("test_matrix_results_*/summary.json")).read_text())
        jobs = {run["slurm"]["job_id"]: roots["slurm"] / run["run_dir"] for run in summary["runs"]}
        times = job_times(list(jobs))
        queue = [start - submit for submit, start, _ in times.values()]
        around = [(end - start) - trainer_seconds(jobs[job]) for job, (_, start, end) in times.items()]
        local = json.loads(next(roots["local"].glob("test_matrix_results_*/summary.json")).read_text())
        local_trainer = [trainer_seconds(roots["local"] / run["run_dir"]) for run in local["runs"]]
    finally:
        local_slurm.stop(work / "cluster")
    for job, (submit, start, end) in sorted(times.items()):
        print(f"  job {job}: waited {start - submit:.0f} s, ran {end - start:.0f} s "
              f"(trainer {trainer_seconds(jobs[job]):.1f} s)")
    print(f"local SLURM set-up (munged, MariaDB, slurmdbd, slurmctld, 2 slurmd): {setup_s:.1f} s")
    print(f"matrix of {len(jobs)} runs x {args.iters} steps, PARALLEL_JOBS=2: local {wall['local']:.1f} s, "
          f"SLURM {wall['slurm']:.1f} s ({wall['slurm'] / wall['local']:.2f}x)")
    print(f"per SLURM job: queue wait median {statistics.median(queue):.1f} s (max {max(queue):.1f}), "
          f"time in the job around the trainer median {statistics.median(around):.1f} s "
          f"(max {max(around):.1f}); trainer alone median {statistics.median(local_trainer):.1f} s locally")
    return 0


if __name__ == "__main__":
    sys.exit(main())
