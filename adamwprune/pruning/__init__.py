"""Pruning hook: the training loop calls ``pruner.step(iteration)`` after each optimizer step.

Only ``none`` exists today; magnitude, movement and state pruning arrive in a
later issue and are refused with a clear message until then.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from adamwprune.errors import UserError

AVAILABLE = ("none",)
PLANNED = ("magnitude", "movement", "state")
METHODS = AVAILABLE + PLANNED


class Pruner(Protocol):
    """What the loop needs from a pruning method."""

    def step(self, iteration: int) -> None:
        """Called after optimizer step ``iteration`` (1-based count of completed steps)."""


class NoPruning:
    """The ``none`` method: weights are never touched."""

    def step(self, iteration: int) -> None:
        return None


def check_pruning_method(method: str) -> str:
    """Validate a pruning method name early; returns it normalized."""
    key = (method or "none").strip().lower()
    if key in PLANNED:
        raise UserError(f"pruning method {key!r} is not available yet; use 'none'")
    if key not in AVAILABLE:
        raise UserError(f"unknown pruning method {method!r}; choose one of {', '.join(METHODS)}")
    return key


def build_pruner(method: str, prunable: Sequence[tuple[str, object]], *, target_sparsity: float = 0.0,
                 warmup_iters: int = 0, ramp_iters: int = 0, max_iters: int = 0) -> Pruner:
    """Return the pruner for ``method`` over ``prunable`` ``[(name, weight)]``.

    Sparsity is 0 for ``warmup_iters`` steps, then ramps to ``target_sparsity`` over
    ``ramp_iters`` steps (0: until ``max_iters``)."""
    check_pruning_method(method)
    return NoPruning()


def measure_sparsity(prunable: Sequence[tuple[str, object]]):
    """Fraction of exact zeros over the prunable weights, as a 0-dim tensor (no host sync)."""
    import torch

    weights = [w for _, w in prunable]
    if not weights:
        return torch.zeros(())
    with torch.no_grad():
        zeros = sum((w == 0).sum() for w in weights)
        total = sum(w.numel() for w in weights)
        return zeros.float() / total
