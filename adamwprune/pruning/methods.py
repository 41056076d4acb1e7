"""Magnitude, movement and state pruning, on the run's schedule (``pruning/schedule.py``).

All prune the weights the model adapter names as prunable (GPT-2: the 2-D weight
matrices of the attention and MLP blocks; not the embeddings, the tied LM head, norms
or biases). Masks are updated every ``--pruning-interval`` steps from
``--pruning-warmup`` on, and once more at the end of the ramp, so the target is met
exactly there.
"""

from __future__ import annotations

from typing import Any

import torch

from adamwprune.pruning import MaskedPruner, Prunable, variants
from adamwprune.pruning.schedule import ramp_end, scheduled_sparsity


class ScheduledPruner(MaskedPruner):
    """A MaskedPruner whose sparsity follows the settings' schedule."""

    def __init__(self, prunable: Prunable, optimizer: Any, settings: Any):
        super().__init__(prunable, optimizer, settings)
        self.interval = settings.pruning_interval
        self.scope = settings.pruning_scope
        self.end = ramp_end(settings.pruning_warmup, settings.pruning_ramp, settings.max_iters)

    def target_sparsity(self, step: int) -> float:
        s = self.settings
        return scheduled_sparsity(step, target=s.target_sparsity, warmup=s.pruning_warmup,
                                  ramp=s.pruning_ramp, max_iters=s.max_iters, schedule=s.pruning_schedule)

    def update_due(self, step: int) -> bool:
        start = self.settings.pruning_warmup
        return start <= step <= self.end and ((step - start) % self.interval == 0 or step == self.end)


class MagnitudePruner(ScheduledPruner):
    """Score |w|: the smallest weights go first."""

    def scores(self) -> list[torch.Tensor]:
        return [weight.detach().abs() for _, weight in self.prunable]


class MovementPruner(ScheduledPruner):
    """First-order movement pruning (Sanh et al., NeurIPS 2020): S accumulates −w·∂L/∂w over
    the steps since pruning started; the lowest S go first (weights moving towards zero).

    The original harness scores w·(w − w₀) instead: how far a weight moved away from zero
    since the start, not the gradient's push."""

    def __init__(self, prunable: Prunable, optimizer: Any, settings: Any):
        super().__init__(prunable, optimizer, settings)
        self.movement = [torch.zeros_like(weight, dtype=torch.float32) for _, weight in self.prunable]
        self.steps_seen = 0  # optimizer steps whose gradients are in ``movement``

    def before_step(self) -> None:
        super().before_step()  # pruned gradients are zero: their scores stop moving
        if self.steps_seen + 1 >= self.settings.pruning_warmup:
            for (_, weight), score in zip(self.prunable, self.movement):
                if weight.grad is not None:
                    score.sub_(weight.detach().float() * weight.grad.float())
        self.steps_seen += 1

    def scores(self) -> list[torch.Tensor]:
        return self.movement

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "movement": [score.clone() for score in self.movement],
                "steps_seen": self.steps_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for score, saved in zip(self.movement, state["movement"]):
            score.copy_(saved)
        self.steps_seen = int(state["steps_seen"])


class StatePruner(ScheduledPruner):
    """AdamWPrune's state pruning: weights scored from the optimizer's own Adam moments by
    ``--adamwprune-variant`` (``pruning/variants.py`` has the formulas). It keeps no state of
    its own besides the masks: the scores are computed from ``exp_avg`` and ``exp_avg_sq`` when
    the masks are updated, so its ``pruning_state_bytes`` are the masks' (1 byte per weight)."""

    def __init__(self, prunable: Prunable, optimizer: Any, settings: Any):
        super().__init__(prunable, optimizer, settings)
        self.variant = settings.adamwprune_variant

    def scores(self) -> list[torch.Tensor]:
        out = []
        for _, weight in self.prunable:
            state = self.optimizer.state.get(weight, {})
            out.append(variants.score(self.variant, weight.detach(), state.get("exp_avg"), state.get("exp_avg_sq")))
        return out

    def groups(self, sparsity: float) -> list[tuple[list[int], float]]:
        if self.variant not in variants.LAYERED:
            return super().groups(sparsity)
        by_depth = variants.layer_sparsities(sparsity, [mask.numel() for mask in self.masks])
        return [([i], layer_sparsity) for i, layer_sparsity in enumerate(by_depth)]
