#!/usr/bin/env python3
"""Optimizer step time: AdamWSPAM, AdamWADV and AdamWPrune against torch's fused and foreach AdamW.

Every variant gets its own copy of the same GPT-2 model (same seed) with the same fake,
fixed gradients: ``p.grad`` is filled once from a seeded generator and never recomputed,
so only ``optimizer.step()`` is timed (no forward or backward). Variants:

- ``adamw-fused``:   ``torch.optim.AdamW(fused=True)`` (the baseline every ratio refers to);
- ``adamw-foreach``: ``torch.optim.AdamW(foreach=True)``;
- ``adamwspam``:     the registry's ``adamwspam`` with its default settings (fused AdamW
  underneath, spike-aware clip on);
- ``adamwspam-noclip``: the same with ``spam_enable_clip=False``: the difference to
  ``adamwspam`` is what the per-parameter clip costs;
- ``adamwadv``:      the registry's ``adamwadv`` (fused AdamW with AMSGrad);
- ``adamwprune-bitter0``, ``adamwprune-bitter7``: the registry's ``adamwprune`` (fused AdamW
  base) with its state pruner around the step, as the training loop calls it
  (``before_step``, ``step``, ``after_step``): pruning from the end of the warm-up towards
  50 % over 2000 steps, one global mask update every 50 steps (the default interval). When
  these are selected a round is 50 steps, so every timed round holds exactly one mask update
  and the mean per step is the cost with the updates amortized over the interval.

All use the model's two parameter groups (weight decay on the >= 2-D tensors only),
lr 6e-4, betas (0.9, 0.95), weight decay 0.1 (adamwadv: its own 0.01 default).

Each variant first takes ``--warmup`` untimed steps, more than SPAM's clip delay (default 20;
``--spam-clip-delay`` lowers it to save warm-up time on a slow machine, the timed step is the
same), so the clip runs in every timed step. Then ``--rounds`` rounds cycle through the
variants (the order rotates by one each round, so machine noise hits all alike); in each
round a variant takes ``--steps`` steps, each timed on its own (``torch.cuda.synchronize()``
before and after on a GPU). Reported per variant: the median ms per step over all timed
steps, the minimum, the median over rounds of (its median in the round / adamw-fused's
median in the round) with the range, the same ratio of round means (what the pruning
variants are judged by: their mask updates are in the mean, not the median), and minor page
faults per timed step (CPU: fresh temporaries). With the defaults no step reaches SPAM's momentum reset (step 1000).
``--clip-breakdown`` also times each op of SPAM's clip on the largest tensor.
docs/benchmarks-optimizers.md has results and their reading.

    python benchmarks/optimizer_step.py --models gpt2-tiny   # CPU, ~2 minutes on 2 busy cores
    python benchmarks/optimizer_step.py --models gpt2 --spam-clip-delay 1   # 124M, CPU, ~1.5-2.5 min
    python benchmarks/optimizer_step.py --device cuda        # both presets on a GPU
    python benchmarks/optimizer_step.py --models gpt2-tiny --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from machine import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = ("adamw-fused", "adamw-foreach", "adamwspam", "adamwspam-noclip", "adamwadv", "adamwprune-bitter0",
            "adamwprune-bitter7")
PRUNING_INTERVAL = 50  # the default --pruning-interval
BASELINE = "adamw-fused"
LR, BETAS, WEIGHT_DECAY = 6e-4, (0.9, 0.95), 0.1


def build_model(model_name: str, device: str, seed: int):
    """A fresh GPT-2 of preset ``model_name`` (GPT-2's padded vocabulary, block 1024), with
    fixed gradients drawn from ``seed`` (the same for every call with the same seed)."""
    import torch

    from adamwprune.models.gpt2 import GPT

    torch.manual_seed(seed)
    model = GPT.from_preset(model_name).to(device)
    generator = torch.Generator(device="cpu").manual_seed(seed + 1)
    for p in model.parameters():
        # float32 N(0, 1e-2): a plausible gradient scale; values do not change the arithmetic
        p.grad = (torch.randn(p.shape, generator=generator) * 1e-2).to(device)
    return model


def build_optimizer(variant: str, model, clip_delay: int = 20):
    import torch

    from adamwprune.optim import build_optimizer as registry_build
    from adamwprune.train.settings import TrainSettings

    groups = model.configure_optimizer_groups(WEIGHT_DECAY)
    if variant == "adamw-fused":
        return torch.optim.AdamW(groups, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY, fused=True)
    if variant == "adamw-foreach":
        return torch.optim.AdamW(groups, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY, foreach=True)
    if variant == "adamwspam":
        settings = TrainSettings(optimizer="adamwspam", learning_rate=LR, beta1=BETAS[0], beta2=BETAS[1],
                                 weight_decay=WEIGHT_DECAY, spam_clip_delay=clip_delay)
        return registry_build("adamwspam", groups, settings)
    if variant == "adamwspam-noclip":
        settings = TrainSettings(optimizer="adamwspam", learning_rate=LR, beta1=BETAS[0], beta2=BETAS[1],
                                 weight_decay=WEIGHT_DECAY, spam_clip_delay=clip_delay, spam_enable_clip=False)
        return registry_build("adamwspam", groups, settings)
    if variant == "adamwadv":
        settings = TrainSettings(optimizer="adamwadv", learning_rate=LR, beta1=BETAS[0], beta2=BETAS[1],
                                 weight_decay=0.01)
        return registry_build("adamwadv", groups, settings)
    if variant.startswith("adamwprune-"):
        return registry_build("adamwprune", groups, adamwprune_settings(variant, 0))
    raise ValueError(f"unknown variant {variant!r}")


def adamwprune_settings(variant: str, start: int):
    """Settings of an AdamWPrune variant whose pruning starts at step ``start`` (the first mask
    update that prunes is ``start`` + PRUNING_INTERVAL)."""
    from adamwprune.train.settings import TrainSettings

    return TrainSettings(optimizer="adamwprune", pruning_method="state", adamwprune_variant=variant.split("-")[1],
                         learning_rate=LR, beta1=BETAS[0], beta2=BETAS[1], weight_decay=WEIGHT_DECAY,
                         target_sparsity=0.5, pruning_warmup=start, pruning_ramp=2000,
                         pruning_interval=PRUNING_INTERVAL, max_iters=start + 2000)


def build_step(variant: str, model, optimizer, warmup: int):
    """What one timed step runs: ``optimizer.step()``, with the pruner's hooks around it for the
    AdamWPrune variants (as the training loop calls them)."""
    if not variant.startswith("adamwprune-"):
        return optimizer.step
    from adamwprune.pruning import build_pruner

    pruner = build_pruner("state", model.prunable_parameters(), optimizer, adamwprune_settings(variant, warmup))
    taken = 0

    def step() -> None:
        nonlocal taken
        pruner.before_step()
        optimizer.step()
        taken += 1
        pruner.after_step(taken)

    step.pruner = pruner
    return step


def describe_optimizer(optimizer) -> str:
    """Which torch AdamW implementation a built optimizer will use."""
    defaults = optimizer.defaults
    kind = "fused" if defaults.get("fused") else "foreach" if defaults.get("foreach") else "default"
    return f"{type(optimizer).__name__}({kind}{', amsgrad' if defaults.get('amsgrad') else ''})"


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where getrusage is missing)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def bench_model(model_name: str, device: str, variants: tuple[str, ...], warmup: int, rounds: int,
                steps: int, seed: int, clip_delay: int = 20) -> dict:
    import torch

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    runs = {}
    for variant in variants:
        model = build_model(model_name, device, seed)
        optimizer = build_optimizer(variant, model, clip_delay)
        runs[variant] = (model, optimizer, build_step(variant, model, optimizer, warmup))
    n_params = sum(p.numel() for p in runs[variants[0]][0].parameters())
    n_tensors = sum(len(g["params"]) for g in runs[variants[0]][1].param_groups)

    for variant in variants:  # untimed: state allocation, past SPAM's clip delay
        step = runs[variant][2]
        for _ in range(warmup):
            step()
    sync()

    times: dict[str, list[float]] = {v: [] for v in variants}
    faults = {v: 0 for v in variants}  # minor page faults in the timed steps (CPU: fresh temporaries)
    per_round: list[dict[str, float]] = []
    round_means: list[dict[str, float]] = []
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        medians, means = {}, {}
        for variant in order:
            step = runs[variant][2]
            mine = []
            f0 = minor_faults()
            for _ in range(steps):
                sync()
                start = time.perf_counter()
                step()
                sync()
                mine.append(time.perf_counter() - start)
            faults[variant] += minor_faults() - f0
            times[variant].extend(mine)
            medians[variant] = statistics.median(mine)
            means[variant] = statistics.fmean(mine)
        per_round.append(medians)
        round_means.append(means)

    # the clip really ran: AdamWSPAM counted elements in its timed steps
    checks = {}
    for variant in variants:
        optimizer = runs[variant][1]
        if hasattr(optimizer, "interval_metrics"):
            elements = optimizer._elements
            metrics = optimizer.interval_metrics()
            checks[variant] = {"clip_elements_seen": elements,
                               "clipped_fraction": float(metrics["spam_clipped_fraction"]),
                               "applied_lr": metrics["learning_rate"]}

    for variant in variants:  # the pruning variants really pruned in the timed steps
        pruner = getattr(runs[variant][2], "pruner", None)
        if pruner is not None:
            checks[variant] = {"sparsity_after": float(pruner.sparsity())}

    result = {"model": model_name, "parameters": n_params, "tensors": n_tensors, "variants": {}}
    has_base = BASELINE in variants
    for variant in variants:
        ratios = [rnd[variant] / rnd[BASELINE] for rnd in per_round] if has_base else []
        mean_ratios = [rnd[variant] / rnd[BASELINE] for rnd in round_means] if has_base else []
        result["variants"][variant] = {
            "implementation": describe_optimizer(runs[variant][1]),
            "median_ms": 1e3 * statistics.median(times[variant]),
            "mean_ms": 1e3 * statistics.fmean(times[variant]),
            "min_ms": 1e3 * min(times[variant]),
            "ratio_to_fused": statistics.median(ratios) if ratios else None,
            "ratio_range": (min(ratios), max(ratios)) if ratios else None,
            "mean_ratio_to_fused": statistics.median(mean_ratios) if mean_ratios else None,
            "mean_ratio_range": (min(mean_ratios), max(mean_ratios)) if mean_ratios else None,
            "timed_steps": len(times[variant]),
            "page_faults_per_step": faults[variant] / len(times[variant]),
            **checks.get(variant, {}),
        }
    del runs
    return result


def clip_breakdown(model_name: str, device: str, seed: int, repeats: int = 9) -> list[tuple[str, float, float]]:
    """Median ms (and minor page faults per call, CPU only) of each torch op of AdamWSPAM's clip
    (``_clip_spikes``) on the model's largest tensor, and of the whole clip over all tensors."""
    import torch

    from adamwprune.optim.spam import AdamWSPAM

    model = build_model(model_name, device, seed)
    groups = model.configure_optimizer_groups(WEIGHT_DECAY)
    optimizer = AdamWSPAM(groups, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY, clip_delay=0)
    optimizer.step()  # creates the state
    p = max(model.parameters(), key=lambda t: t.numel())
    g, v = p.grad, optimizer.state[p]["exp_avg_sq"]
    limit = v.mul(50.0)
    spikes = g.square() > limit
    out = torch.empty_like(g)

    def timed(fn) -> tuple[float, float]:
        fn()
        times, f0 = [], minor_faults()
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times), (minor_faults() - f0) / repeats

    ops = [
        (f"limit = v.mul(theta)  [{g.numel() / 1e6:.1f}M elements]", lambda: v.mul(50.0)),
        ("g.square()", lambda: g.square()),
        ("spikes = g.square() > limit", lambda: g.square() > limit),
        ("g.sign() * limit.sqrt()", lambda: g.sign() * limit.sqrt()),
        ("torch.where(spikes, ..., g)", lambda: torch.where(spikes, g, limit)),
        ("g.copy_(...)  (into another tensor here)", lambda: out.copy_(g)),
        ("spikes.sum()  (the clipped count)", lambda: spikes.sum()),
        ("  for comparison: spikes.count_nonzero()", lambda: spikes.count_nonzero()),
        ("the clip of that tensor, as AdamWSPAM does it", lambda: optimizer._clip_spikes(
            {"params": [p]})),
        ("the clip of all tensors (both groups)", lambda: [optimizer._clip_spikes(gr)
                                                           for gr in optimizer.param_groups]),
    ]
    return [(name, *timed(fn)) for name, fn in ops]


