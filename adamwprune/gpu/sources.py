"""Where GPU samples come from: NVML on a real machine, a simulation on purpose (``--simulate-gpus N``).

A source knows its GPUs (:attr:`devices`, indices 0..n-1 as the training process sees
them) and reads them all with :meth:`sample`. A GPU whose read fails (NVMLError on its
handle: fell off the bus, reset, ...) is reported once through the ``adamwprune.gpu``
logger and left out of that sample; the others go on, and the failed one is read again
at the next sample (it comes back if it reads again).

Which NVML devices belong to this process (:func:`map_visible_devices`): NVML enumerates
every GPU of the machine in PCI bus order and ignores ``CUDA_VISIBLE_DEVICES``. The
devices are matched, best first, by

1. ``torch`` -- the UUIDs of ``torch.cuda.get_device_properties(i).uuid`` when this
   process has CUDA initialized (the trainer has: the model is on the GPU): exact, in
   CUDA's own order, whatever ``CUDA_VISIBLE_DEVICES`` and ``CUDA_DEVICE_ORDER`` say;
2. ``CUDA_VISIBLE_DEVICES`` entries: ``GPU-<uuid>`` (a unique prefix suffices, as for
   CUDA) are exact; integers are taken as NVML indices, i.e. PCI bus order. That is
   exact with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; under CUDA's default ``FASTEST_FIRST``
   the order is formally unspecified -- in practice it is the PCI order on a machine
   whose GPUs are all the same model, and a warning says so when they are not. As in
   CUDA, an invalid entry ends the list; a repeated entry counts once;
3. ``CUDA_VISIBLE_DEVICES`` unset: every GPU, in PCI order.

MIG instances (``MIG-...``) are not supported: NVML reports the parent GPU's memory.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import random
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from adamwprune.gpu.metrics import GpuSample

log = logging.getLogger("adamwprune.gpu")

NOT_VISIBLE = "no NVIDIA GPU visible through NVML"


class GpuReadError(RuntimeError):
    """A simulated GPU's scripted read failure (NVML raises its own NVMLError)."""


class NoGpu(Exception):
    """NVML is there but this process sees no GPU; the message is the one-line reason."""


@dataclass(frozen=True)
class DeviceInfo:
    index: int            # as the process sees it: CUDA device index, 0..n-1
    physical_index: int   # NVML index (PCI bus order) on this machine
    uuid: str
    name: str
    memory_total_mb: float

    def to_dict(self) -> dict:
        return {"index": self.index, "physical_index": self.physical_index, "uuid": self.uuid,
                "name": self.name, "memory_total_mib": self.memory_total_mb}


class Source:
    """What the monitor samples. Subclasses fill :attr:`devices` and implement :meth:`_read`."""

    kind = "none"
    simulated = False

    def __init__(self) -> None:
        self.devices: list[DeviceInfo] = []
        self.mapping = "all"
        self.cuda_visible_devices: str | None = None
        self.cuda_device_order: str | None = None
        self._reported: set[int] = set()
        self._down: set[int] = set()
        self.failures: list[dict] = []  # {"index", "uuid", "error"}: drained by the monitor

    @property
    def device_count(self) -> int:
        return len(self.devices)

    def _begin(self) -> None:
        """Called once per sample, before the GPUs are read."""

    def _read(self, position: int) -> GpuSample:
        raise NotImplementedError

    def sample(self) -> list[GpuSample]:
        """One reading of every GPU that can be read (a failed one is reported once, then left out)."""
        self._begin()
        samples = []
        for position, device in enumerate(self.devices):
            try:
                sample = self._read(position)
            except Exception as err:  # NVMLError (any), or a scripted failure
                self._failed(device, err)
                continue
            if device.index in self._down:
                self._down.discard(device.index)
                log.info("GPU %d (%s) reads again", device.index, device.uuid)
            samples.append(sample)
        return samples

    def _failed(self, device: DeviceInfo, err: BaseException) -> None:
        self._down.add(device.index)
        if device.index in self._reported:
            return
        self._reported.add(device.index)
        error = f"{type(err).__name__}: {err}"
        self.failures.append({"index": device.index, "uuid": device.uuid, "error": error})
        log.warning("gpu monitor: reading GPU %d (%s, physical %d) failed (%s); its values are "
                    "missing until it reads again, the other GPUs go on", device.index, device.uuid,
                    device.physical_index, error)

    def description(self) -> str:
        names: dict[str, int] = {}
        for d in self.devices:
            names[d.name] = names.get(d.name, 0) + 1
        kinds = ", ".join(f"{count} x {name}" for name, count in names.items())
        physical = ",".join(str(d.physical_index) for d in self.devices)
        return f"{self.kind}: {kinds} (physical {physical})"

    def describe(self) -> dict:
        """The source for gpu.jsonl's header and run.json: JSON-serializable."""
        return {"source": self.kind, "simulated": self.simulated, "description": self.description(),
                "mapping": self.mapping, "cuda_visible_devices": self.cuda_visible_devices,
                "cuda_device_order": self.cuda_device_order,
                "devices": [d.to_dict() for d in self.devices]}

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- NVML

