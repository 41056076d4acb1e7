"""Multi-GPU monitoring: sample every GPU of the process into ``<run_dir>/gpu.jsonl``, give the
training loop one row of the spec's aggregate, load-balance and per-GPU metrics per log step,
and draw the graphs (``python -m adamwprune.gpu.report RUN_DIR``).

See docs/multi-gpu-monitoring.md. matplotlib is imported only by the graphs.
"""

from adamwprune.gpu.metrics import (GpuSample, IntervalAggregator, aggregate_interval, balance_quality,
                                    coefficient_of_variation, gpu_metrics)
from adamwprune.gpu.monitor import GpuMonitor
from adamwprune.gpu.samplelog import GPU_LOG_NAME, read_gpu_log
from adamwprune.gpu.sources import NvmlSource, SimulatedSource, map_visible_devices, open_source


def write_report(run_dir, dpi: int = 100):
    """The graphs of ``run_dir/gpu.jsonl`` as PNGs in ``run_dir``; see adamwprune.gpu.report."""
    from adamwprune.gpu.report import write_report as _write_report

    return _write_report(run_dir, dpi=dpi)


__all__ = ["GPU_LOG_NAME", "GpuMonitor", "GpuSample", "IntervalAggregator", "NvmlSource", "SimulatedSource",
           "aggregate_interval", "balance_quality", "coefficient_of_variation", "gpu_metrics",
           "map_visible_devices", "open_source", "read_gpu_log", "write_report"]
