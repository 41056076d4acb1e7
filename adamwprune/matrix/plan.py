"""What a test matrix runs: every selected optimizer x pruning method x sparsity x seed.

A dimension with nothing selected in the "Test matrix" menu falls back to the
single-run setting (OPTIMIZER, PRUNING_METHOD, TARGET_SPARSITY). Dense runs
(pruning "none") happen once per optimizer and seed, not once per sparsity. Pairs that
cannot run together are skipped and listed (adamwprune runs with state pruning only, and
state pruning with adamwprune only); a selection that leaves an optimizer or method
without any run is a user error.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    seed: int | None = None  # None: the configuration's SEED (a matrix of one seed)

    def run_name(self, model: str, prefix: str = "") -> str:
        """``{model}_{optimizer}_{pruning}_{sparsity %}`` (``_s{seed}`` with a seed axis), e.g.
        ``gpt2_adamw_magnitude_50``, after ``{prefix}_`` (the matrix id)."""
        name = f"{model}_{self.optimizer}_{self.pruning_method}_{round(self.target_sparsity * 100)}"
        if self.seed is not None:
            name += f"_s{self.seed}"
        return f"{prefix}_{name}" if prefix else name

    def flags(self, model: str, prefix: str = "") -> list[str]:
        """Trainer flags for this run. A dense run passes no sparsity: the pruning settings do not
        apply to it (the trainer refuses them), so it neither uses nor logs TARGET_SPARSITY."""
        sparsity = [] if self.pruning_method == "none" else ["--target-sparsity", f"{self.target_sparsity:g}"]
        seed = [] if self.seed is None else ["--seed", str(self.seed)]
        return ["--optimizer", self.optimizer, "--pruning-method", self.pruning_method, *sparsity, *seed,
                "--tracker-run-name", self.run_name(model, prefix)]

    def tags(self) -> list[str]:
        """W&B tags (and Trackio config tags) that let runs of a matrix be filtered by axis."""
        tags = [f"optimizer:{self.optimizer}", f"pruning:{self.pruning_method}",
                f"sparsity:{round(self.target_sparsity * 100)}"]
        return tags + ([f"seed:{self.seed}"] if self.seed is not None else [])


@dataclass(frozen=True)
class Plan:
    combinations: list[Combination]
    skipped: list[str]  # "optimizer x method: why", for the summary


def _selected(cfg, table: dict[str, object]) -> list:
    return [value for symbol, value in table.items() if getattr(cfg, symbol, False)]


def plan(cfg, seeds: int = 1) -> Plan:
    """The runs the configuration selects, in menu order; ``seeds`` > 1 adds a seed axis
    (SEED, SEED+1, ...) to every combination."""
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
    skipped = [f"{o} x {m}: {pairing_error(o, m)}" for o in optimizers for m in methods if pairing_error(o, m)]
    seed_axis = [None] if seeds == 1 else [cfg.SEED + i for i in range(seeds)]
    combinations = [Combination(optimizer, method, sparsity, seed) for optimizer, method in pairs
                    for sparsity in ([0.0] if method == "none" else sparsities) for seed in seed_axis]
    return Plan(combinations, skipped)


def expand(cfg, seeds: int = 1) -> list[Combination]:
    """The combinations of :func:`plan`."""
    return plan(cfg, seeds).combinations