@dataclass
class VisibleDevices:
    """Result of :func:`map_visible_devices`: NVML indices in the process's device order."""

    nvml_indices: list[int]
    mapping: str            # "torch", "cuda_visible_devices", "all"
    warning: str | None = None


def _bare_uuid(uuid: str) -> str:
    uuid = uuid.strip().lower()
    return uuid[4:] if uuid.startswith("gpu-") else uuid


def map_visible_devices(nvml_devices: Sequence[tuple[str, str]], cuda_visible: str | None,
                        device_order: str | None = None,
                        torch_uuids: Sequence[str] | None = None) -> VisibleDevices:
    """Which of ``nvml_devices`` ((uuid, name) per NVML index) this process uses, in its order.

    Raises :class:`NoGpu` with the reason when none is.
    """
    bare = [_bare_uuid(uuid) for uuid, _ in nvml_devices]
    if torch_uuids:
        indices = [bare.index(_bare_uuid(u)) for u in torch_uuids if _bare_uuid(u) in bare]
        if len(indices) == len(torch_uuids):
            return VisibleDevices(indices, "torch")
        log.warning("gpu monitor: %d of torch's %d CUDA devices have no NVML device with their UUID "
                    "(MIG?); falling back to CUDA_VISIBLE_DEVICES", len(torch_uuids) - len(indices),
                    len(torch_uuids))
    if cuda_visible is None:
        return VisibleDevices(list(range(len(nvml_devices))), "all")
    indices: list[int] = []
    used_integers = False
    for entry in (e.strip() for e in cuda_visible.split(",")):
        if entry.lower().startswith("mig-"):
            raise NoGpu(f"{NOT_VISIBLE}: CUDA_VISIBLE_DEVICES names a MIG instance ({entry}); "
                        "MIG is not supported by the GPU monitor")
        if entry.lstrip("+-").isdigit():
            index = int(entry)
            if not 0 <= index < len(nvml_devices):
                break  # CUDA ignores an invalid entry and everything after it
            used_integers = True
        else:
            prefix = _bare_uuid(entry)
            matches = [k for k, u in enumerate(bare) if prefix and u.startswith(prefix)]
            if len(matches) != 1:
                break
            index = matches[0]
        if index not in indices:
            indices.append(index)
    if not indices:
        raise NoGpu(f"{NOT_VISIBLE}: CUDA_VISIBLE_DEVICES={cuda_visible!r} leaves this process no GPU "
                    f"(NVML sees {len(nvml_devices)})")
    warning = None
    names = {nvml_devices[k][1] for k in indices}
    if used_integers and (device_order or "FASTEST_FIRST") != "PCI_BUS_ID" and len(names) > 1:
        warning = (f"gpu monitor: CUDA_VISIBLE_DEVICES={cuda_visible} gives indices but the GPUs differ "
                   f"({', '.join(sorted(names))}) and CUDA_DEVICE_ORDER is not PCI_BUS_ID: GPU indices "
                   "are taken in PCI order and may not be CUDA's; set CUDA_DEVICE_ORDER=PCI_BUS_ID "
                   "or use GPU UUIDs")
    return VisibleDevices(indices, "cuda_visible_devices", warning)


