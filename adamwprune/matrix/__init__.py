"""Test matrices: what runs (plan), where results go (results), how it runs (run)."""

from adamwprune.matrix.plan import (TEST_OPTIMIZERS, TEST_PRUNING_METHODS, TEST_SPARSITIES, Combination, Plan,
                                    expand, plan)
from adamwprune.matrix.run import MatrixOptions, run_matrix

__all__ = ["TEST_OPTIMIZERS", "TEST_PRUNING_METHODS", "TEST_SPARSITIES", "Combination", "MatrixOptions", "Plan",
           "expand", "plan", "run_matrix"]
