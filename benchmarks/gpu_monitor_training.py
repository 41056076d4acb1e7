#!/usr/bin/env python3
"""Does GPU monitoring slow training? The shared loop with the monitor off, and on with 8
simulated GPUs sampled at 1 Hz (the default) and at 10 Hz, interleaved in one run.

Each round runs the three variants in a shuffled order on the tiny GPT-2 case of
``train_throughput.py`` (same model, batch, data and timing: wall clock between the loop's
progress lines after warm-up, tracker ``none``). With the monitor on, the loop also merges
one GPU row per log step and draws the three graphs at the end (not timed: after the last
step). Reported: the median of the per-round ratios monitor-on / monitor-off.

    .venv/bin/python benchmarks/gpu_monitor_training.py [--rounds 6]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import train_throughput as bench  # noqa: E402

VARIANTS = {
    "monitor off": {},
    "8 GPUs at 1 Hz": {"gpu_monitor": True, "simulate_gpus": 8, "gpu_monitor_interval": 1.0},
    "8 GPUs at 10 Hz": {"gpu_monitor": True, "simulate_gpus": 8, "gpu_monitor_interval": 0.1},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    from machine import cpu_name

    from adamwprune.data import get_dataset

    case, dataset = bench.CASES["tiny"], get_dataset("pydocs")
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    order = list(VARIANTS)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-train-") as tmp:
        bench.adamwprune_loop(dataset, case, "cpu", "none", Path(tmp), -1)  # warm-up, not recorded
        for index in range(args.rounds):
            random.Random(index).shuffle(order)
            for name in order:
                intervals = bench.adamwprune_loop(dataset, case, "cpu", "none", Path(tmp), index, **VARIANTS[name])
                rates[name].append(statistics.median(intervals))
                print(f"  round {index + 1}/{args.rounds} {name:<16} {rates[name][-1]:8.0f} tok/s", flush=True)
    print(f"\nmachine: {cpu_name()}, {platform.machine()}, Python {platform.python_version()}; "
          f"{case.model_name}, block {case.block_size}, batch {case.batch_size}, {args.rounds} interleaved rounds\n")
    print("| variant | tok/s (median of rounds) | on / off: paired median (range) |")
    print("|---|---:|---:|")
    off = rates["monitor off"]
    for name, values in rates.items():
        ratios = [on / base for on, base in zip(values, off)]
        print(f"| {name} | {statistics.median(values):.0f} | {statistics.median(ratios):.3f}x "
              f"({min(ratios):.3f} to {max(ratios):.3f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
