"""The GPU monitor (adamwprune.gpu): interval aggregation, gpu.jsonl, CUDA_VISIBLE_DEVICES
mapping with a fake pynvml, failures, SIGKILL, the graphs and the report command
(``adamwprune gpu-report``). Monitoring in training: test_gpu_training.py.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from adamwprune.errors import UserError
from adamwprune.gpu import GpuMonitor, SimulatedSource, aggregate_interval, balance_quality
from adamwprune.gpu.metrics import AGGREGATE_NAMES, GpuSample
from adamwprune.gpu.samplelog import GPU_LOG_NAME, GpuLogWriter, read_gpu_log
from adamwprune.gpu.sources import NvmlSource, map_visible_devices, open_source

REPO = Path(__file__).resolve().parent.parent

# Two GPUs, three samples: (memory used MiB, utilization %, temperature °C, power W).
SCRIPT = [
    [(1000.0, 10.0, 50.0, 100.0), (2000.0, 50.0, 55.0, 150.0)],
    [(3000.0, 20.0, 70.0, 200.0), (2000.0, 50.0, 65.0, 150.0)],
    [(2000.0, 60.0, 60.0, 300.0), (5000.0, 80.0, 75.0, 300.0)],
]
# By hand: GPU 0 memory max 3000, mean 2000; utilization mean 30; temperature max 70; power mean 200.
#          GPU 1 memory max 5000, mean 3000; utilization mean 60; temperature max 75; power mean 200.
#          CV of the MEAN memory [2000, 3000]: pstdev 500 / mean 2500 = 20 % -> Poor.
EXPECTED = {
    "gpu_total_memory_used": 8000.0, "gpu_total_memory_percent": 40.0,  # 8000 / (2 x 10000)
    "gpu_average_utilization": 45.0, "gpu_total_power": 400.0, "gpu_max_temperature": 75.0,
    "gpu_load_balance_cv": 20.0, "gpu_load_balance_quality": "Poor",
    "gpu_0_memory_used": 3000.0, "gpu_0_utilization": 30.0, "gpu_0_temperature": 70.0, "gpu_0_power": 200.0,
    "gpu_1_memory_used": 5000.0, "gpu_1_utilization": 60.0, "gpu_1_temperature": 75.0, "gpu_1_power": 200.0,
}


def scripted(rows=SCRIPT, total=10000.0) -> SimulatedSource:
    return SimulatedSource(len(rows[0]), memory_total_mb=total, script=rows)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# ------------------------------------------------------------------------------ aggregation

def test_interval_aggregate_matches_hand_computed_values():
    source = scripted()
    metrics = aggregate_interval([source.sample() for _ in range(3)])
    assert metrics.keys() == EXPECTED.keys()
    for name, value in EXPECTED.items():
        assert metrics[name] == (value if isinstance(value, str) else pytest.approx(value)), name
    assert set(AGGREGATE_NAMES) <= metrics.keys()


def test_one_row_per_log_step_and_a_synchronous_sample_when_none_arrived(tmp_path):
    monitor, line = GpuMonitor.open(tmp_path / "run", interval_s=3600, source=scripted(), step=0)
    assert "2 GPU(s)" in line and "simulated" in line
    monitor.start()
    wait_for(lambda: monitor.samples_taken == 1)  # the thread's first sample, at once; next in an hour
    first = monitor.interval_metrics(10)
    assert first["gpu_0_memory_used"] == 1000.0 and first["gpu_1_power"] == 150.0
    assert first["gpu_load_balance_cv"] == pytest.approx(100 * 500 / 1500)  # means [1000, 2000]
    second = monitor.interval_metrics(20)  # nothing arrived: taken now, on this thread
    assert second["gpu_0_memory_used"] == 3000.0 and second["gpu_0_temperature"] == 70.0
    monitor.mark_eval(20)
    monitor.stop()
    monitor.stop()  # idempotent
    lines = records(tmp_path / "run" / GPU_LOG_NAME)
    assert [r.get("event", "sample") for r in lines] == ["header", "sample", "sample", "eval", "stop"]
    header, thread_sample, sync_sample, eval_line, stop_line = lines
    assert header["simulated"] is True and header["interval_s"] == 3600
    assert [(r["step"], r.get("sync", False)) for r in (thread_sample, sync_sample)] == [(0, False), (20, True)]
    assert sync_sample["gpus"][1] == {"index": 1, "memory_used_mib": 2000.0, "memory_total_mib": 10000.0,
                                      "utilization_pct": 50.0, "temperature_c": 65.0, "power_w": 150.0}
    assert eval_line["step"] == 20 and eval_line["time"] >= sync_sample["time"]
    assert stop_line["samples"] == 2
    assert monitor.interval_metrics(30) == {}  # stopped: nothing more to read


def test_thread_samples_are_aggregated_into_the_next_row(tmp_path):
    rows = [[(1000.0 * (k + 1), 50.0, 60.0, 100.0)] for k in range(200)]
    monitor, _ = GpuMonitor.open(tmp_path, interval_s=0.01, source=scripted(rows))
    monitor.start()
    wait_for(lambda: monitor.samples_taken >= 5)
    row = monitor.interval_metrics(100)
    monitor.stop()
    taken = [r for r in records(tmp_path / GPU_LOG_NAME) if "gpus" in r]
    assert row["gpu_0_memory_used"] >= 5000.0  # the max of the interval's samples, not the last one
    assert row["gpu_load_balance_cv"] == 0.0 and row["gpu_load_balance_quality"] == "Excellent"  # one GPU
    assert len(taken) >= 5


@pytest.mark.parametrize("cv, label", [(4.99, "Excellent"), (5.0, "Good"), (9.99, "Good"), (10.0, "Fair"),
                                       (19.99, "Fair"), (20.0, "Poor")])
def test_quality_at_each_threshold_boundary(cv, label):
    assert balance_quality(cv) == label


@pytest.mark.parametrize("spread, label", [(0.0499, "Excellent"), (0.05, "Good"), (0.0999, "Good"),
                                           (0.10, "Fair"), (0.1999, "Fair"), (0.20, "Poor")])
def test_quality_of_an_aggregated_row(spread, label):
    """Two GPUs at 1000*(1 -/+ spread) MiB: CV = 100 * spread %."""
    row = aggregate_interval([[GpuSample(0, 1000 * (1 - spread), 2000, 1, 1, 1),
                               GpuSample(1, 1000 * (1 + spread), 2000, 1, 1, 1)]])
    assert row["gpu_load_balance_cv"] == pytest.approx(100 * spread)
    assert row["gpu_load_balance_quality"] == label


def test_values_a_gpu_does_not_report_are_left_out():
    row = aggregate_interval([[GpuSample(0, 100.0, 1000.0, None, 40.0, None),
                               GpuSample(1, 300.0, 1000.0, 50.0, None, 80.0)]])
    assert "gpu_0_utilization" not in row and "gpu_0_power" not in row and "gpu_1_temperature" not in row
    assert row["gpu_average_utilization"] == 50.0 and row["gpu_total_power"] == 80.0
    assert row["gpu_max_temperature"] == 40.0


# ---------------------------------------------------------------------------- fake pynvml

class FakeNvml(types.ModuleType):
    """Enough of pynvml for the monitor: devices in 'PCI order', each with its own readings."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, devices: list[dict], init_error: Exception | None = None):
        super().__init__("pynvml")

        class NVMLError(Exception):
            pass

        class NVMLError_GpuIsLost(NVMLError):
            pass

        class NVMLError_NotSupported(NVMLError):
            pass

        class NVMLError_LibraryNotFound(NVMLError):
            pass

        self.NVMLError, self.NVMLError_GpuIsLost = NVMLError, NVMLError_GpuIsLost
        self.NVMLError_NotSupported, self.NVMLError_LibraryNotFound = NVMLError_NotSupported, NVMLError_LibraryNotFound
        self.devices = devices
        self.init_error = init_error
        self.lost: set[int] = set()
        self.shutdowns = 0

    def nvmlInit(self):
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, k):
        return ("handle", k)

    def _device(self, handle):
        k = handle[1]
        if k in self.lost:
            raise self.NVMLError_GpuIsLost("GPU is lost")
        return self.devices[k]

    def nvmlDeviceGetUUID(self, handle):
        return self.devices[handle[1]]["uuid"].encode()  # older pynvml returns bytes

    def nvmlDeviceGetName(self, handle):
        return self.devices[handle[1]]["name"]

    def nvmlDeviceGetMemoryInfo(self, handle):
        d = self._device(handle)
        return types.SimpleNamespace(used=d["used_mib"] * 2**20, total=d.get("total_mib", 24000) * 2**20)

    def nvmlDeviceGetUtilizationRates(self, handle):
        return types.SimpleNamespace(gpu=self._device(handle)["util"], memory=0)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return self._device(handle)["temp"]

    def nvmlDeviceGetPowerUsage(self, handle):
        d = self._device(handle)
        if d.get("power_mw") is None:
            raise self.NVMLError_NotSupported("Not Supported")
        return d["power_mw"]


