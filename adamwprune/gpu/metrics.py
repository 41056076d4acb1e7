"""The spec's multi-GPU metrics, computed from one sample of every GPU."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Upper bounds (exclusive) of the coefficient of variation, in percent.
QUALITY_BANDS = ((5.0, "Excellent"), (10.0, "Good"), (20.0, "Fair"))


@dataclass(frozen=True)
class GpuSample:
    index: int
    memory_used_mb: float
    memory_total_mb: float
    utilization: float  # percent
    temperature: float  # degrees C
    power_w: float


def coefficient_of_variation(values: list[float]) -> float:
    """Population standard deviation over mean, in percent (0 for an all-zero list)."""
    mean = sum(values) / len(values)
    if mean == 0:
        return 0.0
    variance = sum((v - mean) ** 2 for v in values) / len(values)
    return 100.0 * math.sqrt(variance) / mean


def balance_quality(cv_percent: float) -> str:
    for upper, label in QUALITY_BANDS:
        if cv_percent < upper:
            return label
    return "Poor"


def gpu_metrics(samples: list[GpuSample]) -> dict:
    """Aggregate, load-balance and per-GPU metrics under the spec's names.

    Load balance is measured on memory used per GPU: under DDP every rank holds
    the same model and batch, so unequal memory points at an imbalance that
    momentary utilization readings would hide in their noise.
    """
    if not samples:
        return {}
    used = [s.memory_used_mb for s in samples]
    total = sum(s.memory_total_mb for s in samples)
    cv = coefficient_of_variation(used)
    metrics = {
        "gpu_total_memory_used": sum(used),
        "gpu_total_memory_percent": 100.0 * sum(used) / total if total else 0.0,
        "gpu_average_utilization": sum(s.utilization for s in samples) / len(samples),
        "gpu_total_power": sum(s.power_w for s in samples),
        "gpu_max_temperature": max(s.temperature for s in samples),
        "gpu_load_balance_cv": cv,
        "gpu_load_balance_quality": balance_quality(cv),
    }
    for s in samples:
        metrics[f"gpu_{s.index}_memory_used"] = s.memory_used_mb
        metrics[f"gpu_{s.index}_utilization"] = s.utilization
        metrics[f"gpu_{s.index}_temperature"] = s.temperature
        metrics[f"gpu_{s.index}_power"] = s.power_w
    return metrics
