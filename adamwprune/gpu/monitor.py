"""The GPU monitor: a sampler thread that keeps every sample in ``<run_dir>/gpu.jsonl`` and
gives the training loop one aggregated GPU row per log step.

How the training loop uses it (rank 0 only; all calls but the thread's own are made from
the training thread)::

    monitor, line = GpuMonitor.open(run_dir, interval_s=1.0, simulate_gpus=0, step=iteration)
    print(f"gpu monitor: {line}")              # what is sampled, or why monitoring is off
    if monitor is not None:
        monitor.start()                        # header line + sampler thread (first sample at once)
        run_info["gpu_monitor"] = monitor.describe()
    ...
    monitor.step = iteration                   # optional, each step: the step samples are tagged with
    monitor.mark_eval(iteration)               # just before an evaluation starts
    metrics.update(monitor.interval_metrics(iteration))   # once per log step, merged into the row
    ...
    monitor.stop()                             # joins the thread, closes gpu.jsonl and NVML
    write_report(run_dir)                      # the PNG graphs (adamwprune.gpu.report)

``interval_metrics(step)`` returns the aggregate of the samples taken since the previous
call (see adamwprune.gpu.metrics for the rules). When no sample arrived in the interval
(log steps closer together than ``interval_s``) it takes one synchronously, on the calling
thread, and records it in gpu.jsonl with ``"sync": true``: every row is a reading taken in
its own interval, never a repeat of an older one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from adamwprune.gpu.metrics import IntervalAggregator
from adamwprune.gpu.samplelog import FORMAT, GPU_LOG_NAME, UNITS, GpuLogWriter, sample_record


def _check_interval(interval_s: float) -> float:
    from adamwprune.errors import UserError

    if not isinstance(interval_s, (int, float)) or not interval_s > 0:
        raise UserError(f"GPU monitor interval must be positive, got {interval_s}")
    return float(interval_s)


class GpuMonitor:
    """Samples the process's GPUs every ``interval_s`` seconds in a daemon thread.

    ``source``: a Source (NvmlSource, SimulatedSource); :meth:`open` picks one. ``run_dir``:
    every sample is appended to ``<run_dir>/gpu.jsonl`` (created with its directory).
    ``step``: the training step samples are tagged with until the loop says otherwise
    (``monitor.step = n``, :meth:`interval_metrics`, :meth:`mark_eval`).
    """

    def __init__(self, source: Any, interval_s: float = 1.0, *, run_dir: Path | str | None = None,
                 step: int = 0):
        self.interval_s = _check_interval(interval_s)
        self.source = source
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.step = int(step)
        self.samples_taken = 0
        self.thread_cpu_s = 0.0               # CPU time of the sampler thread so far
        self._writer: GpuLogWriter | None = None
        self._aggregator = IntervalAggregator()
        self._buffer_lock = threading.Lock()   # the interval's aggregator
        self._read_lock = threading.Lock()     # the source (thread vs synchronous samples)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = self._stopped = False

    # ------------------------------------------------------------------ set-up
    @classmethod
    def open(cls, run_dir: Path | str, interval_s: float = 1.0, *, simulate_gpus: int = 0,
             step: int = 0, source: Any = None) -> tuple["GpuMonitor | None", str]:
        """(monitor, one line saying what it samples) or (None, one line saying why not).

        The monitor is not started yet. ``simulate_gpus`` > 0 samples that many simulated
        GPUs instead of NVML (UserError unless it is a whole number >= 1). Raises UserError
        for a bad ``interval_s``.
        """
        interval_s = _check_interval(interval_s)
        if source is None:
            from adamwprune.gpu.sources import check_simulated_count, open_source

            if simulate_gpus:
                check_simulated_count(simulate_gpus)
            source, line = open_source(simulate_gpus)
            if source is None:
                return None, line
        monitor = cls(source, interval_s, run_dir=run_dir, step=step)
        where = f" into {monitor.log_path}" if monitor.log_path else ""
        return monitor, (f"sampling {source.device_count} GPU(s) every {interval_s:g} s{where} "
                         f"({source.description()})")

    @property
    def log_path(self) -> Path | None:
        return self.run_dir / GPU_LOG_NAME if self.run_dir is not None else None

    @property
    def simulated(self) -> bool:
        return bool(getattr(self.source, "simulated", False))

    def describe(self) -> dict:
        """Source, device mapping and GPUs (index as the process sees it, physical NVML index,
        UUID, name, total MiB), sampling interval: JSON-serializable (the trainer keeps it in
        the run info of its checkpoints; gpu.jsonl's header holds the same)."""
        return {**self.source.describe(), "interval_s": self.interval_s,
                "log": str(self.log_path) if self.log_path else None}

    def start(self) -> "GpuMonitor":
        """Write the header, take the first sample at once, then one every ``interval_s``."""
        if self._started:
            return self
        self._started = True
        if self.run_dir is not None:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self._writer = GpuLogWriter(self.log_path)
            except OSError as err:
                logging.getLogger("adamwprune.gpu").warning(
                    "gpu monitor: cannot write %s (%s); GPU samples are not kept, rows still are",
                    self.log_path, err.strerror or err)
        if self._writer is not None:
            self._writer.write({"event": "header", "format": FORMAT, "time": time.time(),
                                **self.source.describe(), "interval_s": self.interval_s,
                                "host": socket.gethostname(), "pid": os.getpid(), "step": self.step,
                                "units": UNITS})
        self._thread = threading.Thread(target=self._run, name="gpu-monitor", daemon=True)
        self._thread.start()
        return self

    # ----------------------------------------------------------------- sampling
    def _take_sample(self, sync: bool = False) -> list:
        """Read every GPU once and record it in gpu.jsonl. The thread's samples (not ``sync``)
        go into the interval's aggregate before ``samples_taken`` counts them."""
        with self._read_lock:
            if self._stopped:
                return []
            samples = self.source.sample()
            now, step = time.time(), self.step
            failures = getattr(self.source, "failures", None) or []
            if failures:
                self.source.failures = []
            if self._writer is not None:
                for failure in failures:
                    self._writer.write({"event": "read_failed", **failure, "step": step, "time": now})
                self._writer.write(sample_record(now, step, samples, sync))
            if not sync:
                with self._buffer_lock:
                    self._aggregator.add(samples)
            self.samples_taken += 1
        return samples

    def _run(self) -> None:
        cpu_start = time.thread_time()
        deadline = time.monotonic()
        try:
            while not self._stop.is_set():
                self._take_sample()
                self.thread_cpu_s = time.thread_time() - cpu_start
                deadline += self.interval_s
                delay = deadline - time.monotonic()
                if delay < 0:  # fell behind (a slow read): skip the missed ticks, no burst
                    deadline, delay = time.monotonic(), 0.0
                self._stop.wait(delay)
        except Exception as err:  # never take training down; say why the samples stop
            logging.getLogger("adamwprune.gpu").warning(
                "gpu monitor: sampler stopped (%s: %s); no more GPU samples", type(err).__name__, err)
        finally:
            self.thread_cpu_s = time.thread_time() - cpu_start

    # ----------------------------------------------------------- the loop's API
    def interval_metrics(self, step: int) -> dict:
        """The GPU row for the log interval ending at ``step``: the spec's names, aggregated over
        the samples since the previous call (one is taken now if none arrived); {} when the
        monitor is off or no GPU could be read."""
        self.step = int(step)
        with self._buffer_lock:
            aggregator, self._aggregator = self._aggregator, IntervalAggregator()
        if not aggregator:
            aggregator.add(self._take_sample(sync=True))
        return aggregator.metrics()

    def mark_eval(self, step: int) -> None:
        """Record an evaluation at ``step`` (now) in gpu.jsonl; the timeline graph marks it."""
        self.mark_event("eval", step)

    def mark_event(self, event: str, step: int, **fields: Any) -> None:
        self.step = int(step)
        if self._writer is not None and not self._stopped:
            self._writer.write({"event": event, "step": int(step), "time": time.time(), **fields})

    # ------------------------------------------------------------------ the end
    def stop(self) -> None:
        """Stop the thread, write the closing line, close gpu.jsonl and the source. Idempotent."""
        if self._stopped:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval_s + 5)
        with self._read_lock:
            self._stopped = True
            if self._writer is not None:
                self._writer.write({"event": "stop", "time": time.time(), "samples": self.samples_taken,
                                    "thread_cpu_s": round(self.thread_cpu_s, 6)})
                self._writer.close()
                self._writer = None
            self.source.close()

    def write_report(self, dpi: int = 100) -> list[Path]:
        """The graphs of this run's gpu.jsonl (call after :meth:`stop`); see adamwprune.gpu.report."""
        from adamwprune.gpu.report import write_report

        if self.run_dir is None:
            return []
        return write_report(self.run_dir, dpi=dpi)

    def __enter__(self) -> "GpuMonitor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
