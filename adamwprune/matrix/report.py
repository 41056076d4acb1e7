"""The comparison report of a test matrix: graphs (PNG) and one self-contained ``report.html``
in its results folder, built from ``summary.json`` and each run's own files (journal, gpu.jsonl).

    adamwprune report test_matrix_results_<id>          (make update-graphs RESULTS=...)

Works on a results folder copied to another machine: everything is read from the folder. A run
whose folder is missing or half-written is reported and left out of the graphs; the report
covers what exists.
"""

from __future__ import annotations

import base64
import html
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from adamwprune.errors import UserError
from adamwprune.matrix.results import SUMMARY_NAME

REPORT_NAME = "report.html"
DPI = 100
AXES = ("optimizer", "pruning_method", "target_sparsity")  # a configuration; seeds are its repeats


@dataclass
class RunData:
    """One run of the matrix as its folder holds it."""

    record: dict                              # its entry in summary.json
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, validation metric)
    sparsity: float | None = None            # the last logged, measured from the weights
    gpu_memory: list[tuple[float, float]] = field(default_factory=list)  # (s since start, total MiB)
    problem: str = ""                         # why its data is missing or partial

    @property
    def configuration(self) -> tuple:
        return tuple(self.record[axis] for axis in AXES)


@dataclass
class Metric:
    name: str      # val_perplexity or val_accuracy
    label: str
    higher_is_better: bool


def choose_metric(runs: list[RunData]) -> Metric:
    """Language models are ranked by best val perplexity, classifiers by best val accuracy."""
    if any("val_accuracy" in (r.record.get("best_metrics") or {}) for r in runs):
        return Metric("val_accuracy", "validation accuracy (%)", True)
    return Metric("val_perplexity", "validation perplexity", False)


