"""Running a test matrix: an identity, a results folder, N runs at a time, continue after a crash.

Every run gets the same configuration (iteration budget, eval schedule, seed unless the seed
axis says otherwise); only its combination's flags differ. A failed run never stops the
matrix; Ctrl-C lets the running trainers finish their trackers, marks them interrupted and
leaves summary.json consistent, so ``CONTINUE=<results dir>`` resumes them (``--resume``: the
same tracked runs, no duplicates) and runs whatever is missing or failed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from adamwprune.errors import UserError
from adamwprune.matrix.plan import Combination, plan
from adamwprune.matrix.results import DONE, RESULTS_PREFIX, TRAIN_LOG, Results, read_run_outcome
from adamwprune.tracking.naming import run_dir_for

INTERRUPTED_EXIT = 130


@dataclass(frozen=True)
class MatrixOptions:
    seeds: int = 1
    parallel_jobs: int = 1
    continue_dir: Path | None = None
    executor: str = "local"  # or "slurm": every run one job of a SLURM job array (matrix/slurm.py)


# (flags, log file or None, environment additions) -> exit code
Launcher = Callable[[list[str], Path | None, dict[str, str]], int]


def new_matrix_id(cfg, root: Path) -> str:
    """CONFIG_TRACKER_RUN_NAME when set (a name the user gives the matrix), else the start time."""
    if cfg.TRACKER_RUN_NAME:
        return cfg.TRACKER_RUN_NAME
    base = time.strftime("%Y%m%d-%H%M%S")
    matrix_id, number = base, 1
    while (root / f"{RESULTS_PREFIX}{matrix_id}").exists():
        number += 1
        matrix_id = f"{base}-{number}"
    return matrix_id


def device_slots(parallel_jobs: int, nproc: int, gpus: int, cpus: int) -> list[dict[str, str]]:
    """The environment of each parallel slot: its own GPUs (CUDA_VISIBLE_DEVICES) when there are
    GPUs, else its share of the CPU cores (OMP_NUM_THREADS), so N jobs do not oversubscribe."""
    if parallel_jobs == 1:
        return [{}]
    if gpus:
        if parallel_jobs * nproc > gpus:
            raise UserError(f"PARALLEL_JOBS={parallel_jobs} runs of {nproc} GPU(s) each need "
                            f"{parallel_jobs * nproc} GPUs; this machine has {gpus}")
        return [{"CUDA_VISIBLE_DEVICES": ",".join(str(slot * nproc + i) for i in range(nproc))}
                for slot in range(parallel_jobs)]
    threads = max(1, cpus // parallel_jobs)
    return [{"OMP_NUM_THREADS": str(threads)} for _ in range(parallel_jobs)]


def visible_gpus() -> int:
    """NVIDIA GPUs on this machine (``nvidia-smi -L``), 0 without a driver."""
    if not shutil.which("nvidia-smi"):
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines()) if listing.returncode == 0 else 0


def run_matrix(cfg, root: Path, options: MatrixOptions, launch: Launcher,
               commands: Callable[[list[str]], list[list[str]]] | None = None) -> int:
    """Run (or continue) the configured matrix; 0 when every run ended ok, else 1. ``launch`` runs a
    trainer here; ``commands`` gives a run's trainer commands for a SLURM job."""
    selection = plan(cfg, options.seeds)
    if options.executor == "slurm":
        from adamwprune.matrix.slurm import check_scheduler

        check_scheduler(cfg.MATRIX_SLURM_PARTITION)  # before anything is written
    if options.continue_dir is not None:
        results = Results.load(root / options.continue_dir, cfg, options.seeds)
        matrix_id = results.data["matrix"]
    else:
        matrix_id = new_matrix_id(cfg, root)
        directory = root / f"{RESULTS_PREFIX}{matrix_id}"
        if directory.exists():
            raise UserError(f"{directory.name} already exists: continue it with CONTINUE={directory.name}, "
                            "or give this matrix another CONFIG_TRACKER_RUN_NAME")
        runs = [(c, c.run_name(cfg.MODEL, matrix_id), c.flags(cfg.MODEL, matrix_id)) for c in selection.combinations]
        results = Results.create(directory, matrix_id, cfg, options.seeds, runs, selection.skipped,
                                 cfg.TRACKER_PROJECT)
    where = " on SLURM" if options.executor == "slurm" else ""
    print(f"test matrix {matrix_id}: {len(results.data['runs'])} runs{where}, {options.parallel_jobs} at a time; "
          f"results in {results.directory.relative_to(root) if results.directory.is_relative_to(root) else results.directory}",
          flush=True)
    for line in results.data["skipped"]:
        print(f"  skipped {line}", flush=True)
    if options.executor == "slurm":
        from adamwprune.matrix.slurm import SlurmJobs, SlurmMatrix

        return SlurmMatrix(cfg, root, results, SlurmJobs.from_config(cfg, options.parallel_jobs), commands).run()
    slots = device_slots(options.parallel_jobs, getattr(cfg, "NPROC", 1), visible_gpus(), os.cpu_count() or 1)
    return Matrix(cfg, root, results, slots, launch).run()


