"""Cost of the GPU monitor: one sample (read every GPU + append the line to gpu.jsonl + add it
to the interval's aggregate) and one row (``interval_metrics`` over 10 buffered samples), for
1, 4 and 8 GPUs; and the sampler thread's share of one CPU at 1 Hz.

Sources: ``simulated`` (SimulatedSource: a few random numbers per GPU) and ``fake-nvml``
(NvmlSource's code path on a pure-Python fake pynvml: what the monitor adds on top of the
driver's own NVML latency, which needs a real GPU to measure). No GPU is needed. Usage:

    .venv/bin/python benchmarks/gpu_monitor.py [--samples 2000] [--duration 20]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adamwprune.gpu import GpuMonitor, SimulatedSource  # noqa: E402
from adamwprune.gpu.sources import NvmlSource  # noqa: E402


def fake_pynvml(n: int) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")
    nvml.NVML_TEMPERATURE_GPU = 0
    nvml.NVMLError_NotSupported = type("NVMLError_NotSupported", (Exception,), {})
    memory = types.SimpleNamespace(used=17_500 * 2**20, total=23_028 * 2**20)
    rates = types.SimpleNamespace(gpu=93, memory=40)
    nvml.nvmlInit = nvml.nvmlShutdown = lambda: None
    nvml.nvmlDeviceGetCount = lambda: n
    nvml.nvmlDeviceGetHandleByIndex = lambda k: k
    nvml.nvmlDeviceGetUUID = lambda h: f"GPU-{h:08d}-0000-0000-0000-000000000000"
    nvml.nvmlDeviceGetName = lambda h: "NVIDIA A10G"
    nvml.nvmlDeviceGetMemoryInfo = lambda h: memory
    nvml.nvmlDeviceGetUtilizationRates = lambda h: rates
    nvml.nvmlDeviceGetTemperature = lambda h, sensor: 71
    nvml.nvmlDeviceGetPowerUsage = lambda h: 145_213
    return nvml


def make_source(kind: str, n: int):
    if kind == "simulated":
        return SimulatedSource(n)
    return NvmlSource(fake_pynvml(n), env={}, torch_uuids=[])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_samples(kind: str, n: int, samples: int, root: Path) -> dict:
    monitor = GpuMonitor(interval_s=3600, source=make_source(kind, n), run_dir=root / f"{kind}-{n}")
    monitor.start()  # the thread takes one sample, then sleeps for an hour: the timing below is ours
    clock = time.perf_counter_ns
    per_sample, per_row = [], []
    for k in range(samples):
        start = clock()
        monitor._take_sample()  # what the thread does per tick
        per_sample.append((clock() - start) / 1000)
        if k % 10 == 9:
            start = clock()
            monitor.interval_metrics(k)
            per_row.append((clock() - start) / 1000)
    monitor.stop()
    return {"sample_median": statistics.median(per_sample), "sample_p99": percentile(per_sample, 0.99),
            "row_median": statistics.median(per_row), "row_p99": percentile(per_row, 0.99)}


def thread_share(n: int, rate_hz: float, duration: float, root: Path) -> tuple[float, int]:
    """(CPU seconds of the sampler thread per wall second, samples taken)."""
    monitor = GpuMonitor(interval_s=1.0 / rate_hz, source=SimulatedSource(n), run_dir=root / f"thread-{n}-{rate_hz}")
    monitor.start()
    time.sleep(duration)
    monitor.stop()
    return monitor.thread_cpu_s / duration, monitor.samples_taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="timed samples per case (default 2000)")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds the thread runs at 1 Hz (default 20)")
    args = parser.parse_args()
    from machine import cpu_name

    root = Path(tempfile.mkdtemp(prefix="adamwprune-bench-gpu-"))
    print(f"machine: {cpu_name()}, {platform.machine()}, Python {platform.python_version()}")
    print("\n| source | GPUs | sample median µs | sample p99 µs | row median µs | row p99 µs |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in ("simulated", "fake-nvml"):
        for n in (1, 4, 8):
            time_samples(kind, n, 200, root)  # warm-up
            r = time_samples(kind, n, args.samples, root)
            print(f"| {kind} | {n} | {r['sample_median']:.1f} | {r['sample_p99']:.1f} | "
                  f"{r['row_median']:.1f} | {r['row_p99']:.1f} |", flush=True)
    print("\n| sampler thread | GPUs | samples | thread CPU per wall second |")
    print("|---|---:|---:|---:|")
    for rate, duration in ((1.0, args.duration), (100.0, 5.0)):
        share, taken = thread_share(8, rate, duration, root)
        print(f"| simulated, {rate:g} Hz for {duration:g} s | 8 | {taken} | {100 * share:.4f} % |", flush=True)


if __name__ == "__main__":
    main()
