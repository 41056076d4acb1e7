"""docs/extending.md's examples, run as written: an optimizer, a pruning method, a model family and a
tracker backend, all registered from outside the package, train through the real loop."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from helpers import REPO

DOC = REPO / "docs" / "extending.md"


def code_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """Run the page's blocks in a fresh process (the registries are the process's own)."""
    tmp = tmp_path_factory.mktemp("extending")
    blocks = code_blocks()
    backend = [block for block in blocks if block.startswith("# my_backends.py")]
    assert len(backend) == 1
    (tmp / "my_backends.py").write_text(backend[0])
    (tmp / "example.py").write_text("\n\n".join(block for block in blocks if block not in backend))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp)])}
    env.pop("RANK", None)
    proc = subprocess.run([sys.executable, "example.py"], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, proc


def metric_records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if "step" in record]


def test_the_page_has_the_four_examples_and_the_run_that_uses_them():
    text = "\n".join(code_blocks())
    for registration in ('register_optimizer("nesterov"', 'register_pruning_method("gradual-magnitude"',
                         'ModelFamily("blobs"', "class JsonLinesBackend(Backend)", "train(BLOBS.make_adapter"):
        assert registration in text


@pytest.mark.slow
def test_the_example_optimizer_trains_the_example_model(example_run):
    tmp, proc = example_run
    state = torch.load(tmp / "runs/blobs-demo/r1/ckpt_last.pt", weights_only=False)
    assert state["iteration"] == 60
    assert all(group["nesterov"] and group["momentum"] == 0.9 for group in state["optimizer"]["param_groups"])
    assert state["optimizer"]["state"]  # momentum buffers: the optimizer really stepped
    accuracy = float(re.search(r"best val_accuracy ([0-9.]+)", proc.stdout).group(1))
    assert accuracy > 0.9  # chance is 0.25
    finals = [r["metrics"] for r in metric_records(tmp / "runs/blobs-demo/r1") if "final/best_val_loss" in r["metrics"]]
    assert finals and finals[-1]["final/best_val_accuracy"] == pytest.approx(accuracy, abs=5e-4)


@pytest.mark.slow
def test_the_example_pruner_reaches_its_target_measured_on_the_weights(example_run):
    tmp, _ = example_run
    state = torch.load(tmp / "runs/blobs-demo/r1/ckpt_last.pt", weights_only=False)
    prunable = [tensor for name, tensor in state["model"].items() if tensor.dim() >= 2]
    zeros = sum(int((tensor == 0).sum()) for tensor in prunable)
    total = sum(tensor.numel() for tensor in prunable)
    assert 0.6 <= zeros / total < 0.61
    masks = state["pruner"]["masks"]  # saved through the pruner's own state_dict
    assert sum(int((~mask).sum()) for mask in masks) == zeros
    logged = {r["step"]: r["metrics"]["sparsity"] for r in metric_records(tmp / "runs/blobs-demo/r1")
              if "sparsity" in r["metrics"]}
    assert logged[10] == 0.0 and 0.0 < logged[35] < 0.6 and logged[60] == pytest.approx(zeros / total)


@pytest.mark.slow
def test_the_example_backend_receives_every_record(example_run):
    tmp, _ = example_run
    run_dir = tmp / "runs/blobs-demo/r1"
    copied = [json.loads(line) for line in (run_dir / "copy.jsonl").read_text().splitlines()]
    journaled = [{"step": r["step"], **r["metrics"]} for r in metric_records(run_dir)]
    assert len(journaled) > 10 and copied == journaled


@pytest.mark.slow
def test_the_example_family_gets_the_shared_command_line(tmp_path):
    blocks = [block for block in code_blocks() if "ModelFamily(" in block or "register_" in block]
    script = "\n\n".join(blocks) + "\nimport sys\nfrom adamwprune.train.cli import run_family\n" \
                                   "sys.exit(run_family(BLOBS, sys.argv[1:]))\n"
    (tmp_path / "train.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RANK", None)

    def run(*args):
        return subprocess.run([sys.executable, "train.py", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)

    help_text = run("--help").stdout
    assert "--optimizer" in help_text and "--block-size" not in help_text  # GPT-2's own flag is not its
    assert "(default: 0.05)" in help_text  # the family's learning rate
    done = run("--optimizer", "nesterov", "--max-iters", "10", "--eval-interval", "5", "--eval-samples", "2",
               "--device", "cpu", "--tracker-project", "blobs-cli", "--tracker-run-name", "r1")
    assert done.returncode == 0, done.stderr
    assert "best eval: val_loss" in done.stdout and "val_accuracy" in done.stdout
    run_json = json.loads((tmp_path / "runs/blobs-cli/r1/run.json").read_text())
    assert run_json["config"]["model"] == "blobs" and run_json["config"]["optimizer"] == "nesterov"
    bad = run("--block-size", "64")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("blobs/train.py: error:")
