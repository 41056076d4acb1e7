"""The GPU graphs of a run, drawn from its gpu.jsonl with matplotlib's Agg canvas (no pyplot,
no global backend switch; matplotlib and numpy are imported when a graph is drawn).

* ``gpu_memory.png``       -- per-GPU memory breakdown: one panel per GPU (ceil(sqrt(N))
  columns: 2x2 for 4), memory used vs total over time;
* ``gpu_load_balance.png`` -- per-GPU mean memory used (bars) with their mean, and the
  coefficient of variation over time against the 5/10/20 % quality bands;
* ``gpu_timeline.png``     -- every GPU's memory used and utilization on one time axis,
  evaluations marked.

Sizes are fixed (:func:`figure_inches` x dpi, no tight bounding box), so a graph's pixel
size depends only on its kind, the GPU count and the dpi.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adamwprune.gpu.metrics import QUALITY_BANDS, QUALITY_ABOVE
from adamwprune.gpu.samplelog import GpuLog

GRAPH_NAMES = {"memory": "gpu_memory.png", "load_balance": "gpu_load_balance.png",
               "timeline": "gpu_timeline.png"}
GRAPH_CAPTIONS = {"memory": "Per-GPU Memory Breakdown", "load_balance": "GPU Load Balance Analysis",
                  "timeline": "Timeline Comparisons"}  # the spec's names of the three graphs
BAND_COLORS = ("#2ca02c", "#9acd32", "#ff9f1c", "#d62728")


def tracker_images(paths: list[Path], simulated: bool) -> tuple[dict[str, Path], dict[str, str]]:
    """The drawn graphs as images for the trackers: ``gpu/<kind>`` -> PNG, and their captions."""
    kinds = {name: kind for kind, name in GRAPH_NAMES.items()}
    images = {f"gpu/{kinds[path.name]}": path for path in paths if path.name in kinds}
    suffix = " (simulated GPUs)" if simulated else ""
    return images, {key: GRAPH_CAPTIONS[key.removeprefix("gpu/")] + suffix for key in images}


def grid(n_gpus: int) -> tuple[int, int]:
    """(rows, columns) of the per-GPU panels: ceil(sqrt(N)) columns."""
    cols = max(1, math.ceil(math.sqrt(n_gpus)))
    return math.ceil(n_gpus / cols), cols


def figure_inches(kind: str, n_gpus: int) -> tuple[float, float]:
    if kind == "memory":
        rows, cols = grid(n_gpus)
        return max(6.4, 4.2 * cols + 0.6), 2.6 * rows + 1.0
    if kind == "load_balance":
        return 12.0, 4.8
    if kind == "timeline":
        return 12.0, 7.0
    raise ValueError(kind)


def pixel_size(kind: str, n_gpus: int, dpi: int) -> tuple[int, int]:
    """(width, height) in pixels of a graph."""
    w, h = figure_inches(kind, n_gpus)
    return round(w * dpi), round(h * dpi)


@dataclass
class Series:
    """gpu.jsonl as arrays: one value per sample, NaN where a GPU was not read."""

    t: Any                 # time since the run's first header, in ``unit``
    unit: str              # "s", "min" or "h"
    gpus: list[int]
    devices: dict[int, dict]
    used: dict[int, Any]   # MiB
    total: dict[int, Any]  # MiB
    util: dict[int, Any]   # %
    evals: list[tuple[float, int | None]]  # (time in ``unit``, step)

    def cv(self) -> Any:
        """Per-sample CV (%) of memory used across the GPUs read in that sample."""
        import numpy as np

        used = np.vstack([self.used[i] for i in self.gpus])  # gpus x samples
        present = ~np.isnan(used)
        count = present.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.nansum(used, axis=0) / count
            std = np.sqrt(np.nansum((used - mean) ** 2, axis=0) / count)
            cv = np.where(mean > 0, 100.0 * std / mean, 0.0)
        return np.where(count > 0, cv, np.nan)


def series(log: GpuLog) -> Series:
    import numpy as np

    devices = log.devices
    gpus = list(devices)
    start = log.start_time
    seconds = np.array([s["time"] - start for s in log.samples], dtype=float)
    span = float(seconds.max()) if len(seconds) else 0.0
    unit, scale = ("s", 1.0) if span <= 600 else ("min", 60.0) if span <= 36_000 else ("h", 3600.0)
    n = len(log.samples)
    used = {i: np.full(n, np.nan) for i in gpus}
    total = {i: np.full(n, np.nan) for i in gpus}
    util = {i: np.full(n, np.nan) for i in gpus}
    for k, sample in enumerate(log.samples):
        for gpu in sample["gpus"]:
            i = int(gpu["index"])
            for target, key in ((used, "memory_used_mib"), (total, "memory_total_mib"), (util, "utilization_pct")):
                value = gpu.get(key)
                if value is not None:
                    target[i][k] = value
    evals = [((time - start) / scale, step) for time, step in log.eval_points()]
    return Series(seconds / scale, unit, gpus, devices, used, total, util, evals)


def _figure(kind: str, n_gpus: int, dpi: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figure_inches(kind, n_gpus), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _title(fig, run_name: str, what: str, simulated: bool) -> None:
    fig.suptitle(f"{run_name}: {what}" + (" (simulated)" if simulated else ""), fontsize="large")


def _mark_evals(ax, s: Series, label: bool = False) -> None:
    for k, (t, step) in enumerate(s.evals):
        ax.axvline(t, color="0.35", linestyle=":", linewidth=1.0,
                   label="evaluation" if label and k == 0 else None)
        if label and len(s.evals) <= 20:
            ax.annotate(f"eval @ step {step}" if step is not None else "eval", (t, 0.0),
                        xycoords=("data", "axes fraction"), xytext=(3, 3), textcoords="offset points",
                        va="bottom", ha="left", fontsize="small", color="0.25",
                        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                              "alpha": 0.8})


def _marker(s: Series) -> str | None:
    return "." if len(s.t) < 30 else None


def _gpu_label(s: Series, i: int) -> str:
    device = s.devices.get(i, {})
    label = f"GPU {i}"
    if device.get("physical_index", i) != i:
        label += f" (physical {device['physical_index']})"
    return label + (f": {device['name']}" if device.get("name") else "")


def memory_figure(s: Series, run_name: str, simulated: bool, dpi: int):
    import numpy as np

    fig = _figure("memory", len(s.gpus), dpi)
    rows, cols = grid(len(s.gpus))
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False).ravel()
    top = max([float(np.nanmax(s.total[i])) for i in s.gpus if not np.all(np.isnan(s.total[i]))]
              + [float(np.nanmax(s.used[i])) for i in s.gpus if not np.all(np.isnan(s.used[i]))] + [1.0])
    for ax, i in zip(axes, s.gpus):
        color = f"C{s.gpus.index(i) % 10}"
        ax.fill_between(s.t, s.used[i], color=color, alpha=0.25, linewidth=0)
        ax.plot(s.t, s.used[i], color=color, label="used", marker=_marker(s))
        ax.plot(s.t, s.total[i], color="0.2", linestyle="--", linewidth=1.0, label="total")
        _mark_evals(ax, s)
        ax.set_ylim(0, top * 1.05)
        ax.set_title(_gpu_label(s, i), fontsize="medium")
        ax.set_ylabel("memory (MiB)")
        ax.grid(alpha=0.3)
    for ax in axes[len(s.gpus):]:
        ax.set_visible(False)
    for ax in axes[max(0, len(s.gpus) - cols):len(s.gpus)]:
        ax.set_xlabel(f"time since start ({s.unit})")
        ax.tick_params(labelbottom=True)
    axes[0].legend(loc="lower right", fontsize="small")
    _title(fig, run_name, "per-GPU memory, used vs total", simulated)
    return fig


def load_balance_figure(s: Series, run_name: str, simulated: bool, dpi: int):
    import numpy as np

    from adamwprune.gpu.metrics import balance_quality, coefficient_of_variation

    fig = _figure("load_balance", len(s.gpus), dpi)
    bars, line = fig.subplots(1, 2, width_ratios=(1, 1.6))
    means = [float(np.nanmean(s.used[i])) if not np.all(np.isnan(s.used[i])) else 0.0 for i in s.gpus]
    overall = sum(means) / len(means)
    cv = coefficient_of_variation(means)
    bars.bar([str(i) for i in s.gpus], means, color=[f"C{k % 10}" for k in range(len(s.gpus))])
    bars.axhline(overall, color="0.15", linestyle="--", linewidth=1.2, label=f"mean {overall:,.0f} MiB")
    bars.set_ylabel("mean memory used (MiB)")
    bars.set_xlabel("GPU index (as the process sees it)")
    bars.set_title(f"per-GPU mean memory: CV {cv:.1f} % ({balance_quality(cv)})", fontsize="medium")
    bars.legend(loc="lower right", fontsize="small")
    bars.grid(axis="y", alpha=0.3)
    if len(s.gpus) > 16:
        bars.tick_params(axis="x", labelrotation=90)

    cv_t = s.cv()
    finite = cv_t[np.isfinite(cv_t)]
    top = max(25.0, 1.15 * float(finite.max())) if len(finite) else 25.0
    edges = [0.0] + [upper for upper, _ in QUALITY_BANDS] + [top]
    labels = [label for _, label in QUALITY_BANDS] + [QUALITY_ABOVE]
    for k, (low, high) in enumerate(zip(edges, edges[1:])):
        last = k == len(labels) - 1
        line.axhspan(low, high, color=BAND_COLORS[k], alpha=0.13, linewidth=0)
        limits = f"< {high:g}" if k == 0 else f"≥ {low:g}" if last else f"{low:g}–{high:g}"
        line.annotate(f"{labels[k]} ({limits} %)", (1.0, low if last else (low + high) / 2),
                      xycoords=("axes fraction", "data"), xytext=(-4, 3 if last else 0),
                      textcoords="offset points", ha="right", va="bottom" if last else "center",
                      fontsize="small", color=BAND_COLORS[k], fontweight="bold")
    for upper, _ in QUALITY_BANDS:
        line.axhline(upper, color="0.5", linewidth=0.6)
    line.plot(s.t, cv_t, color="C0", marker=_marker(s), label="CV of memory used across GPUs")
    _mark_evals(line, s, label=True)
    line.set_ylim(0, top)
    if len(s.t):
        line.set_xlim(float(s.t.min()), float(s.t.max()) if s.t.max() > s.t.min() else float(s.t.min()) + 1)
    line.set_xlabel(f"time since start ({s.unit})")
    line.set_ylabel("CV of memory used (%)")
    line.set_title("load balance over time (CV = pstdev / mean of memory used)", fontsize="medium")
    line.legend(loc="upper left", fontsize="small")
    _title(fig, run_name, "GPU load balance", simulated)
    return fig


def timeline_figure(s: Series, run_name: str, simulated: bool, dpi: int):
    fig = _figure("timeline", len(s.gpus), dpi)
    memory, util = fig.subplots(2, 1, sharex=True)
    for k, i in enumerate(s.gpus):
        color = f"C{k % 10}"
        memory.plot(s.t, s.used[i], color=color, label=f"GPU {i}", marker=_marker(s), linewidth=1.2)
        util.plot(s.t, s.util[i], color=color, marker=_marker(s), linewidth=1.0)
    _mark_evals(memory, s, label=True)
    _mark_evals(util, s)
    memory.set_ylabel("memory used (MiB)")
    memory.set_ylim(bottom=0)
    memory.grid(alpha=0.3)
    memory.legend(loc="center right", fontsize="small", ncol=min(len(s.gpus) + 1, 5))
    memory.set_title("memory used per GPU", fontsize="medium")
    util.set_ylabel("utilization (%)")
    util.set_ylim(0, 105)
    util.set_xlabel(f"time since start ({s.unit})")
    util.grid(alpha=0.3)
    util.set_title("utilization per GPU", fontsize="medium")
    _title(fig, run_name, "multi-GPU timeline", simulated)
    return fig


FIGURES = {"memory": memory_figure, "load_balance": load_balance_figure, "timeline": timeline_figure}


def write_graphs(log: GpuLog, out_dir: Path, run_name: str, dpi: int = 100) -> list[Path]:
    """Draw the three graphs of ``log`` into ``out_dir``; the paths written."""
    s = series(log)
    written = []
    for kind, draw in FIGURES.items():
        path = Path(out_dir) / GRAPH_NAMES[kind]
        draw(s, run_name, log.simulated, dpi).savefig(path, dpi=dpi)
        written.append(path)
    return written
