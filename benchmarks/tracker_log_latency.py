"""Per-call latency of ExperimentTracker.log against calling trackio.log / wandb.log directly.

One process, 10,000 calls of a 5-metric dict per variant, median and p99 in µs.
Storage goes to a temporary directory; W&B runs offline. Usage:

    .venv/bin/python benchmarks/tracker_log_latency.py [--calls 10000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def metrics_at(step: int) -> dict:
    return {"train_loss": 3.0 - step * 1e-4, "learning_rate": 6e-4, "sparsity": 0.0,
            "tokens_per_sec": 51234.5, "grad_norm": 0.87}


def time_calls(log, calls: int) -> list[float]:
    durations = []
    clock = time.perf_counter_ns
    for step in range(calls):
        metrics = metrics_at(step)
        start = clock()
        log(metrics, step)
        durations.append((clock() - start) / 1000.0)
    return durations


def summarize(name: str, durations: list[float]) -> tuple[str, float, float]:
    ordered = sorted(durations)
    return name, statistics.median(ordered), ordered[int(0.99 * len(ordered)) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="adamwprune-bench-"))
    os.environ.update(TRACKIO_DIR=str(root / "trackio"), WANDB_DIR=str(root), WANDB_MODE="offline",
                      WANDB_SILENT="true")
    from adamwprune.tracking import ExperimentTracker

    results = []
    for trackers in ("none", "trackio", "wandb", "both"):
        tracker = ExperimentTracker(trackers, project="bench", run_name=f"tracker-{trackers}",
                                    run_dir=root / f"tracker-{trackers}")
        time_calls(lambda m, s: tracker.log(m, step=s), 200)  # warm-up, same run
        durations = time_calls(lambda m, s: tracker.log(m, step=s + 200), args.calls)
        tracker.finish()
        results.append(summarize(f"ExperimentTracker.log, tracker {trackers}", durations))

    import trackio
    import wandb

    trackio_run = trackio.init(project="bench", name="direct", auto_log_gpu=False, auto_log_cpu=False)
    wandb_run = wandb.init(project="bench", name="direct", settings=wandb.Settings(console="off"))
    for name, log in (("trackio.log (direct)", trackio_run.log), ("wandb.log (direct)", wandb_run.log)):
        time_calls(lambda m, s: log(m, step=s), 200)
        results.append(summarize(name, time_calls(lambda m, s: log(m, step=s + 200), args.calls)))

    def both_direct(m, s):
        trackio_run.log(m, step=s)
        wandb_run.log(m, step=s)
    results.append(summarize("trackio.log + wandb.log (direct)",
                             time_calls(lambda m, s: both_direct(m, s + 20_000), args.calls)))
    trackio_run.finish()
    wandb_run.finish()

    print(f"\n{args.calls} calls of a 5-metric dict per row; Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}\n")
    print("| what | median µs | p99 µs |")
    print("|---|---:|---:|")
    for name, median, p99 in results:
        print(f"| {name} | {median:.1f} | {p99:.1f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
