"""Optimizers by name: a registry of builders.

A builder takes the model's parameter groups (each may carry its own
``weight_decay``, e.g. none for biases and norms) and the run's settings, and
returns a torch optimizer whose counters and moments live in its own
``state_dict()`` (that is all a checkpoint saves of it). Register your own with
:func:`register_optimizer`; docs/extending.md has a complete example.

AdamWPrune (``adamwprune``) is its base optimizer (``--adamwprune-base``) paired with
state pruning, which scores weights from that optimizer's moments
(``adamwprune/pruning/variants.py``); the pairing is checked with the settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from adamwprune.registry import Registry

if TYPE_CHECKING:
    import torch

    from adamwprune.train.settings import TrainSettings

Builder = Callable[[list[dict[str, Any]], "TrainSettings"], "torch.optim.Optimizer"]

REGISTRY: Registry[Builder] = Registry("optimizer")
ADAMWPRUNE_BASES = ("adam", "adamw", "adamwadv", "adamwspam")  # the optimizers AdamWPrune can step with
names, check_optimizer = REGISTRY.names, REGISTRY.check


def register_optimizer(name: str, builder: Builder) -> None:
    """Make ``--optimizer name`` build its optimizer with ``builder(param_groups, settings)``."""
    REGISTRY.register(name, builder)


def build_optimizer(name: str, param_groups: list[dict[str, Any]], settings: "TrainSettings"):
    """The optimizer ``name`` over ``param_groups``, configured from ``settings``."""
    return REGISTRY[name](list(param_groups), settings)


def fused_or_plain(cls: type, groups: list[dict[str, Any]], **options: Any):
    """``cls(groups, fused=True, ...)`` where torch has a fused kernel for these parameters' device.

    On CPU the fused AdamW step is about 3x faster than torch's default.
    """
    try:
        return cls(groups, fused=True, **options)
    except RuntimeError as err:  # this torch has no fused kernel for these params' device/dtype
        if "fused" not in str(err):
            raise
        return cls(groups, **options)


def _sgd(groups: list[dict[str, Any]], s: "TrainSettings"):
    import torch

    return fused_or_plain(torch.optim.SGD, groups, lr=s.learning_rate, weight_decay=s.weight_decay,
                          momentum=s.momentum)


def _adam(groups: list[dict[str, Any]], s: "TrainSettings"):
    import torch

    return fused_or_plain(torch.optim.Adam, groups, lr=s.learning_rate, weight_decay=s.weight_decay,
                          betas=(s.beta1, s.beta2))


def _adamw(groups: list[dict[str, Any]], s: "TrainSettings"):
    import torch

    return fused_or_plain(torch.optim.AdamW, groups, lr=s.learning_rate, weight_decay=s.weight_decay,
                          betas=(s.beta1, s.beta2))


def _adamwspam(groups: list[dict[str, Any]], s: "TrainSettings"):
    from adamwprune.optim.spam import AdamWSPAM

    return fused_or_plain(AdamWSPAM, groups, lr=s.learning_rate, weight_decay=s.weight_decay,
                          betas=(s.beta1, s.beta2), theta=s.spam_theta, clip=s.spam_enable_clip,
                          clip_delay=s.spam_clip_delay,
                          reset_interval=s.spam_interval if s.spam_periodic_reset else None,
                          warmup_steps=s.spam_warmup_steps if s.spam_warmup else None,
                          spike_threshold=s.spam_spike_threshold if s.spam_spike_detection else None,
                          amsgrad=s.spam_amsgrad)


def _adamwadv(groups: list[dict[str, Any]], s: "TrainSettings"):
    """The original harness's "advanced" AdamW: AMSGrad (its weight decay 0.01 and minimum
    learning rate 1e-6 are this optimizer's defaults in the settings)."""
    import torch

    return fused_or_plain(torch.optim.AdamW, groups, lr=s.learning_rate, weight_decay=s.weight_decay,
                          betas=(s.beta1, s.beta2), amsgrad=s.adv_amsgrad)


def _adamwprune(groups: list[dict[str, Any]], s: "TrainSettings"):
    """AdamWPrune steps with its base optimizer; its pruning (``--pruning-method state``) reads
    that optimizer's moments, so it needs no state of its own beyond the masks."""
    return REGISTRY[s.adamwprune_base](groups, s)


def interval_metrics(optimizer) -> dict[str, Any]:
    """What an optimizer reports about the last log interval (AdamWSPAM: clipped fraction, resets,
    the applied learning rate); {} for torch's own. Values may be device tensors."""
    report = getattr(optimizer, "interval_metrics", None)
    return report() if report is not None else {}


register_optimizer("sgd", _sgd)
register_optimizer("adam", _adam)
register_optimizer("adamw", _adamw)
register_optimizer("adamwspam", _adamwspam)
register_optimizer("adamwadv", _adamwadv)
register_optimizer("adamwprune", _adamwprune)
