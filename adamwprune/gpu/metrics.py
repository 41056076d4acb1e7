"""The spec's multi-GPU metrics, from one sample of every GPU or from all the samples of a log interval.

Units: memory in MiB (2**20 bytes), utilization in percent, temperature in °C, power in W.

Aggregation over a log interval (:class:`IntervalAggregator`), per GPU ``i``:

* ``gpu_{i}_memory_used``  -- the interval's maximum (peak memory is what runs out);
* ``gpu_{i}_temperature``  -- the interval's maximum;
* ``gpu_{i}_utilization``  -- the interval's mean;
* ``gpu_{i}_power``        -- the interval's mean (mean power x time = energy).

The aggregates are taken over those per-GPU values, so one row is self-consistent:
``gpu_total_memory_used`` is the sum of the row's ``gpu_{i}_memory_used``,
``gpu_total_memory_percent`` is that sum over the sum of the GPUs' total memory,
``gpu_average_utilization`` the mean of the row's ``gpu_{i}_utilization``,
``gpu_total_power`` the sum of the row's ``gpu_{i}_power`` and ``gpu_max_temperature``
the maximum of the row's ``gpu_{i}_temperature``.

Load balance is measured on memory used, from each GPU's MEAN memory over the interval::

    CV = 100 * pstdev(m_0 .. m_{n-1}) / mean(m_0 .. m_{n-1})   (percent; 0 when the mean is 0)

Under DDP every rank holds the same model, optimizer state and batch shape, so its memory
should match the others'; unequal memory points at uneven work (sequence lengths, a rank
that also evaluates or logs), which momentary utilization readings hide in their noise.
The interval mean rather than the peak keeps one allocation spike from deciding the rating.

A GPU that could not be read during the whole interval is left out of the row (and of the
aggregates); a value a GPU does not report (e.g. power on some boards) is left out likewise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

# Upper bounds (exclusive) of the coefficient of variation, in percent.
QUALITY_BANDS = ((5.0, "Excellent"), (10.0, "Good"), (20.0, "Fair"))
QUALITY_ABOVE = "Poor"

AGGREGATE_NAMES = ("gpu_total_memory_used", "gpu_total_memory_percent", "gpu_average_utilization",
                   "gpu_total_power", "gpu_max_temperature", "gpu_load_balance_cv",
                   "gpu_load_balance_quality")
PER_GPU_FIELDS = ("memory_used", "utilization", "temperature", "power")


@dataclass(frozen=True)
class GpuSample:
    """One reading of one GPU. ``index`` is the GPU's index as the process sees it (0..n-1).

    ``utilization``, ``temperature`` and ``power_w`` are None where the GPU does not report them.
    """

    index: int
    memory_used_mb: float   # MiB
    memory_total_mb: float  # MiB
    utilization: float | None  # percent
    temperature: float | None  # degrees C
    power_w: float | None      # W


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Population standard deviation over mean, in percent (0 for an all-zero or empty list)."""
    if not values:
        return 0.0
    mean = sum(values) / len(values)
    if mean == 0:
        return 0.0
    variance = sum((v - mean) ** 2 for v in values) / len(values)
    return 100.0 * math.sqrt(variance) / mean


def balance_quality(cv_percent: float) -> str:
    """Excellent < 5 % <= Good < 10 % <= Fair < 20 % <= Poor."""
    for upper, label in QUALITY_BANDS:
        if cv_percent < upper:
            return label
    return QUALITY_ABOVE


class _GpuInterval:
    """Running max/mean of one GPU's readings: constant memory, however long the interval."""

    __slots__ = ("mem_max", "mem_sum", "mem_n", "mem_total", "util_sum", "util_n", "temp_max",
                 "power_sum", "power_n")

    def __init__(self) -> None:
        self.mem_max = -math.inf
        self.mem_sum = 0.0
        self.mem_n = 0
        self.mem_total = 0.0
        self.util_sum = 0.0
        self.util_n = 0
        self.temp_max: float | None = None
        self.power_sum = 0.0
        self.power_n = 0

    def add(self, s: GpuSample) -> None:
        self.mem_max = max(self.mem_max, s.memory_used_mb)
        self.mem_sum += s.memory_used_mb
        self.mem_n += 1
        self.mem_total = max(self.mem_total, s.memory_total_mb)
        if s.utilization is not None:
            self.util_sum += s.utilization
            self.util_n += 1
        if s.temperature is not None:
            self.temp_max = s.temperature if self.temp_max is None else max(self.temp_max, s.temperature)
        if s.power_w is not None:
            self.power_sum += s.power_w
            self.power_n += 1


class IntervalAggregator:
    """Collects the samples of one log interval; :meth:`metrics` gives the row under the spec's names."""

    def __init__(self) -> None:
        self._gpus: dict[int, _GpuInterval] = {}
        self.samples = 0

    def add(self, samples: Iterable[GpuSample]) -> None:
        """Add one sample of the machine (one GpuSample per GPU that could be read)."""
        self.samples += 1
        for s in samples:
            gpu = self._gpus.get(s.index)
            if gpu is None:
                gpu = self._gpus[s.index] = _GpuInterval()
            gpu.add(s)

    def __bool__(self) -> bool:
        return bool(self._gpus)

    def metrics(self) -> dict:
        """The aggregate, load-balance and per-GPU metrics; {} when no GPU was read."""
        if not self._gpus:
            return {}
        per_gpu: dict = {}
        used, totals, means, utils, temps, powers = [], [], [], [], [], []
        for index in sorted(self._gpus):
            gpu = self._gpus[index]
            used.append(gpu.mem_max)
            totals.append(gpu.mem_total)
            means.append(gpu.mem_sum / gpu.mem_n)
            per_gpu[f"gpu_{index}_memory_used"] = gpu.mem_max
            if gpu.util_n:
                utils.append(gpu.util_sum / gpu.util_n)
                per_gpu[f"gpu_{index}_utilization"] = utils[-1]
            if gpu.temp_max is not None:
                temps.append(gpu.temp_max)
                per_gpu[f"gpu_{index}_temperature"] = gpu.temp_max
            if gpu.power_n:
                powers.append(gpu.power_sum / gpu.power_n)
                per_gpu[f"gpu_{index}_power"] = powers[-1]
        cv = coefficient_of_variation(means)
        metrics: dict = {"gpu_total_memory_used": sum(used),
                         "gpu_total_memory_percent": 100.0 * sum(used) / sum(totals) if sum(totals) else 0.0}
        if utils:
            metrics["gpu_average_utilization"] = sum(utils) / len(utils)
        if powers:
            metrics["gpu_total_power"] = sum(powers)
        if temps:
            metrics["gpu_max_temperature"] = max(temps)
        metrics["gpu_load_balance_cv"] = cv
        metrics["gpu_load_balance_quality"] = balance_quality(cv)
        metrics.update(per_gpu)
        return metrics


def aggregate_interval(samples: Iterable[Sequence[GpuSample]]) -> dict:
    """The row for a log interval made of ``samples`` (each one sample of the machine)."""
    aggregator = IntervalAggregator()
    for sample in samples:
        aggregator.add(sample)
    return aggregator.metrics()


def gpu_metrics(samples: Sequence[GpuSample]) -> dict:
    """Aggregate, load-balance and per-GPU metrics of ONE sample of the machine."""
    return aggregate_interval([samples])
