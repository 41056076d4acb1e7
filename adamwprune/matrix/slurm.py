"""A test matrix on a SLURM cluster, submitted with submitit (EXECUTOR=slurm).

Every run of the matrix is one task of a job array, at most PARALLEL_JOBS running at once. Inside
its job a run is started exactly as on this machine (torchrun for NPROC > 1), its output appended
to the run's train.log, and its exit code written beside it (``slurm_job.json``).

summary.json records each run's job before and after the sbatch (``slurm``: submission name,
array index, job id, state), so the submitting process may exit at any moment:
``CONTINUE=<results dir>`` reads the states back from the scheduler (sacct), collects what
finished, and resubmits what failed, was cancelled, timed out or was preempted. SLURM stops a job
with SIGTERM (scancel, the time limit) or SIGUSR2 (submitit's warning before the limit); the
trainer takes either as a Ctrl-C and saves ckpt_last.pt, so a resubmitted run resumes its tracked
run without duplicate steps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator

import orjson

from adamwprune.errors import UserError
from adamwprune.fileio import atomic_write_bytes
from adamwprune.matrix.results import TRAIN_LOG, Results
from adamwprune.matrix.run import Matrix, continuation_flags, exit_status, finished_fields, matrix_flags, run_dir_of
from adamwprune.scheduler import ACTIVE, POLL_S, job_states, partitions, slurm_output

JOB_FILE = "slurm_job.json"  # in the run directory: the job that ran it, where, and the trainer's exit code
SUBMITIT_FOLDER = "slurm"  # in the results folder: submitit's pickles and job logs, one folder per job
IN_FLIGHT = ("submitting", "queued", "running")  # statuses of a run whose job is (or may be) with SLURM
UNKNOWN_AFTER_S = 600  # a job sacct still does not know this long after its sbatch is lost: resubmitted

# a run's commands (the trainer, after its check under torchrun) for its flags
Commands = Callable[[list[str]], list[list[str]]]


@dataclass(frozen=True)
class SlurmJobs:
    """What every run's job asks for, from the configuration's "SLURM jobs" menu."""
    partition: str
    time_minutes: int
    cpus: int
    mem_gb: int
    gpus: int  # NPROC unless DEVICE is cpu: a run's world size
    pending_limit_s: float
    parallel: int

    @classmethod
    def from_config(cls, cfg, parallel: int) -> "SlurmJobs":
        gpus = 0 if cfg.DEVICE == "cpu" else getattr(cfg, "NPROC", 1)
        return cls(cfg.MATRIX_SLURM_PARTITION, cfg.MATRIX_SLURM_TIME_MINUTES, cfg.MATRIX_SLURM_CPUS_PER_RUN,
                   cfg.MATRIX_SLURM_MEM_GB, gpus, cfg.MATRIX_SLURM_PENDING_LIMIT_MINUTES * 60.0, parallel)

    def sbatch_parameters(self, job_name: str) -> dict:
        """submitit's SlurmExecutor parameters. Its warning signal (SIGUSR2) comes a tenth of the
        time limit early, at most 90 s: time for the trainer to save ckpt_last.pt."""
        parameters = dict(job_name=job_name, time=self.time_minutes, cpus_per_task=self.cpus, ntasks_per_node=1,
                          array_parallelism=self.parallel, stderr_to_stdout=True,
                          signal_delay_s=min(90, max(10, self.time_minutes * 6)))
        if self.partition:
            parameters["partition"] = self.partition
        if self.mem_gb:
            parameters["mem"] = f"{self.mem_gb}G"
        if self.gpus:
            parameters["gpus_per_node"] = self.gpus
        return parameters


def check_scheduler(partition: str) -> None:
    """SLURM here, its controller and accounting (the matrix reads its jobs' states from sacct), and
    the configured partition; one line saying what to check otherwise."""
    partitions("EXECUTOR=slurm", ("sbatch", "sacct", "sinfo", "squeue"),
               "run the matrix on a login node of the cluster, or use EXECUTOR=local",
               "the matrix reads its jobs' states from sacct", partition, "CONFIG_MATRIX_SLURM_PARTITION")


def pending_reason(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%r"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or "none given"


@contextlib.contextmanager
def _stderr_to(file) -> Iterator[None]:
    """Point this process's stderr (file descriptor 2, which child processes inherit) at ``file``."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def run_in_job(commands: list[list[str]], run_dir: str, cwd: str) -> int:
    """Inside the SLURM job: the trainer's commands with this run's continuation flags (decided
    here, so a job SLURM requeues resumes too), output appended to the run's train.log.

    SLURM's SIGTERM and SIGUSR2 reach every process of the job; the trainer saves ckpt_last.pt on
    either, and this process (submitit's, which would requeue or give up on them) waits for it.
    """
    from adamwprune import child_env

    for signum in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(signum, lambda *_: None)
    directory = Path(run_dir)
    extra = continuation_flags(directory)
    directory.mkdir(parents=True, exist_ok=True)
    import submitit

    # submitit's job id, as summary.json has it: 12_3 in an array, 12 for a matrix of one run
    job = {"job_id": submitit.JobEnvironment().job_id,
           "node": os.environ.get("SLURMD_NODENAME", socket.gethostname()), "exit_code": None}
    env = child_env()
    # torch's default, a thread per core of the node, oversubscribes a node shared by several jobs
    # (2 jobs of 1 CPU each on 2 cores: 20x slower here); a job's threads are its CPUs
    env.setdefault("OMP_NUM_THREADS", os.environ.get("SLURM_CPUS_PER_TASK", "1"))
    code = 0
    with open(directory / TRAIN_LOG, "ab") as log:
        log.write(f"== SLURM job {job['job_id']} on {job['node']}: {' '.join(extra) or 'new run'} ==\n".encode())
        log.flush()
        for command in commands:
            code = subprocess.run(command + extra, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
            if code:
                break
    job["exit_code"] = code
    atomic_write_bytes(directory / JOB_FILE, orjson.dumps(job))
    return code


def trainer_exit_code(run_dir: Path, job_id: str) -> int | None:
    """The exit code the job wrote, when it is this job's (None: the job died before writing it)."""
    try:
        job = orjson.loads((run_dir / JOB_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return job.get("exit_code") if job.get("job_id") == job_id else None


class SlurmMatrix(Matrix):
    """Submit, watch and collect a matrix's runs as SLURM jobs; summary.json after every change."""

    def __init__(self, cfg, root: Path, results: Results, jobs: SlurmJobs, commands: Commands):
        super().__init__(cfg, root, results, [{}] * jobs.parallel, launch=None)
        self.jobs, self.commands = jobs, commands
        self.folder = results.directory / SUBMITIT_FOLDER

    def run(self) -> int:
        self.recover_submissions()
        self.collect()
        self.submit([run for run in self.todo() if run["status"] not in IN_FLIGHT])
        try:
            self.watch()
        except KeyboardInterrupt:
            print(f"test matrix: the jobs keep running on the cluster; collect them with "
                  f"CONTINUE={self.results.directory.name}", file=sys.stderr, flush=True)
            raise
        self.import_trackio_inbox()
        self.note_wandb_sync()
        code = self._print_summary()
        self._report()
        return code

    def _waiting(self) -> list[dict]:
        return [run for run in self.results.data["runs"] if run["status"] in ("queued", "running")]

    def submit(self, runs: list[dict]) -> None:
        """One job array for ``runs``. They are marked (submission name, array index) before the
        sbatch, so a submitter killed in between leaves jobs that CONTINUE finds by name."""
        if not runs:
            return
        import submitit

        number = self.results.data.get("slurm_submissions", 0) + 1
        self.results.data.update(executor="slurm", slurm_submissions=number)
        name = f"{self.results.data['matrix']}-{number}"
        for index, run in enumerate(runs):
            self.results.update(run["name"], status="submitting",
                                slurm={"submission": name, "index": index, "of": len(runs), "marked": time.time(),
                                       "job_id": None, "state": None,
                                       "attempt": (run.get("slurm") or {}).get("attempt", 0) + 1})
        executor = submitit.SlurmExecutor(folder=self.folder / "%j", max_num_timeout=0)
        executor.update_parameters(**self.jobs.sbatch_parameters(name))
        arguments = [(self.commands(matrix_flags(self.results, run)),
                      str(run_dir_of(self.cfg, self.results, run["name"])), str(self.root)) for run in runs]
        with tempfile.TemporaryFile() as sbatch_errors:
            try:
                with _stderr_to(sbatch_errors):  # sbatch's own lines: folded into one below
                    submitted = executor.map_array(run_in_job, *zip(*arguments))
            except (submitit.core.utils.FailedJobError, subprocess.SubprocessError, OSError) as err:
                for run in runs:
                    self.results.update(run["name"], status="pending", slurm=None)
                sbatch_errors.seek(0)
                lines = sbatch_errors.read().decode(errors="replace").strip().splitlines()
                why = "; ".join(line.split("error: ", 1)[-1] for line in reversed(lines[-2:])) or str(err).strip()
                raise UserError(f"sbatch refused the matrix's job array, nothing was submitted: {why}; check "
                                "CONFIG_MATRIX_SLURM_* (partition, time, CPUs, memory) against sinfo") from None
        now = time.time()
        for run, job in zip(runs, submitted):
            self.results.update(run["name"], status="queued",
                                slurm={**run["slurm"], "job_id": job.job_id, "state": "PENDING", "submitted": now})
        where = f"partition {self.jobs.partition}" if self.jobs.partition else "the default partition"
        print(f"test matrix: submitted {len(runs)} run(s) to {where} as SLURM job {submitted[0].job_id.split('_')[0]} "
              f"(at most {self.jobs.parallel} at once; submitit's logs in {self.folder})", flush=True)

    def recover_submissions(self) -> None:
        """Runs left "submitting" by a submitter that died around its sbatch. Their job, found by its
        name (squeue knows a job at once, sacct a few seconds later and after it ended), gives their
        job ids. Found nowhere: never submitted once the marking is older than accounting's lag
        could explain; until then they are left as they are, neither waited for nor resubmitted."""
        stuck = [run for run in self.results.data["runs"] if run["status"] == "submitting"]
        for name in sorted({run["slurm"]["submission"] for run in stuck}):
            what = f"EXECUTOR=slurm: cannot look up the submission {name}"
            listed = (slurm_output(["squeue", "-h", "-o", "%i", "--name", name], what).split()
                      + slurm_output(["sacct", "-n", "-X", "-P", "-o", "JobID", "--name", name, "-S", "now-30days"],
                                     what).split())
            arrays = sorted({job.split("_")[0] for job in listed}, key=int)
            for run in (r for r in stuck if r["slurm"]["submission"] == name):
                slurm = run["slurm"]
                if arrays:  # submitit submits a plain job for a single run, an array otherwise
                    job_id = arrays[-1] if slurm["of"] == 1 else f"{arrays[-1]}_{slurm['index']}"
                    self.results.update(run["name"], status="queued",
                                        slurm={**slurm, "job_id": job_id, "submitted": slurm["marked"]})
                elif time.time() - slurm["marked"] > UNKNOWN_AFTER_S:
                    self.results.update(run["name"], status="pending")

    def collect(self) -> None:
        """Read the jobs' states back; record every run whose job is over."""
        waiting = self._waiting()
        states = job_states([run["slurm"]["job_id"] for run in waiting])
        for run in waiting:
            job_id = run["slurm"]["job_id"]
            info = states.get(job_id, {"state": "UNKNOWN", "elapsed_s": None, "nodes": None})
            slurm = {**run["slurm"], **info}
            lost = info["state"] == "UNKNOWN" and time.time() - run["slurm"].get("submitted", 0) > UNKNOWN_AFTER_S
            if info["state"] in ACTIVE and not lost:
                status = "running" if info["state"] == "RUNNING" else "queued"
                if (status, info["state"]) != (run["status"], run["slurm"].get("state")):
                    self.results.update(run["name"], status=status, slurm=slurm)
                continue
            run_dir = run_dir_of(self.cfg, self.results, run["name"])
            code = trainer_exit_code(run_dir, job_id) if info["state"] == "COMPLETED" else None
            # a job the scheduler stopped (scancel, time limit, preemption) saved ckpt_last.pt: interrupted
            status = exit_status(code) if info["state"] == "COMPLETED" else (
                "failed" if info["state"] in ("FAILED", "OUT_OF_MEMORY", "BOOT_FAIL", "UNKNOWN") else "interrupted")
            self.results.update(run["name"], slurm=slurm,
                                **finished_fields(self.cfg, self.root, self.results, run, status, code,
                                                  float(info["elapsed_s"] or 0)))
            self.durations.append(float(info["elapsed_s"] or 0))
            self._progress(run, sum(r["status"] not in (*IN_FLIGHT, "pending") for r in self.results.data["runs"]),
                           len(self.results.data["runs"]))

    def watch(self) -> None:
        """Until every job is over; a job pending past the limit stops the watching (it stays queued)."""
        while self._waiting() or any(run["status"] == "submitting" for run in self.results.data["runs"]):
            time.sleep(POLL_S)
            self.recover_submissions()
            self.collect()
            now = time.time()
            for run in self._waiting():
                slurm = run["slurm"]
                if slurm.get("state") == "PENDING" and now - slurm["submitted"] > self.jobs.pending_limit_s:
                    minutes = (now - slurm["submitted"]) / 60
                    array = slurm["job_id"].split("_")[0]
                    raise UserError(
                        f"SLURM job {slurm['job_id']} ({run['name']}) has been pending for {minutes:.0f} min "
                        f"(reason: {pending_reason(slurm['job_id'])}); check the partition's free nodes and your "
                        f"limits (sinfo, CONFIG_MATRIX_SLURM_*); the jobs stay queued: collect them with "
                        f"CONTINUE={self.results.directory.name}, or cancel them with scancel {array}")

    def note_wandb_sync(self) -> None:
        """How this matrix's W&B runs reach the server, for summary.json and the report: online, each
        job synced its own run; offline (a cluster's nodes often have no internet), one command."""
        if not self.cfg.ENABLE_WANDB:
            return
        offline = self.cfg.WANDB_OFFLINE or os.environ.get("WANDB_MODE") in ("offline", "dryrun")
        if offline:
            from adamwprune.tracking.commands import wandb_sync_command

            root = Path(os.environ.get("WANDB_DIR") or self.root) / "wandb"
            note = f"offline: sync every run with one command at the end: {wandb_sync_command(root)}/offline-run-*"
        else:
            note = "online: every job synced its own run as it ran"
        self.results.data["wandb_sync"] = note
        self.results.write()
        print(f"test matrix: W&B {note}", flush=True)

    def import_trackio_inbox(self) -> None:
        """On a shared filesystem Trackio's writers leave JSONL fragments that its SQLite store only
        sees once imported: this process, the one collector, imports them once."""
        if not self.cfg.ENABLE_TRACKIO:
            return
        from adamwprune.tracking.readback import import_trackio_inbox

        imported = import_trackio_inbox()
        if imported:
            print(f"test matrix: imported {imported} Trackio records from the shared-filesystem inbox into "
                  f"project {self.cfg.TRACKER_PROJECT}", flush=True)



def matrix_status(folder: Path, root: Path) -> int:
    """``adamwprune matrix-status``: a matrix's runs as summary.json has them, after reading its SLURM
    jobs' states back from sacct (runs whose job ended are collected); submits and resubmits nothing."""
    results = Results.read(folder)
    if results.data.get("executor") == "slurm":
        cfg = SimpleNamespace(**results.data["config"])
        check_scheduler("")
        matrix = SlurmMatrix(cfg, root, results, SlurmJobs.from_config(cfg, 1), commands=lambda flags: [])
        matrix.recover_submissions()
        matrix.collect()
    runs = results.data["runs"]
    width = max((len(run["name"]) for run in runs), default=0)
    for run in runs:
        slurm = run.get("slurm") or {}
        job = f"job {slurm['job_id']} {slurm.get('state') or ''} {slurm.get('nodes') or ''}".rstrip() \
            if slurm.get("job_id") else ""
        print(f"  {run['name']:<{width}}  {run['status']:<12} {job}", flush=True)
    counts = results.counts()
    left = sum(counts.get(status, 0) for status in ("failed", "interrupted", "pending"))
    advice = f"; CONTINUE={folder.name} reruns the {left} failed, interrupted or pending" if left else ""
    print(f"test matrix {results.data['matrix']}: {len(runs)} runs, "
          + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + advice, flush=True)
    return 0
