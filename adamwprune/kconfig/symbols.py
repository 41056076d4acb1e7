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

# derived name -> {choice member symbol -> value}
CHOICES: dict[str, dict[str, str]] = {
    "MODEL": {"MODEL_GPT2": "gpt2", "MODEL_LENET5": "lenet5",
              "MODEL_RESNET18": "resnet18", "MODEL_RESNET50": "resnet50"},
    "LR_SCHEDULE": {"LR_SCHEDULE_COSINE": "cosine", "LR_SCHEDULE_CONSTANT": "constant"},
    "OPTIMIZER": {"OPTIMIZER_SGD": "sgd", "OPTIMIZER_ADAM": "adam", "OPTIMIZER_ADAMW": "adamw",
                  "OPTIMIZER_ADAMWSPAM": "adamwspam", "OPTIMIZER_ADAMWPRUNE": "adamwprune"},
    "PRUNING_METHOD": {"PRUNING_NONE": "none", "PRUNING_MAGNITUDE": "magnitude",
                       "PRUNING_MOVEMENT": "movement", "PRUNING_STATE": "state"},
}

# float symbol -> (lowest allowed, highest allowed, highest is exclusive)
FLOAT_RANGES: dict[str, tuple[float, float, bool]] = {
    "LEARNING_RATE": (0.0, math.inf, False),
    "MIN_LR": (0.0, math.inf, False),
    "GRAD_CLIP": (0.0, math.inf, False),
    "WEIGHT_DECAY": (0.0, math.inf, False),
    "SGD_MOMENTUM": (0.0, 1.0, True),
    "ADAM_BETA1": (0.0, 1.0, True),
    "ADAM_BETA2": (0.0, 1.0, True),
    "TARGET_SPARSITY": (0.0, 1.0, True),
    "GPU_MONITOR_INTERVAL": (0.001, math.inf, False),
}

GPT2_MODEL_NAMES = ("gpt2-tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
DATASETS_BY_MODEL: dict[str, tuple[str, ...]] = {
    "gpt2": ("finewebedu", "shakespeare", "pydocs"),
    "lenet5": ("mnist",),
    "resnet18": ("cifar10", "cifar100"),
    "resnet50": ("cifar100", "cifar10"),
}
DEVICES = ("auto", "cpu", "cuda")

# string symbol -> allowed values (DATASET depends on the model, see allowed_values)
ALLOWED_VALUES: dict[str, tuple[str, ...]] = {
    "GPT2_MODEL_NAME": GPT2_MODEL_NAMES,
    "DEVICE": DEVICES,
}

# symbol (or derived name) -> the trainer's argparse dest (the contract with the trainer's
# command line; tests/test_kconfig.py checks it against the trainer's real parser)
TRAINER_DESTS: dict[str, str] = {
    "GPT2_MODEL_NAME": "model_name",
    "DATASET": "dataset",
    "BLOCK_SIZE": "block_size",
    "COMPILE": "compile",
    "BATCH_SIZE": "batch_size",
    "GRADIENT_ACCUMULATION": "gradient_accumulation",
    "LEARNING_RATE": "learning_rate",
    "MIN_LR": "min_lr",
    "WARMUP_ITERS": "warmup_iters",
    "LR_SCHEDULE": "lr_schedule",
    "WEIGHT_DECAY": "weight_decay",
    "GRAD_CLIP": "grad_clip",
    "MAX_ITERS": "max_iters",
    "MAX_TIME": "max_time",
    "LOG_INTERVAL": "log_interval",
    "EVAL_INTERVAL": "eval_interval",
    "EVAL_SAMPLES": "eval_samples",
    "SAVE_CHECKPOINT": "save_checkpoint",
    "OUTPUT_DIR": "output_dir",
    "DEVICE": "device",
    "SEED": "seed",
    "OPTIMIZER": "optimizer",
    "ADAM_BETA1": "beta1",
    "ADAM_BETA2": "beta2",
    "SGD_MOMENTUM": "momentum",
    "PRUNING_METHOD": "pruning_method",
    "TARGET_SPARSITY": "target_sparsity",
    "PRUNING_WARMUP": "pruning_warmup",
    "PRUNING_RAMP": "pruning_ramp",
    "TRACKER_PROJECT": "tracker_project",
    "TRACKER_RUN_NAME": "tracker_run_name",
    "WANDB_ENTITY": "wandb_entity",
    "WANDB_OFFLINE": "wandb_offline",
    "GPU_MONITOR": "gpu_monitor",
    "GPU_MONITOR_INTERVAL": "gpu_monitor_interval",
}
# strings where "" means "let the trainer pick its default" (so no default is passed)
EMPTY_MEANS_DEFAULT = frozenset({"TRACKER_RUN_NAME", "WANDB_ENTITY"})

# bools that together give the trainer's --tracker value
TRACKER_SWITCHES: dict[str, str] = {"trackio": "ENABLE_TRACKIO", "wandb": "ENABLE_WANDB"}


def allowed_values(name: str, model: str | None) -> tuple[str, ...] | None:
    """The values a closed-set string symbol may take (None: any string)."""
    if name == "DATASET":
        return DATASETS_BY_MODEL.get(model or "", ())
    return ALLOWED_VALUES.get(name)