UUIDS = ["GPU-aaaa1111-0000-0000-0000-000000000000", "GPU-bbbb2222-0000-0000-0000-000000000000",
         "GPU-cccc3333-0000-0000-0000-000000000000", "GPU-dddd4444-0000-0000-0000-000000000000"]


def fake_machine(names=("NVIDIA A10G",) * 4, **kwargs) -> FakeNvml:
    return FakeNvml([{"uuid": UUIDS[k], "name": names[k], "used_mib": 1000.0 * (k + 1), "util": 10 * (k + 1),
                      "temp": 40 + k, "power_mw": 100_000 + 1000 * k} for k in range(len(names))], **kwargs)


@pytest.fixture
def nvml(monkeypatch):
    """A 4-GPU fake pynvml in sys.modules; CUDA_VISIBLE_DEVICES unset; torch CUDA not initialized."""
    fake = fake_machine()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    monkeypatch.setattr("adamwprune.gpu.sources.torch_cuda_uuids", lambda: None)
    return fake


@pytest.mark.parametrize("visible, physical, mapping", [
    (None, [0, 1, 2, 3], "all"),
    ("2,0", [2, 0], "cuda_visible_devices"),
    (" 3 , 1 ", [3, 1], "cuda_visible_devices"),
    ("GPU-cccc3333-0000-0000-0000-000000000000,GPU-aaaa", [2, 0], "cuda_visible_devices"),  # full, prefix
    ("gpu-DDDD,1", [3, 1], "cuda_visible_devices"),      # case-insensitive, UUID and index mixed
    ("1,7,2", [1], "cuda_visible_devices"),              # an invalid entry ends the list, as in CUDA
    ("1,-1,2", [1], "cuda_visible_devices"),
    ("2,2,0", [2, 0], "cuda_visible_devices"),           # a repeated entry counts once
    ("GPU-,3", [], None),                                # an empty / ambiguous prefix ends the list
])
def test_cuda_visible_devices_maps_to_nvml_devices(nvml, monkeypatch, visible, physical, mapping):
    if visible is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    source, line = open_source()
    if not physical:
        assert source is None and "CUDA_VISIBLE_DEVICES" in line and "\n" not in line
        return
    assert [d.physical_index for d in source.devices] == physical
    assert [d.index for d in source.devices] == list(range(len(physical)))
    assert [d.uuid for d in source.devices] == [UUIDS[k] for k in physical]
    assert source.mapping == mapping
    samples = source.sample()  # index k as the process sees it reads physical device physical[k]
    assert [s.memory_used_mb for s in samples] == [1000.0 * (k + 1) for k in physical]
    assert [s.index for s in samples] == list(range(len(physical)))
    assert samples[0].power_w == (100_000 + 1000 * physical[0]) / 1000


