"""A scripted, simulated gpu.jsonl: the example graphs of docs/multi-gpu-monitoring.md and the
graph tests draw from it. Deterministic (fixed clock and values), no thread, no waiting::

    python -m adamwprune.gpu.example OUT_DIR [--gpus 4] [--seconds 900] [--dpi 80]

writes OUT_DIR/gpu.jsonl, OUT_DIR/run.json (the run name only) and the three graphs.

The story: DDP on ``gpus`` simulated A10Gs sampled at 1 Hz; memory warms up over the
first ~30 s; GPU 0 (rank 0) holds about 15 % more memory than the others (it also keeps
the evaluation batch and logging buffers); at the two evaluations rank 0 evaluates while
the other ranks wait at a barrier (their utilization drops to ~0), and rank 0's memory
rises further, pushing the CV from Good into Fair for the evaluation's duration.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path
from typing import Sequence

from adamwprune.gpu.samplelog import FORMAT, GPU_LOG_NAME, UNITS, GpuLogWriter, sample_record
from adamwprune.gpu.sources import SimulatedSource

START = 1_767_225_600.0  # 2026-01-01 00:00 UTC: a fixed clock, so the file is reproducible
EVAL_SECONDS = 30


def example_source(gpus: int, seconds: int, evals: Sequence[int], seed: int = 0) -> SimulatedSource:
    rng = random.Random(seed)

    def script(tick: int, index: int) -> dict:
        warm = 1.0 - math.exp(-tick / 8.0)
        evaluating = any(start <= tick < start + min(EVAL_SECONDS, seconds // 10) for start in evals)
        extra = 0.15 if index == 0 else 0.0
        if evaluating and index == 0:
            extra += 0.25
        used = min(22_900.0, 15_800.0 * warm * (1.0 + extra) + 900.0 + rng.gauss(0, 40))
        if evaluating:
            util = 72.0 + rng.gauss(0, 3) if index == 0 else max(0.0, 2.0 + rng.gauss(0, 1))
        else:
            util = min(100.0, max(0.0, 95.0 * warm + rng.gauss(0, 2.5)))
        power = 60.0 + 0.9 * util + rng.gauss(0, 3)
        temperature = 38.0 + 0.38 * util * warm + 0.02 * tick ** 0.5 + rng.gauss(0, 0.4)
        return {"memory_used_mb": used, "utilization": util, "temperature": temperature, "power_w": power}

    return SimulatedSource(gpus, script=script)


def write_example_log(out_dir: Path | str, gpus: int = 4, seconds: int = 900,
                      evals: Sequence[int] | None = None, run_name: str | None = None) -> Path:
    """Write ``out_dir/gpu.jsonl`` (and run.json) of a scripted simulated run; its path."""
    import orjson

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if evals is None:
        evals = [seconds // 3, 2 * seconds // 3]
    source = example_source(gpus, seconds, evals)
    (out_dir / "run.json").write_bytes(orjson.dumps(
        {"run_name": run_name or f"example-{gpus}xA10G"}, option=orjson.OPT_INDENT_2))
    path = out_dir / GPU_LOG_NAME
    path.unlink(missing_ok=True)
    writer = GpuLogWriter(path)
    writer.write({"event": "header", "format": FORMAT, "time": START, **source.describe(), "interval_s": 1.0,
                  "host": "example", "pid": 0, "step": 0, "units": UNITS})
    steps_per_second = 4
    for tick in range(seconds):
        now, step = START + tick, tick * steps_per_second
        if tick in evals:
            writer.write({"event": "eval", "step": step, "time": now})
        writer.write(sample_record(now, step, source.sample()))
    writer.write({"event": "stop", "time": START + seconds, "samples": seconds, "thread_cpu_s": 0.0})
    writer.close()
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adamwprune.gpu.example",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=900)
    parser.add_argument("--dpi", type=int, default=80)
    args = parser.parse_args(argv)
    from adamwprune.errors import run_main
    from adamwprune.gpu.report import write_report

    def _main(_argv) -> int:
        write_example_log(args.out_dir, args.gpus, args.seconds)
        for path in write_report(args.out_dir, dpi=args.dpi):
            print(path)
        return 0

    return run_main(_main, None, prog="adamwprune.gpu.example")


if __name__ == "__main__":
    sys.exit(main())
