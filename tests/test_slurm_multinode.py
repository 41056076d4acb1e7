"""One GPT-2 run over two nodes of a real SLURM (scripts/local_slurm.py: nodes n1 and n2 on this
machine), submitted by `make multinode` (scripts/gpt2_multinode.sbatch: one torchrun per node,
c10d rendezvous): the job, both nodes, world size 2, and rank 0's rows in Trackio once per step;
and a one-line error where there is no SLURM."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from adamwprune.kconfig import load_config
from helpers import child_env, make, trackio_rows
from test_matrix import configure


@pytest.mark.slow
def test_one_gpt2_run_spans_two_slurm_nodes_and_rank_0_tracks_it_once(tmp_path, tracking_env, slurm_cluster):
    configure(tmp_path)  # gpt2-tiny on pydocs, DEVICE cpu, 6 iterations, Trackio
    done = make(tmp_path, "multinode", "NODES=2", "ARGS=--tracker-run-name mn --gpu-monitor --simulate-gpus 2 "
                "--gpu-monitor-interval 0.1", timeout=600, ADAMWPRUNE_SLURM_POLL_S="0.5")
    assert done.returncode == 0, done.stdout + done.stderr
    job = re.search(r"submitted SLURM job (\d+): one GPT-2 run over 2 nodes x 1 processes", done.stdout).group(1)
    output = Path(re.search(r"output: (\S+)", done.stdout).group(1))
    assert output.parent == tmp_path and f"job {job} COMPLETED on n[1-2]" in done.stdout

    state, node_list = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State,NodeList", "-j", job],
                                      capture_output=True, text=True, check=True).stdout.strip().split("|")
    nodes = subprocess.run(["scontrol", "show", "hostnames", node_list], capture_output=True, text=True,
                           check=True).stdout.split()
    assert (state, nodes) == ("COMPLETED", ["n1", "n2"])

    log = output.read_text()  # srun --label: each node's lines start with its task number
    assert "0: node 0 of 2 (n1): torchrun x 1" in log and "1: node 1 of 2 (n2): torchrun x 1" in log, log
    assert re.search(r"^[01]: training: max-iters 6, .* device cpu x2$", log, re.MULTILINE), log
    assert len(re.findall(r"^[01]: done: 6 iterations", log, re.MULTILINE)) == 1, log  # rank 0 only

    project = load_config(tmp_path).TRACKER_PROJECT
    run_info = json.loads((tmp_path / "runs" / project / "mn" / "run.json").read_text())
    assert run_info["config"]["world_size"] == 2
    rows = trackio_rows(project, "mn")
    assert [row["step"] for row in rows if "train_loss" in row] == [2, 4, 6]
    assert [row["step"] for row in rows if "val_loss" in row] == [0, 3, 6]
    metric_rows = [row for row in rows if not any(isinstance(value, dict) for value in row.values())]  # no graphs
    assert len({row["step"] for row in metric_rows}) == len(metric_rows)  # one record per step: only rank 0 tracked
    assert sorted(key for row in rows for key, value in row.items() if isinstance(value, dict)) == [
        "gpu/load_balance", "gpu/memory", "gpu/timeline"]  # rank 0's graphs, logged once
    assert [row["step"] for row in rows if "gpu_0_memory_used" in row] == [2, 4, 6]  # rank 0's node, tracked

    # GPU monitoring per node: rank 0 samples its node into the run directory, the other node's
    # local rank 0 its own into node1/ (NVML sees only a node's own GPUs), each with its graphs
    run_dir = tmp_path / "runs" / project / "mn"
    for directory in (run_dir, run_dir / "node1"):
        lines = [json.loads(line) for line in (directory / "gpu.jsonl").read_text().splitlines()]
        assert lines[0]["event"] == "header" and lines[0]["simulated"] and len(lines[0]["devices"]) == 2, lines[0]
        assert sum("gpus" in line for line in lines) >= 1 and lines[-1]["event"] == "stop", directory
        assert {p.name for p in directory.glob("gpu_*.png")} == {"gpu_memory.png", "gpu_load_balance.png",
                                                                 "gpu_timeline.png"}, directory
    # c10d numbers the nodes in the order they join: torchrun's node 1 is either srun task
    samplers = dict(re.findall(r"^([01]): gpu monitor: sampling 2 GPU\(s\) .* into \S+/mn/(node1/)?gpu.jsonl", log,
                               re.MULTILINE))
    assert sorted(samplers.values()) == ["", "node1/"] and sorted(samplers) == ["0", "1"], log


def test_without_slurm_multinode_says_so_in_one_line(tmp_path):
    (tmp_path / "bin").mkdir()
    done = subprocess.run([sys.executable, "-m", "adamwprune", "multinode", "--nodes", "2"], cwd=tmp_path,
                          env=child_env(PATH=str(tmp_path / "bin")), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "adamwprune: error: multinode: no SLURM here (sbatch, sinfo, sacct, scontrol not on PATH); "
        "run it on a login node of the cluster"]


@pytest.mark.slow
def test_a_partition_too_small_or_unknown_is_one_line_and_nothing_is_submitted(tmp_path, slurm_cluster):
    def queued() -> str:
        return subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout

    before = queued()  # other tests of the session may have left jobs

    def error(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "adamwprune", "multinode", *args], cwd=tmp_path,
                              env=child_env(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
        line, = done.stderr.strip().splitlines()
        return line

    assert error("--nodes", "3") == "adamwprune: error: --nodes 3: partition debug has 2 nodes (sinfo)"
    assert error("--nodes", "2", "--partition", "gpu") == (
        "adamwprune: error: unknown SLURM partition 'gpu'; this cluster has: debug, hold (sinfo)")
    assert queued() == before
