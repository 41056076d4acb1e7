#!/usr/bin/env python3
"""Images/s of the shared loop vs a plain PyTorch loop for the classifiers, on the CPU.

For each case (LeNet-5, ResNet-18 with the CIFAR stem; the offline digits, no download), three
variants run interleaved (order shuffled each round) on the same model, batch and batches
(``ClassifierAdapter.get_batch``: the same draw, normalization and padding):

- ``plain``: get_batch, forward, cross-entropy, backward, step, zero_grad, with
  ``torch.optim.AdamW`` as torch builds it by default;
- ``plain-fused``: the same with the fused AdamW kernel the loop uses (isolates the loop's own cost);
- ``loop``: adamwprune's ``train()``, tracker ``none``, grad_clip 0 (the same arithmetic), which
  also counts ``train_accuracy`` on the device at every step.

Timing as in ``train_throughput.py``: wall clock over the steps after a warm-up, taken from outside
the loop at its progress lines (the evaluations at step 0 and at the end are not counted); a ratio
is taken within a round, then the median over rounds.

    python benchmarks/vision_throughput.py                  # both cases, about 4 minutes on 2 cores
    python benchmarks/vision_throughput.py --cases lenet5 --rounds 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from train_throughput import machine_description, paired, summarize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@dataclass(frozen=True)
class Case:
    name: str
    model: str        # the family
    model_name: str
    batch_size: int
    warmup: int       # steps not timed (a multiple of log_interval: the loop marks its log points)
    steps: int        # timed steps (a multiple of log_interval)
    log_interval: int
    rounds: int


CASES = {
    "lenet5": Case("lenet5", "lenet5", "lenet5", 128, warmup=20, steps=200, log_interval=20, rounds=5),
    "resnet18": Case("resnet18", "resnet50", "resnet18", 32, warmup=4, steps=16, log_interval=4, rounds=4),
}
VARIANTS = ("plain", "plain-fused", "loop")
LEARNING_RATE, WEIGHT_DECAY = 1e-3, 5e-4


def settings_for(case: Case):
    from adamwprune.train.settings import TrainSettings, defaults_for

    values = {**defaults_for(case.model), "dataset": "digits", "batch_size": case.batch_size, "device": "cpu",
              "learning_rate": LEARNING_RATE, "weight_decay": WEIGHT_DECAY, "warmup_iters": 0, "grad_clip": 0.0,
              "max_iters": case.warmup + case.steps, "log_interval": case.log_interval, "eval_interval": 10**8,
              "eval_samples": 6, "eval_batch_size": 64, "save_checkpoint": False, "seed": 1337}
    if case.model == "resnet50":
        values["model_name"] = case.model_name
    return TrainSettings(**values)


def rates(marks: dict[int, float], case: Case) -> list[float]:
    """images/s between consecutive marks (iteration -> time) of the timed window."""
    points = [marks[it] for it in range(case.warmup, case.warmup + case.steps + 1, case.log_interval)]
    return [case.log_interval * case.batch_size / (b - a) for a, b in zip(points, points[1:])]


def plain_loop(adapter, settings, case: Case, fused: bool) -> list[float]:
    import torch
    import torch.nn.functional as F

    from adamwprune.optim import build_optimizer

    torch.manual_seed(settings.seed)
    model = adapter.build_model()
    groups = adapter.optimizer_groups(model, WEIGHT_DECAY)
    optimizer = (build_optimizer("adamw", groups, settings) if fused else
                 torch.optim.AdamW(groups, lr=LEARNING_RATE, betas=(settings.beta1, settings.beta2)))
    generator = torch.Generator().manual_seed(1)
    marks: dict[int, float] = {}
    for step in range(case.warmup + case.steps):
        if step >= case.warmup and (step - case.warmup) % case.log_interval == 0:
            marks[step] = time.perf_counter()
        images, labels = adapter.get_batch("train", case.batch_size, generator, "cpu")
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    marks[case.warmup + case.steps] = time.perf_counter()
    return rates(marks, case)


def adamwprune_loop(adapter, settings, case: Case, workdir: Path, index: int) -> list[float]:
    from adamwprune.tracking import ExperimentTracker
    from adamwprune.train.distributed import DistContext
    from adamwprune.train.loop import train

    run_name = f"{case.name}-{index}"
    run_dir = workdir / "runs" / run_name
    marks: dict[int, float] = {}

    def progress(line: str) -> None:
        if line.startswith("iter "):
            marks[int(line.split()[1].split("/")[0])] = time.perf_counter()

    tracker = ExperimentTracker("none", project="bench-vision", run_name=run_name, run_dir=run_dir)
    train(adapter, settings, ctx=DistContext(device="cpu"), tracker=tracker, run_dir=run_dir,
          run_info={"project": "bench-vision", "run_name": run_name}, progress=progress)
    return rates(marks, case)


def run_case(case: Case, rounds: int, workdir: Path) -> dict[str, list[list[float]]]:
    from adamwprune.train.vision import make_adapter

    settings = settings_for(case)
    adapter = make_adapter(settings)
    results: dict[str, list[list[float]]] = {variant: [] for variant in VARIANTS}
    plain_loop(adapter, settings, case, fused=False)  # warm-up, not recorded
    order = list(VARIANTS)
    for index in range(rounds):
        random.Random(index).shuffle(order)
        for variant in order:
            measured = (adamwprune_loop(adapter, settings, case, workdir, index) if variant == "loop"
                        else plain_loop(adapter, settings, case, fused=variant == "plain-fused"))
            results[variant].append(measured)
            print(f"  {case.name} round {index + 1}/{rounds} {variant:<11} median "
                  f"{statistics.median(measured):8.1f} img/s", flush=True)
    return results


def report(results: dict[str, dict[str, list[list[float]]]]) -> str:
    lines = ["| case | plain | plain-fused | loop | loop / plain | loop / plain-fused |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, per_variant in results.items():
        case = CASES[name]
        median = {variant: summarize(per_variant[variant])[0] for variant in VARIANTS}
        speed, speed_lo, speed_hi = paired(per_variant["loop"], per_variant["plain"])
        own, own_lo, own_hi = paired(per_variant["loop"], per_variant["plain-fused"])
        lines.append(f"| {case.model_name}, batch {case.batch_size} | {median['plain']:.1f} | "
                     f"{median['plain-fused']:.1f} | {median['loop']:.1f} | {speed:.3f}x ({speed_lo:.3f} to "
                     f"{speed_hi:.3f}) | {own:.3f}x ({own_lo:.3f} to {own_hi:.3f}) |")
    lines.append("\nImages/s: median over rounds of each round's median interval; ratios: median (range) of the "
                 "same round's ratio. Interleaved rounds, variant order shuffled each round.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--rounds", type=int, help="interleaved rounds per case (default: 5 for lenet5, 3 for resnet18)")
    args = parser.parse_args(argv)
    print(f"machine: {machine_description()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-vision-") as tmp:
        results = {name: run_case(CASES[name], args.rounds or CASES[name].rounds, Path(tmp)) for name in args.cases}
    print()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
