"""``<run_dir>/gpu.jsonl``: every raw GPU sample of a run, one JSON object per line.

Append-only: each line is written whole with one ``os.write`` on an ``O_APPEND``
descriptor, so it is in the kernel when the call returns and survives ``kill -9``
of the training process; the file is never rewritten. A resumed run appends a new
header and goes on. Line shapes (units: MiB, %, °C, W; times are Unix seconds)::

    {"event": "header", "format": 1, "time": ..., "source": "nvml", "simulated": false,
     "description": "nvml: 4 x NVIDIA A10G (physical 0,1,2,3)", "interval_s": 1.0,
     "host": "node-a", "pid": 1234, "mapping": "torch", "cuda_visible_devices": "0,1,2,3",
     "cuda_device_order": null, "units": {...},
     "devices": [{"index": 0, "physical_index": 0, "uuid": "GPU-...", "name": "NVIDIA A10G",
                  "memory_total_mib": 23028.0}, ...]}
    {"time": ..., "step": 120, "gpus": [{"index": 0, "memory_used_mib": 17501.2,
     "memory_total_mib": 23028.0, "utilization_pct": 93.0, "temperature_c": 71.0,
     "power_w": 145.213}, ...]}                       # a GPU that failed to read is absent
    {"time": ..., "step": 130, "sync": true, "gpus": [...]}   # taken by interval_metrics itself
    {"event": "eval", "step": 200, "time": ...}
    {"event": "read_failed", "index": 2, "uuid": "GPU-...", "error": "NVMLError_GpuIsLost: ...",
     "step": 1234, "time": ...}
    {"event": "stop", "time": ..., "samples": 3600, "thread_cpu_s": 0.41}
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Sequence

from adamwprune.gpu.metrics import GpuSample

GPU_LOG_NAME = "gpu.jsonl"
FORMAT = 1
UNITS = {"memory": "MiB", "utilization": "%", "temperature": "°C", "power": "W", "time": "s"}


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def sample_record(time: float, step: int, samples: Sequence[GpuSample], sync: bool = False) -> dict:
    record: dict = {"time": time, "step": step}
    if sync:
        record["sync"] = True
    record["gpus"] = [{"index": s.index, "memory_used_mib": _round(s.memory_used_mb, 3),
                       "memory_total_mib": _round(s.memory_total_mb, 3),
                       "utilization_pct": _round(s.utilization, 2), "temperature_c": _round(s.temperature, 2),
                       "power_w": _round(s.power_w, 3)} for s in samples]
    return record


class GpuLogWriter:
    """Appends records to gpu.jsonl; safe to call from the sampler thread and the training thread."""

    def __init__(self, path: Path):
        import orjson  # not at import time: `adamwprune --help` needs no orjson

        self._encode = partial(orjson.dumps, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            os.write(self._fd, b"\n")  # a torn line of an earlier session stays a line of its own

    def write(self, record: dict) -> None:
        data = self._encode(record)
        with self._lock:
            if self._fd < 0:
                return
            view = memoryview(data)
            try:
                while view:  # a regular file takes it in one write; loop only on a short write
                    written = os.write(self._fd, view)
                    view = view[written:]
            except OSError as err:  # disk full, ...: say so once; training goes on without the file
                logging.getLogger("adamwprune.gpu").warning(
                    "gpu monitor: writing %s failed (%s); no more GPU samples are kept there",
                    self.path, err.strerror or err)
                os.close(self._fd)
                self._fd = -1

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


@dataclass
class GpuLog:
    """What a gpu.jsonl holds, read back."""

    path: Path
    headers: list[dict] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def simulated(self) -> bool:
        return any(h.get("simulated") for h in self.headers)

    @property
    def devices(self) -> dict[int, dict]:
        """index -> device entry of the header (the latest header wins), plus GPUs only seen in samples."""
        devices: dict[int, dict] = {}
        for header in self.headers:
            for device in header.get("devices", []):
                devices[int(device["index"])] = device
        for sample in self.samples:
            for gpu in sample["gpus"]:
                devices.setdefault(int(gpu["index"]), {"index": int(gpu["index"])})
        return dict(sorted(devices.items()))

    @property
    def start_time(self) -> float:
        times = [h["time"] for h in self.headers if "time" in h] + [s["time"] for s in self.samples[:1]]
        return min(times) if times else 0.0

    def eval_points(self) -> list[tuple[float, int]]:
        return [(e["time"], e.get("step")) for e in self.events if e.get("event") == "eval" and "time" in e]


def read_gpu_log(path: Path) -> GpuLog:
    """Read gpu.jsonl. A torn last line (an interrupted write) is left out with a warning, as are
    unreadable lines elsewhere; raises UserError when the file is missing or has no header."""
    import orjson

    from adamwprune.errors import UserError

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path} not found: GPU samples are written there only when the run had "
                        "--gpu-monitor (CONFIG_GPU_MONITOR=y) and a GPU or --simulate-gpus") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror}") from None
    result = GpuLog(path)
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, else an unfinished line
    if tail.strip():
        result.warnings.append(f"{path}: ignoring the torn last line (line {len(lines) + 1}, {len(tail)} "
                               "bytes without a newline: the writer was interrupted mid-line)")
    bad: list[int] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad.append(number)
            continue
        if not isinstance(record, dict):
            bad.append(number)
        elif record.get("event") == "header":
            result.headers.append(record)
        elif "event" in record:
            result.events.append(record)
        elif isinstance(record.get("gpus"), list) and "time" in record:
            result.samples.append(record)
        else:
            bad.append(number)
    if bad:
        result.warnings.append(f"{path}: skipped {len(bad)} unreadable line(s) (first: line {bad[0]})")
    if not result.headers:
        raise UserError(f"{path} has no header line: not a GPU sample log written by adamwprune "
                        f"(format {FORMAT})")
    return result