def load_results(folder: Path) -> tuple[dict, list[RunData]]:
    folder = Path(folder)
    path = folder / SUMMARY_NAME
    try:
        summary = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"{path} not found: give a test_matrix_results_* folder (it holds summary.json)") from None
    except (OSError, orjson.JSONDecodeError) as err:
        raise UserError(f"cannot read {path} ({err})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("runs"), list):
        raise UserError(f"{path} is not a test matrix summary")
    return summary, [read_run(folder, summary, record) for record in summary["runs"]]


def read_run(folder: Path, summary: dict, record: dict) -> RunData:
    from adamwprune.tracking.journal import JOURNAL_NAME, read_journal

    run = RunData(record)
    run_dir = folder / summary["project"] / record["name"]
    if not (run_dir / JOURNAL_NAME).is_file():
        run.problem = "no journal (the run did not start, or its folder was not copied)"
        return run
    records = read_journal(run_dir / JOURNAL_NAME)
    metric = "val_accuracy" if any("val_accuracy" in r.get("metrics", {}) for r in records) else "val_perplexity"
    for item in records:
        metrics = item.get("metrics", {})
        if metric in metrics:
            run.curve.append((item["step"], metrics[metric]))
        if "sparsity" in metrics:
            run.sparsity = metrics["sparsity"]
    if not run.curve:
        run.problem = "no evaluation in its journal"
    gpu_path = run_dir / "gpu.jsonl"
    if gpu_path.is_file():
        from adamwprune.gpu.samplelog import read_gpu_log

        try:
            log = read_gpu_log(gpu_path)
        except UserError as err:
            run.problem = str(err)
        else:
            start = log.start_time
            run.gpu_memory = [(s["time"] - start, sum(g.get("memory_used_mib", 0.0) for g in s["gpus"]))
                              for s in log.samples]
    return run


def describe(configuration: tuple) -> str:
    optimizer, method, sparsity = configuration
    return optimizer if method == "none" else f"{optimizer} + {method} {round(sparsity * 100)}%"


@dataclass
class Row:
    configuration: tuple
    values: list[float]
    runs: list[RunData]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def spread(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None


def ranking(runs: list[RunData], metric: Metric) -> list[Row]:
    """Configurations with a finished run, best first (mean of the best metric over seeds)."""
    groups: dict[tuple, Row] = {}
    for run in runs:
        value = (run.record.get("best_metrics") or {}).get(metric.name)
        if run.record.get("status") == "ok" and isinstance(value, (int, float)) and math.isfinite(value):
            row = groups.setdefault(run.configuration, Row(run.configuration, [], []))
            row.values.append(value)
            row.runs.append(run)
    return sorted(groups.values(), key=lambda row: -row.mean if metric.higher_is_better else row.mean)


def verdict(row: Row, best: Row) -> str:
    """How a configuration compares with the best one: a difference within the seeds' spread is
    not distinguishable; with one seed there is no spread to judge by."""
    if row is best:
        return "best"
    spreads = [s for s in (row.spread, best.spread) if s is not None]
    if not spreads:
        return "one seed: spread unknown"
    return "not distinguishable" if abs(row.mean - best.mean) <= max(spreads) else "worse"


# --- graphs ---------------------------------------------------------------------------------

def _figure(title: str, xlabel: str, ylabel: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 6), dpi=DPI)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    return figure, axes


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _styles(runs: list[RunData]) -> dict[tuple, dict]:
    """Colour by optimizer, line style by pruning method: both axes readable in one graph."""
    optimizers = sorted({r.record["optimizer"] for r in runs})
    methods = sorted({r.record["pruning_method"] for r in runs}, key=lambda m: (m != "none", m))  # dense: solid
    colours = [f"C{i}" for i in range(10)]
    lines = ["-", "--", ":", "-."]
    return {r.configuration: {"color": colours[optimizers.index(r.record["optimizer"]) % 10],
                              "linestyle": lines[methods.index(r.record["pruning_method"]) % 4]} for r in runs}


def graph_curves(runs: list[RunData], metric: Metric, title: str, path: Path) -> Path | None:
    """Validation metric vs step per configuration: mean over seeds, min-max shaded."""
    drawn = [r for r in runs if r.curve]
    if not drawn:
        return None
    styles = _styles(drawn)
    figure, axes = _figure(f"{title}: {metric.label} vs step (mean over seeds, shaded: min-max)", "step",
                           metric.label)
    for configuration in dict.fromkeys(r.configuration for r in drawn):
        curves = [dict(r.curve) for r in drawn if r.configuration == configuration]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        values = [[c[s] for c in curves] for s in steps]
        axes.plot(steps, [statistics.fmean(v) for v in values], label=describe(configuration), **styles[configuration])
        if len(curves) > 1:
            axes.fill_between(steps, [min(v) for v in values], [max(v) for v in values],
                              color=styles[configuration]["color"], alpha=0.15)
    if not metric.higher_is_better:
        axes.set_yscale("log")
    axes.legend(fontsize=8)
    return _save(figure, path)


def graph_vs_sparsity(rows: list[Row], metric: Metric, title: str, path: Path) -> Path | None:
    """The final (best) metric against the measured sparsity, one line per optimizer + method."""
    points: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        for run in row.runs:
            optimizer, method, _ = row.configuration
            name = f"{optimizer} + {method}" if method != "none" else f"{optimizer} (dense)"
            points.setdefault(name, []).append((run.sparsity or 0.0, run.record["best_metrics"][metric.name]))
    if not points:
        return None
    figure, axes = _figure(f"{title}: best {metric.label} vs sparsity (each point a run)",
                           "sparsity measured from the weights (%)", f"best {metric.label}")
    for name, values in points.items():
        values.sort()
        axes.plot([100 * s for s, _ in values], [v for _, v in values], marker="o", label=name)
    axes.legend(fontsize=8)
    return _save(figure, path)


def graph_vs_time(rows: list[Row], metric: Metric, title: str, path: Path) -> Path | None:
    runs = [run for row in rows for run in row.runs if run.record.get("wall_seconds")]
    if not runs:
        return None
    styles = _styles(runs)
    figure, axes = _figure(f"{title}: best {metric.label} vs wall time (each point a run)", "wall time (s)",
                           f"best {metric.label}")
    labelled = set()
    for run in runs:
        label = describe(run.configuration)
        axes.scatter(run.record["wall_seconds"], run.record["best_metrics"][metric.name],
                     color=styles[run.configuration]["color"], label=None if label in labelled else label)
        labelled.add(label)
    axes.legend(fontsize=8)
    return _save(figure, path)


def graph_gpu_memory(runs: list[RunData], title: str, path: Path) -> Path | None:
    """Total GPU memory over time, every monitored run overlaid (the spec's timeline comparison)."""
    monitored = [r for r in runs if r.gpu_memory]
    if not monitored:
        return None
    figure, axes = _figure(f"{title}: total GPU memory over time, every monitored run", "time since the run's start (s)",
                           "total GPU memory used (MiB)")
    for run in monitored:
        axes.plot([t for t, _ in run.gpu_memory], [m for _, m in run.gpu_memory], label=run.record["name"])
    axes.legend(fontsize=7)
    return _save(figure, path)


# --- the report -----------------------------------------------------------------------------

def build_report(folder: Path) -> Path:
    """Write the graphs and report.html into ``folder``; returns the report's path."""
    folder = Path(folder)
    summary, runs = load_results(folder)
    metric = choose_metric(runs)
    rows = ranking(runs, metric)
    title = f"matrix {summary.get('matrix', folder.name)}"
    graphs = [g for g in (
        graph_curves(runs, metric, title, folder / "validation_curves.png"),
        graph_vs_sparsity(rows, metric, title, folder / "metric_vs_sparsity.png"),
        graph_vs_time(rows, metric, title, folder / "metric_vs_time.png"),
        graph_gpu_memory(runs, title, folder / "gpu_memory_timeline.png")) if g is not None]
    path = folder / REPORT_NAME
    path.write_text(render_html(summary, runs, rows, metric, graphs), encoding="utf-8")
    return path


def _where(summary: dict, run: RunData) -> str:
    record = run.record
    places = []
    if record.get("trackio"):
        places.append(f"Trackio: <code>trackio show --project {html.escape(summary['project'])}</code> "
                      f"(run {html.escape(record['name'])})")
    if record.get("wandb_group"):
        places.append(f"W&amp;B: group <code>{html.escape(record['wandb_group'])}</code>, run "
                      f"{html.escape(record['name'])} (offline: <code>wandb sync</code> its offline-run folders)")
    return "; ".join(places) or "not tracked"


def _executor(summary: dict) -> str:
    """Where the runs went when not on this machine (SLURM: each run's job in summary.json), and how
    their W&B runs get synced."""
    if summary.get("executor") != "slurm":
        return ""
    sync = f" W&amp;B: {html.escape(summary['wandb_sync'])}." if summary.get("wandb_sync") else ""
    return (f"<p>Ran on SLURM as {summary.get('slurm_submissions', 1)} job array submission(s); each run's job id, "
            f"state and nodes are in summary.json.{sync}</p>\n")


def _diff(summary: dict, record: dict) -> str:
    """What the run changes against the matrix's configuration."""
    config = summary.get("config", {})
    changed = [(key, config.get(key.upper()), record.get(key)) for key in (*AXES, "seed")]
    parts = [f"{key} {html.escape(str(new))}" + (f" (matrix: {html.escape(str(old))})" if old is not None else "")
             for key, old, new in changed if new is not None and old != new]
    return ", ".join(parts) or "the matrix's own configuration"


def render_html(summary: dict, runs: list[RunData], rows: list[Row], metric: Metric, graphs: list[Path]) -> str:
    esc = html.escape
    best = rows[0] if rows else None
    table = []
    for rank, row in enumerate(rows, 1):
        spread = f" ± {row.spread:.4g}" if row.spread is not None else ""
        sparsity = [r.sparsity for r in row.runs if r.sparsity is not None]
        seconds = [r.record.get("wall_seconds") or 0 for r in row.runs]
        memory = [r.record.get("peak_gpu_mb") or r.record.get("peak_rss_mb") or 0 for r in row.runs]
        sparsity_cell = f"{100 * statistics.fmean(sparsity):.1f}%" if sparsity else "-"
        table.append(f"<tr><td>{rank}</td><td>{esc(describe(row.configuration))}</td>"
                     f"<td>{row.mean:.4g}{spread}</td><td>{len(row.values)}</td><td>{esc(verdict(row, best))}</td>"
                     f"<td>{sparsity_cell}</td><td>{statistics.fmean(seconds):.1f}</td><td>{max(memory):.0f}</td></tr>")
    run_rows = []
    for run in runs:
        record = run.record
        status = record.get("status", "?")
        marks = []
        if status != "ok":
            marks.append(f"<b class=bad>{esc(status.upper())}</b>" + (f" (exit {record['exit_code']})"
                                                                    if record.get("exit_code") else ""))
        if record.get("stopped_by_time_limit"):
            marks.append("<b class=bad>stopped by the time limit</b>")
        if run.problem:
            marks.append(esc(run.problem))
        value = (record.get("best_metrics") or {}).get(metric.name)
        run_rows.append(f"<tr><td>{esc(record['name'])}</td><td>{esc(status)}</td>"
                        f"<td>{'' if value is None else f'{value:.4g}'}</td><td>{esc(_diff(summary, record))}</td>"
                        f"<td>{'; '.join(marks)}</td><td>{_where(summary, run)}</td></tr>")
    images = "".join(
        f"<figure><img alt='{esc(g.stem)}' src='data:image/png;base64,{base64.b64encode(g.read_bytes()).decode()}'>"
        f"<figcaption>{esc(g.name)}</figcaption></figure>" for g in graphs)
    finished = sum(r.record.get("status") == "ok" for r in runs)
    note = "" if finished else "<p class=bad>No run of this matrix finished: there is nothing to rank.</p>"
    order = "highest first" if metric.higher_is_better else "lowest first"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Test matrix {esc(str(summary.get('matrix')))}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #bbb; padding: 4px 8px; text-align: left; font-size: 14px; }}
th {{ background: #eee; }}
.bad {{ color: #b00; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
figure {{ margin: 1em 0; }}
</style></head><body>
<h1>Test matrix {esc(str(summary.get('matrix')))}</h1>
<p>Model {esc(str(summary.get('model')))}, project {esc(str(summary.get('project')))}, {len(runs)} runs
({finished} finished ok), {summary.get('seeds', 1)} seed(s) per configuration, created {esc(str(summary.get('created')))}.</p>
{_executor(summary)}{note}
<h2>Ranking by best {esc(metric.label)} ({order})</h2>
<p>Mean over seeds ± standard deviation; a configuration whose difference from the best is within
the larger of the two spreads is "not distinguishable" from it.</p>
<table><tr><th>rank</th><th>configuration</th><th>best {esc(metric.label)}</th><th>seeds</th><th>vs best</th>
<th>sparsity</th><th>wall time (s)</th><th>peak memory (MiB)</th></tr>
{''.join(table)}</table>
<h2>Graphs</h2>
{images}
<h2>Runs</h2>
<table><tr><th>run</th><th>status</th><th>best {esc(metric.label)}</th><th>against the matrix configuration</th>
<th>marks</th><th>where it is tracked</th></tr>
{''.join(run_rows)}</table>
<p>Skipped pairs: {esc('; '.join(summary.get('skipped') or []) or 'none')}.</p>
</body></html>
"""
