"""What the Kconfig symbols mean to Python: types Kconfig lacks, allowed values,
derived strings, and which trainer flag each symbol sets.

Kconfig knows bool, int and string only. A float is a ``string`` symbol listed in
FLOAT_RANGES; a string with a closed set of values is listed in ALLOWED_VALUES;
a ``choice`` becomes one derived string (``OPTIMIZER = "adamw"``) via CHOICES.
Every symbol of the Kconfig tree is read somewhere through these tables (or by
name in the runner); tests/test_kconfig_tree.py fails on a dead symbol.
"""

from __future__ import annotations

import math
import typing

from adamwprune.train import settings

# derived name -> {choice member symbol -> value}
CHOICES: dict[str, dict[str, str]] = {
    "MODEL": {"MODEL_GPT2": "gpt2", "MODEL_LENET5": "lenet5",
              "MODEL_RESNET18": "resnet18", "MODEL_RESNET50": "resnet50"},
    "LR_SCHEDULE": {"LR_SCHEDULE_COSINE": "cosine", "LR_SCHEDULE_CONSTANT": "constant"},
    "OPTIMIZER": {"OPTIMIZER_SGD": "sgd", "OPTIMIZER_ADAM": "adam", "OPTIMIZER_ADAMW": "adamw",
                  "OPTIMIZER_ADAMWSPAM": "adamwspam", "OPTIMIZER_ADAMWADV": "adamwadv",
                  "OPTIMIZER_ADAMWPRUNE": "adamwprune"},
    "PRUNING_METHOD": {"PRUNING_NONE": "none", "PRUNING_MAGNITUDE": "magnitude",
                       "PRUNING_MOVEMENT": "movement", "PRUNING_STATE": "state"},
    "MATRIX_EXECUTOR": {"MATRIX_EXECUTOR_LOCAL": "local", "MATRIX_EXECUTOR_SLURM": "slurm"},
    "ADAMWPRUNE_BASE": {f"ADAMWPRUNE_BASE_{name.upper()}": name for name in settings.optim.ADAMWPRUNE_BASES},
    "ADAMWPRUNE_VARIANT": {f"ADAMWPRUNE_VARIANT_{name.upper()}": name for name in settings.variants.names()},
}


def float_ranges(cls: type = settings.TrainSettings) -> dict[str, tuple[float, float, bool, bool]]:
    """float symbol -> (lowest allowed, highest allowed, lowest is exclusive, highest is exclusive),
    from the settings."""
    hints = typing.get_type_hints(cls)
    return {info.symbol: (info.low, math.inf if info.high is None else info.high, info.low_open, info.high_open)
            for name, info in settings.metas(cls).items() if info.symbol and hints[name] is float}


def trainer_dests(cls: type = settings.TrainSettings) -> dict[str, str]:
    """symbol (or derived choice name) -> the trainer setting it sets, from the settings."""
    return {info.symbol: name for name, info in settings.metas(cls).items() if info.symbol}


FLOAT_RANGES = float_ranges()
TRAINER_DESTS = trainer_dests()

DATASETS_BY_MODEL = settings.DATASETS_BY_MODEL
DEVICES = ("auto", "cpu", "cuda")

# string symbol -> allowed values (DATASET depends on the model, see allowed_values)
ALLOWED_VALUES: dict[str, tuple[str, ...]] = {
    "GPT2_MODEL_NAME": settings.GPT2_MODEL_NAMES,
    "DEVICE": DEVICES,
    "PRUNING_SCHEDULE": settings.PRUNING_SCHEDULES,
    "PRUNING_SCOPE": settings.METAS["pruning_scope"].allowed(),
}

# bools that together give the trainer's --tracker value
TRACKER_SWITCHES: dict[str, str] = {"trackio": "ENABLE_TRACKIO", "wandb": "ENABLE_WANDB"}


def allowed_values(name: str, model: str | None) -> tuple[str, ...] | None:
    """The values a closed-set string symbol may take (None: any string)."""
    if name == "DATASET":
        return DATASETS_BY_MODEL.get(model or "", ())
    return ALLOWED_VALUES.get(name)
