"""AdamWPrune's scores ("bitter" variants): how state pruning ranks weights from Adam's moments.

With w the weight, m = ``exp_avg`` and v = ``exp_avg_sq`` (Adam's raw moments, not
bias-corrected; with AMSGrad still v, not its running maximum) and ε = 1e-8 (EPS, a
constant, not the optimizer's eps); the lowest scores are pruned first:

- bitter0: |w·m|·|w| / (√v + ε)            (the default, as in the original harness)
- bitter1: |w|                              (magnitude, on AdamWPrune's schedule)
- bitter3: |w|·√(|m| + ε)
- bitter4: bitter3's score, with per-layer sparsity rising linearly with depth from 0.7x
  to 1.3x the target (each at most 0.95), scaled so that the overall sparsity is the target
- bitter5: sign(w)·m / (√v + ε) + 0.1·|w|
- bitter6: |w|·√(|m| + ε)·√(m² / (v + ε))
- bitter7: |w|·(|v| + ε)^¼                  (the one the original harness's docs recommend)

Until a weight has Adam state (before the first optimizer step) every variant scores |w|.
The original harness's bitter2, bitter8 and bitter9 are not scores of their own (bitter1
with a longer budget, bitter7 in fp16, bitter7 compiled); they are refused with a line
that says which variant and setting give the same thing.

Nothing here imports torch: the functions use tensor methods only, so the settings can
list the variants without loading torch.
"""

from __future__ import annotations

from typing import Any, Callable

EPS = 1e-8
DEFAULT = "bitter0"
LAYERED = ("bitter4",)  # variants whose sparsity differs per layer (by depth)
DEPTH_FACTORS = (0.7, 1.3)  # the first and last layer's share of the target (bitter4)
LAYER_CAP = 0.95  # no layer goes sparser than this (bitter4)

Score = Callable[[Any, Any, Any], Any]  # (w, m, v) -> score, same shape


def _bitter3(w, m, v):
    return w.abs() * (m.abs() + EPS).sqrt()


SCORES: dict[str, Score] = {
    "bitter0": lambda w, m, v: (w * m).abs() * w.abs() / (v.sqrt() + EPS),
    "bitter1": lambda w, m, v: w.abs(),
    "bitter3": _bitter3,
    "bitter4": _bitter3,
    "bitter5": lambda w, m, v: w.sign() * m / (v.sqrt() + EPS) + 0.1 * w.abs(),
    "bitter6": lambda w, m, v: w.abs() * (m.abs() + EPS).sqrt() * (m.square() / (v + EPS)).sqrt(),
    "bitter7": lambda w, m, v: w.abs() * (v.abs() + EPS).pow(0.25),
}

REFUSED: dict[str, str] = {
    "bitter2": "bitter2 is bitter1 with a longer budget: use --adamwprune-variant bitter1 and more --max-iters",
    "bitter8": "bitter8 is bitter7 in fp16: use --adamwprune-variant bitter7 (on a GPU this harness "
               "computes in bf16 autocast already)",
    "bitter9": "bitter9 is bitter7 compiled: use --adamwprune-variant bitter7 --compile",
}


def names() -> tuple[str, ...]:
    return tuple(SCORES)


def score(variant: str, w, m=None, v=None):
    """The variant's score of weight ``w`` given its moments (None before the first step: |w|)."""
    if m is None or v is None:
        return w.abs()
    return SCORES[variant](w, m, v)


def layer_sparsities(target: float, sizes: list[int]) -> list[float]:
    """bitter4's per-layer sparsities, in depth order: proportional to a factor rising linearly
    from 0.7 to 1.3, each at most 0.95, with one common scale found so that the weighted mean
    is ``target`` (bisection; exact up to float rounding)."""
    n = len(sizes)
    low, high = DEPTH_FACTORS
    factors = [low + (high - low) * i / (n - 1) if n > 1 else 1.0 for i in range(n)]
    total = sum(sizes)

    def overall(scale: float) -> float:
        return sum(size * min(LAYER_CAP, scale * f * target) for size, f in zip(sizes, factors)) / total

    if target <= 0:
        return [0.0] * n
    if overall(1e9) < target:  # the caps cannot hold the target: every layer at the cap
        return [LAYER_CAP] * n
    a, b = 0.0, 1.0
    while overall(b) < target:
        b *= 2
    for _ in range(100):
        mid = (a + b) / 2
        a, b = (mid, b) if overall(mid) < target else (a, mid)
    return [min(LAYER_CAP, b * f * target) for f in factors]
