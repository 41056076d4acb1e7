"""The comparison report: a results folder in the real formats (summary.json written by the matrix
code, journals by the real ExperimentTracker, gpu.jsonl by the GPU log writer) -> graphs and one
self-contained report.html; bad input; rendered in headless Chromium where it is installed."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adamwprune.errors import UserError
from adamwprune.gpu.metrics import GpuSample
from adamwprune.gpu.samplelog import GpuLogWriter, sample_record
from adamwprune.kconfig import load_config
from adamwprune.matrix.plan import plan
from adamwprune.matrix.report import REPORT_NAME, build_report
from adamwprune.matrix.results import Results
from adamwprune.tracking import ExperimentTracker
from helpers import child_env, defconfig, write_defconfig

LINES = ("CONFIG_DATASET=\"pydocs\"", "CONFIG_TEST_OPTIMIZER_SGD=y", "CONFIG_TEST_OPTIMIZER_ADAMW=y",
         "CONFIG_TEST_PRUNING_NONE=y", "CONFIG_TEST_PRUNING_MAGNITUDE=y", "CONFIG_TEST_SPARSITY_50=y")
QUALITY = {"adamw": 20.0, "sgd": 40.0}  # perplexity the fake runs settle at


def results_folder(root: Path, failed: str = "sgd_magnitude", gpu: bool = True) -> Path:
    """A 2-seed matrix of 4 configurations, in the formats the matrix and the tracker write."""
    root.mkdir(parents=True, exist_ok=True)
    defconfig(root, str(write_defconfig(root / "dc", *LINES)))
    cfg = load_config(root)
    selection = plan(cfg, seeds=2)
    runs = [(c, c.run_name("gpt2", "m1"), c.flags("gpt2", "m1")) for c in selection.combinations]
    results = Results.create(root / "test_matrix_results_m1", "m1", cfg, 2, runs, selection.skipped, "proj")
    for combination, name, _ in runs:
        if f"{combination.optimizer}_{combination.pruning_method}" == failed:
            results.update(name, status="failed", exit_code=3, wall_seconds=1.0)
            continue
        run_dir = results.directory / "proj" / name
        base = QUALITY[combination.optimizer] * (1.1 if combination.pruning_method != "none" else 1.0)
        noise = 0.3 * (combination.seed - cfg.SEED)
        with ExperimentTracker("none", project="proj", run_name=name, run_dir=run_dir) as tracker:
            for step in range(0, 101, 20):
                sparsity = 0.5 * step / 100 if combination.pruning_method != "none" else 0.0
                tracker.log({"val_perplexity": base + 200 / (step + 2) + noise, "sparsity": sparsity}, step=step)
        best = base + 200 / 102 + noise
        results.update(name, status="ok", exit_code=0, wall_seconds=10.0 + noise, iterations=100,
                       stop_reason="max_iters", stopped_by_time_limit=False, peak_rss_mb=300.0,
                       best_metrics={"val_loss": math.log(best), "val_perplexity": best})
        if gpu:
            writer = GpuLogWriter(run_dir / "gpu.jsonl")
            start = time.time()
            writer.write({"event": "header", "format": 1, "time": start, "simulated": True,
                          "devices": [{"index": i, "memory_total_mib": 24000.0} for i in range(2)]})
            for tick in range(10):
                writer.write(sample_record(start + tick, tick * 10, [
                    GpuSample(i, 1000.0 * (i + 1) + 50 * tick, 24000.0, 90.0, 60.0, 150.0) for i in range(2)]))
            writer.close()
    return results.directory


def pixels(path: Path) -> tuple[tuple[int, int], float]:
    from PIL import Image, ImageStat

    with Image.open(path) as image:
        return image.size, max(ImageStat.Stat(image.convert("L")).var)


def test_the_report_names_every_run_embeds_every_graph_and_marks_the_failed(tmp_path):
    folder = results_folder(tmp_path)
    report = build_report(folder).read_text()
    graphs = sorted(folder.glob("*.png"))
    assert [g.name for g in graphs] == ["gpu_memory_timeline.png", "metric_vs_sparsity.png",
                                        "metric_vs_time.png", "validation_curves.png"]
    for graph in graphs:
        size, variance = pixels(graph)
        assert size == (1000, 600) and variance > 100, graph
    assert report.count("data:image/png;base64,") == len(graphs)
    assert not re.search(r"(src|href)=['\"](https?:|//|file:)", report)  # nothing outside the file
    for name in ("m1_gpt2_sgd_none_0_s1337", "m1_gpt2_adamw_magnitude_50_s1338", "m1_gpt2_sgd_magnitude_50_s1337"):
        assert name in report
    assert report.count("<b class=bad>FAILED</b> (exit 3)") == 2  # both seeds of sgd + magnitude
    ranking = re.findall(r"<tr><td>(\d)</td><td>([^<]+)</td><td>([^<]+)</td><td>2</td><td>([^<]+)</td>", report)
    assert [(rank, name, verdict) for rank, name, _, verdict in ranking] == [
        ("1", "adamw", "best"), ("2", "adamw + magnitude 50%", "worse"), ("3", "sgd", "worse")]
    assert "trackio show" not in report and "not tracked" in report  # these runs tracked nowhere


def test_update_graphs_on_a_copied_folder_and_a_half_written_run(tmp_path):
    folder = results_folder(tmp_path / "made", gpu=False)
    copy = tmp_path / "elsewhere" / folder.name
    shutil.copytree(folder, copy)
    torn = next(copy.glob("proj/*adamw_none_0_s1337"))
    shutil.rmtree(next(copy.glob("proj/*adamw_none_0_s1338")))  # a run folder that was not copied
    (torn / "metrics.jsonl").write_bytes((torn / "metrics.jsonl").read_bytes()[:-30])  # half-written
    proc = subprocess.run([sys.executable, "-m", "adamwprune", "report", str(copy)], capture_output=True, text=True,
                          timeout=120, env=child_env(), cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == f"report: {copy / REPORT_NAME}\n", proc.stderr
    report = (copy / REPORT_NAME).read_text()
    assert "no journal (the run did not start, or its folder was not copied)" in report
    assert not (copy / "gpu_memory_timeline.png").exists()  # no run was monitored


def test_bad_results_folders_are_one_line_and_an_all_failed_matrix_still_reports(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "adamwprune", "report", str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env=child_env())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"adamwprune: error: {tmp_path / 'summary.json'} not found: give a " \
                                  "test_matrix_results_* folder (it holds summary.json)"
    (tmp_path / "summary.json").write_text("[]")
    with pytest.raises(UserError, match="is not a test matrix summary"):
        build_report(tmp_path)
    folder = results_folder(tmp_path / "all", failed="")
    for record in Results.load(folder, load_config(tmp_path / "all"), 2).data["runs"]:
        Results.load(folder, load_config(tmp_path / "all"), 2).update(record["name"], status="failed", exit_code=1)
    report = build_report(folder).read_text()
    assert "No run of this matrix finished" in report and report.count("<b class=bad>FAILED</b>") == 8


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (.ci/run installs it)")
def test_the_report_renders_in_headless_chromium(tmp_path):
    report = build_report(results_folder(tmp_path))
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,2000", report.as_uri()], capture_output=True, timeout=120, check=True)
    size, variance = pixels(shot)
    assert size == (1200, 2000) and variance > 100
