#!/usr/bin/env python3
"""GPT-2 124M training throughput and MFU in bf16 on one CUDA GPU: adamwprune's loop vs a plain loop.

One prepared script for a GPU machine (no dataset or network needed: random GPT-2 token ids
stand in for FineWeb-Edu, which does not change the arithmetic). Variants, each on a fresh
model with the same seed, batch 16 x 1024 tokens, bf16 autocast, fused AdamW:

- ``plain+compile``: get_batch, forward, backward, step, zero_grad on torch.compile(model);
- ``loop+compile``:  adamwprune's train() with --compile (tracker none: journal only);
- ``loop``:          adamwprune's train() without compile.

tokens/s is timed outside the loop over the steps after warm-up (compilation happens in the
warm-up); MFU = tokens/s x model.flops_per_token() / peak bf16 FLOP/s of the GPU
(adamwprune.train.hardware). The loop's own logged ``mfu`` is shown beside it as a cross-check.

    python benchmarks/gpu_train_throughput.py                 # ~3-5 minutes on an H100
    python benchmarks/gpu_train_throughput.py --batch-size 8 --steps 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import train_throughput as bench  # noqa: E402


def random_token_dataset(tokens: int, seed: int = 0):
    """Uniform random GPT-2 token ids in a TokenDataset (the loop's data interface)."""
    import numpy as np

    from adamwprune.data.tokens import TokenDataset

    rng = np.random.default_rng(seed)
    split = {name: [rng.integers(0, 50257, size=n, dtype=np.uint16)]
             for name, n in (("train", tokens), ("val", tokens // 10))}
    return TokenDataset("random-gpt2", split, encoding="gpt2", n_token_ids=50257, eot_token=50256)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-name", default="gpt2")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps (compilation happens here)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps (a multiple of --log-interval)")
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--device", default="cuda",
                        help="cuda; 'cpu' only to smoke-test this script (fp32, no MFU)")
    args = parser.parse_args(argv)

    import contextlib
    import platform

    import torch

    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_train_throughput: error: no CUDA GPU visible; run this on a GPU machine", file=sys.stderr)
        return 2
    from adamwprune.models.gpt2 import GPT
    from adamwprune.train.hardware import cuda_peak_flops

    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    peak = cuda_peak_flops(device)
    case = bench.Case("gpu", args.model_name, args.block_size, args.batch_size, warmup=args.warmup,
                      steps=args.steps, log_interval=args.log_interval, rounds=1)
    dataset = random_token_dataset(tokens=20_000_000)

    def fresh_model():
        torch.manual_seed(1337)
        return GPT.from_preset(args.model_name, vocab_size=dataset.vocab_size,
                               block_size=args.block_size).to(device)

    flops_per_token = fresh_model().flops_per_token()
    peak_text = f"{peak / 1e12:.0f} TFLOP/s" if peak else "unknown: no MFU"
    print(f"device: {name} (peak bf16 {peak_text}), "
          f"torch {torch.__version__}, {args.model_name} {flops_per_token / 1e6:.0f} MFLOP/token, "
          f"batch {args.batch_size} x {args.block_size}", flush=True)

    def bf16():
        if device.startswith("cuda"):
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        histories: dict[str, list] = {"loop+compile": [], "loop": []}
        variants = {
            "plain+compile": lambda: bench.plain_loop(torch.compile(fresh_model()), dataset, case, device,
                                                      bf16, fused=True),
            "loop+compile": lambda: bench.adamwprune_loop(dataset, case, device, "none", Path(tmp), 0,
                                                          compile_model=True, history=histories["loop+compile"]),
            "loop": lambda: bench.adamwprune_loop(dataset, case, device, "none", Path(tmp), 1,
                                                  history=histories["loop"]),
        }
        for variant, measure in variants.items():
            start = time.perf_counter()
            rates = measure()
            rate = statistics.median(rates)
            mfu = rate * flops_per_token / peak if peak else None
            logged = [m["mfu"] for step, m in histories.get(variant, []) if "mfu" in m and step > args.warmup]
            results[variant] = {"tokens_per_sec": rate, "mfu": mfu, "intervals": rates,
                                "logged_mfu": statistics.median(logged) if logged else None,
                                "wall_s": time.perf_counter() - start}
            print(f"  {variant:<14} {rate:12.0f} tok/s  MFU {_percent(mfu)}", flush=True)
            if device.startswith("cuda"):
                torch.cuda.empty_cache()

    print("\n| variant | tokens/s | MFU | MFU the loop logged |\n|---|---:|---:|---:|")
    for variant, r in results.items():
        print(f"| {variant} | {r['tokens_per_sec']:.0f} | {_percent(r['mfu'])} | {_percent(r['logged_mfu'])} |")
    ratio = results["loop+compile"]["tokens_per_sec"] / results["plain+compile"]["tokens_per_sec"]
    print(f"\nloop+compile / plain+compile = {ratio:.3f}x on {name}")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "peak_flops": peak, "torch": torch.__version__,
                                         "flops_per_token": flops_per_token, "args": vars(args) | {"json": str(args.json)},
                                         "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
