#!/usr/bin/env python3
"""The pruning results table: dense AdamW / AdamWSPAM / AdamWADV against magnitude, movement
and AdamWPrune state pruning (bitter0, bitter7) at 50 % and 90 %, on one budget, over seeds.

Every run is a real ``gpt2/train.py`` run (tiny GPT-2 on the built-in pydocs data, CPU,
``--tracker none``) with the same iteration budget, schedule and evaluation; only the
optimizer, the pruning method, the target and the seed differ. Runs are interleaved
(seed by seed, the order of the configurations rotating) so that machine noise falls on
all alike. Everything reported is read back from each run's own journal
(``metrics.jsonl``): the final validation loss and perplexity (the eval at the last
step), the sparsity measured from the weights at the last step, the median step time
(from the logged tokens/s), and the optimizer and pruning state bytes.

Differences in validation loss to dense AdamW (and, for pruned runs, to magnitude pruning
at the same target) are paired by seed: runs with the same seed start from the same weights
and see the same batches, so most of the seed-to-seed spread cancels. The table gives the
mean ± std of the per-seed differences, and says "not distinguishable" when the mean is
within twice that std.

    python benchmarks/pruning_results.py                       # 11 configurations x 3 seeds, ~25 min on 2 CPUs
    python benchmarks/pruning_results.py --seeds 1 --max-iters 60   # a quick look
    python benchmarks/pruning_results.py --write docs/results-pruning.md   # replaces the table there
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from machine import cpu_name

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    label: str
    flags: tuple[str, ...]
    target: float = 0.0

    @property
    def pruned(self) -> bool:
        return self.target > 0


def configurations() -> list[Config]:
    configs = [Config("AdamW (dense)", ("--optimizer", "adamw")),
               Config("AdamWSPAM (dense)", ("--optimizer", "adamwspam")),
               Config("AdamWADV (dense)", ("--optimizer", "adamwadv"))]
    for target in (0.5, 0.9):
        sparsity = ("--target-sparsity", f"{target:g}")
        configs += [
            Config(f"AdamW + magnitude {target:.0%}", ("--optimizer", "adamw", "--pruning-method", "magnitude",
                                                      *sparsity), target),
            Config(f"AdamW + movement {target:.0%}", ("--optimizer", "adamw", "--pruning-method", "movement",
                                                     *sparsity), target),
            *(Config(f"AdamWPrune state {variant} {target:.0%}",
                     ("--optimizer", "adamwprune", "--adamwprune-variant", variant, *sparsity), target)
              for variant in ("bitter0", "bitter7")),
        ]
    return configs


def budget(args: argparse.Namespace) -> tuple[str, ...]:
    """The flags every run shares: model, data, budget, schedule, evaluation."""
    ramp_start = args.max_iters // 5
    return ("--dataset", "pydocs", "--model-name", "gpt2-tiny", "--device", "cpu",
            "--block-size", str(args.block_size), "--batch-size", str(args.batch_size),
            "--max-iters", str(args.max_iters), "--max-time", "0", "--learning-rate", "1e-3", "--min-lr", "1e-4",
            "--warmup-iters", str(max(1, args.max_iters // 10)), "--log-interval", "10",
            "--eval-interval", str(args.max_iters), "--eval-samples", str(args.eval_samples),
            "--eval-batch-size", str(args.batch_size),
            "--no-save-checkpoint", "--tracker", "none",
            # pruning, when a run prunes: dense for the first 20 %, the ramp ends at 80 %
            "--pruning-warmup", str(ramp_start), "--pruning-ramp", str(args.max_iters * 3 // 5),
            "--pruning-interval", "10")


def run_one(config: Config, seed: int, args: argparse.Namespace, out: Path) -> dict:
    name = f"{config.label.replace(' ', '_').replace('%', '').replace('(', '').replace(')', '')}_s{seed}"
    shared = list(budget(args))
    if not config.pruned:  # the pruning flags apply to pruning runs only (the trainer refuses them otherwise)
        cut = shared.index("--pruning-warmup")
        shared = shared[:cut]
    command = [sys.executable, str(REPO / "gpt2" / "train.py"), *shared, *config.flags, "--seed", str(seed),
               "--output-dir", str(out), "--tracker-project", "results", "--tracker-run-name", name]
    started = time.monotonic()
    proc = subprocess.run(command, cwd=out, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"run {name} failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    records = [json.loads(line) for line in (out / "results" / name / "metrics.jsonl").read_text().splitlines()]
    metrics = [r for r in records if "metrics" in r]
    last_eval = max((r for r in metrics if "val_loss" in r["metrics"]), key=lambda r: r["step"])
    last_train = max((r for r in metrics if "sparsity" in r["metrics"]), key=lambda r: r["step"])
    tokens_per_iter = args.block_size * args.batch_size
    rates = [r["metrics"]["tokens_per_sec"] for r in metrics if "tokens_per_sec" in r["metrics"]]

    def first(key: str) -> float:
        return next(r["metrics"][key] for r in metrics if key in r["metrics"])

    assert last_eval["step"] == args.max_iters and last_train["step"] == args.max_iters, name
    return {"config": config.label, "seed": seed, "val_loss": last_eval["metrics"]["val_loss"],
            "val_perplexity": last_eval["metrics"]["val_perplexity"],
            "sparsity": last_train["metrics"]["sparsity"],
            "step_ms": 1e3 * tokens_per_iter / statistics.median(rates),
            "state_bytes": first("optimizer_state_bytes") + first("pruning_state_bytes"),
            "optimizer_state_bytes": first("optimizer_state_bytes"),
            "pruning_state_bytes": first("pruning_state_bytes"),
            "wall_s": time.monotonic() - started}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def compare(mine: list[dict], other: list[dict]) -> str:
    """The validation-loss difference to ``other``, paired by seed (same seed: same initial
    weights and the same batches, so most of the seed-to-seed spread cancels): mean ± std of
    the per-seed differences, or "not distinguishable" when the mean is within twice that std."""
    theirs = {r["seed"]: r["val_loss"] for r in other}
    differences = [r["val_loss"] - theirs[r["seed"]] for r in mine]
    mean, spread = mean_std(differences)
    if abs(mean) <= 2 * spread or len(differences) < 2:
        return "not distinguishable"
    return f"{mean:+.3f} ± {spread:.3f}"


def table(results: list[dict], configs: list[Config]) -> list[str]:
    by = {c.label: [r for r in results if r["config"] == c.label] for c in configs}

    def cell(label: str, key: str, fmt: str, scale: float = 1.0) -> str:
        m, s = mean_std([r[key] * scale for r in by[label]])
        return f"{m:{fmt}} ± {s:{fmt}}"

    lines = ["| run | val loss | val perplexity | sparsity (measured) | step ms | optimizer + pruning state "
             "| val loss vs dense AdamW | vs magnitude, same target |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for c in configs:
        mine = by[c.label]
        magnitude = f"AdamW + magnitude {c.target:.0%}"
        versus = "" if not c.pruned or c.label == magnitude or magnitude not in by else compare(mine, by[magnitude])
        state = by[c.label][0]
        bytes_cell = (f"{state['optimizer_state_bytes'] / 2**20:.1f} + {state['pruning_state_bytes'] / 2**20:.1f} MiB")
        lines.append(f"| {c.label} | {cell(c.label, 'val_loss', '.3f')} | {cell(c.label, 'val_perplexity', '.2f')} "
                     f"| {cell(c.label, 'sparsity', '.1f', 100)} % | {cell(c.label, 'step_ms', '.1f')} "
                     f"| {bytes_cell} | {'' if c.label == 'AdamW (dense)' else compare(mine, by['AdamW (dense)'])} | {versus} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per configuration (default 3: 1, 2, 3)")
    parser.add_argument("--max-iters", type=int, default=300, help="the iteration budget of every run")
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-samples", type=int, default=20, help="validation batches of the final eval")
    parser.add_argument("--only", default="", help="comma list of configuration labels to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write every run's numbers here")
    parser.add_argument("--write", type=Path, help="write the markdown table (with the command) here")
    args = parser.parse_args(argv)

    configs = configurations()
    if args.only:
        wanted = {label.strip() for label in args.only.split(",")}
        configs = [c for c in configs if c.label in wanted or c.label == "AdamW (dense)"]
    given = list(argv if argv is not None else sys.argv[1:])
    for option in ("--json", "--write"):  # where the output goes is not part of what was measured
        while option in given:
            del given[given.index(option):given.index(option) + 2]
    command = " ".join(["python benchmarks/pruning_results.py", *given])
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="pruning-results-") as tmp:
        for seed in range(1, args.seeds + 1):
            shift = (seed - 1) % len(configs)
            for config in configs[shift:] + configs[:shift]:
                result = run_one(config, seed, args, Path(tmp))
                results.append(result)
                print(f"seed {seed} {config.label}: val_loss {result['val_loss']:.4f}, sparsity "
                      f"{result['sparsity']:.4f}, {result['step_ms']:.1f} ms/step ({result['wall_s']:.0f} s)",
                      flush=True)
    import torch

    header = [f"Command: `{command.strip()}` ({(time.monotonic() - started) / 60:.0f} min)",
              "",
              f"Machine: CPU {cpu_name()}, torch {torch.__version__} with {torch.get_num_threads()} threads, "
              f"Python {platform.python_version()}, {platform.system()}.",
              "",
              f"Budget, every run: tiny GPT-2 (4 layers x 128) on pydocs, {args.max_iters} iterations of "
              f"{args.batch_size} x {args.block_size} tokens, lr 1e-3 cosine to 1e-4, seeds 1-{args.seeds}; pruning "
              f"from step {args.max_iters // 5} to {args.max_iters // 5 + args.max_iters * 3 // 5} (zhu-gupta, "
              f"mask update every 10 steps, one global threshold); final eval over {args.eval_samples} validation "
              f"batches of {args.batch_size} sequences at the last step. Mean ± std over seeds.",
              ""]
    text = "\n".join(header + table(results, configs)) + "\n"
    print("\n" + text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.write:
        write_between_markers(args.write, text)
    return 0


BEGIN, END = "<!-- results:begin (benchmarks/pruning_results.py writes this part) -->", "<!-- results:end -->"


def write_between_markers(path: Path, text: str) -> None:
    """Put ``text`` between the markers of ``path`` (the prose around them stays), or write a new
    file holding only the markers and ``text``."""
    block = f"{BEGIN}\n{text}{END}\n"
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        path.write_text(head + block + rest.split(END, 1)[1].lstrip("\n"))
    else:
        path.write_text(block)


if __name__ == "__main__":
    sys.exit(main())
