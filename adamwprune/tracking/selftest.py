"""``make trackio-test`` / ``make wandb-test``: fake training metrics through
ExperimentTracker, then read back from the backend's own storage and compared.

A program: its result (OK / FAILED, and the command that shows the run) goes to stdout
(failures to stderr); the tracker's own lines go through logging (adamwprune.tracking.logs).
No model is trained. The metrics look like a real GPT-2 run: noisy falling
train/val loss, warmup + cosine learning rate, a sparsity ramp, final metrics,
and the multi-GPU metrics of a simulated 4-GPU machine.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
from pathlib import Path
from typing import Sequence

from adamwprune.errors import run_main


def fake_run(iters: int = 300, log_interval: int = 10, eval_interval: int = 100,
             warmup: int = 30, peak_lr: float = 6e-4, target_sparsity: float = 0.5,
             gpu_count: int = 4, seed: int = 0) -> list[tuple[int, dict]]:
    """The (step, metrics) records a real run would log, in logging order."""
    from adamwprune.gpu import SimulatedSource, gpu_metrics

    rng = random.Random(seed)
    gpus = SimulatedSource(device_count=gpu_count, seed=seed)
    records: list[tuple[int, dict]] = []
    best_val = math.inf

    def loss_at(step: int) -> float:
        return 2.9 + 8.0 * math.exp(-step / 60.0)

    for step in range(iters + 1):
        if step % eval_interval == 0 or step == iters:
            val_loss = loss_at(step) + 0.08 + rng.gauss(0, 0.02)
            best_val = min(best_val, val_loss)
            records.append((step, {"val_loss": val_loss,
                                   "val_perplexity": math.exp(min(val_loss, 20.0))}))
        if step % log_interval == 0 and step > 0:
            progress = min(1.0, max(0.0, (step - warmup) / (iters - warmup)))
            lr = peak_lr * step / warmup if step < warmup else \
                0.1 * peak_lr + 0.45 * peak_lr * (1 + math.cos(math.pi * progress))
            records.append((step, {
                "train_loss": loss_at(step) + rng.gauss(0, 0.05),
                "learning_rate": lr,
                "sparsity": target_sparsity * min(1.0, progress * 1.5) ** 3,
                "tokens_per_sec": 48_000 + rng.gauss(0, 900),
                **gpu_metrics(gpus.sample()),
            }))
    records.append((iters, {"final/best_val_loss": best_val,
                            "final/best_val_perplexity": math.exp(min(best_val, 20.0)),
                            "final/total_training_time": 812.5}))
    return records


def run_selftest(backend: str, output_dir: Path) -> int:
    from adamwprune.tracking import ExperimentTracker
    from adamwprune.tracking.naming import default_run_name, project_name, run_dir_for
    from adamwprune.tracking.readback import (missing_points, trackio_points, wandb_history,
                                              wandb_run_dir)

    if backend == "wandb" and not os.environ.get("WANDB_MODE"):
        from adamwprune.tracking.tracker import _wandb_api_key_present

        if not _wandb_api_key_present():
            os.environ["WANDB_MODE"] = "offline"
            print("wandb-test: no W&B login found; running offline (WANDB_MODE=offline)", flush=True)
    project = project_name("tracker-selftest")
    run_name = default_run_name(f"{backend}-test", "fake")
    run_dir = run_dir_for(output_dir, project, run_name)
    records = fake_run()
    with ExperimentTracker(backend, project=project, run_name=run_name, run_dir=run_dir,
                           config={"purpose": f"{backend}-test", "fake_data": True}) as tracker:
        for step, metrics in records:
            tracker.log(metrics, step=step)
        result = tracker.finish()
    where = (((result or {}).get("backends") or {}).get(backend) or {}).get("where") or ""
    if backend == "trackio":
        rows = trackio_points(project, run_name)
        problems = missing_points(records, rows, "step")
    else:
        from adamwprune.tracking.runinfo import read_run_info

        wandb_dir = Path(os.environ.get("WANDB_DIR") or ".")
        rows, _ = wandb_history(wandb_run_dir(read_run_info(run_dir).wandb_id, wandb_dir))
        problems = missing_points(records, rows, "_step")
    points = sum(len(m) for _, m in records)
    if problems:
        print(f"{backend}-test: FAILED: {len(problems)} of {points} points wrong or missing "
              f"in {backend}'s storage:", file=sys.stderr)
        for problem in problems[:20]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"{backend}-test: OK: read back all {points} points ({len(records)} records, "
          f"{len({s for s, _ in records})} steps) from {backend}'s own storage", flush=True)
    if where and not where.startswith("("):  # "(could not tell: ...)" is no command
        upload = backend == "wandb" and not where.startswith("http")
        print(f"{backend}-test: {'upload it' if upload else 'view it'}: {where}", flush=True)
    return 0


def _main(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adamwprune.tracking.selftest",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("backend", choices=["trackio", "wandb"])
    parser.add_argument("--output-dir", type=Path, default=Path("runs"),
                        help="where the run directory (journal) goes (default: runs)")
    args = parser.parse_args(argv)
    return run_selftest(args.backend, args.output_dir)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv, prog="selftest")


if __name__ == "__main__":
    sys.exit(main())
