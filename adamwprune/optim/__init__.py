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
    Fused kernels are used on CUDA when every parameter lives there.
    """
    import torch

    key = check_optimizer(name)
    groups = list(param_groups)
    params = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    on_cuda = bool(params) and all(p.is_cuda for p in params)
    if key == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    extra = {"fused": True} if on_cuda else {}
    if key == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, weight_decay=weight_decay, **extra)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay, **extra)
