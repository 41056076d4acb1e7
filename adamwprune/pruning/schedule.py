"""How sparse a pruned run should be at each step.

Pruning starts at ``--pruning-warmup`` and reaches ``--target-sparsity`` after
``--pruning-ramp`` steps (0: at ``--max-iters``). With p the progress through the
ramp, in [0, 1]:

- ``zhu-gupta`` (default; Zhu & Gupta 2017): s·(1 − (1 − p)³), fast first, then gently;
- ``cubic-in`` (the original harness's, for state and magnitude pruning): s·p³;
- ``linear`` (the original harness's, for movement pruning): s·p.

Halfway through the ramp these give 87.5 %, 12.5 % and 50 % of the target.
"""

from __future__ import annotations

SCHEDULES = ("zhu-gupta", "cubic-in", "linear")


def ramp_end(warmup: int, ramp: int, max_iters: int) -> int:
    """The step at which the target is reached."""
    return warmup + (ramp if ramp > 0 else max(max_iters - warmup, 1))


def scheduled_sparsity(step: int, *, target: float, warmup: int, ramp: int, max_iters: int,
                       schedule: str = "zhu-gupta") -> float:
    """The sparsity the schedule asks for after step ``step``."""
    if step < warmup:
        return 0.0
    end = ramp_end(warmup, ramp, max_iters)
    p = min((step - warmup) / (end - warmup), 1.0)
    if schedule == "zhu-gupta":
        return target * (1.0 - (1.0 - p) ** 3)
    if schedule == "cubic-in":
        return target * p ** 3
    if schedule == "linear":
        return target * p
    raise ValueError(f"unknown pruning schedule {schedule!r}; expected one of {SCHEDULES}")


def short_ramp_warning(settings) -> str | None:
    """A warning when the ramp ends after the last step: the run will not reach its target."""
    if settings.pruning_method == "none":
        return None
    end = ramp_end(settings.pruning_warmup, settings.pruning_ramp, settings.max_iters)
    if end <= settings.max_iters:
        return None
    reached = scheduled_sparsity(settings.max_iters, target=settings.target_sparsity,
                                 warmup=settings.pruning_warmup, ramp=settings.pruning_ramp,
                                 max_iters=settings.max_iters, schedule=settings.pruning_schedule)
    return (f"warning: the pruning ramp ends at step {end}, after --max-iters {settings.max_iters}: "
            f"this run will reach {100 * reached:.1f}% sparsity, not the target "
            f"{100 * settings.target_sparsity:.1f}%")
