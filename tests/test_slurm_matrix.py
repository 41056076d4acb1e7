"""The test matrix on a real SLURM (scripts/local_slurm.py: slurmctld, slurmdbd, nodes n1 and n2),
submitted with submitit: every run one job, states read back from sacct, a cancelled job resumed
by CONTINUE without duplicate steps, and one-line errors for a scheduler that is missing, a
partition that is unknown, a request sbatch refuses and a job pending too long."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from adamwprune.kconfig import load_config
from helpers import (child_env, defconfig, kconfig, make, make_error, one_line_error, trackio_rows, trackio_run_names,
                     write_defconfig)
from test_matrix import TINY, TWO, configure, summary_of

SLURM = ("CONFIG_MATRIX_EXECUTOR_SLURM=y", "CONFIG_MATRIX_SLURM_CPUS_PER_RUN=1")
FAST_POLL = {"ADAMWPRUNE_SLURM_POLL_S": "0.5"}


def sacct(job_ids: list[str]) -> dict[str, str]:
    """job id -> state, from SLURM's accounting."""
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(arrays)],
                         capture_output=True, text=True, check=True).stdout
    return {line.split("|")[0]: line.split("|")[1].split()[0] for line in out.splitlines() if "|" in line}


def wait_for(condition, seconds: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, process.communicate(timeout=5) if process else "timed out"
        if process is not None:
            assert process.poll() is None, process.communicate()
        time.sleep(0.1)


@pytest.mark.slow
def test_the_matrix_runs_as_slurm_jobs_and_is_read_back_from_trackio_and_sacct(tmp_path, tracking_env, slurm_cluster):
    defconfig(tmp_path, str(write_defconfig(tmp_path / "dc", *TINY, *TWO, *SLURM)), "TRACKER=both")  # W&B offline
    done = make(tmp_path, "test_matrix", "PARALLEL_JOBS=2", timeout=600, **FAST_POLL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on SLURM" in done.stdout and "submitted 2 run(s) to the default partition as SLURM job" in done.stdout
    folder, summary = summary_of(tmp_path)
    project = load_config(tmp_path).TRACKER_PROJECT
    jobs = [run["slurm"]["job_id"] for run in summary["runs"]]
    assert sacct(jobs) == {job: "COMPLETED" for job in jobs}
    for run in summary["runs"]:
        assert run["status"] == "ok" and run["exit_code"] == 0 and run["iterations"] == 6, run
        assert run["slurm"]["state"] == "COMPLETED" and run["slurm"]["nodes"] in ("n1", "n2")
        run_dir = tmp_path / run["run_dir"]
        assert json.loads((run_dir / "slurm_job.json").read_text()) == {
            "job_id": run["slurm"]["job_id"], "node": run["slurm"]["nodes"], "exit_code": 0}
        assert f"SLURM job {run['slurm']['job_id']} on " in (run_dir / "train.log").read_text()
        assert [r["step"] for r in trackio_rows(project, run["name"]) if "train_loss" in r] == [2, 4, 6]
    # W&B offline: the matrix ends with the one command that syncs its runs, and the report says so
    assert summary["executor"] == "slurm" and summary["wandb_sync"].startswith(
        "offline: sync every run with one command at the end: ")
    assert summary["wandb_sync"].endswith(f"{tracking_env / 'wandb-root' / 'wandb'}/offline-run-*")
    assert len(list((tracking_env / "wandb-root" / "wandb").glob("offline-run-*"))) == 2
    report = (folder / "report.html").read_text()
    assert "Ran on SLURM as 1 job array submission(s)" in report and "W&amp;B: offline: sync every run" in report


@pytest.mark.slow
def test_a_submitter_may_exit_and_continue_resumes_a_cancelled_job_without_duplicate_steps(
        tmp_path, tracking_env, slurm_cluster):
    configure(tmp_path, "CONFIG_TEST_OPTIMIZER_ADAMW=y", "CONFIG_TEST_PRUNING_NONE=y", *SLURM,
              "CONFIG_MAX_ITERS=3000", "CONFIG_EVAL_INTERVAL=500", "CONFIG_LOG_INTERVAL=10")
    submitter = subprocess.Popen([sys.executable, "-m", "adamwprune.kconfig", "run", "--matrix"], cwd=tmp_path,
                                 env=child_env(**FAST_POLL), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True)
    wait_for(lambda: any(tmp_path.glob("test_matrix_results_*/*/*/metrics.jsonl")), 120, submitter)

    os.killpg(submitter.pid, signal.SIGKILL)  # the submitting process goes; the job does not
    submitter.communicate()
    folder, summary = summary_of(tmp_path)
    run, = summary["runs"]
    job = run["slurm"]["job_id"]
    assert run["status"] in ("queued", "running") and job
    run_dir = folder / load_config(tmp_path).TRACKER_PROJECT / run["name"]
    # as if the submitter had died between its sbatch and recording the job id: found by its job name
    run.update(status="submitting", slurm={**run["slurm"], "job_id": None, "state": None})
    (folder / "summary.json").write_text(json.dumps(summary))
    status = make(tmp_path, "matrix-status", f"RESULTS={folder.name}")
    assert status.returncode == 0 and re.search(rf"(queued|running) +job {job} ", status.stdout), status.stdout
    assert summary_of(tmp_path)[1]["runs"][0]["slurm"]["job_id"] == job

    wait_for(lambda: sum(1 for _ in open(run_dir / "metrics.jsonl")) > 20, 120)
    subprocess.run(["scancel", job], check=True)  # the trainer takes SLURM's SIGTERM as a Ctrl-C
    wait_for(lambda: sacct([job]).get(job) == "CANCELLED", 120)
    status = make(tmp_path, "matrix-status", f"RESULTS={folder.name}")  # reads sacct, submits nothing
    assert status.returncode == 0, status.stderr
    assert f"interrupted  job {job} CANCELLED n" in status.stdout
    assert f"1 interrupted; CONTINUE={folder.name} reruns the 1 failed, interrupted or pending" in status.stdout
    assert summary_of(tmp_path)[1]["runs"][0]["slurm"]["state"] == "CANCELLED" and sacct([job]) == {job: "CANCELLED"}

    resumed = make(tmp_path, "test_matrix", f"CONTINUE={folder.name}", timeout=600, **FAST_POLL)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _, summary = summary_of(tmp_path)
    run, = summary["runs"]
    assert run["status"] == "ok" and run["iterations"] == 3000 and run["slurm"]["attempt"] == 2, run
    assert sacct([job, run["slurm"]["job_id"]]) == {job: "CANCELLED", run["slurm"]["job_id"]: "COMPLETED"}
    log = (run_dir / "train.log").read_text()
    assert "SIGTERM: stopping after this step" in log and f"--resume {run_dir}" in log
    project = load_config(tmp_path).TRACKER_PROJECT
    assert trackio_run_names(project) == [run["name"]]
    steps = [r["step"] for r in trackio_rows(project, run["name"]) if "train_loss" in r]
    # every step once (resumed, not restarted or repeated), plus the step SIGTERM stopped at
    assert steps == sorted(set(steps)) and set(range(10, 3001, 10)) <= set(steps) and len(steps) <= 301, steps


@pytest.mark.slow
def test_a_run_at_its_time_limit_saves_its_checkpoint_and_is_marked_interrupted(tmp_path, tracking_env, slurm_cluster):
    """SLURM warns a job (SIGUSR2, submitit's --signal) before its time limit and then stops it
    (SIGTERM): either way the trainer saves ckpt_last.pt and the matrix marks the run interrupted,
    to resume with CONTINUE (as the cancelled run above)."""
    configure(tmp_path, "CONFIG_TEST_OPTIMIZER_ADAMW=y", "CONFIG_TEST_PRUNING_NONE=y", *SLURM,
              "CONFIG_MATRIX_SLURM_TIME_MINUTES=1", "CONFIG_MAX_ITERS=10000000", "CONFIG_EVAL_INTERVAL=100000",
              "CONFIG_LOG_INTERVAL=1000")
    done = make(tmp_path, "test_matrix", timeout=300, **FAST_POLL)
    assert done.returncode != 0, done.stdout + done.stderr  # the run did not finish: make says so
    _, summary = summary_of(tmp_path)
    run, = summary["runs"]
    assert run["status"] == "interrupted" and run["stop_reason"] == "interrupted", run
    assert run["slurm"]["state"] in ("COMPLETED", "TIMEOUT") and run["slurm"]["elapsed_s"] <= 90, run
    run_dir = tmp_path / run["run_dir"]
    assert (run_dir / "ckpt_last.pt").exists()
    log = (run_dir / "train.log").read_text()
    assert re.search(r"^SIG(USR2|TERM): stopping after this step", log, re.MULTILINE), log
    assert "delivery process" not in log  # the scheduler's signal did not cut the delivery short
    assert f"rerun them with CONTINUE={run_dir.parent.parent.name}" in done.stderr


def test_no_scheduler_is_one_line_and_writes_nothing(tmp_path):
    configure(tmp_path, *TWO, *SLURM)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    error = one_line_error(kconfig(tmp_path, "run", "--matrix", PATH=str(empty)))
    assert error.startswith("EXECUTOR=slurm: no SLURM here (sbatch, sacct, sinfo, squeue not on PATH)")
    assert not list(tmp_path.glob("test_matrix_results_*"))


@pytest.mark.slow
def test_a_controller_or_accounting_that_does_not_answer_is_one_line_and_writes_nothing(tmp_path, slurm_cluster):
    configure(tmp_path, *TWO, *SLURM)
    conf = (slurm_cluster / "slurm.conf").read_text()
    for setting, what in (("SlurmctldPort", "the SLURM controller does not answer; check SLURM_CONF and that "
                                            "slurmctld is up (scontrol ping) (sinfo: "),
                          ("AccountingStoragePort", "SLURM accounting does not answer, and the matrix reads its "
                                                    "jobs' states from sacct; check that slurmdbd is up")):
        broken = tmp_path / f"no-{setting}.conf"
        broken.write_text(re.sub(rf"^{setting}=.*$", f"{setting}=1", conf, flags=re.MULTILINE))
        error = one_line_error(kconfig(tmp_path, "run", "--matrix", "--executor", "slurm", SLURM_CONF=str(broken)))
        assert error.startswith(f"EXECUTOR=slurm: {what}"), error
    assert not list(tmp_path.glob("test_matrix_results_*"))


@pytest.mark.slow
def test_unknown_partition_refused_request_and_pending_too_long_are_one_line_each(tmp_path, slurm_cluster):
    configure(tmp_path, *TWO, *SLURM, 'CONFIG_MATRIX_SLURM_PARTITION="gpu-a100"')
    assert make_error(make(tmp_path, "test_matrix")) == (
        "unknown SLURM partition 'gpu-a100' (CONFIG_MATRIX_SLURM_PARTITION); this cluster has: debug, hold (sinfo)")
    assert not list(tmp_path.glob("test_matrix_results_*"))

    configure(tmp_path, *TWO, *SLURM, "CONFIG_MATRIX_SLURM_MEM_GB=100000")  # more than any node has
    error = make_error(make(tmp_path, "test_matrix"))
    assert error.startswith("sbatch refused the matrix's job array, nothing was submitted: Batch job submission "
                            "failed: Requested node configuration is not available; Memory specification can not "
                            "be satisfied; check CONFIG_MATRIX_SLURM_*"), error
    _, summary = summary_of(tmp_path)
    assert [(r["status"], r["slurm"]) for r in summary["runs"]] == [("pending", None)] * 2  # recorded, none sent
    for folder in tmp_path.glob("test_matrix_results_*"):
        subprocess.run(["rm", "-rf", str(folder)], check=True)

    # "hold" is a partition that is down: its jobs pend. The limit counts from the submission time
    # recorded in summary.json, so a submitter started later sees how long a job has waited.
    configure(tmp_path, *TWO, *SLURM, 'CONFIG_MATRIX_SLURM_PARTITION="hold"',
              "CONFIG_MATRIX_SLURM_PENDING_LIMIT_MINUTES=1")
    submitter = subprocess.Popen([sys.executable, "-m", "adamwprune.kconfig", "run", "--matrix"], cwd=tmp_path,
                                 env=child_env(**FAST_POLL), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True)
    wait_for(lambda: list(tmp_path.glob("test_matrix_results_*")) and
             all(r["status"] == "queued" for r in summary_of(tmp_path)[1]["runs"]), 60, submitter)
    os.killpg(submitter.pid, signal.SIGKILL)
    submitter.communicate()
    folder, summary = summary_of(tmp_path)
    job = summary["runs"][0]["slurm"]["job_id"]
    wait_for(lambda: sacct([job]), 60)  # accounting knows the (pending) array: it is not lost
    for run in summary["runs"]:
        run["slurm"]["submitted"] -= 3600
    (folder / "summary.json").write_text(json.dumps(summary))
    error = make_error(make(tmp_path, "test_matrix", f"CONTINUE={folder.name}", **FAST_POLL))
    assert error.startswith(f"SLURM job {job} ({summary['runs'][0]['name']}) has been pending for 60 min "
                            "(reason: PartitionDown)"), error
    assert f"scancel {job.split('_')[0]}" in error
    subprocess.run(["scancel", job.split("_")[0]], check=True)
