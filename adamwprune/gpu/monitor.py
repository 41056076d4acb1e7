"""A background sampler that logs the GPU metrics at the training's current step."""

from __future__ import annotations

import threading


class GpuMonitor:
    """Samples all GPUs every ``interval_s`` seconds and logs through ``tracker.log_system``.

    ``source`` defaults to NVML; without an NVIDIA GPU the monitor says so once
    and does nothing.
    """

    def __init__(self, tracker, interval_s: float = 10.0, source=None):
        if interval_s <= 0:
            from adamwprune.errors import UserError
            raise UserError(f"GPU monitor interval must be positive, got {interval_s}")
        self.tracker = tracker
        self.interval_s = interval_s
        self.source = source
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "GpuMonitor":
        if self.source is None:
            from adamwprune.gpu.sources import NvmlSource

            self.source = NvmlSource.open()
        if self.source is None:
            print("gpu monitor: no NVIDIA GPU visible through NVML; GPU metrics are not logged",
                  flush=True)
            return self
        self._thread = threading.Thread(target=self._run, name="gpu-monitor", daemon=True)
        self._thread.start()
        return self

    def sample_once(self) -> dict:
        from adamwprune.gpu.metrics import gpu_metrics

        metrics = gpu_metrics(self.source.sample())
        self.tracker.log_system(metrics)
        return metrics

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval_s + 5)
        if self.source is not None:
            self.source.close()

    def __enter__(self) -> "GpuMonitor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
