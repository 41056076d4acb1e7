"""Test matrix: every selected optimizer x pruning method x sparsity, one run each.

A dimension with nothing selected in the "Test matrix" menu falls back to the
single-run setting (OPTIMIZER, PRUNING_METHOD, TARGET_SPARSITY). Dense runs
(pruning "none") happen once per optimizer, not once per sparsity. Pairs that cannot
run together are left out (adamwprune runs with state pruning only, and state pruning
with adamwprune only); a selection that leaves an optimizer or method without any run
is a user error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from adamwprune.errors import UserError
from adamwprune.pruning import pairing_error


TEST_OPTIMIZERS = {"TEST_OPTIMIZER_SGD": "sgd", "TEST_OPTIMIZER_ADAM": "adam",
                   "TEST_OPTIMIZER_ADAMW": "adamw", "TEST_OPTIMIZER_ADAMWSPAM": "adamwspam",
                   "TEST_OPTIMIZER_ADAMWADV": "adamwadv", "TEST_OPTIMIZER_ADAMWPRUNE": "adamwprune"}
TEST_PRUNING_METHODS = {"TEST_PRUNING_NONE": "none", "TEST_PRUNING_MAGNITUDE": "magnitude",
                        "TEST_PRUNING_MOVEMENT": "movement", "TEST_PRUNING_STATE": "state"}
TEST_SPARSITIES = {"TEST_SPARSITY_50": 0.5, "TEST_SPARSITY_70": 0.7, "TEST_SPARSITY_90": 0.9}


@dataclass(frozen=True)
class Combination:
    optimizer: str
    pruning_method: str
    target_sparsity: float  # 0.0 for dense runs

    def run_name(self, model: str, prefix: str = "") -> str:
        """``{model}_{optimizer}_{pruning}_{sparsity %}``, e.g. ``gpt2_adamw_magnitude_50``,
        after ``{prefix}_`` when the configuration names the matrix (TRACKER_RUN_NAME)."""
        name = f"{model}_{self.optimizer}_{self.pruning_method}_{round(self.target_sparsity * 100)}"
        return f"{prefix}_{name}" if prefix else name

    def flags(self, model: str, prefix: str = "") -> list[str]:
        """Trainer flags for this run. A dense run passes no sparsity: the pruning settings do not
        apply to it (the trainer refuses them), so it neither uses nor logs TARGET_SPARSITY."""
        sparsity = [] if self.pruning_method == "none" else ["--target-sparsity", f"{self.target_sparsity:g}"]
        return ["--optimizer", self.optimizer, "--pruning-method", self.pruning_method, *sparsity,
                "--tracker-run-name", self.run_name(model, prefix)]


def _selected(cfg, table: dict[str, object]) -> list:
    return [value for symbol, value in table.items() if getattr(cfg, symbol, False)]


def expand(cfg) -> list[Combination]:
    """The combinations the configuration selects, in menu order."""
    optimizers = _selected(cfg, TEST_OPTIMIZERS) or [cfg.OPTIMIZER]
    methods = _selected(cfg, TEST_PRUNING_METHODS) or [cfg.PRUNING_METHOD]
    sparsities = _selected(cfg, TEST_SPARSITIES) or [cfg.TARGET_SPARSITY]
    pairs = [(o, m) for o in optimizers for m in methods if pairing_error(o, m) is None]
    for name, kind, paired in [(o, "optimizer", [p for p, _ in pairs]) for o in optimizers] + \
                              [(m, "pruning method", [q for _, q in pairs]) for m in methods]:
        if name not in paired:  # e.g. adamwprune without state pruning: it would not run at all
            first = next(pairing_error(o, m) for o in optimizers for m in methods
                         if name in (o, m) and pairing_error(o, m))
            raise UserError(f"the test matrix has no run for {kind} {name}: {first}")
    return [Combination(optimizer, method, sparsity) for optimizer, method in pairs
            for sparsity in ([0.0] if method == "none" else sparsities)]


@dataclass(frozen=True)
class Outcome:
    run_name: str
    returncode: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_all(combinations: Sequence[Combination], model: str, prefix: str,
            launch: Callable[[list[str]], int]) -> list[Outcome]:
    """Run each combination (``launch(flags) -> exit code``), going on after a failure."""
    outcomes = []
    for number, combination in enumerate(combinations, 1):
        name = combination.run_name(model, prefix)
        print(f"=== test matrix {number}/{len(combinations)}: {name} ===", flush=True)
        start = time.monotonic()
        returncode = launch(combination.flags(model, prefix))
        outcomes.append(Outcome(name, returncode, time.monotonic() - start))
    return outcomes


def summary(outcomes: Sequence[Outcome], run_dir: Callable[[str], str]) -> list[str]:
    """One line per combination, then a totals line."""
    width = max((len(o.run_name) for o in outcomes), default=0)
    lines = []
    for outcome in outcomes:
        status = "ok    " if outcome.ok else f"FAILED (exit {outcome.returncode})"
        lines.append(f"  {outcome.run_name:<{width}}  {status:<18} {outcome.seconds:7.1f}s  "
                     f"{run_dir(outcome.run_name)}")
    failed = sum(not o.ok for o in outcomes)
    lines.append(f"test matrix: {len(outcomes)} runs, {len(outcomes) - failed} ok, {failed} failed")
    return lines
