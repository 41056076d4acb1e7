#!/usr/bin/env python3
"""Training throughput of the shared loop vs a plain PyTorch loop, and the cost of tracking.

For each model case, three variants run interleaved (order shuffled each round, several
rounds) on the same model, batch and data:

- ``plain``: what a user would otherwise write: get_batch, forward, backward, step, zero_grad,
  with ``torch.optim.AdamW`` as torch builds it by default;
- ``plain-fused``: the same with the fused AdamW kernel the loop uses (isolates the loop's own cost);
- ``loop``: adamwprune's loop (``train()``), tracker ``none`` (journal only);
- ``loop+both``: the same loop tracking to Trackio and W&B (offline), TRACKIO_DIR/WANDB_DIR in a
  temp dir, so the delivery process and wandb-core compete with training for the CPU.

Each measurement times steps [warmup, warmup + steps) with wall clock, from outside the loop
(timestamps of its progress lines at log intervals, which come right after a host sync), so
setup and the eval points at step 0 and at the end are not counted; the loop runs with
grad_clip 0 so it does the same arithmetic as the plain loop. Reported: median tokens/s
per variant, and the median of the per-round ratios (robust to drift on a shared machine).

    python benchmarks/train_throughput.py            # both CPU cases, ~12 minutes on 2 cores
    python benchmarks/train_throughput.py --cases tiny --rounds 3
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from machine import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@dataclass(frozen=True)
class Case:
    name: str
    model_name: str
    block_size: int
    batch_size: int
    warmup: int   # steps not timed (first-step allocations, delivery process start-up)
    steps: int    # timed steps (a multiple of log_interval)
    log_interval: int
    rounds: int   # default number of interleaved rounds


CASES = {
    "tiny": Case("tiny", "gpt2-tiny", 128, 16, warmup=20, steps=60, log_interval=10, rounds=6),
    # the 124M preset's layers on the byte-level pydocs vocabulary (85M parameters)
    "mid": Case("mid", "gpt2", 256, 2, warmup=4, steps=8, log_interval=2, rounds=3),
}
VARIANTS = ("plain", "plain-fused", "loop", "loop+both")


def plain_loop(model, dataset, case: Case, device: str, autocast, fused: bool) -> list[float]:
    """tokens/s of the minimal loop, per timed interval of ``log_interval`` steps."""
    import torch

    groups = model.configure_optimizer_groups(0.1)
    if fused:
        from adamwprune.optim import build_optimizer
        from adamwprune.train.settings import TrainSettings

        optimizer = build_optimizer("adamw", groups, TrainSettings(learning_rate=6e-4, beta1=0.9, beta2=0.95,
                                                                   weight_decay=0.1))
    else:
        optimizer = torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
    generator = torch.Generator().manual_seed(1)
    marks: dict[int, float] = {}
    for step in range(case.warmup + case.steps):
        if step >= case.warmup and (step - case.warmup) % case.log_interval == 0:
            _sync(device)
            marks[step] = time.perf_counter()
        x, y = dataset.get_batch("train", case.batch_size, case.block_size, generator, device)
        with autocast():
            _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    marks[case.warmup + case.steps] = time.perf_counter()
    return interval_rates(marks, case)


def interval_rates(marks: dict[int, float], case: Case) -> list[float]:
    """tokens/s between consecutive marks (iteration -> time) inside the timed window."""
    points = [marks[it] for it in range(case.warmup, case.warmup + case.steps + 1, case.log_interval)]
    tokens = case.log_interval * case.batch_size * case.block_size
    return [tokens / (b - a) for a, b in zip(points, points[1:])]


def adamwprune_loop(dataset, case: Case, device: str, trackers: str, workdir: Path, index: int,
                    compile_model: bool = False, history: list | None = None,
                    costs: dict | None = None, **overrides) -> list[float]:
    """tokens/s of adamwprune's train() over the same intervals, timed at its progress lines.

    ``history``, if given, receives the loop's own logged (step, metrics) records; ``costs``
    receives the CPU accounting of tracking over the timed window (see :func:`tracking_costs`);
    ``overrides``: more TrainSettings (e.g. the GPU monitor's).
    """
    from adamwprune.tracking import ExperimentTracker
    from adamwprune.train.distributed import DistContext
    from adamwprune.train.gpt2 import GPT2Adapter
    from adamwprune.train.loop import train
    from adamwprune.train.settings import TrainSettings

    settings = TrainSettings(batch_size=case.batch_size, gradient_accumulation=1, learning_rate=6e-4,
                             warmup_iters=0, grad_clip=0.0, weight_decay=0.1,
                             max_iters=case.warmup + case.steps, log_interval=case.log_interval,
                             eval_interval=10**8, eval_samples=1, save_checkpoint=False,
                             compile=compile_model, seed=1337, **overrides)
    run_name = f"{case.name}-{trackers}-{index}-{len(list(workdir.glob('runs/*')))}"  # unique: variants may share trackers
    run_dir = workdir / "runs" / run_name
    tracker = ExperimentTracker(trackers, project="bench-train", run_name=run_name, run_dir=run_dir,
                                config={"case": case.name}, wandb_offline=True)
    delivery_pid = wait_for_backends(run_dir, tracker.backends)
    end = case.warmup + case.steps
    marks: dict[int, float] = {}
    window = {"log_seconds": 0.0, "open": False}
    log = tracker.log

    def timed_log(metrics, step=None):  # what tracking costs inside the training process
        start = time.perf_counter()
        log(metrics, step=step)
        if window["open"]:
            window["log_seconds"] += time.perf_counter() - start

    tracker.log = timed_log

    def progress(line: str) -> None:
        if not line.startswith("iter "):
            return
        iteration = int(line.split()[1].split("/")[0])
        marks[iteration] = time.perf_counter()
        if iteration in (case.warmup, end):
            window[iteration] = (time.process_time(), tree_cpu_seconds(delivery_pid))
            window["open"] = iteration == case.warmup

    adapter = GPT2Adapter(dataset, case.model_name, case.block_size)
    train(adapter, settings, ctx=DistContext(device=device), tracker=tracker, run_dir=run_dir,
          run_info={"project": "bench-train", "run_name": run_name}, progress=progress)
    if history is not None:
        from adamwprune.tracking.journal import JOURNAL_NAME, read_journal

        history.extend((r["step"], r["metrics"]) for r in read_journal(run_dir / JOURNAL_NAME) if "metrics" in r)
    if costs is not None:
        (train_cpu0, delivery_cpu0), (train_cpu1, delivery_cpu1) = window[case.warmup], window[end]
        costs.update(train_cpu=train_cpu1 - train_cpu0, delivery_cpu=delivery_cpu1 - delivery_cpu0,
                     log_seconds=window["log_seconds"], wall=marks[end] - marks[case.warmup])
    return interval_rates(marks, case)


def tree_cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its live descendants
    (the delivery process and the wandb-core service it starts). Linux /proc only."""
    if pid is None:
        return 0.0
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process exited while we looked
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks

    def descends(p: int) -> bool:
        while p > 1:
            if p == pid:
                return True
            p = parents.get(p, 0)
        return False

    return sum(seconds for p, seconds in cpu.items() if descends(p))


def wait_for_backends(run_dir: Path, backends: tuple[str, ...], timeout: float = 180.0) -> int | None:
    """Block until the delivery process has started every backend; returns its pid (None: no backends).

    Start-up (importing trackio and wandb, starting wandb-core) is a one-time cost of a
    few CPU-seconds per run; the benchmark measures the steady state a long run lives in.
    """
    import orjson

    start = time.perf_counter()
    status = run_dir / "delivery.json"
    pid = None
    while backends and time.perf_counter() - start < timeout:
        try:
            data = orjson.loads(status.read_bytes())
            pid = data["pid"]
            states = {name: b["state"] for name, b in data["backends"].items()}
        except (FileNotFoundError, orjson.JSONDecodeError, KeyError):
            states = {}
        if states and all(states.get(name) in ("running", "done", "failed") for name in backends):
            break
        time.sleep(0.1)
    if backends:
        STARTUP_SECONDS.append(time.perf_counter() - start)
    return pid


STARTUP_SECONDS: list[float] = []
COSTS: dict[tuple[str, str], list[dict]] = {}  # (case, variant) -> per-round CPU accounting


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def machine_description() -> str:
    import torch

    cpu = cpu_name()
    return (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}, {platform.system()}")


def run_case(case: Case, rounds: int, workdir: Path) -> dict[str, list[list[float]]]:
    """Per variant, per round: the interval rates."""
    import torch

    from adamwprune.data import get_dataset
    from adamwprune.models.gpt2 import GPT

    dataset = get_dataset("pydocs")

    def fresh_model():
        torch.manual_seed(1337)
        return GPT.from_preset(case.model_name, vocab_size=dataset.vocab_size, block_size=case.block_size)

    results: dict[str, list[list[float]]] = {variant: [] for variant in VARIANTS}
    order = list(VARIANTS)
    plain_loop(fresh_model(), dataset, case, "cpu", _no_autocast, fused=False)  # warm-up, not recorded
    for index in range(rounds):
        random.Random(index).shuffle(order)
        for variant in order:
            if variant.startswith("plain"):
                rates = plain_loop(fresh_model(), dataset, case, "cpu", _no_autocast,
                                   fused=variant == "plain-fused")
            else:
                trackers = "both" if variant == "loop+both" else "none"
                costs: dict = {}
                rates = adamwprune_loop(dataset, case, "cpu", trackers, workdir, index, costs=costs)
                COSTS.setdefault((case.name, variant), []).append(costs)
            results[variant].append(rates)
            print(f"  {case.name} round {index + 1}/{rounds} {variant:<9} median {statistics.median(rates):8.0f} "
                  f"best {max(rates):8.0f} tok/s", flush=True)
    return results


def _no_autocast():
    import contextlib

    return contextlib.nullcontext()


def summarize(per_round: list[list[float]]) -> tuple[float, float]:
    """(median over rounds of each round's median interval, best interval of all rounds)."""
    return statistics.median(statistics.median(r) for r in per_round), max(max(r) for r in per_round)


def paired(numerator: list[list[float]], denominator: list[list[float]]) -> tuple[float, float, float]:
    """Median, min and max over rounds of the ratio of the rounds' median intervals."""
    ratios = [statistics.median(a) / statistics.median(b) for a, b in zip(numerator, denominator)]
    return statistics.median(ratios), min(ratios), max(ratios)


def report(results: dict[str, dict[str, list[list[float]]]]) -> str:
    lines = ["| case | variant | tok/s (median) | tok/s (best interval) |", "|---|---|---:|---:|"]
    for name, per_variant in results.items():
        case = CASES[name]
        label = f"{case.model_name}, block {case.block_size}, batch {case.batch_size}"
        for variant in VARIANTS:
            median, best = summarize(per_variant[variant])
            lines.append(f"| {label} | {variant} | {median:.0f} | {best:.0f} |")
    lines += ["", "| case | loop / plain: paired median (range) | best / best | loop / plain-fused "
              "| tracking cost 1 - both/loop: paired median (range) | best vs best |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, per_variant in results.items():
        case = CASES[name]
        speed, speed_lo, speed_hi = paired(per_variant["loop"], per_variant["plain"])
        own, own_lo, own_hi = paired(per_variant["loop"], per_variant["plain-fused"])
        track, track_lo, track_hi = paired(per_variant["loop+both"], per_variant["loop"])
        best = {v: summarize(per_variant[v])[1] for v in VARIANTS}
        lines.append(
            f"| {case.model_name}, block {case.block_size} "
            f"| {speed:.3f}x ({speed_lo:.3f} to {speed_hi:.3f}) | {best['loop'] / best['plain']:.3f}x "
            f"| {own:.3f}x ({own_lo:.3f} to {own_hi:.3f}) "
            f"| {100 * (1 - track):+.2f} % ({100 * (1 - track_hi):+.2f} to {100 * (1 - track_lo):+.2f}) "
            f"| {100 * (1 - best['loop+both'] / best['loop']):+.2f} % |")
    lines += ["", "CPU accounting of tracking over the timed windows (sums over rounds): time inside "
              "`tracker.log()` in the training process, and CPU used by the delivery process tree "
              "(delivery + wandb-core), each relative to the training process's CPU time.", "",
              "| case | variant | log() calls' time / training CPU | delivery CPU / training CPU |",
              "|---|---|---:|---:|"]
    for (name, variant), rounds_costs in COSTS.items():
        train_cpu = sum(c["train_cpu"] for c in rounds_costs)
        log_share = sum(c["log_seconds"] for c in rounds_costs) / train_cpu
        delivery_share = sum(c["delivery_cpu"] for c in rounds_costs) / train_cpu
        lines.append(f"| {name} | {variant} | {100 * log_share:.3f} % | {100 * delivery_share:.3f} % |")
    rounds = ", ".join(f"{name} {len(per_variant['loop'])}" for name, per_variant in results.items())
    lines.append(f"\nInterleaved rounds ({rounds}), variant order shuffled each round; an interval "
                 "is log_interval steps. Paired: ratio of the same round's medians, then the median over rounds.")
    if STARTUP_SECONDS:
        lines.append(f"Tracker start-up before the timed window (delivery process starting Trackio and "
                     f"W&B offline): median {statistics.median(STARTUP_SECONDS):.1f} s wall.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["tiny", "mid"])
    parser.add_argument("--rounds", type=int, help="interleaved rounds per case (default: per case, 6 / 3)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        workdir = Path(tmp)
        os.environ["TRACKIO_DIR"] = str(workdir / "trackio")
        os.environ["WANDB_DIR"] = str(workdir / "wandb")
        os.environ["WANDB_MODE"] = "offline"
        os.environ["WANDB_SILENT"] = "true"
        (workdir / "wandb").mkdir()
        print(f"machine: {machine_description()}", flush=True)
        results = {}
        for name in args.cases:
            case = CASES[name]
            results[name] = run_case(case, args.rounds or case.rounds, workdir)
        print()
        print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
