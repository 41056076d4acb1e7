"""GPU monitoring in training: gpt2/train.py --gpu-monitor --simulate-gpus N (real torch, Trackio and
W&B offline, read back from their stores), the monitor's start and end in the loop (graphs however the
run ends, a failed graph one warning), --simulate-gpus on the command line, and the flags each run
of ``make test_matrix GPU_MONITOR=y`` gets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from adamwprune.errors import UserError
from adamwprune.gpu.metrics import AGGREGATE_NAMES
from adamwprune.gpu.plots import GRAPH_NAMES
from adamwprune.gpu.samplelog import GPU_LOG_NAME, read_gpu_log
from helpers import REPO, TINY_GPT2, child_env, defconfig, train_tiny_gpt2, trackio_rows, write_defconfig

TRAIN = str(REPO / "gpt2" / "train.py")
PER_GPU = ("memory_used", "utilization", "temperature", "power")


def gpu_names(gpus: int) -> set[str]:
    return set(AGGREGATE_NAMES) | {f"gpu_{i}_{what}" for i in range(gpus) for what in PER_GPU}


def tiny_flags() -> list[str]:
    flags = []
    for name, value in TINY_GPT2.items():
        flags += ["--" + name.replace("_", "-"), str(value)]
    return flags


def assert_graphs_drawn(run_dir) -> None:
    from matplotlib.image import imread

    for name in GRAPH_NAMES.values():
        image = imread(run_dir / name)
        assert image[..., :3].var() > 0.005, f"{name} looks blank"


def gpu_steps(rows: list[dict], step_key: str) -> list[int]:
    return [row[step_key] for row in rows if "gpu_total_memory_used" in row]


@pytest.mark.slow
def test_a_simulated_run_has_one_gpu_row_per_log_step_in_trackio_and_wandb_and_its_graphs(tracking_env):
    from adamwprune.tracking.readback import same_value, wandb_config, wandb_history, wandb_run_dir

    tmp = tracking_env
    proc = subprocess.run(
        [sys.executable, TRAIN, *tiny_flags(), "--max-iters", "6", "--log-interval", "2", "--eval-interval", "3",
         "--gpu-monitor", "--simulate-gpus", "4", "--gpu-monitor-interval", "0.05", "--tracker", "both",
         "--tracker-project", "p-gpu", "--tracker-run-name", "r1", "--output-dir", str(tmp / "runs")],
        cwd=tmp, env=child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp / "runs" / "p-gpu" / "r1"
    monitor_lines = [line for line in proc.stdout.splitlines() if line.startswith("gpu monitor: ")]
    assert len(monitor_lines) == 2 and "sampling 4 GPU(s)" in monitor_lines[0]
    assert "(simulated: 4 x simulated A10G" in monitor_lines[0]
    assert monitor_lines[1] == (f"gpu monitor: graphs in {run_dir}: "
                                "gpu_memory.png, gpu_load_balance.png, gpu_timeline.png")

    # the journal: one GPU row per log step (2, 4, 6), in the record of the training step; none at
    # the evaluation-only step 3 or at step 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r["metrics"] for r in records if "metrics" in r}
    assert sorted(logged) == [0, 2, 3, 4, 6]
    expected = {step: metrics for step, metrics in logged.items() if "gpu_total_memory_used" in metrics}
    assert sorted(expected) == [2, 4, 6] and all("train_loss" in expected[step] for step in expected)
    assert all(gpu_names(4) <= set(metrics) for metrics in expected.values())
    assert not any(name.startswith("gpu_4_") for metrics in expected.values() for name in metrics)

    # Trackio and W&B hold exactly those rows, with the same values
    trackio = trackio_rows("p-gpu", "r1")
    run_json = json.loads((run_dir / "run.json").read_text())
    wandb_dir = wandb_run_dir(run_json["wandb_id"], tmp / "wandb-root")
    wandb, _ = wandb_history(wandb_dir)
    for where, rows, step_key in (("trackio", trackio, "step"), ("wandb", wandb, "_step")):
        assert gpu_steps(rows, step_key) == [2, 4, 6], where
        for row in rows:
            if row[step_key] in expected and "gpu_total_memory_used" in row:  # (Trackio: images a row apart)
                for name, value in expected[row[step_key]].items():
                    if name.startswith("gpu_"):
                        assert same_value(value, row[name]), (where, row[step_key], name)
            else:
                assert not any(name.startswith("gpu_") for name in row), (where, row[step_key])

    # the three graphs, as images at the last step: Trackio and W&B each hold their own copy of the PNGs
    images = [r for r in records if r.get("event") == "images"]
    assert [(r["step"], sorted(r["images"])) for r in images] == [(6, ["gpu/load_balance", "gpu/memory",
                                                                        "gpu/timeline"])]
    assert images[0]["images"]["gpu/memory"] == {"path": "gpu_memory.png",
                                                 "caption": "Per-GPU Memory Breakdown (simulated GPUs)"}
    trackio_images = {name: value for row in trackio if row["step"] == 6 for name, value in row.items()
                      if name.startswith("gpu/")}
    assert sorted(trackio_images) == ["gpu/load_balance", "gpu/memory", "gpu/timeline"]
    for name, value in trackio_images.items():
        copy = tmp / "trackio" / "media" / value["file_path"]
        assert value["_type"] == "trackio.image" and copy.read_bytes() == (run_dir / GRAPH_NAMES[name[4:]]).read_bytes()
    wandb_row, = [row for row in wandb if "gpu/memory._type" in row]
    assert wandb_row["_step"] == 6 and wandb_row["gpu/timeline.caption"] == "Timeline Comparisons (simulated GPUs)"
    for kind, name in GRAPH_NAMES.items():
        copy = wandb_dir / "files" / wandb_row[f"gpu/{kind}.path"]
        assert copy.read_bytes() == (run_dir / name).read_bytes(), kind
    # ... and the end-of-run summary counts that record as confirmed in each store
    delivery = json.loads((run_dir / "delivery.json").read_text())
    for name in ("trackio", "wandb"):
        backend = delivery["backends"][name]
        assert backend["confirmed"] == backend["records"] == len(records) - 2, name  # all but start/end

    # the run config says the GPUs were simulated, in run.json, Trackio and W&B
    code = ("import json, sys\nfrom trackio.sqlite_storage import SQLiteStorage\n"
            "print(json.dumps(SQLiteStorage.get_run_config(sys.argv[1], sys.argv[2])))")
    trackio_config = json.loads(subprocess.run(
        [sys.executable, "-c", code, "p-gpu", "r1"], env=child_env(), capture_output=True, text=True,
        timeout=120, check=True).stdout.strip().splitlines()[-1])
    for where, config in (("run.json", run_json["config"]), ("trackio", trackio_config),
                          ("wandb", wandb_config(wandb_dir))):
        assert (config["gpu_monitor"], config["simulate_gpus"]) == (True, 4), where
    described = torch.load(run_dir / "ckpt_last.pt", weights_only=False)["run"]["gpu_monitor"]
    assert (described["source"], described["simulated"], len(described["devices"])) == ("simulated", True, 4)
    assert run_json["gpus"] == described  # the device mapping, recorded once in run.json

    # every sample in the run directory's gpu.jsonl, the evaluations marked; the graphs drawn from it
    log = read_gpu_log(run_dir / GPU_LOG_NAME)
    assert log.simulated and log.warnings == [] and len(log.samples) >= 3
    assert [step for _, step in log.eval_points()] == [0, 3, 6]
    assert log.events[-1]["event"] == "stop"
    assert_graphs_drawn(run_dir)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_simulate_gpus_below_one_on_the_command_line_is_a_one_line_error(tmp_path, value):
    proc = subprocess.run([sys.executable, TRAIN, "--dataset", "pydocs", "--gpu-monitor", "--simulate-gpus", value],
                          cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"gpt2/train.py: error: --simulate-gpus must be at least 1 (got {value}); 0 is the default: "
        "leave the flag out"]
    assert not (tmp_path / "runs").exists()


def test_simulate_gpus_applies_with_gpu_monitor_only_and_has_a_ceiling(tmp_path, monkeypatch):
    from adamwprune.train.cli import parse_args, settings_from_args
    from adamwprune.train.gpt2 import FAMILY

    monkeypatch.chdir(tmp_path)  # no .config here
    with pytest.raises(UserError, match="^--simulate-gpus applies with --gpu-monitor only$"):
        settings_from_args(parse_args(FAMILY, ["--simulate-gpus", "4"]))
    with pytest.raises(UserError, match=r"^simulate-gpus must be at most 64 \(got 65\)$"):
        settings_from_args(parse_args(FAMILY, ["--gpu-monitor", "--simulate-gpus", "65"]))
    settings = settings_from_args(parse_args(FAMILY, ["--gpu-monitor", "--simulate-gpus", "2"]))
    assert (settings.simulate_gpus, settings.tracked()["simulate_gpus"]) == (2, 2)
    assert "simulate_gpus" not in settings_from_args(parse_args(FAMILY, [])).tracked()


@pytest.mark.slow
def test_a_run_that_fails_still_stops_the_monitor_and_draws_its_graphs(tmp_path):
    from adamwprune.data import get_dataset
    from adamwprune.train.distributed import DistContext
    from adamwprune.train.gpt2 import GPT2Adapter
    from adamwprune.train.loop import DivergedError, train
    from adamwprune.train.settings import TrainSettings

    class InfiniteLoss(GPT2Adapter):
        def loss(self, model, batch):
            return super().loss(model, batch) * float("inf")

    settings = TrainSettings(**{**TINY_GPT2, "max_iters": 4, "save_checkpoint": False, "gpu_monitor": True,
                                "simulate_gpus": 2, "gpu_monitor_interval": 0.05})
    adapter = InfiniteLoss(get_dataset("pydocs"), model_name="gpt2-tiny", block_size=32)
    run_dir = tmp_path / "run"
    lines: list[str] = []
    with pytest.raises(DivergedError):
        train(adapter, settings, ctx=DistContext(device="cpu"), tracker=None, run_dir=run_dir, run_info={},
              progress=lines.append)
    assert read_gpu_log(run_dir / GPU_LOG_NAME).events[-1]["event"] == "stop"
    assert lines[-1].startswith(f"gpu monitor: graphs in {run_dir}: ")
    assert_graphs_drawn(run_dir)


@pytest.mark.slow
def test_graphs_that_cannot_be_drawn_are_one_warning_and_the_run_finishes(tmp_path, monkeypatch, capsys):
    from adamwprune.gpu import report

    def broken(run_dir, dpi=100):
        raise RuntimeError("no space left for the PNGs")

    monkeypatch.setattr(report, "write_report", broken)
    records = train_tiny_gpt2(tmp_path / "run", max_iters=2, gpu_monitor=True, simulate_gpus=3)
    assert [r["step"] for r in records if "gpu_total_memory_used" in r["metrics"]] == [1, 2]
    assert gpu_names(3) <= set(records[-1]["metrics"])
    err = [line for line in capsys.readouterr().err.splitlines() if "GPU graphs" in line]
    assert err == [f"warning: GPU graphs not drawn (RuntimeError: no space left for the PNGs); draw them with "
                   f"`adamwprune gpu-report {tmp_path / 'run'}`"]
    assert (tmp_path / "run" / GPU_LOG_NAME).is_file()


def test_make_test_matrix_gpu_monitor_y_monitors_every_run_into_its_own_folder(tmp_path, monkeypatch):
    """The flags each matrix run gets (the trainer stood in for): --gpu-monitor from GPU_MONITOR=y,
    and CONFIG_GPU_MONITOR_SIMULATE from the configuration, as every run's settings show."""
    from adamwprune.kconfig import runner
    from adamwprune.tracking.naming import run_dir_for
    from adamwprune.train.cli import parse_args, settings_from_args
    from adamwprune.train.gpt2 import FAMILY

    launched: list[list[str]] = []
    monkeypatch.setattr(runner, "launch", lambda command, cwd, log=None, env=None: launched.append(command) or 0)
    monkeypatch.chdir(tmp_path)  # where make runs: the trainers read config.py here

    def matrix_runs() -> list:
        launched.clear()
        assert runner.run(tmp_path, {"GPU_MONITOR": "y"}, force_matrix=True) == 0
        return [settings_from_args(parse_args(FAMILY, command[2:])) for command in launched]

    defconfig(tmp_path, "test-matrix-cpu")  # GPU_MONITOR off in the configuration
    runs = matrix_runs()
    assert len(runs) == 7 and all("--gpu-monitor" in command for command in launched)
    assert {(s.gpu_monitor, s.simulate_gpus) for s in runs} == {(True, 0)}  # no GPU here: one line, no monitor

    demo = (REPO / "defconfigs" / "test-matrix-cpu").read_text().splitlines()
    defconfig(tmp_path, str(write_defconfig(tmp_path / "demo", *demo, "CONFIG_GPU_MONITOR=y",
                                            "CONFIG_GPU_MONITOR_SIMULATE=4")))
    runs = matrix_runs()
    assert {(s.gpu_monitor, s.simulate_gpus) for s in runs} == {(True, 4)}
    folders = {run_dir_for(s.output_dir, s.tracker_project, s.tracker_run_name) for s in runs}
    assert len(folders) == 7 and all(folder.parent.parent.name.startswith("test_matrix_results_")
                                     for folder in folders)
