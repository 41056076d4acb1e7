"""Where GPU samples come from: NVML on a real machine, a simulation elsewhere."""

from __future__ import annotations

import math
import random

from adamwprune.gpu.metrics import GpuSample


class NvmlSource:
    """Reads every NVIDIA GPU through NVML (nvidia-ml-py)."""

    def __init__(self):
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                         for i in range(pynvml.nvmlDeviceGetCount())]

    @classmethod
    def open(cls) -> "NvmlSource | None":
        """The source, or None when there is no NVIDIA driver or GPU."""
        try:
            source = cls()
        except Exception:  # pynvml raises NVMLError subclasses or OSError without a driver
            return None
        return source if source._handles else None

    @property
    def device_count(self) -> int:
        return len(self._handles)

    def sample(self) -> list[GpuSample]:
        nvml = self._nvml
        samples = []
        for index, handle in enumerate(self._handles):
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            samples.append(GpuSample(
                index=index,
                memory_used_mb=memory.used / 2**20,
                memory_total_mb=memory.total / 2**20,
                utilization=float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                temperature=float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
                power_w=nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
            ))
        return samples

    def close(self) -> None:
        self._nvml.nvmlShutdown()


class SimulatedSource:
    """A made-up machine (default: 4x A10G, 24 GiB, ~150 W each) under DDP training load.

    ``imbalance`` skews memory across GPUs so the load-balance metrics move.
    """

    def __init__(self, device_count: int = 4, memory_total_mb: float = 23028.0,
                 imbalance: float = 0.03, seed: int = 0):
        self.device_count = device_count
        self.memory_total_mb = memory_total_mb
        self.imbalance = imbalance
        self._random = random.Random(seed)
        self._tick = 0

    def sample(self) -> list[GpuSample]:
        self._tick += 1
        warm = 1.0 - math.exp(-self._tick / 5.0)
        samples = []
        for index in range(self.device_count):
            skew = 1.0 + self.imbalance * (index - (self.device_count - 1) / 2)
            noise = self._random.gauss
            samples.append(GpuSample(
                index=index,
                memory_used_mb=min(self.memory_total_mb, 17500.0 * warm * skew + noise(0, 60)),
                memory_total_mb=self.memory_total_mb,
                utilization=max(0.0, min(100.0, 93.0 * warm + noise(0, 3))),
                temperature=40.0 + 35.0 * warm + noise(0, 1),
                power_w=60.0 + 85.0 * warm + noise(0, 4),
            ))
        return samples

    def close(self) -> None:
        pass
