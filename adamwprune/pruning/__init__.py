"""Pruning methods by name: a registry of factories and the protocol the loop calls.

A factory receives the model's prunable weights ``[(name, parameter)]``, the
optimizer (so a method can read or reset its moments) and the run's settings,
and returns a :class:`Pruner`. The loop's step, in one place::

    backward -> pruner.before_step() -> clip -> optimizer.step() -> pruner.after_step(step) -> zero_grad

:class:`MaskedPruner` does the bookkeeping of a mask-based method (masks applied in
place on the weights, pruned gradients and Adam moments kept at zero, masks saved
through ``state_dict``); a method only says how it scores weights and how sparse
it should be at each step. docs/extending.md has a complete example.

Magnitude, movement and state pruning (AdamWPrune's, scored by ``pruning/variants.py``)
live in ``pruning/methods.py``, on the schedules of ``pruning/schedule.py``. State pruning
reads the optimizer's moments, so it pairs with ``--optimizer adamwprune`` and only with it
(:func:`pairing_error`).
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
REGISTRY: Registry[Factory] = Registry("pruning method")
names = REGISTRY.names


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
    weights. ``before_step`` zeroes pruned gradients (the clip norm never counts them).
    ``after_step``, when :meth:`update_due` (default: every ``interval`` steps), prunes the
    lowest :meth:`scores` among the weights still alive until :meth:`target_sparsity` is
    reached, exactly, in each of :meth:`groups` (all prunable weights with ``scope =
    "global"``, each matrix with ``"layer"``), and zeroes the pruned weights and their
    optimizer moments. Masks only grow: a pruned weight never comes back. Until the first
    weight is pruned there is no per-step work at all; after, one multiply of the gradients.
    """

    interval = 1
    scope = "global"

    def __init__(self, prunable: Prunable, optimizer: Any, settings: Any = None):
        import torch

        self.prunable = list(prunable)
        self.optimizer = optimizer
        self.settings = settings
        self.masks = [torch.ones_like(w, dtype=torch.bool) for _, w in self.prunable]
        # the same storage as bytes: multiplying a float tensor by uint8 is about twice as fast on
        # a CPU as by bool, and it needs no float copy of the mask
        self._factors = [mask.view(torch.uint8) for mask in self.masks]
        self.pruned = False  # no mask has a zero yet: nothing to apply per step

    def target_sparsity(self, step: int) -> float:
        """The fraction of prunable weights that should be zero after step ``step``."""
        raise NotImplementedError

    def scores(self) -> list:
        """One tensor per weight: the lowest scores are pruned first."""
        raise NotImplementedError

    def update_due(self, step: int) -> bool:
        return step % self.interval == 0

    def before_step(self) -> None:
        import torch

        if self.pruned:
            pairs = [(w.grad, factor) for (_, w), factor in zip(self.prunable, self._factors) if w.grad is not None]
            if pairs:
                torch._foreach_mul_(*map(list, zip(*pairs)))

    def after_step(self, step: int) -> None:
        import torch

        with torch.no_grad():
            if self.update_due(step) and self._update_masks(self.target_sparsity(step)):
                self.pruned = True
                self._zero_pruned()

    def _zero_pruned(self) -> None:
        """Zero the pruned weights and their optimizer moments. They stay zero from then on
        without more work: their gradients are zeroed before every step, and every built-in
        optimizer turns a zero weight with zero gradient and zero moments into a zero weight
        (decoupled decay multiplies it; Adam's update of zero moments is zero). A registered
        optimizer must do the same; the logged sparsity, measured from the weights, shows it
        if not (tests check the zeros after more steps and after resume)."""
        import torch

        torch._foreach_mul_([w for _, w in self.prunable], self._factors)
        for (_, weight), factor in zip(self.prunable, self._factors):
            state = self.optimizer.state.get(weight, {})
            for key in MOMENT_KEYS:
                if key in state:
                    state[key].mul_(factor)

    def groups(self, sparsity: float) -> list[tuple[list[int], float]]:
        """Which weights (indices into ``prunable``) share one threshold, and each group's sparsity."""
        indices = list(range(len(self.masks)))
        if self.scope == "layer":
            return [([i], sparsity) for i in indices]
        return [(indices, sparsity)]

    def _update_masks(self, sparsity: float) -> bool:
        """Prune the lowest-scored live weights until each group reaches its sparsity (see
        :meth:`groups`); True when any weight was pruned.

        One host sync per update (the count of pruned weights), never per step."""
        import torch

        scores = self.scores()
        changed = False
        for group, group_sparsity in self.groups(sparsity):
            masks = [self.masks[i] for i in group]
            total = sum(mask.numel() for mask in masks)
            more = int(round(group_sparsity * total)) - int(sum((~mask).sum() for mask in masks))
            if more <= 0:
                continue
            changed = True
            flat = torch.cat([scores[i].detach().flatten().float().masked_fill(~self.masks[i].flatten(), math.inf)
                              for i in group])
            alive = torch.cat([mask.flatten() for mask in masks])
            alive[lowest(flat, more)] = False
            for mask, part in zip(masks, alive.split([mask.numel() for mask in masks])):
                mask.copy_(part.view_as(mask))
        return changed

    def sparsity(self):
        return measure_sparsity(self.prunable)

    def state_dict(self) -> dict[str, Any]:
        return {"masks": [mask.clone() for mask in self.masks]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for mask, saved in zip(self.masks, state["masks"]):
            mask.copy_(saved)  # in place: the uint8 views see it
        self.pruned = not all(bool(mask.all()) for mask in self.masks)


def lowest(values, k: int, sample: int = 1 << 20):
    """Indices of the ``k`` smallest of the 1-D tensor ``values``, exactly.

    topk over all prunable weights takes seconds on a CPU (2 s for 85M, GPT-2 124M's
    matrices), so on large tensors a fixed random sample first brackets the k-th value; all
    values below the bracket are taken, and topk runs only on the few inside it. Falls back to
    plain topk when the bracket misses. Deterministic: the sample's generator is seeded.
    """
    import torch

    n = values.numel()
    if n <= 8 * sample or not 0 < k < n:
        return torch.topk(values, k, largest=False).indices
    generator = torch.Generator().manual_seed(n)
    probe = values[torch.randint(n, (sample,), generator=generator).to(values.device)].sort().values
    q = k / n
    margin = 6 * math.sqrt(q * (1 - q) / sample) + 2 / sample  # six sample-quantile standard deviations
    low, high = probe[max(int((q - margin) * sample), 0)], probe[min(int((q + margin) * sample), sample - 1)]
    below = (values < low).nonzero().squeeze(1)
    window = ((values >= low) & (values <= high)).nonzero().squeeze(1)
    wanted = k - below.numel()
    if not 0 <= wanted <= window.numel():
        return torch.topk(values, k, largest=False).indices
    return torch.cat([below, window[torch.topk(values[window], wanted, largest=False).indices]])


register_pruning_method("none", NoPruning)


def _magnitude(prunable: Prunable, optimizer: Any, settings: "TrainSettings") -> Pruner:
    from adamwprune.pruning.methods import MagnitudePruner  # torch: imported when a run starts

    return MagnitudePruner(prunable, optimizer, settings)


def _movement(prunable: Prunable, optimizer: Any, settings: "TrainSettings") -> Pruner:
    from adamwprune.pruning.methods import MovementPruner

    return MovementPruner(prunable, optimizer, settings)


def _state(prunable: Prunable, optimizer: Any, settings: "TrainSettings") -> Pruner:
    from adamwprune.pruning.methods import StatePruner

    return StatePruner(prunable, optimizer, settings)


register_pruning_method("magnitude", _magnitude)
register_pruning_method("movement", _movement)
register_pruning_method("state", _state)

# A pruning method that only works with one optimizer, and that optimizer only with it:
# AdamWPrune's pruning scores weights from its own Adam moments, and AdamWPrune always prunes.
PAIRED = {"state": "adamwprune"}


def pairing_error(optimizer: str, method: str) -> str | None:
    """Why ``--optimizer optimizer`` cannot run with ``--pruning-method method``, or None."""
    for paired_method, paired_optimizer in PAIRED.items():
        if method == paired_method and optimizer != paired_optimizer:
            return (f"--pruning-method {method} scores weights from {paired_optimizer}'s own moments: "
                    f"use --optimizer {paired_optimizer} (this run has --optimizer {optimizer})")
        if optimizer == paired_optimizer and method != paired_method:
            dense = "" if method != "none" else " (for dense training use its base optimizer, e.g. --optimizer adamw)"
            return (f"{optimizer} prunes by its own state: use --pruning-method {paired_method}, "
                    f"not {method}{dense}")
    return None
