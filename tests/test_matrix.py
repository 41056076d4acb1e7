"""Test matrices a researcher can leave running: identity, results folder and summary.json,
skipped pairs, failures, CONTINUE, Ctrl-C, PARALLEL_JOBS and SEEDS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adamwprune import matrix
from adamwprune.errors import UserError
from adamwprune.kconfig import load_config
from helpers import (child_env, defconfig, like_a_terminal_job, make, trackio_rows, trackio_run_names,
                     write_defconfig)

TINY = ("CONFIG_GPT2_MODEL_NAME=\"gpt2-tiny\"", "CONFIG_DATASET=\"pydocs\"", "CONFIG_BLOCK_SIZE=16",
        "CONFIG_BATCH_SIZE=2", "CONFIG_WARMUP_ITERS=1", "CONFIG_MAX_ITERS=6", "CONFIG_LOG_INTERVAL=2",
        "CONFIG_EVAL_INTERVAL=3", "CONFIG_EVAL_SAMPLES=1", "CONFIG_EVAL_BATCH_SIZE=2", "CONFIG_DEVICE=\"cpu\"")
TWO = ("CONFIG_TEST_OPTIMIZER_SGD=y", "CONFIG_TEST_OPTIMIZER_ADAMW=y", "CONFIG_TEST_PRUNING_NONE=y")


def summary_of(root: Path) -> tuple[Path, dict]:
    folder, = root.glob("test_matrix_results_*")
    return folder, json.loads((folder / "summary.json").read_text())


def configure(root: Path, *lines: str) -> None:
    """TINY with ``lines`` added (a line for a symbol TINY sets replaces it), tracked in Trackio."""
    merged = {line.split("=", 1)[0]: line for line in (*TINY, *lines)}
    defconfig(root, str(write_defconfig(root / "dc", *merged.values())), "TRACKER=trackio")


# --- plan -----------------------------------------------------------------------------------

def test_senseless_pairs_are_skipped_and_listed_and_seeds_add_an_axis(tmp_path):
    configure(tmp_path, "CONFIG_TEST_OPTIMIZER_ADAMW=y", "CONFIG_TEST_OPTIMIZER_ADAMWPRUNE=y",
              "CONFIG_TEST_PRUNING_NONE=y", "CONFIG_TEST_PRUNING_STATE=y", "CONFIG_TEST_SPARSITY_50=y",
              "CONFIG_SEED=7")
    selection = matrix.plan(load_config(tmp_path), seeds=2)
    assert [c.run_name("gpt2", "m1") for c in selection.combinations] == [
        "m1_gpt2_adamw_none_0_s7", "m1_gpt2_adamw_none_0_s8",
        "m1_gpt2_adamwprune_state_50_s7", "m1_gpt2_adamwprune_state_50_s8"]
    assert [line.split(":")[0] for line in selection.skipped] == ["adamw x state", "adamwprune x none"]
    assert selection.combinations[1].flags("gpt2", "m1")[-4:] == [
        "--seed", "8", "--tracker-run-name", "m1_gpt2_adamw_none_0_s8"]
    assert selection.combinations[3].tags() == ["optimizer:adamwprune", "pruning:state", "sparsity:50", "seed:8"]


def test_parallel_slots_split_gpus_or_cpu_cores():
    assert matrix.run.device_slots(1, 1, 0, 16) == [{}]
    assert matrix.run.device_slots(2, 1, 0, 16) == [{"OMP_NUM_THREADS": "8"}] * 2
    assert matrix.run.device_slots(2, 2, 4, 16) == [{"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}]
    with pytest.raises(UserError, match="need 6 GPUs; this machine has 4"):
        matrix.run.device_slots(3, 2, 4, 16)


# --- failure and continue (the launcher stands in for the trainer process) ----------------------

def test_a_failed_run_never_stops_the_matrix_and_continue_reruns_only_it(tmp_path, capsys):
    configure(tmp_path, *TWO, "CONFIG_TEST_OPTIMIZER_ADAM=y")
    cfg = load_config(tmp_path)
    launched = []

    def launch(flags, log, env):
        launched.append(flags[1])
        return 3 if flags[1] == "adamw" else 0

    assert matrix.run_matrix(cfg, tmp_path, matrix.MatrixOptions(), launch) == 1
    folder, summary = summary_of(tmp_path)
    assert launched == ["sgd", "adam", "adamw"]
    assert [(r["optimizer"], r["status"], r.get("exit_code")) for r in summary["runs"]] == [
        ("sgd", "ok", 0), ("adam", "ok", 0), ("adamw", "failed", 3)]
    err = capsys.readouterr().err
    assert f"1 of 3 test-matrix runs did not finish ok: {summary['matrix']}_gpt2_adamw_none_0" in err
    launched.clear()
    again = matrix.run_matrix(cfg, tmp_path, matrix.MatrixOptions(continue_dir=Path(folder.name)),
                              lambda flags, log, env: launched.append(flags[1]) or 0)
    assert again == 0 and launched == ["adamw"]
    assert [r["status"] for r in summary_of(tmp_path)[1]["runs"]] == ["ok", "ok", "ok"]


def test_continue_with_another_configuration_is_refused_naming_the_difference(tmp_path):
    configure(tmp_path, *TWO)
    assert matrix.run_matrix(load_config(tmp_path), tmp_path, matrix.MatrixOptions(), lambda *a: 0) == 0
    folder, _ = summary_of(tmp_path)
    configure(tmp_path, *TWO, "CONFIG_MAX_ITERS=7")
    with pytest.raises(UserError, match=r"cannot continue .*: CONFIG_MAX_ITERS was 6, is 7"):
        matrix.run_matrix(load_config(tmp_path), tmp_path, matrix.MatrixOptions(continue_dir=Path(folder.name)),
                          lambda *a: 0)
    with pytest.raises(UserError, match="SEEDS was 1, is 2"):
        configure(tmp_path, *TWO)
        matrix.run_matrix(load_config(tmp_path), tmp_path,
                          matrix.MatrixOptions(seeds=2, continue_dir=Path(folder.name)), lambda *a: 0)


# --- real runs ------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_matrices_into_one_project_each_with_its_results_and_tracked_runs(tmp_path, tracking_env):
    configure(tmp_path, *TWO)
    first = make(tmp_path, "test_matrix", timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    second = make(tmp_path, "test-matrix", "SEEDS=2", "PARALLEL_JOBS=2", timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    folders = sorted(tmp_path.glob("test_matrix_results_*"))
    assert len(folders) == 2
    one, two = (json.loads((f / "summary.json").read_text()) for f in folders)
    assert len(one["runs"]) == 2 and len(two["runs"]) == 4 and two["seeds"] == 2
    project = load_config(tmp_path).TRACKER_PROJECT
    for summary, folder in ((one, folders[0]), (two, folders[1])):
        for run in summary["runs"]:
            assert run["status"] == "ok" and run["iterations"] == 6 and run["stop_reason"] == "max_iters", run
            assert run["peak_rss_mb"] > 50 and run["final_metrics"]["final/best_val_loss"] > 0
            assert run["name"].startswith(summary["matrix"] + "_gpt2_")
            run_dir = tmp_path / run["run_dir"]
            assert run_dir.parent.parent == folder
            info = json.loads((run_dir / "run.json").read_text())
            assert info["group"] == summary["matrix"] and f"optimizer:{run['optimizer']}" in info["tags"]
            rows = trackio_rows(project, run["name"])
            assert [r["step"] for r in rows if "train_loss" in r] == [2, 4, 6]
    seeds = sorted(json.loads((tmp_path / r["run_dir"] / "run.json").read_text())["config"]["seed"]
                   for r in two["runs"])
    assert seeds == [1337, 1337, 1338, 1338]
    assert all("done: 6 iterations" in (tmp_path / r["run_dir"] / "train.log").read_text() for r in two["runs"])
    assert "test matrix 4/4:" in second.stdout and "ETA" in second.stdout
    for summary, folder in ((one, folders[0]), (two, folders[1])):  # a report at the end of every matrix
        report = (folder / "report.html").read_text()
        assert all(run["name"] in report for run in summary["runs"]) and "data:image/png;base64," in report


@pytest.mark.slow
def test_ctrl_c_leaves_a_consistent_summary_and_continue_resumes_without_duplicates(tmp_path, tracking_env):
    # batches of 2 x 16 tokens run hundreds of steps a second: Ctrl-C as soon as the first run has saved
    # its first checkpoint (at step 0), with most of its 1000 steps still ahead
    configure(tmp_path, *TWO, "CONFIG_MAX_ITERS=1000", "CONFIG_EVAL_INTERVAL=20", "CONFIG_LOG_INTERVAL=10")
    matrix_run = subprocess.Popen([sys.executable, "-m", "adamwprune.kconfig", "run", "--matrix"], cwd=tmp_path,
                                  env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True, preexec_fn=like_a_terminal_job)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("test_matrix_results_*/*/*_sgd_*/ckpt_last.pt")):
        assert matrix_run.poll() is None and time.monotonic() < deadline, matrix_run.communicate()
        time.sleep(0.05)
    os.killpg(matrix_run.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole group
    out, err = matrix_run.communicate(timeout=300)
    assert matrix_run.returncode == 130, out + err
    folder, summary = summary_of(tmp_path)
    assert [r["status"] for r in summary["runs"]] == ["interrupted", "pending"], summary
    assert f"CONTINUE={folder.name}" in err
    finished = make(tmp_path, "test_matrix", f"CONTINUE={folder.name}", timeout=900)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    folder, summary = summary_of(tmp_path)
    assert [r["status"] for r in summary["runs"]] == ["ok", "ok"]
    project = load_config(tmp_path).TRACKER_PROJECT
    assert sorted(trackio_run_names(project)) == sorted(r["name"] for r in summary["runs"])  # one run each
    steps = [r["step"] for r in trackio_rows(project, summary["runs"][0]["name"]) if "train_loss" in r]
    assert steps == sorted(set(steps)) and set(range(10, 1001, 10)) <= set(steps)  # resumed: each step once