def torch_cuda_uuids() -> list[str] | None:
    """The UUIDs of this process's CUDA devices, if torch is imported and CUDA initialized.

    Never initializes CUDA itself (that would be a side effect of monitoring).
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_initialized():
            return None
        return [str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())]
    except Exception:  # a torch without .uuid, a CUDA error: fall back to the environment
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlSource(Source):
    """Reads this process's NVIDIA GPUs through NVML (nvidia-ml-py's ``pynvml`` module)."""

    kind = "nvml"

    def __init__(self, nvml: Any = None, env: Mapping[str, str] | None = None,
                 torch_uuids: Sequence[str] | None = None):
        super().__init__()
        nvml = importlib.import_module("pynvml") if nvml is None else nvml
        env = os.environ if env is None else env
        nvml.nvmlInit()
        self._nvml = nvml
        self._not_supported = getattr(nvml, "NVMLError_NotSupported", None)
        self._unsupported_reported: set[tuple[int, str]] = set()
        try:
            handles, found = [], []
            for k in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(k)
                handles.append(handle)
                found.append((_text(nvml.nvmlDeviceGetUUID(handle)), _text(nvml.nvmlDeviceGetName(handle))))
            if not found:
                raise NoGpu(f"{NOT_VISIBLE}: NVML sees no GPU on this machine")
            self.cuda_visible_devices = env.get("CUDA_VISIBLE_DEVICES")
            self.cuda_device_order = env.get("CUDA_DEVICE_ORDER")
            if torch_uuids is None:
                torch_uuids = torch_cuda_uuids()
            visible = map_visible_devices(found, self.cuda_visible_devices, self.cuda_device_order,
                                          torch_uuids)
            if visible.warning:
                log.warning(visible.warning)
            self.mapping = visible.mapping
            self._handles = [handles[k] for k in visible.nvml_indices]
            for index, k in enumerate(visible.nvml_indices):
                total = nvml.nvmlDeviceGetMemoryInfo(handles[k]).total / 2**20
                self.devices.append(DeviceInfo(index, k, found[k][0], found[k][1], total))
        except BaseException:
            nvml.nvmlShutdown()
            raise

    @classmethod
    def open(cls) -> "NvmlSource | None":
        """The source, or None when there is no NVIDIA driver or GPU (see :func:`open_source` for why)."""
        return open_source()[0]  # type: ignore[return-value]

    def _optional(self, position: int, what: str, read: Callable[[], float]) -> float | None:
        try:
            return read()
        except Exception as err:
            if self._not_supported is None or not isinstance(err, self._not_supported):
                raise
            key = (position, what)
            if key not in self._unsupported_reported:
                self._unsupported_reported.add(key)
                log.warning("gpu monitor: GPU %d does not report %s; gpu_%d_%s is not logged",
                            position, what, position, what)
            return None

    def _read(self, position: int) -> GpuSample:
        nvml, handle = self._nvml, self._handles[position]
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        return GpuSample(
            index=position,
            memory_used_mb=memory.used / 2**20,
            memory_total_mb=memory.total / 2**20,
            utilization=self._optional(position, "utilization",
                                       lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)),
            temperature=self._optional(position, "temperature", lambda: float(
                nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))),
            power_w=self._optional(position, "power",
                                   lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),
        )

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None


def open_source(simulate_gpus: int = 0, *, nvml: Any = None,
                env: Mapping[str, str] | None = None) -> tuple[Source | None, str]:
    """The source to sample and its one-line description, or (None, the one-line reason).

    ``simulate_gpus`` > 0: a :class:`SimulatedSource` of that many GPUs, on purpose.
    """
    if simulate_gpus:
        source = SimulatedSource(simulate_gpus)
        return source, source.description()
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return None, (f"{NOT_VISIBLE}: nvidia-ml-py (pynvml) is not installed in this Python; "
                          "GPU metrics are not logged")
    try:
        source = NvmlSource(nvml, env)
    except NoGpu as err:
        return None, f"{err}; GPU metrics are not logged"
    except Exception as err:  # NVMLError_LibraryNotFound / DriverNotLoaded / ..., OSError
        return None, (f"{NOT_VISIBLE} ({type(err).__name__}: {err}: no NVIDIA driver?); "
                      "GPU metrics are not logged")
    return source, source.description()


# ------------------------------------------------------------------------- simulated

ScriptValue = Any  # dict of GpuSample fields, a GpuSample, a (used, util, temp, power) tuple, None, an exception


def check_simulated_count(device_count: Any) -> int:
    from adamwprune.errors import UserError

    if isinstance(device_count, bool) or not isinstance(device_count, int) or device_count < 1:
        raise UserError(f"--simulate-gpus needs a whole number of GPUs >= 1, got {device_count!r}")
    return device_count


class SimulatedSource(Source):
    """A made-up machine (default: 4x A10G, 23028 MiB, ~150 W each) under DDP training load.

    Without ``script``: memory warms up to ~17.5 GB with ``imbalance`` skewing it across GPUs
    (so the load-balance metrics move), plus seeded noise.

    ``script`` makes it exact, for tests and examples. Either a callable
    ``script(tick, index) -> value`` (tick counts samples from 0) or a list with one row per
    sample of one value per GPU (past its end the last row repeats). A value is a dict of
    GpuSample fields (``memory_used_mb``, ``utilization``, ``temperature``, ``power_w``,
    optionally ``memory_total_mb``), a ``(memory_used_mb, utilization, temperature, power_w)``
    tuple, a GpuSample, ``None`` (that GPU's read fails: reported once, missing from the
    sample) or an exception instance (raised as the read's failure).

    Everything it produces is marked simulated: gpu.jsonl's header says ``"simulated": true``
    and every graph's title says "(simulated)".
    """

    kind = "simulated"
    simulated = True

    def __init__(self, device_count: int = 4, memory_total_mb: float = 23028.0,
                 imbalance: float = 0.03, seed: int = 0,
                 script: Callable[[int, int], ScriptValue] | Sequence[Sequence[ScriptValue]] | None = None,
                 name: str = "simulated A10G"):
        super().__init__()
        check_simulated_count(device_count)
        self.memory_total_mb = memory_total_mb
        self.imbalance = imbalance
        self.script = script
        self._random = random.Random(seed)
        self._tick = -1
        self.devices = [DeviceInfo(i, i, f"GPU-00000000-0000-4000-8000-{i:012d}", name, memory_total_mb)
                        for i in range(device_count)]

    def _begin(self) -> None:
        self._tick += 1

    def _scripted(self, index: int) -> ScriptValue:
        if callable(self.script):
            return self.script(self._tick, index)
        rows = self.script
        return rows[min(self._tick, len(rows) - 1)][index]

    def _read(self, index: int) -> GpuSample:
        if self.script is None:
            return self._generated(index)
        value = self._scripted(index)
        if value is None:
            raise GpuReadError("scripted read failure")
        if isinstance(value, BaseException):
            raise value
        if isinstance(value, GpuSample):
            return value
        if isinstance(value, dict):
            fields = {"memory_total_mb": self.memory_total_mb, "utilization": None, "temperature": None,
                      "power_w": None, **value}
            return GpuSample(index=index, **fields)
        used, util, temp, power = value
        return GpuSample(index, float(used), self.memory_total_mb, util, temp, power)

    def _generated(self, index: int) -> GpuSample:
        warm = 1.0 - math.exp(-(self._tick + 1) / 5.0)
        skew = 1.0 + self.imbalance * (index - (self.device_count - 1) / 2)
        noise = self._random.gauss
        return GpuSample(
            index=index,
            memory_used_mb=min(self.memory_total_mb, 17500.0 * warm * skew + noise(0, 60)),
            memory_total_mb=self.memory_total_mb,
            utilization=max(0.0, min(100.0, 93.0 * warm + noise(0, 3))),
            temperature=40.0 + 35.0 * warm + noise(0, 1),
            power_w=60.0 + 85.0 * warm + noise(0, 4),
        )

    def description(self) -> str:
        return f"simulated: {self.device_count} x {self.devices[0].name}, {self.memory_total_mb:g} MiB each"


__all__ = ["DeviceInfo", "GpuReadError", "NoGpu", "NvmlSource", "SimulatedSource", "Source",
           "VisibleDevices", "check_simulated_count", "map_visible_devices", "open_source",
           "torch_cuda_uuids"]
