"""Validation points: which micro-batches each rank evaluates, how a batch is sliced, and what
evaluation will cost a session (the warning when it would take more than a quarter of it).

A validation point is ``eval_samples`` batches of ``eval_batch_size`` held-out items, each
processed in micro-batches of at most ``batch_size`` (:func:`eval_plan`); under DDP the
micro-batches are split over the ranks and the per-micro-batch sums gathered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from adamwprune.train.console import clock
from adamwprune.train.settings import TrainSettings


BUDGET_EVAL_SHARE = 0.25   # warn when evaluation is planned to take more of a run than this
EVAL_NOTE_SECONDS = 60.0   # say how long an evaluation will take when it is longer than this


def eval_plan(batches: int, batch_size: int, micro: int, rank: int = 0, world_size: int = 1):
    """This rank's share of a validation point: ``(batch, start, stop)`` of each micro-batch it evaluates.

    The point's ``batches`` x ceil(``batch_size`` / ``micro``) micro-batches are numbered in order
    (batch by batch) and split into ``world_size`` contiguous runs of nearly equal length; rank r takes
    run r. Together the ranks cover every micro-batch once, whatever the world size.
    """
    per_batch = -(-batch_size // micro)
    units = batches * per_batch
    for unit in range(rank * units // world_size, (rank + 1) * units // world_size):
        index, part = divmod(unit, per_batch)
        yield index, part * micro, min((part + 1) * micro, batch_size)


def slice_batch(batch: Any, start: int, stop: int) -> Any:
    """Items ``start:stop`` of a batch: a tensor, or a tuple/list/dict of them (other values as they are)."""
    if torch.is_tensor(batch):
        return batch[start:stop]
    if isinstance(batch, dict):
        return {key: slice_batch(value, start, stop) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(slice_batch(value, start, stop) for value in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(slice_batch(value, start, stop) for value in batch)
    return batch


def eval_points(start: int, end: int, interval: int) -> int:
    """Validation points of a session that trains from step ``start`` to ``end``: step 0 (a new run),
    every multiple of ``interval`` after ``start``, and the last step."""
    points = (1 if start == 0 else 0) + end // interval - start // interval
    return points + (1 if end > start and end % interval else 0)


@dataclass(frozen=True)
class SessionPlan:
    """What a session will spend, projected from a measured step time and evaluation time."""

    end: int                 # the step it will stop at
    evals: int               # validation points, step 0 included for a new run
    eval_seconds: float      # time in evaluations
    total_seconds: float     # training + evaluation
    time_binds: bool         # the time limit ends it before max_iters

    @property
    def eval_share(self) -> float:
        return self.eval_seconds / self.total_seconds if self.total_seconds > 0 else 0.0


def plan_session(start: int, max_iters: int, time_left: float | None, sec_per_iter: float,
                 eval_seconds: float, eval_interval: int) -> SessionPlan:
    """The session that trains from step ``start`` until ``max_iters`` or until ``time_left`` seconds
    (None: no limit) are spent, whichever comes first."""
    def plan(end: int, time_binds: bool = False) -> SessionPlan:
        evals = eval_points(start, end, eval_interval)
        spent = evals * eval_seconds
        return SessionPlan(end, evals, spent, (end - start) * sec_per_iter + spent, time_binds)

    full = plan(max_iters)
    if time_left is None or full.total_seconds <= time_left:
        return full
    low, high = start, max_iters  # the last step whose time fits (the time spent grows with the step)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if plan(middle).total_seconds <= time_left else (low, middle - 1)
    return plan(low, time_binds=True)


def _round_down(value: int) -> int:
    """``value`` with at most two significant digits, rounded down (20, 150, 2100)."""
    scale = 10 ** max(len(str(value)) - 2, 0)
    return max(value // scale * scale, 1)


def _round_up(value: int) -> int:
    scale = 10 ** max(len(str(value)) - 2, 0)
    return -(-value // scale) * scale


def eval_budget_warning(settings: TrainSettings, start: int, time_left: float | None, sec_per_iter: float,
                        eval_seconds: float, whole_split: bool = False) -> str | None:
    """A ``warning:`` line when evaluation is planned to take more than a quarter of the session, naming
    an --eval-samples and an --eval-interval that fit; None when it fits. ``whole_split``: the adapter
    evaluates a fixed split whole (``eval_batch_at``), whatever --eval-samples: only the interval helps."""
    s, limit = settings, BUDGET_EVAL_SHARE

    def session(samples: int = settings.eval_samples, interval: int = settings.eval_interval) -> SessionPlan:
        return plan_session(start, s.max_iters, time_left, sec_per_iter,
                            eval_seconds * samples / s.eval_samples, interval)

    now = session()
    if now.eval_share <= limit:
        return None
    fits = []
    if not whole_split and s.eval_samples > 1 and session(samples=1).eval_share <= limit:
        low, high = 1, s.eval_samples - 1  # the most batches that fit (the share grows with them)
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if session(samples=middle).eval_share <= limit else (low, middle - 1)
        fits.append(f"--eval-samples {_round_down(low)}")
    longest = max(s.max_iters, s.eval_interval)
    if session(interval=longest).eval_share <= limit:
        low, high = s.eval_interval + 1, longest  # the shortest interval that fits
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if session(interval=middle).eval_share <= limit else (middle + 1, high)
        fits.append(f"--eval-interval {min(_round_up(low), longest)}")
    advice = (" or ".join(fits) + f" keeps it under {limit:.0%}" if fits else
              f"even one evaluation takes more than {limit:.0%}: raise the budget" if whole_split else
              f"even --eval-samples 1 takes more than {limit:.0%}: lower --eval-batch-size or raise the budget")
    each = f"{eval_seconds:.1f}s" if eval_seconds < 60 else clock(eval_seconds)
    budget = (f"of the {clock(time_left)} that --max-time {s.max_time} allows" if now.time_binds
              else f"of about {clock(now.total_seconds)} for {now.end - start} iterations")
    return (f"warning: evaluation will take about {now.eval_share:.0%} of this run ({now.evals} evaluations "
            f"x {each} {budget}); {advice}")
