"""Learning-rate schedule: linear warmup, then cosine decay to ``min_lr`` (or constant)."""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "constant")


def learning_rate(iteration: int, *, base_lr: float, min_lr: float, warmup_iters: int,
                  max_iters: int, schedule: str = "cosine") -> float:
    """LR for optimizer step ``iteration`` (0-based index of the step about to be taken).

    Warmup ramps linearly from base_lr/warmup_iters to base_lr over the first
    ``warmup_iters`` steps. ``cosine`` then decays to ``min_lr`` at ``max_iters``
    and stays there; ``constant`` keeps ``base_lr``.
    """
    if warmup_iters > 0 and iteration < warmup_iters:
        return base_lr * (iteration + 1) / warmup_iters
    if schedule == "constant":
        return base_lr
    if schedule != "cosine":
        raise ValueError(f"unknown LR schedule {schedule!r}; expected one of {SCHEDULES}")
    decay_iters = max_iters - warmup_iters
    if decay_iters <= 0 or iteration >= max_iters:
        return min_lr
    progress = (iteration - warmup_iters) / decay_iters
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (base_lr - min_lr)
