"""Multi-GPU monitoring: sample every GPU, derive the spec's aggregate and
load-balance metrics, and log them through the run's ExperimentTracker."""

from adamwprune.gpu.metrics import GpuSample, balance_quality, gpu_metrics
from adamwprune.gpu.monitor import GpuMonitor
from adamwprune.gpu.sources import NvmlSource, SimulatedSource

__all__ = ["GpuMonitor", "GpuSample", "NvmlSource", "SimulatedSource", "balance_quality",
           "gpu_metrics"]
