"""Pruning methods by name: a registry of factories and the protocol the loop calls.

A factory receives the model's prunable weights ``[(name, parameter)]``, the
optimizer (so a method can read or reset its moments) and the run's settings,
and returns a :class:`Pruner`. The loop's step, in one place::

    backward -> pruner.before_step() -> clip -> optimizer.step() -> pruner.after_step(step) -> zero_grad

:class:`MaskedPruner` does the bookkeeping of a mask-based method (masks applied in
place on the weights, pruned gradients and Adam moments kept at zero, masks saved
through ``state_dict``); a method only says how it scores weights and how sparse
it should be at each step. docs/extending.md has a complete example.

Magnitude and movement pruning live in ``pruning/methods.py`` on the schedules of
``pruning/schedule.py``; state pruning (AdamWPrune) arrives in a later issue, and
until then asking for it is a user error that says so at once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from adamwprune.registry import Registry

if TYPE_CHECKING:
    import torch

    from adamwprune.train.settings import TrainSettings

Prunable = Sequence[tuple[str, "torch.nn.Parameter"]]
Factory = Callable[[Prunable, "torch.optim.Optimizer", "TrainSettings"], "Pruner"]

MOMENT_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")  # Adam, AMSGrad, SGD
REGISTRY: Registry[Factory] = Registry("pruning method", planned=("state",))
available, names = REGISTRY.available, REGISTRY.names


class Pruner(Protocol):
    """What the loop needs from a pruning method."""

    def before_step(self) -> None:
        """Gradients are live (after backward, before clipping): e.g. zero pruned gradients, score."""

    def after_step(self, step: int) -> None:
        """After optimizer step ``step`` (1-based count of completed steps): re-apply, update masks."""

    def sparsity(self):
        """Fraction of prunable weights that are exactly zero, measured, as a 0-dim tensor."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def register_pruning_method(name: str, factory: Factory) -> None:
    """Make ``--pruning-method name`` build its pruner with ``factory(prunable, optimizer, settings)``."""
    REGISTRY.register(name, factory)


def check_pruning_method(method: str) -> str:
    """Validate a pruning method name early (no method given: ``none``); returns it normalized."""
    return REGISTRY.check(method or "none")


def build_pruner(method: str, prunable: Prunable, optimizer: Any, settings: "TrainSettings") -> Pruner:
    return REGISTRY[check_pruning_method(method)](list(prunable), optimizer, settings)


def measure_sparsity(prunable: Prunable):
    """Fraction of exact zeros over the prunable weights, as a 0-dim tensor (no host sync)."""
    import torch

    weights = [w for _, w in prunable]
    if not weights:
        return torch.zeros(())
    with torch.no_grad():
        zeros = sum((w == 0).sum() for w in weights)
        total = sum(w.numel() for w in weights)
        return zeros.float() / total


class NoPruning:
    """The ``none`` method: weights are never touched; sparsity is still measured."""

    def __init__(self, prunable: Prunable, optimizer: Any = None, settings: Any = None):
        self.prunable = list(prunable)

    def before_step(self) -> None:
        return None

    def after_step(self, step: int) -> None:
        return None

    def sparsity(self):
        return measure_sparsity(self.prunable)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class MaskedPruner:
    """A method that keeps a 0/1 mask per weight; subclasses say how to score and how sparse to be.

    Masks are applied in place on the parameters (no forward hooks, no
    ``torch.nn.utils.prune``), so checkpoint keys, DDP and ``torch.compile`` see plain
    weights. ``before_step`` zeroes pruned gradients (the clip norm never counts them);
    ``after_step`` re-zeroes pruned weights and their Adam moments and, when
    :meth:`update_due` (default: every ``interval`` steps), prunes the lowest
    :meth:`scores` among the weights still alive until :meth:`target_sparsity` is reached:
    exactly, over all prunable weights (``scope = "global"``) or in each one (``"layer"``).
    Masks only grow: a pruned weight never comes back.
    """

    interval = 1
    scope = "global"

    def __init__(self, prunable: Prunable, optimizer: Any, settings: Any = None):
        import torch

        self.prunable = list(prunable)
        self.optimizer = optimizer
        self.settings = settings
        self.masks = [torch.ones_like(w, dtype=torch.bool) for _, w in self.prunable]

    def target_sparsity(self, step: int) -> float:
        """The fraction of prunable weights that should be zero after step ``step``."""
        raise NotImplementedError

    def scores(self) -> list:
        """One tensor per weight: the lowest scores are pruned first."""
        raise NotImplementedError

    def update_due(self, step: int) -> bool:
        return step % self.interval == 0

    def before_step(self) -> None:
        for (_, weight), mask in zip(self.prunable, self.masks):
            if weight.grad is not None:
                weight.grad.mul_(mask)

    def after_step(self, step: int) -> None:
        import torch

        with torch.no_grad():
            if self.update_due(step):
                self._update_masks(self.target_sparsity(step))
            for (_, weight), mask in zip(self.prunable, self.masks):
                weight.mul_(mask)
                state = self.optimizer.state.get(weight, {})
                for key in MOMENT_KEYS:
                    if key in state:
                        state[key].mul_(mask)

    def _update_masks(self, sparsity: float) -> None:
        """Prune the lowest-scored live weights until ``sparsity`` of each group is pruned.

        One host sync per update (the count of pruned weights), never per step."""
        import torch

        scores = self.scores()
        indices = list(range(len(self.masks)))
        for group in ([[i] for i in indices] if self.scope == "layer" else [indices]):
            masks = [self.masks[i] for i in group]
            total = sum(mask.numel() for mask in masks)
            more = int(round(sparsity * total)) - int(sum((~mask).sum() for mask in masks))
            if more <= 0:
                continue
            flat = torch.cat([scores[i].detach().flatten().float().masked_fill(~self.masks[i].flatten(), math.inf)
                              for i in group])
            alive = torch.cat([mask.flatten() for mask in masks])
            alive[torch.topk(flat, more, largest=False).indices] = False
            for mask, part in zip(masks, alive.split([mask.numel() for mask in masks])):
                mask.copy_(part.view_as(mask))

    def sparsity(self):
        return measure_sparsity(self.prunable)

    def state_dict(self) -> dict[str, Any]:
        return {"masks": [mask.clone() for mask in self.masks]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for mask, saved in zip(self.masks, state["masks"]):
            mask.copy_(saved)


register_pruning_method("none", NoPruning)


def _magnitude(prunable: Prunable, optimizer: Any, settings: "TrainSettings") -> Pruner:
    from adamwprune.pruning.methods import MagnitudePruner  # torch: imported when a run starts

    return MagnitudePruner(prunable, optimizer, settings)


def _movement(prunable: Prunable, optimizer: Any, settings: "TrainSettings") -> Pruner:
    from adamwprune.pruning.methods import MovementPruner

    return MovementPruner(prunable, optimizer, settings)


register_pruning_method("magnitude", _magnitude)
register_pruning_method("movement", _movement)