def run_dir_of(cfg, results: Results, name: str) -> Path:
    """Where a run of the matrix keeps its files: ``<results>/<project>/<run name>``."""
    return results.directory / run_dir_for(".", cfg.TRACKER_PROJECT, name)


def matrix_flags(results: Results, run: dict) -> list[str]:
    """A run's trainer flags in its matrix: its combination's, the results folder, and the
    matrix's W&B/Trackio group and tags."""
    combination = Combination(run["optimizer"], run["pruning_method"], run["target_sparsity"], run["seed"])
    return [*run["flags"], "--output-dir", str(results.directory), "--tracker-group", results.data["matrix"],
            "--tracker-tags", ",".join(combination.tags())]


def continuation_flags(run_dir: Path) -> list[str]:
    """--resume for a run that left ckpt_last.pt (it continues its tracked run, no duplicate steps),
    --restart for one stopped before its first checkpoint, nothing for a new one."""
    if (run_dir / "ckpt_last.pt").exists():
        return ["--resume", str(run_dir)]
    if run_dir.is_dir() and any(p.name != TRAIN_LOG for p in run_dir.iterdir()):
        return ["--restart"]
    return []


def exit_status(code: int | None) -> str:
    """ok, interrupted (Ctrl-C, or SLURM's SIGTERM/SIGUSR2: ckpt_last.pt saved) or failed."""
    return "ok" if code == 0 else "interrupted" if code == INTERRUPTED_EXIT else "failed"


def finished_fields(cfg, root: Path, results: Results, run: dict, status: str, code: int | None,
                    seconds: float) -> dict:
    """What summary.json records of a run that ended: how, where its files and tracked run are,
    and what it reached (read from its run directory)."""
    tracked = cfg.ENABLE_TRACKIO or cfg.ENABLE_WANDB
    name, run_dir = run["name"], run_dir_of(cfg, results, run["name"])
    return dict(status=status, exit_code=code, wall_seconds=seconds,
                run_dir=str(run_dir.relative_to(root) if run_dir.is_relative_to(root) else run_dir),
                trackio=f"project {cfg.TRACKER_PROJECT}, run {name}" if cfg.ENABLE_TRACKIO else None,
                wandb_group=results.data["matrix"] if tracked and cfg.ENABLE_WANDB else None,
                **read_run_outcome(run_dir))