def load() -> str:
    """The 1/5/15-minute load averages (other work on a shared machine shows here)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def machine(device: str) -> str:
    import torch

    cpu = cpu_name()
    parts = [f"CPU {cpu}", f"torch {torch.__version__}", f"{torch.get_num_threads()} threads",
             f"Python {platform.python_version()}", platform.system()]
    if device.startswith("cuda"):
        parts.insert(0, f"GPU {torch.cuda.get_device_name()}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--models", default="gpt2-tiny,gpt2", help="comma list of GPT-2 presets")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list of " + ", ".join(VARIANTS))
    parser.add_argument("--spam-clip-delay", type=int, default=20, help="SPAM's clip delay (default: SPAM's "
                        "default 20; a smaller one shortens the warm-up needed, the step after it is the same)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per variant (default: the clip "
                        "delay + 2, so SPAM's clip runs in every timed step)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default: 10; "
                        "3 for presets other than gpt2-tiny on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant per round "
                        "(default: 50, one pruning interval, with an adamwprune variant; else 10, and 1 for presets other "
                        "than gpt2-tiny on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--clip-breakdown", action="store_true", help="also time each op of AdamWSPAM's clip "
                        "on each model's largest tensor (with minor page faults per call on CPU)")
    args = parser.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")

    warmup = args.warmup if args.warmup is not None else args.spam_clip_delay + 2
    if warmup <= args.spam_clip_delay:
        parser.error("--warmup must exceed --spam-clip-delay, or SPAM's clip does not run in the timed steps")
    print(machine(args.device), flush=True)
    print(f"load average at start: {load()}", flush=True)
    started = time.perf_counter()
    results = []
    for model_name in (m.strip() for m in args.models.split(",") if m.strip()):
        small = model_name == "gpt2-tiny" or args.device.startswith("cuda")
        rounds = args.rounds or (10 if small else 3)
        pruning = any(v.startswith("adamwprune-") for v in variants)
        steps = args.steps or (PRUNING_INTERVAL if pruning else 10 if small else 1)
        t0 = time.perf_counter()
        result = bench_model(model_name, args.device, variants, warmup, rounds, steps, args.seed,
                             args.spam_clip_delay)
        result.update(rounds=rounds, steps=steps, warmup=warmup, spam_clip_delay=args.spam_clip_delay,
                      seconds=time.perf_counter() - t0, load_after=load())
        results.append(result)
        print(f"\n{model_name}: {result['parameters'] / 1e6:.1f}M parameters in {result['tensors']} tensors; "
              f"{rounds} rounds x {steps} timed steps per variant, warm-up {warmup} "
              f"(SPAM clip delay {args.spam_clip_delay}); {result['seconds']:.0f} s; "
              f"load average after: {result['load_after']}", flush=True)
        print("| variant | implementation | median ms/step | mean ms/step | min ms/step "
              "| ratio to fused AdamW, medians (range) | ratio, means (range) | minor page faults/step |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")

        def ratio(value, span) -> str:
            return "n/a" if value is None else f"{value:.2f}x ({span[0]:.2f} to {span[1]:.2f})"

        for variant, r in result["variants"].items():
            print(f"| {variant} | {r['implementation']} | {r['median_ms']:.2f} | {r['mean_ms']:.2f} "
                  f"| {r['min_ms']:.2f} | {ratio(r['ratio_to_fused'], r['ratio_range'])} "
                  f"| {ratio(r['mean_ratio_to_fused'], r['mean_ratio_range'])} | {r['page_faults_per_step']:.0f} |")
        for variant, r in result["variants"].items():
            if "clip_elements_seen" in r:
                print(f"  {variant}: elements through the clip in the timed steps {r['clip_elements_seen']}, "
                      f"clipped fraction {r['clipped_fraction']:.3g}, applied lr {r['applied_lr']:.3g}")
            if "sparsity_after" in r:
                print(f"  {variant}: sparsity of the prunable weights after the timed steps "
                      f"{r['sparsity_after']:.4f} (a mask update every {PRUNING_INTERVAL} steps)")
    if args.clip_breakdown:
        for model_name in (m.strip() for m in args.models.split(",") if m.strip()):
            print(f"\nAdamWSPAM clip, op by op, {model_name}:")
            print("| op | median ms | minor page faults per call |")
            print("|---|---:|---:|")
            for name, ms, faults in clip_breakdown(model_name, args.device, args.seed):
                print(f"| {name} | {ms:.2f} | {faults:.0f} |")
    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(args.device), "device": args.device,
                                         "results": results, "seconds": total}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
