"""Multi-GPU metrics of one sample: aggregates, load balance, quality bands (the monitor and its
interval rows: test_gpu_monitor.py; in training: test_gpu_training.py)."""

from __future__ import annotations

import pytest

from adamwprune.gpu import GpuSample, balance_quality, gpu_metrics


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