def test_torch_uuids_win_over_the_environment(nvml, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    torch_order = [UUIDS[3][4:], UUIDS[1]]  # torch prints UUIDs with or without "GPU-"
    source = NvmlSource(nvml, torch_uuids=torch_order)
    assert [d.physical_index for d in source.devices] == [3, 1] and source.mapping == "torch"


def test_torch_uuids_without_nvml_match_fall_back_to_the_environment(nvml, monkeypatch, caplog):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    with caplog.at_level(logging.WARNING, logger="adamwprune.gpu"):
        source = NvmlSource(nvml, torch_uuids=["MIG-0000"])
    assert [d.physical_index for d in source.devices] == [2] and "falling back" in caplog.text


def test_integer_indices_on_mixed_gpus_say_the_order_is_assumed(monkeypatch, caplog):
    names = ("NVIDIA A100", "NVIDIA A10G")
    assert map_visible_devices([(UUIDS[0], names[0]), (UUIDS[1], names[1])], "1,0", None).warning
    assert map_visible_devices([(UUIDS[0], names[0]), (UUIDS[1], names[1])], "1,0", "PCI_BUS_ID").warning is None
    assert map_visible_devices([(UUIDS[0], names[0]), (UUIDS[1], names[1])],
                               f"{UUIDS[1]},{UUIDS[0]}", None).warning is None  # UUIDs are exact


def test_monitor_header_and_describe_record_the_mapping(nvml, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    monitor, line = GpuMonitor.open(tmp_path, interval_s=3600)
    assert "2 GPU(s)" in line and "physical 3,1" in line
    described = monitor.describe()
    assert described["simulated"] is False and described["source"] == "nvml"
    assert described["cuda_visible_devices"] == "3,1"
    assert [(d["index"], d["physical_index"], d["uuid"]) for d in described["devices"]] == \
        [(0, 3, UUIDS[3]), (1, 1, UUIDS[1])]
    json.dumps(described)  # run.json-ready
    monitor.start()
    row = monitor.interval_metrics(5)
    monitor.stop()
    assert row["gpu_0_memory_used"] == 4000.0 and row["gpu_1_memory_used"] == 2000.0
    header = records(tmp_path / GPU_LOG_NAME)[0]
    assert header["devices"] == described["devices"] and header["simulated"] is False
    assert nvml.shutdowns == 1


@pytest.mark.parametrize("make, expected", [
    (lambda: fake_machine(init_error=None), None),
    (lambda: None, "nvidia-ml-py (pynvml) is not installed"),
    (lambda: fake_machine(init_error=RuntimeError("x")), "RuntimeError"),
    (lambda: FakeNvml([]), "NVML sees no GPU"),
])
def test_without_nvml_open_returns_none_and_one_line(monkeypatch, tmp_path, make, expected):
    fake = make()
    if fake is not None and fake.init_error is not None:
        fake.init_error = fake.NVMLError_LibraryNotFound("NVML Shared Library Not Found")
        expected = "NVMLError_LibraryNotFound: NVML Shared Library Not Found: no NVIDIA driver?"
    monkeypatch.setitem(sys.modules, "pynvml", fake)  # None: "import pynvml" raises ImportError
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monitor, line = GpuMonitor.open(tmp_path, 1.0)
    if expected is None:
        assert monitor is not None
        return
    assert monitor is None and expected in line and "\n" not in line
    assert line.startswith("no NVIDIA GPU visible through NVML")
    assert not (tmp_path / GPU_LOG_NAME).exists()


# ------------------------------------------------------------------------------- failures

def test_a_gpu_lost_mid_run_is_reported_once_and_the_rest_goes_on(nvml, tmp_path, caplog):
    monitor, _ = GpuMonitor.open(tmp_path, interval_s=3600)
    monitor.start()
    deadline = time.monotonic() + 10
    while monitor.samples_taken < 1 and time.monotonic() < deadline:  # the thread's first sample
        time.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="adamwprune.gpu"):
        before = monitor.interval_metrics(10)
        nvml.lost.add(2)
        rows = [monitor.interval_metrics(step) for step in (20, 30, 40)]
    monitor.stop()
    assert "gpu_2_memory_used" in before and len([k for k in before if k.startswith("gpu_2_")]) == 4
    warnings = [r for r in caplog.records if r.name == "adamwprune.gpu" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "GPU 2" in warnings[0].getMessage() and "GpuIsLost" in warnings[0].getMessage()
    for row in rows:
        assert not any(k.startswith("gpu_2_") for k in row)
        assert row["gpu_3_memory_used"] == 4000.0
        assert row["gpu_total_memory_used"] == 1000.0 + 2000.0 + 4000.0  # the GPUs that were read
    lines = records(tmp_path / GPU_LOG_NAME)
    failed = [r for r in lines if r.get("event") == "read_failed"]
    assert len(failed) == 1 and failed[0]["index"] == 2 and failed[0]["uuid"] == UUIDS[2]
    assert [g["index"] for g in [r for r in lines if "gpus" in r][-1]["gpus"]] == [0, 1, 3]


def test_a_value_the_gpu_does_not_support_is_missing_not_fatal(nvml, caplog):
    nvml.devices[1]["power_mw"] = None
    source = NvmlSource(nvml)
    with caplog.at_level(logging.WARNING, logger="adamwprune.gpu"):
        rows = [aggregate_interval([source.sample()]) for _ in range(3)]
    assert all("gpu_1_power" not in row and row["gpu_1_memory_used"] == 2000.0 for row in rows)
    assert caplog.text.count("does not report power") == 1


def test_simulated_scripted_failure_is_reported_once(caplog):
    source = SimulatedSource(2, script=lambda tick, i: None if (i == 1 and tick >= 1) else (100.0, 1, 2, 3))
    with caplog.at_level(logging.WARNING, logger="adamwprune.gpu"):
        counts = [len(source.sample()) for _ in range(4)]
    assert counts == [2, 1, 1, 1] and caplog.text.count("reading GPU 1") == 1


@pytest.mark.parametrize("n", [0, -2, 1.5, True, "4"])
def test_simulated_gpu_count_is_validated(n, tmp_path):
    with pytest.raises(UserError) as err:
        SimulatedSource(n)
    assert "--simulate-gpus" in str(err.value) and "\n" not in str(err.value)
    if n != 0:  # 0 means "not simulated" to open()
        with pytest.raises(UserError):
            GpuMonitor.open(tmp_path, 1.0, simulate_gpus=n)


def test_simulate_gpus_opens_a_simulated_source(tmp_path):
    monitor, line = GpuMonitor.open(tmp_path, 1.0, simulate_gpus=3)
    assert monitor.simulated and "3 GPU(s)" in line and "simulated" in line
    assert monitor.describe()["simulated"] is True


def test_interval_must_be_positive(tmp_path):
    with pytest.raises(UserError):
        GpuMonitor.open(tmp_path, 0, simulate_gpus=1)


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from adamwprune.gpu import GpuMonitor
    monitor, _ = GpuMonitor.open(sys.argv[1], interval_s=0.0005, simulate_gpus=8)
    monitor.start()
    step = 0
    while True:  # the training thread: eval marks and rows, while the sampler thread writes samples
        step += 1
        monitor.mark_eval(step)
        monitor.interval_metrics(step)
""")


def test_gpu_jsonl_lines_are_whole_after_sigkill(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], cwd=REPO)
    path = tmp_path / GPU_LOG_NAME
    try:
        wait_for(lambda: path.exists() and path.read_bytes().count(b"\n") > 400, timeout=60)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    data = path.read_bytes()
    assert data.endswith(b"\n")
    lines = [json.loads(line) for line in data.splitlines()]  # every line parses
    assert lines[0]["event"] == "header" and not any(r.get("event") == "stop" for r in lines)
    samples = [r for r in lines if "gpus" in r]
    assert samples and all(len(r["gpus"]) == 8 for r in samples)
    log = read_gpu_log(path)
    assert log.warnings == [] and len(log.samples) == len(samples)


def test_a_resumed_run_appends_after_a_torn_line(tmp_path):
    path = tmp_path / GPU_LOG_NAME
    path.write_bytes(b'{"event":"header","format":1,"time":1.0,"devices":[]}\n{"time": 2.0, "gp')
    writer = GpuLogWriter(path)
    writer.write({"event": "header", "format": 1, "time": 3.0, "devices": []})
    writer.close()
    log = read_gpu_log(path)
    assert len(log.headers) == 2 and len(log.warnings) == 1 and "unreadable" in log.warnings[0]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_failed_write_is_reported_once_and_training_goes_on(caplog):
    writer = GpuLogWriter(Path("/dev/full"))  # every write: ENOSPC
    with caplog.at_level(logging.WARNING, logger="adamwprune.gpu"):
        for _ in range(3):
            writer.write({"event": "eval", "step": 1, "time": 1.0})
    writer.close()
    assert caplog.text.count("writing /dev/full failed") == 1


# ---------------------------------------------------------------------------------- graphs

def _pixels(path: Path):
    from matplotlib.image import imread

    return imread(path)


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_each_graph_is_written_at_its_size_and_not_blank(tmp_path, gpus):
    from adamwprune.gpu.example import write_example_log
    from adamwprune.gpu.plots import GRAPH_NAMES, grid, pixel_size
    from adamwprune.gpu.report import write_report

    write_example_log(tmp_path, gpus=gpus, seconds=90)
    written = write_report(tmp_path, dpi=40)
    assert written == [tmp_path / name for name in GRAPH_NAMES.values()]
    for kind, name in GRAPH_NAMES.items():
        image = _pixels(tmp_path / name)
        height, width = image.shape[:2]
        assert (width, height) == pixel_size(kind, gpus, 40), name
        assert image[..., :3].var() > 0.005, f"{name} looks blank"
    assert grid(4) == (2, 2) and grid(8) == (3, 3) and grid(2) == (1, 2) and grid(1) == (1, 1)
    if gpus == 4:
        assert pixel_size("memory", 4, 100) == (900, 620)  # 2x2 panels


def test_titles_name_the_run_and_say_simulated(tmp_path):
    from adamwprune.gpu.example import write_example_log
    from adamwprune.gpu.plots import FIGURES, series

    write_example_log(tmp_path, gpus=2, seconds=30, run_name="my-run")
    log = read_gpu_log(tmp_path / GPU_LOG_NAME)
    assert log.simulated and len(log.eval_points()) == 2
    for draw in FIGURES.values():
        fig = draw(series(log), "my-run", log.simulated, 40)
        assert fig.get_suptitle().startswith("my-run: ") and fig.get_suptitle().endswith("(simulated)")
        labels = [ax.get_ylabel() for ax in fig.axes if ax.get_visible()]
        assert all(any(unit in label for unit in ("(MiB)", "(%)")) for label in labels), labels
    real = dict(log.headers[0], simulated=False)
    log.headers = [real]
    assert not FIGURES["timeline"](series(log), "my-run", log.simulated, 40).get_suptitle().endswith("(simulated)")


# ---------------------------------------------------------------------------------- report

def test_report_on_a_directory_without_gpu_jsonl_is_one_line(tmp_path, capsys):
    from adamwprune.gpu.report import main

    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("adamwprune gpu-report: error: ")
    assert "gpu.jsonl not found" in err and "Traceback" not in err
    assert main([str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_report_with_a_torn_last_line_warns_once_and_draws(tmp_path, capsys):
    from adamwprune.gpu.example import write_example_log
    from adamwprune.gpu.report import main

    path = write_example_log(tmp_path, gpus=2, seconds=20)
    with open(path, "ab") as f:
        f.write(b'{"time": 1767225700.0, "step": 80, "gpus": [{"index": 0, "memo')
    assert main([str(tmp_path), "--dpi", "30"]) == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "warning" in err and "torn last line" in err
    assert [Path(p).name for p in out.split()] == ["gpu_memory.png", "gpu_load_balance.png", "gpu_timeline.png"]


def test_report_on_a_header_only_log_is_one_line(tmp_path, capsys):
    from adamwprune.gpu.report import main

    (tmp_path / GPU_LOG_NAME).write_text('{"event": "header", "format": 1, "time": 1.0, "devices": []}\n')
    assert main([str(tmp_path)]) == 2
    assert "holds no GPU samples" in capsys.readouterr().err
    (tmp_path / GPU_LOG_NAME).write_text('{"time": 1.0, "step": 0, "gpus": []}\n')
    assert main([str(tmp_path)]) == 2
    assert "has no header line" in capsys.readouterr().err


def test_report_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "adamwprune.gpu.report", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def adamwprune_command(*args: str, bare: bool = False) -> subprocess.CompletedProcess:
    """``python -m adamwprune ARGS``; ``bare``: a Python without site-packages (no orjson, no matplotlib)."""
    python = [sys.executable, "-S"] if bare else [sys.executable]
    return subprocess.run([*python, "-m", "adamwprune", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin"} if bare else None)


def test_gpu_report_command_on_bad_input_is_one_line_and_exit_2(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torn_only = tmp_path / "torn"
    torn_only.mkdir()
    (torn_only / GPU_LOG_NAME).write_bytes(b'{"event": "header", "format": 1, "ti')
    for where, message in ((tmp_path / "nope", "is not a directory"), (tmp_path / "file.txt", "is not a directory"),
                           (run_dir, "gpu.jsonl not found"), (torn_only, "has no header line")):
        if where.name == "file.txt":
            where.write_text("not a run\n")
        proc = adamwprune_command("gpu-report", str(where))
        assert proc.returncode == 2 and proc.stdout == "", where
        line, = proc.stderr.splitlines()
        assert line.startswith("adamwprune: error: ") and message in line, line
    assert not list(tmp_path.rglob("*.png"))


def test_gpu_report_command_draws_a_torn_log_with_one_warning(tmp_path):
    from adamwprune.gpu.example import write_example_log

    path = write_example_log(tmp_path, gpus=2, seconds=20)
    with open(path, "ab") as f:
        f.write(b'{"time": 1767225700.0, "step": 80, "gpus": [{"index": 0, "memo')
    proc = adamwprune_command("gpu-report", str(tmp_path), "--dpi", "30")
    assert proc.returncode == 0, proc.stderr
    line, = proc.stderr.splitlines()
    assert line.startswith("adamwprune gpu-report: warning: ") and "torn last line" in line
    assert proc.stdout.split() == [str(tmp_path / name) for name in
                                   ("gpu_memory.png", "gpu_load_balance.png", "gpu_timeline.png")]


def test_gpu_report_command_without_its_dependencies_says_how_to_set_up(tmp_path):
    assert "gpu-report" in adamwprune_command("--help", bare=True).stdout
    proc = adamwprune_command("gpu-report", str(tmp_path), bare=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line, = proc.stderr.splitlines()
    assert line.startswith("adamwprune: error: orjson, matplotlib are not installed in this Python"), line
