"""``make``, ``make test_matrix`` and ``make show`` with real trainers (tiny GPT-2 on CPU),
real torchrun and a real Trackio dashboard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from adamwprune import matrix
from adamwprune.kconfig import load_config
from helpers import (REPO, child_env, defconfig, kconfig, like_a_terminal_job, make, make_command, one_line_error,
                     read_assignments, trackio_rows, write_defconfig)

TINY = ("CONFIG_GPT2_MODEL_NAME=\"gpt2-tiny\"", "CONFIG_DATASET=\"pydocs\"", "CONFIG_BLOCK_SIZE=16",
        "CONFIG_BATCH_SIZE=2", "CONFIG_WARMUP_ITERS=1", "CONFIG_MAX_ITERS=6", "CONFIG_LOG_INTERVAL=2",
        "CONFIG_EVAL_INTERVAL=3", "CONFIG_EVAL_SAMPLES=1", "CONFIG_EVAL_BATCH_SIZE=2", "CONFIG_DEVICE=\"cpu\"")


def run_jsons(root: Path, cfg) -> dict[str, dict]:
    """run name -> run.json of every run under the configured project."""
    project_dir = root / cfg.OUTPUT_DIR / cfg.TRACKER_PROJECT
    return {p.parent.name: json.loads(p.read_text()) for p in project_dir.glob("*/run.json")}


# --- matrix expansion -----------------------------------------------------------------------

def test_test_matrix_defconfig_expands_to_seven_named_runs(tmp_path):
    defconfig(tmp_path, "test-matrix-cpu")
    combinations = matrix.expand(load_config(tmp_path))
    assert [c.run_name("gpt2") for c in combinations] == [
        "gpt2_adamw_none_0", "gpt2_adamw_magnitude_50", "gpt2_adamw_movement_50",
        "gpt2_adamwspam_none_0", "gpt2_adamwspam_magnitude_50", "gpt2_adamwspam_movement_50",
        "gpt2_adamwprune_state_50"]
    assert combinations[1].flags("gpt2") == [
        "--optimizer", "adamw", "--pruning-method", "magnitude", "--target-sparsity", "0.5",
        "--tracker-run-name", "gpt2_adamw_magnitude_50"]
    # dense: no sparsity at all, not the configuration's TARGET_SPARSITY (0.5)
    assert combinations[0].flags("gpt2", "m") == [
        "--optimizer", "adamw", "--pruning-method", "none", "--tracker-run-name", "m_gpt2_adamw_none_0"]


def test_unselected_matrix_dimensions_use_the_single_run_settings(tmp_path):
    dc = write_defconfig(tmp_path / "dc", "CONFIG_DATASET=\"pydocs\"", "CONFIG_OPTIMIZER_SGD=y",
                         "CONFIG_PRUNING_MAGNITUDE=y", "CONFIG_TARGET_SPARSITY=\"0.7\"",
                         "CONFIG_TEST_OPTIMIZER_ADAM=y", "CONFIG_TEST_OPTIMIZER_ADAMW=y",
                         "CONFIG_TEST_SPARSITY_90=y", "CONFIG_TEST_SPARSITY_50=y")
    defconfig(tmp_path, str(dc))
    assert [c.run_name("gpt2", "try2") for c in matrix.expand(load_config(tmp_path))] == [
        "try2_gpt2_adam_magnitude_50", "try2_gpt2_adam_magnitude_90",
        "try2_gpt2_adamw_magnitude_50", "try2_gpt2_adamw_magnitude_90"]
    dc = write_defconfig(tmp_path / "dc", "CONFIG_DATASET=\"pydocs\"", "CONFIG_OPTIMIZER_SGD=y",
                         "CONFIG_TARGET_SPARSITY=\"0.8\"", "CONFIG_TEST_PRUNING_NONE=y",
                         "CONFIG_TEST_PRUNING_MOVEMENT=y")
    defconfig(tmp_path, str(dc))
    assert matrix.expand(load_config(tmp_path)) == [matrix.Combination("sgd", "none", 0.0),
                                                    matrix.Combination("sgd", "movement", 0.8)]


# --- real runs ------------------------------------------------------------------------------

@pytest.mark.slow
def test_make_runs_the_configured_training_tracked_in_the_configured_project(tmp_path, tracking_env):
    dc = write_defconfig(tmp_path / "tiny", *TINY)
    assert make(tmp_path, "defconfig", f"DEFCONFIG={dc}", "TRACKER=trackio").returncode == 0
    cfg = load_config(tmp_path)
    proc = make(tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (name, run), = run_jsons(tmp_path, cfg).items()
    assert run["project"] == cfg.TRACKER_PROJECT == read_assignments(tmp_path / ".config")[
        "TRACKER_PROJECT"].strip('"')
    assert (run["config"]["block_size"], run["config"]["batch_size"], run["config"]["tracker"]) == (
        16, 2, "trackio")
    steps = [row["step"] for row in trackio_rows(cfg.TRACKER_PROJECT, name) if "train_loss" in row]
    assert steps == [2, 4, 6]
    # make's command-line variables apply to this run only (.config is unchanged)
    proc = make(tmp_path, "TRACKER=none", "GPU_MONITOR=y", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    second = [r for n, r in run_jsons(tmp_path, cfg).items() if n != name]
    assert [(r["config"]["tracker"], r["config"]["gpu_monitor"]) for r in second] == [("none", True)]
    assert load_config(tmp_path).ENABLE_TRACKIO is True


@pytest.mark.slow
def test_nproc_above_one_launches_torchrun(tmp_path):
    defconfig(tmp_path, str(write_defconfig(tmp_path / "ddp", *TINY, "CONFIG_NPROC=2")))
    proc = kconfig(tmp_path, "run", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch.distributed.run --standalone --nproc_per_node=2" in proc.stdout
    (run,) = run_jsons(tmp_path, load_config(tmp_path)).values()
    assert run["config"]["world_size"] == 2


def test_the_matrix_pairs_adamwprune_with_state_pruning_only(tmp_path):
    lines = ["CONFIG_DATASET=\"pydocs\"", "CONFIG_TEST_OPTIMIZER_ADAMW=y", "CONFIG_TEST_OPTIMIZER_ADAMWPRUNE=y",
             "CONFIG_TEST_PRUNING_NONE=y", "CONFIG_TEST_PRUNING_MAGNITUDE=y", "CONFIG_TEST_SPARSITY_90=y"]
    defconfig(tmp_path, str(write_defconfig(tmp_path / "dc", *lines, "CONFIG_TEST_PRUNING_STATE=y")))
    assert [c.run_name("gpt2") for c in matrix.expand(load_config(tmp_path))] == [
        "gpt2_adamw_none_0", "gpt2_adamw_magnitude_90", "gpt2_adamwprune_state_90"]
    defconfig(tmp_path, str(write_defconfig(tmp_path / "dc", *lines)))  # adamwprune would have no run
    message = one_line_error(kconfig(tmp_path, "run"))
    assert message == ("the test matrix has no run for optimizer adamwprune: adamwprune prunes by its own "
                       "state: use --pruning-method state, not none (for dense training use its base "
                       "optimizer, e.g. --optimizer adamw)")


@pytest.mark.slow
def test_matrix_runs_every_combination_and_summarizes(tmp_path):
    lines = [*TINY, "CONFIG_PRUNING_WARMUP=2", "CONFIG_PRUNING_RAMP=2", "CONFIG_PRUNING_FREQUENCY=1",
             *(f"CONFIG_TEST_OPTIMIZER_{name}=y" for name in ("SGD", "ADAMW", "ADAMWPRUNE")),
             "CONFIG_TEST_PRUNING_NONE=y", "CONFIG_TEST_PRUNING_STATE=y"]
    defconfig(tmp_path, str(write_defconfig(tmp_path / "m", *lines)))
    proc = make(tmp_path, timeout=600)  # several optimizers selected: `make` runs the matrix
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder, = tmp_path.glob("test_matrix_results_*")
    summary = json.loads((folder / "summary.json").read_text())
    names = [f"{summary['matrix']}_gpt2_{name}" for name in ("sgd_none_0", "adamw_none_0", "adamwprune_state_50")]
    assert [run["name"] for run in summary["runs"]] == names and "test matrix: 3 runs, 3 ok" in proc.stdout
    assert [line.split(":")[0] for line in summary["skipped"]] == ["sgd x state", "adamw x state", "adamwprune x none"]
    for run in summary["runs"]:
        assert run["status"] == "ok", run
        config = json.loads((tmp_path / run["run_dir"] / "run.json").read_text())["config"]
        assert config["optimizer"] == run["optimizer"] and config["tracker_run_name"] == run["name"]
        assert config["block_size"] == 16
        journal = [json.loads(line) for line in (tmp_path / run["run_dir"] / "metrics.jsonl").read_text().splitlines()]
        assert sum("train_loss" in r.get("metrics", {}) for r in journal) == 3
        sparsity = [r["metrics"]["sparsity"] for r in journal if "sparsity" in r.get("metrics", {})]
        if run["pruning_method"] == "none":
            assert "target_sparsity" not in config and sparsity == [0.0] * 3  # dense, though TARGET_SPARSITY is 0.5
        else:  # pruned from the weights: 50 % from step 4 on
            assert config["pruning_method"] == "state" and sparsity[-1] == pytest.approx(0.5, abs=0.005)


def test_a_model_whose_trainer_is_missing_fails_with_one_line(tmp_path):
    shutil.copy(REPO / "Kconfig", tmp_path)  # a Kconfig tree of its own, without lenet5/train.py
    shutil.copytree(REPO / "kconfig", tmp_path / "kconfig")
    defconfig(tmp_path, str(write_defconfig(tmp_path / "dc", "CONFIG_MODEL_LENET5=y")))
    assert one_line_error(kconfig(tmp_path, "run")) == f"the lenet5 trainer lenet5/train.py is missing from {tmp_path}"


# --- make show ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_make_show_serves_the_project_dashboard_on_the_configured_port(tmp_path, tracking_env):
    port = free_port()
    defconfig(tmp_path, str(write_defconfig(tmp_path / "dc", f"CONFIG_TRACKIO_PORT={port}")))
    project = load_config(tmp_path).TRACKER_PROJECT
    server = subprocess.Popen(make_command(tmp_path, "show"), env=child_env(BROWSER="true"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True, preexec_fn=like_a_terminal_job)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "dashboard did not come up"
                time.sleep(0.5)
        assert "Trackio Dashboard" in page
    finally:
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C: make and the dashboard (its own session)
        try:
            output = server.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            output = server.communicate()[0]
    assert f"Trackio dashboard for project {project} on http://127.0.0.1:{port}" in output


def test_make_show_on_a_busy_port_is_a_one_line_error(tmp_path, tracking_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        defconfig(tmp_path, str(write_defconfig(tmp_path / "dc", f"CONFIG_TRACKIO_PORT={port}")))
        proc = kconfig(tmp_path, "show", timeout=120)
    assert f"cannot serve the dashboard on port {port}" in one_line_error(proc)


@pytest.mark.parametrize("argv", [["run", "--matrix"], ["run"]])
def test_run_and_matrix_without_dotconfig(tmp_path, argv):
    assert "make defconfig DEFCONFIG=" in one_line_error(kconfig(tmp_path, *argv))