class Matrix:
    """The run loop: a slot per parallel job, one line per finished run, ETA of the whole."""

    def __init__(self, cfg, root: Path, results: Results, slots: list[dict[str, str]], launch: Launcher):
        self.cfg, self.root, self.results, self.launch = cfg, root, results, launch
        self.free_slots = list(slots)
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.durations: list[float] = []
        self.parallel = len(slots)

    def todo(self) -> list[dict]:
        return [run for run in self.results.data["runs"] if run["status"] not in DONE]

    def run(self) -> int:
        todo = self.todo()
        total, finished = len(todo), 0
        pool = ThreadPoolExecutor(max_workers=self.parallel)
        running: dict[Future, dict] = {}
        try:
            while todo or running:
                while todo and self.free_slots:
                    run = todo.pop(0)
                    slot = self.free_slots.pop()
                    self.results.update(run["name"], status="running")
                    running[pool.submit(self._one, run, slot)] = run
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    run = running.pop(future)
                    future.result()
                    finished += 1
                    self._progress(run, finished, total)
        except KeyboardInterrupt:
            # The trainers got the same Ctrl-C (one process group): let them finish their trackers.
            for future in list(running):
                future.result()
            self._print_summary()
            print(f"test matrix interrupted: continue it with CONTINUE={self.results.directory.name}",
                  file=sys.stderr, flush=True)
            raise
        finally:
            pool.shutdown(wait=True)
        code = self._print_summary()
        self._report()
        return code

    def _report(self) -> None:
        """report.html and the graphs; a failure costs the report, never the matrix's result."""
        from adamwprune.matrix.report import build_report

        try:
            print(f"test matrix report: {build_report(self.results.directory)}", flush=True)
        except (UserError, OSError, ValueError) as err:
            print(f"warning: cannot build the matrix report ({err}); rebuild it with "
                  f"make update-graphs RESULTS={self.results.directory.name}", file=sys.stderr, flush=True)

    def _one(self, run: dict, slot: dict[str, str]) -> None:
        """Run (or resume) one combination in a slot and record how it ended."""
        run_dir = run_dir_of(self.cfg, self.results, run["name"])
        flags = matrix_flags(self.results, run) + continuation_flags(run_dir)
        log = None
        if self.parallel > 1:
            run_dir.mkdir(parents=True, exist_ok=True)
            log = run_dir / TRAIN_LOG
        start = time.monotonic()
        try:
            code = self.launch(flags, log, slot)
        except OSError as err:  # the trainer could not even start: this run failed, the matrix goes on
            print(f"test matrix: cannot start {run['name']}: {err}", file=sys.stderr, flush=True)
            code = 127
        finally:
            with self.lock:
                self.free_slots.append(slot)
        seconds = round(time.monotonic() - start, 1)
        with self.lock:
            self.durations.append(seconds)
            self.results.update(run["name"], **finished_fields(self.cfg, self.root, self.results, run,
                                                               exit_status(code), code, seconds))

    def _progress(self, run: dict, finished: int, total: int) -> None:
        from adamwprune.train.console import clock

        elapsed = time.monotonic() - self.started
        left = total - finished
        mean = sum(self.durations) / len(self.durations)
        eta = f", ETA {clock(mean * left / self.parallel)}" if left else ""
        record = self.results.by_name[run["name"]]
        note = " (stopped by the time limit)" if record.get("stopped_by_time_limit") else ""
        print(f"test matrix {finished}/{total}: {run['name']} {record['status']}{note} in "
              f"{clock(record['wall_seconds'])} | elapsed {clock(elapsed)}{eta}", flush=True)

    def _print_summary(self) -> int:
        runs = self.results.data["runs"]
        width = max((len(run["name"]) for run in runs), default=0)
        for run in runs:
            metrics = run.get("best_metrics") or {}
            best = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
            code = f" (exit {run['exit_code']})" if run["status"] == "failed" else ""
            print(f"  {run['name']:<{width}}  {run['status'] + code:<18} {best}", flush=True)
        counts = self.results.counts()
        print(f"test matrix: {len(runs)} runs, " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
              + f"; {self.results.directory.name}/summary.json", flush=True)
        bad = [run["name"] for run in runs if run["status"] != "ok"]
        if bad:
            print(f"adamwprune.kconfig: error: {len(bad)} of {len(runs)} test-matrix runs did not finish ok: "
                  f"{', '.join(bad)}; rerun them with CONTINUE={self.results.directory.name}",
                  file=sys.stderr, flush=True)
            return 1
        return 0
