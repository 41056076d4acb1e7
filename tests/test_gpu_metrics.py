"""Multi-GPU metrics: aggregates, load balance, quality bands, and the monitor's logging."""

from __future__ import annotations

import time

import pytest

from adamwprune.gpu import GpuMonitor, GpuSample, SimulatedSource, balance_quality, gpu_metrics
from adamwprune.tracking import ExperimentTracker
from helpers import trackio_rows


def _sample(index, used, util=50.0):
    return GpuSample(index=index, memory_used_mb=used, memory_total_mb=24000.0, utilization=util,
                     temperature=60.0 + index, power_w=100.0 + index)


def test_aggregates_and_per_gpu_names():
    metrics = gpu_metrics([_sample(i, used) for i, used in enumerate([1000.0, 2000.0, 3000.0, 2000.0])])
    assert metrics["gpu_total_memory_used"] == 8000.0
    assert metrics["gpu_total_memory_percent"] == pytest.approx(100 * 8000 / 96000)
    assert metrics["gpu_average_utilization"] == 50.0
    assert metrics["gpu_total_power"] == 406.0 and metrics["gpu_max_temperature"] == 63.0
    # population std of [1,2,3,2] = sqrt(0.5); mean 2 -> CV 35.36 %
    assert metrics["gpu_load_balance_cv"] == pytest.approx(35.3553, rel=1e-4)
    assert metrics["gpu_load_balance_quality"] == "Poor"
    assert metrics["gpu_2_memory_used"] == 3000.0 and metrics["gpu_3_power"] == 103.0
    assert len(metrics) == 7 + 4 * 4


@pytest.mark.parametrize("cv, label", [(0.0, "Excellent"), (4.99, "Excellent"), (5.0, "Good"),
                                       (9.99, "Good"), (10.0, "Fair"), (19.99, "Fair"),
                                       (20.0, "Poor"), (85.0, "Poor")])
def test_quality_bands_follow_the_spec(cv, label):
    assert balance_quality(cv) == label


def test_idle_gpus_are_balanced():
    assert gpu_metrics([_sample(i, 0.0) for i in range(2)])["gpu_load_balance_cv"] == 0.0


class Recording:
    """Passes the monitor's samples on to ``tracker`` and keeps a copy of each."""

    def __init__(self, tracker):
        self.tracker = tracker
        self.logged: list[dict] = []

    def log_system(self, metrics: dict) -> None:
        self.logged.append(metrics)
        self.tracker.log_system(metrics)


@pytest.mark.slow
def test_monitor_logs_simulated_samples_at_the_training_step(tracking_env):
    with ExperimentTracker("trackio", project="p-gpu", run_name="r", run_dir=tracking_env / "r") as t:
        t.log({"train_loss": 3.0}, step=40)
        recording = Recording(t)
        with GpuMonitor(recording, interval_s=0.05, source=SimulatedSource(device_count=2, seed=1)):
            while len(recording.logged) < 3:
                time.sleep(0.01)
    rows = [row for row in trackio_rows("p-gpu", "r") if "gpu_total_power" in row]
    assert len(rows) == len(recording.logged) >= 3
    assert {row["step"] for row in rows} == {40}
    assert rows[0]["gpu_1_utilization"] == pytest.approx(recording.logged[0]["gpu_1_utilization"])


def test_monitor_without_gpu_says_so_and_logs_nothing(tmp_path, capsys):
    tracker = ExperimentTracker("none", project="p", run_name="r", run_dir=tmp_path / "r")
    recording = Recording(tracker)
    monitor = GpuMonitor(recording, interval_s=1.0).start()
    monitor.stop()
    tracker.finish()
    assert "no NVIDIA GPU visible through NVML" in capsys.readouterr().out
    assert recording.logged == []
