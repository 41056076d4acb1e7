"""The Kconfig tree itself: parses cleanly, documents every symbol, has the spec's
tracking variables with the spec's defaults, and has no dead symbols."""

from __future__ import annotations

import ast
from pathlib import Path

import kconfiglib
import pytest

from adamwprune import matrix
from adamwprune.kconfig.symbols import (ALLOWED_VALUES, CHOICES, FLOAT_RANGES, TRACKER_SWITCHES,
                                        TRAINER_DESTS)
from adamwprune.kconfig.tree import open_tree
from helpers import REPO

AREAS = ("model", "training", "optimizer", "pruning", "tracking", "gpu", "matrix")

# The spec's "Kconfig Variables" table (TRACKER_PROJECT's {model}-{checksum} is filled in
# when .config is written; its Kconfig default is the empty "auto" value).
SPEC_TRACKING_DEFAULTS = {
    "ENABLE_TRACKIO": "n", "ENABLE_WANDB": "n", "TRACKER_PROJECT": "", "TRACKER_RUN_NAME": "",
    "WANDB_ENTITY": "", "WANDB_OFFLINE": "n", "TRACKIO_PORT": "7860",
}


@pytest.fixture(scope="module")
def kconf(tmp_path_factory):
    return open_tree(tmp_path_factory.mktemp("empty"))  # no Kconfig there: this checkout's tree


def menu_symbols(kconf, title: str) -> list[str]:
    """Names of the symbols under the menu with this title (any depth), in order."""
    menu = next(node for node in kconf.node_iter() if node.item is kconfiglib.MENU
                and node.prompt[0] == title)
    names, node, stack = [], menu.list, []
    while node is not None:
        if isinstance(node.item, kconfiglib.Symbol):
            names.append(node.item.name)
        if node.list is not None:
            stack.append(node.next)
            node = node.list
            continue
        node = node.next
        while node is None and stack:
            node = stack.pop()
    return names


def test_tree_parses_without_warnings_and_sources_one_file_per_area(kconf):
    assert kconf.warnings == []
    files = {Path(node.filename).name for node in kconf.node_iter() if node.item is not kconfiglib.MENU}
    assert {f"Kconfig.{area}" for area in AREAS} <= files
    for area in AREAS:
        text = (REPO / "kconfig" / f"Kconfig.{area}").read_text()
        assert "config " in text, area
    root = (REPO / "Kconfig").read_text()
    assert [f'rsource "kconfig/Kconfig.{area}"' in root for area in AREAS] == [True] * len(AREAS)


def test_every_symbol_and_choice_has_help_text(kconf):
    missing = [node.item.name or f"choice {node.prompt[0]!r}" for node in kconf.node_iter()
               if isinstance(node.item, (kconfiglib.Symbol, kconfiglib.Choice))
               and not (node.help or "").strip()]
    assert missing == []


def test_experiment_tracking_menu_is_the_spec_table_with_its_defaults(kconf):
    assert menu_symbols(kconf, "Experiment Tracking") == list(SPEC_TRACKING_DEFAULTS)
    assert {name: kconf.syms[name].str_value for name in SPEC_TRACKING_DEFAULTS} == SPEC_TRACKING_DEFAULTS


def test_areas_have_their_symbols(kconf):
    assert menu_symbols(kconf, "GPU monitoring") == ["GPU_MONITOR", "GPU_MONITOR_INTERVAL", "GPU_MONITOR_SIMULATE"]
    assert set(CHOICES["MODEL"]) <= set(menu_symbols(kconf, "Model"))
    assert {"BATCH_SIZE", "GRADIENT_ACCUMULATION", "LEARNING_RATE", "LR_SCHEDULE_COSINE",
            "MAX_ITERS", "MAX_TIME", "LOG_INTERVAL", "EVAL_INTERVAL", "EVAL_SAMPLES",
            "SAVE_CHECKPOINT"} <= set(menu_symbols(kconf, "Training"))
    assert set(CHOICES["OPTIMIZER"]) <= set(menu_symbols(kconf, "Optimizer"))
    assert set(CHOICES["PRUNING_METHOD"]) | {"TARGET_SPARSITY", "PRUNING_WARMUP", "PRUNING_RAMP"} <= set(
        menu_symbols(kconf, "Pruning"))
    # the test matrix offers every optimizer and pruning method of the single-run choices
    assert sorted(matrix.TEST_OPTIMIZERS.values()) == sorted(CHOICES["OPTIMIZER"].values())
    assert sorted(matrix.TEST_PRUNING_METHODS.values()) == sorted(CHOICES["PRUNING_METHOD"].values())
    assert menu_symbols(kconf, "Test matrix") == [
        *matrix.TEST_OPTIMIZERS, *matrix.TEST_PRUNING_METHODS, *matrix.TEST_SPARSITIES,
        "TEST_MATRIX_SEEDS", "TEST_MATRIX_PARALLEL_JOBS", *CHOICES["MATRIX_EXECUTOR"],
        "MATRIX_SLURM_PARTITION", "MATRIX_SLURM_TIME_MINUTES", "MATRIX_SLURM_CPUS_PER_RUN", "MATRIX_SLURM_MEM_GB",
        "MATRIX_SLURM_PENDING_LIMIT_MINUTES"]


def test_python_tables_name_real_symbols_of_the_right_type(kconf):
    for derived, members in CHOICES.items():
        choices = {kconf.syms[name].choice for name in members}
        assert len(choices) == 1 and None not in choices, derived
        assert {sym.name for sym in choices.pop().syms} == set(members), derived
    for name in [*FLOAT_RANGES, *ALLOWED_VALUES, "DATASET"]:
        assert kconf.syms[name].orig_type is kconfiglib.STRING, name
    derived = set(CHOICES)
    for name in [*TRAINER_DESTS, *TRACKER_SWITCHES.values(), *matrix.TEST_OPTIMIZERS,
                 *matrix.TEST_PRUNING_METHODS, *matrix.TEST_SPARSITIES]:
        assert name in derived or kconf.syms.get(name) is not None and kconf.syms[name].nodes, name


def names_read_by_python() -> set[str]:
    """String constants (not docstrings) and attribute names in adamwprune/'s code."""
    names: set[str] = set()
    for path in (REPO / "adamwprune").rglob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                names.add(node.value)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
    return names


def test_no_dead_symbols(kconf):
    read = names_read_by_python() | {member for table in CHOICES.values() for member in table}  # some built
    dead = [sym.name for sym in kconf.unique_defined_syms if sym.name not in read]
    assert dead == [], f"Kconfig symbols no Python code reads: {dead}"
