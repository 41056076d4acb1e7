"""Every setting of a training run, in one place.

Each field of :class:`TrainSettings` carries its flag, its Kconfig symbol, its type
(the annotation), its range or choices, its default and its help. Built from it:
the trainer's argparse parser (``train/cli.py``), the Kconfig symbol -> flag mapping
and the float ranges of ``config.py`` (``kconfig/symbols.py``), the checks every run
goes through, and what a resume compares with its checkpoint. Adding a setting is
adding a field here (and its Kconfig entry, if ``make menuconfig`` should show it).

The defaults are GPT-2's; another model family's own defaults live in
``MODEL_DEFAULTS``, and ``tests/test_settings.py`` checks that the Kconfig tree
gives the same ones.
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from adamwprune import optim, pruning
from adamwprune.errors import UserError
from adamwprune.pruning import variants
from adamwprune.pruning.schedule import SCHEDULES as PRUNING_SCHEDULES
from adamwprune.train.schedule import SCHEDULES

GPT2_MODEL_NAMES = ("gpt2-tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
RESNET_MODEL_NAMES = ("resnet18", "resnet50")
MODEL_NAMES = {"gpt2": GPT2_MODEL_NAMES, "resnet50": RESNET_MODEL_NAMES}  # --model-name, per family
DATASETS_BY_MODEL: dict[str, tuple[str, ...]] = {
    "gpt2": ("finewebedu", "shakespeare", "pydocs"),
    "lenet5": ("mnist", "digits"),
    "resnet18": ("cifar10", "cifar100", "digits"),
    "resnet50": ("cifar100", "cifar10", "digits"),
}
VISION_MODELS = ("lenet5", "resnet50")  # the image classifiers' families (train/vision.py)
# A model of the Kconfig tree that another family's trainer trains, and the settings that make it
# that model: MODEL_RESNET18 runs resnet50/train.py --model-name resnet18.
TRAINED_BY: dict[str, tuple[str, dict[str, Any]]] = {"resnet18": ("resnet50", {"model_name": "resnet18"})}
ADAM_FAMILY = ("adam", "adamw", "adamwspam", "adamwadv", "adamwprune")
# "base_optimizer" is not a field: the optimizer that takes the steps (AdamWPrune's is --adamwprune-base)
SPAM = ("base_optimizer", ("adamwspam",))
ADAMWPRUNE = ("optimizer", ("adamwprune",))


def pruning_methods() -> tuple[str, ...]:
    """The methods that prune (every registered one but ``none``)."""
    return tuple(method for method in pruning.names() if method != "none")


# The --help sections, in order.
GROUPS = ("model and data", "training", "optimizer", "pruning", "experiment tracking")


@dataclass(frozen=True)
class Meta:
    """What a settings field means beyond its type and default."""

    help: str
    group: str
    symbol: str | None = None            # the Kconfig symbol (or derived choice name) that sets it
    low: float | None = None             # lowest allowed value
    low_open: bool = False               # the lowest value itself is not allowed: (low, high]
    high: float | None = None            # highest allowed value
    high_open: bool = False              # the highest value itself is not allowed: [low, high)
    given_low: float | None = None       # lowest value on the command line: below it only the default, "off"
    # a tuple, or a function giving one (registries can grow after import)
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    # (selector field, the selector's values this setting applies to: a tuple or a function giving one)
    applies_to: tuple[str, tuple[Any, ...] | Callable[[], tuple[Any, ...]]] | None = None
    resumable: bool = False              # may differ from the checkpoint on resume
    flag: bool = True                    # False: set by the trainer script, not on the command line

    @property
    def constrained(self) -> bool:
        return self.low is not None or self.high is not None

    def allowed(self) -> tuple[str, ...] | None:
        return self.choices() if callable(self.choices) else self.choices

    def applies_with(self) -> tuple[Any, ...]:
        """The selector values this setting applies to (only meaningful with ``applies_to``)."""
        values = self.applies_to[1]
        return values() if callable(values) else values


def setting(default: Any, help: str, group: str, **meta: Any) -> Any:
    return dataclasses.field(default=default, metadata={"meta": Meta(help, group, **meta)})


@dataclass(frozen=True)
class TrainSettings:
    """One run's settings; building one checks every value (see :meth:`check`)."""

    # model and data
    model: str = setting("gpt2", "model family", "model and data", choices=lambda: tuple(DATASETS_BY_MODEL),
                         flag=False)
    model_name: str = setting("gpt2", "the model's size (gpt2: gpt2-tiny, gpt2, gpt2-medium, gpt2-large, gpt2-xl; "
                              "resnet50/train.py: resnet18, resnet50)", "model and data", symbol="GPT2_MODEL_NAME",
                              applies_to=("model", tuple(MODEL_NAMES)))
    dataset: str = setting("finewebedu", "training data (gpt2: finewebedu, shakespeare, or pydocs: offline, "
                           "built in; lenet5: mnist or digits: offline; resnet50: cifar100, cifar10 or digits)",
                           "model and data", symbol="DATASET")
    data_dir: str | None = setting(None, "where prepared datasets live; None: $ADAMWPRUNE_DATA_DIR, "
                                   "else ./data", "model and data", resumable=True)
    block_size: int = setting(1024, "context length in tokens", "model and data",
                              symbol="BLOCK_SIZE", low=8, high=1024, applies_to=("model", ("gpt2",)))
    compile: bool = setting(False, "torch.compile the model", "model and data",
                            symbol="COMPILE", resumable=True)
    # training
    batch_size: int = setting(64, "sequences per micro-batch (per process)", "training",
                              symbol="BATCH_SIZE", low=1, high=65536)
    gradient_accumulation: int = setting(1, "micro-batches per optimizer step", "training",
                                         symbol="GRADIENT_ACCUMULATION", low=1, high=4096)
    learning_rate: float = setting(6e-4, "peak learning rate", "training", symbol="LEARNING_RATE", low=0.0)
    lr_schedule: str = setting("cosine", "decay after warmup", "training",
                               symbol="LR_SCHEDULE", choices=SCHEDULES)
    min_lr: float = setting(6e-5, "learning rate at the end of cosine decay", "training",
                            symbol="MIN_LR", low=0.0, applies_to=("lr_schedule", ("cosine",)))
    warmup_iters: int = setting(100, "linear warmup steps", "training",
                                symbol="WARMUP_ITERS", low=0, high=10_000_000)
    grad_clip: float = setting(1.0, "clip the gradient norm to this (0 = off)", "training",
                               symbol="GRAD_CLIP", low=0.0)
    max_iters: int = setting(10_000, "optimizer steps to train for", "training",
                             symbol="MAX_ITERS", low=1, high=100_000_000, resumable=True)
    epochs: int = setting(0, "train for this many passes over the training images instead: --max-iters "
                          "becomes ceil(epochs x images / (batch-size x gradient-accumulation x processes)) "
                          "before any schedule is built (0: --max-iters decides)", "training", symbol="EPOCHS",
                          low=0, high=100_000, given_low=1, resumable=True, applies_to=("model", VISION_MODELS))
    max_time: int = setting(0, "stop after this many seconds of total training time (0 = no limit)",
                            "training", symbol="MAX_TIME", low=0, high=100_000_000, resumable=True)
    log_interval: int = setting(10, "log train metrics every N steps", "training",
                                symbol="LOG_INTERVAL", low=1, high=100_000_000, resumable=True)
    eval_interval: int = setting(250, "evaluate every N steps (also at 0 and at the end)", "training",
                                 symbol="EVAL_INTERVAL", low=1, high=100_000_000, resumable=True)
    eval_samples: int = setting(200, "validation batches per evaluation", "training",
                                symbol="EVAL_SAMPLES", low=1, high=100_000_000, resumable=True)
    eval_batch_size: int = setting(64, "sequences (images) per validation batch, processed in micro-batches "
                                   "of at most --batch-size; under DDP the batches are split over the "
                                   "processes", "training", symbol="EVAL_BATCH_SIZE", low=1, high=65536,
                                   resumable=True)
    save_checkpoint: bool = setting(True, "write ckpt_last.pt / ckpt_best.pt into the run directory",
                                    "training", symbol="SAVE_CHECKPOINT", resumable=True)
    output_dir: str = setting("runs", "runs go to OUTPUT_DIR/PROJECT/RUN_NAME", "training",
                              symbol="OUTPUT_DIR", resumable=True)
    device: str = setting("auto", "auto (cuda if available), cpu or cuda", "training",
                          symbol="DEVICE", resumable=True)
    seed: int = setting(1337, "random seed", "training", symbol="SEED", low=0, high=2_147_483_647)
    # optimizer
    optimizer: str = setting("adamw", "optimizer (adamwprune: its --adamwprune-base, pruning by its own state)",
                             "optimizer", symbol="OPTIMIZER", choices=optim.names)
    weight_decay: float = setting(0.1, "weight decay (2-D weights only): decoupled for AdamW variants, "
                                  "L2 for SGD and Adam", "optimizer", symbol="WEIGHT_DECAY", low=0.0)
    beta1: float = setting(0.9, "Adam beta1", "optimizer", symbol="ADAM_BETA1", low=0.0, high=1.0,
                           high_open=True, applies_to=("optimizer", ADAM_FAMILY))
    beta2: float = setting(0.95, "Adam beta2", "optimizer", symbol="ADAM_BETA2", low=0.0, high=1.0,
                           high_open=True, applies_to=("optimizer", ADAM_FAMILY))
    momentum: float = setting(0.9, "SGD momentum", "optimizer", symbol="SGD_MOMENTUM", low=0.0, high=1.0,
                              high_open=True, applies_to=("optimizer", ("sgd",)))
    # AdamWSPAM (adamwprune/optim/spam.py)
    spam_theta: float = setting(50.0, "spike threshold θ: where g² > θ·v the gradient is clipped to "
                                "sign(g)·sqrt(θ·v) (the original harness: 50; the authors' code: 5000)",
                                "optimizer", symbol="SPAM_THETA", low=0.0, low_open=True, applies_to=SPAM)
    spam_enable_clip: bool = setting(True, "spike-aware gradient clipping", "optimizer",
                                     symbol="SPAM_ENABLE_CLIP", applies_to=SPAM)
    spam_clip_delay: int = setting(20, "steps without clipping after the start and after each reset "
                                   "(the second moment is 0 then)", "optimizer", symbol="SPAM_CLIP_DELAY",
                                   low=0, high=100_000_000, applies_to=SPAM)
    spam_periodic_reset: bool = setting(True, "set both moments to zero every --spam-interval steps",
                                        "optimizer", symbol="SPAM_PERIODIC_RESET", applies_to=SPAM)
    spam_interval: int = setting(1000, "optimizer steps between momentum resets", "optimizer",
                                 symbol="SPAM_INTERVAL", low=1, high=100_000_000, applies_to=SPAM)
    spam_warmup: bool = setting(True, "cosine learning-rate warm-up after the start and after each reset",
                                "optimizer", symbol="SPAM_WARMUP", applies_to=SPAM)
    spam_warmup_steps: int = setting(100, "steps of that warm-up", "optimizer", symbol="SPAM_WARMUP_STEPS",
                                     low=0, high=100_000_000, applies_to=SPAM)
    spam_spike_detection: bool = setting(False, "soft reset (m x 0.5, v x 0.9) when the global gradient "
                                         "norm spikes (the original harness's; not in the paper)",
                                         "optimizer", symbol="SPAM_SPIKE_DETECTION", applies_to=SPAM)
    spam_spike_threshold: float = setting(2.0, "z-score over the last 100 gradient norms that is a spike",
                                          "optimizer", symbol="SPAM_SPIKE_THRESHOLD", low=0.0, low_open=True,
                                          applies_to=SPAM)
    spam_amsgrad: bool = setting(False, "AMSGrad (the original harness's; not in the paper)", "optimizer",
                                 symbol="SPAM_AMSGRAD", applies_to=SPAM)
    # AdamWADV
    adv_amsgrad: bool = setting(True, "AMSGrad", "optimizer", symbol="ADV_AMSGRAD",
                                applies_to=("base_optimizer", ("adamwadv",)))
    # AdamWPrune: a base optimizer plus state pruning (adamwprune/pruning/variants.py)
    adamwprune_base: str = setting("adamw", "the optimizer AdamWPrune steps with (its own settings apply)",
                                   "optimizer", symbol="ADAMWPRUNE_BASE", choices=optim.ADAMWPRUNE_BASES,
                                   applies_to=ADAMWPRUNE)
    # pruning
    pruning_method: str = setting("none", "pruning method (state: with --optimizer adamwprune only)",
                                  "pruning", symbol="PRUNING_METHOD", choices=pruning.names)
    adamwprune_variant: str = setting(variants.DEFAULT, "how state pruning scores weights from the Adam "
                                      "moments (formulas: docs/training.md)", "pruning",
                                      symbol="ADAMWPRUNE_VARIANT", choices=variants.names, applies_to=ADAMWPRUNE)
    target_sparsity: float = setting(0.5, "fraction of prunable weights to zero", "pruning",
                                     symbol="TARGET_SPARSITY", low=0.0, high=1.0, high_open=True,
                                     applies_to=("pruning_method", pruning_methods))
    pruning_schedule: str = setting("zhu-gupta", "how the sparsity rises over the ramp: zhu-gupta s(1-(1-p)^3), "
                                    "cubic-in s*p^3, linear s*p", "pruning", symbol="PRUNING_SCHEDULE",
                                    choices=PRUNING_SCHEDULES, applies_to=("pruning_method", pruning_methods))
    pruning_interval: int = setting(50, "steps between mask updates", "pruning", symbol="PRUNING_FREQUENCY",
                                    low=1, high=100_000_000, applies_to=("pruning_method", pruning_methods))
    pruning_scope: str = setting("global", "global: one threshold over all prunable weights; layer: the same "
                                 "sparsity in every weight matrix", "pruning", symbol="PRUNING_SCOPE",
                                 choices=("global", "layer"), applies_to=("pruning_method", pruning_methods))
    pruning_warmup: int = setting(100, "steps before pruning starts", "pruning", symbol="PRUNING_WARMUP",
                                  low=0, high=100_000_000, applies_to=("pruning_method", pruning_methods))
    pruning_ramp: int = setting(0, "steps from 0 to the target sparsity after the warmup "
                                "(0: until max-iters)", "pruning", symbol="PRUNING_RAMP",
                                low=0, high=100_000_000, applies_to=("pruning_method", pruning_methods))
    # experiment tracking
    tracker: str = setting("none", "none, trackio, wandb, both, or a comma list such as wandb,trackio",
                           "experiment tracking", resumable=True)
    tracker_project: str = setting("", "project name ('' = auto: {model}-{checksum})",
                                   "experiment tracking", symbol="TRACKER_PROJECT", resumable=True)
    tracker_run_name: str = setting("", "run name ('' = {model}_{optimizer}_{timestamp})",
                                    "experiment tracking", symbol="TRACKER_RUN_NAME", resumable=True)
    tracker_group: str = setting("", "group of runs compared together (W&B group, Trackio group; a test "
                                 "matrix sets it to its id)", "experiment tracking", resumable=True)
    tracker_tags: str = setting("", "comma-separated tags of the run (W&B tags, in Trackio's config)",
                                "experiment tracking", resumable=True)
    wandb_entity: str = setting("", "W&B team or user ('' = your default)", "experiment tracking",
                                symbol="WANDB_ENTITY", resumable=True)
    wandb_offline: bool = setting(False, "write W&B runs offline (sync later with `wandb sync`)",
                                  "experiment tracking", symbol="WANDB_OFFLINE", resumable=True)
    gpu_monitor: bool = setting(False, "log GPU memory/utilization/power/temperature metrics",
                                "experiment tracking", symbol="GPU_MONITOR", resumable=True)
    gpu_monitor_interval: float = setting(1.0, "seconds between GPU samples", "experiment tracking",
                                          symbol="GPU_MONITOR_INTERVAL", low=0.001, resumable=True,
                                          applies_to=("gpu_monitor", (True,)))
    simulate_gpus: int = setting(0, "monitor N simulated GPUs instead of the real ones, a demo without a GPU; "
                                 "its run config and graphs say simulated (0: the real GPUs)",
                                 "experiment tracking", symbol="GPU_MONITOR_SIMULATE", low=0, high=64,
                                 given_low=1, resumable=True, applies_to=("gpu_monitor", (True,)))

    def __post_init__(self) -> None:
        self.check()  # every run, from the command line or not, is checked here

    @property
    def base_optimizer(self) -> str:
        return base_optimizer(vars(self))

    def check(self) -> None:
        """Raise a UserError naming the flag of the first value out of its range or choices."""
        if self.adamwprune_variant in variants.REFUSED:
            raise UserError(variants.REFUSED[self.adamwprune_variant])
        for field in dataclasses.fields(self):
            check_value(field, getattr(self, field.name))
        names = MODEL_NAMES.get(self.model)
        if names and self.model_name not in names:
            raise UserError(f"unknown model-name {self.model_name!r} for {self.model}; choose one of: "
                            f"{', '.join(names)}")
        datasets = DATASETS_BY_MODEL[self.model]
        if self.dataset not in datasets:
            raise UserError(f"unknown dataset {self.dataset!r} for {self.model}; choose one of: "
                            f"{', '.join(datasets)}")
        mismatch = pruning.pairing_error(self.optimizer, self.pruning_method)
        if mismatch:
            raise UserError(mismatch)
        if self.lr_schedule == "cosine" and self.min_lr > self.learning_rate:
            raise UserError(f"min-lr ({self.min_lr:g}) must not exceed learning-rate ({self.learning_rate:g})")

    def applies(self, name: str) -> bool:
        """Whether setting ``name`` means anything for this run (momentum: only with SGD)."""
        info = METAS[name]
        return info.applies_to is None or selector_value(vars(self), info.applies_to[0]) in info.applies_with()

    def tracked(self) -> dict[str, Any]:
        """The settings that apply to this run, for the tracked config (no SGD momentum of an AdamW run)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if self.applies(f.name)}


def metas(cls: type = TrainSettings) -> dict[str, Meta]:
    """Each setting of ``cls`` (TrainSettings, or a class that extends it) with its Meta."""
    return {f.name: f.metadata["meta"] for f in dataclasses.fields(cls)}


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainSettings)}
METAS: dict[str, Meta] = metas()
DEFAULTS: dict[str, Any] = {name: f.default for name, f in FIELDS.items()}

# Where another model family's defaults differ from GPT-2's, on purpose (Kconfig has the same).
# A classifier's validation point is its whole test split (train/vision.py): 10 x 1,000 images
# hold MNIST's and CIFAR's 10,000, in micro-batches of at most --batch-size.
VISION_DEFAULTS = {"batch_size": 128, "learning_rate": 0.001, "min_lr": 0.0001, "beta2": 0.999,
                   "weight_decay": 0.0005, "eval_samples": 10, "eval_batch_size": 1000}
MODEL_NAME_DEFAULTS = {"resnet50": {"model_name": "resnet50"},
                       **{model: values for model, (_, values) in TRAINED_BY.items()}}
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "gpt2": {},
    **{model: {**VISION_DEFAULTS, "model": model, "dataset": datasets[0], **MODEL_NAME_DEFAULTS.get(model, {})}
       for model, datasets in DATASETS_BY_MODEL.items() if model != "gpt2"},
}


# Where an optimizer's defaults differ, on purpose: AdamWADV is the original harness's
# "advanced" AdamW (Kconfig has the same, as defaults that depend on OPTIMIZER_ADAMWADV).
# AdamWPrune always prunes by its own state, so choosing it chooses that method.
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {"adamwadv": {"weight_decay": 0.01, "min_lr": 1e-6},
                                                 "adamwprune": {"pruning_method": "state"}}


def register_model(model: str, datasets: tuple[str, ...], defaults: Mapping[str, Any] | None = None) -> None:
    """Make ``model`` a model family the settings accept, with its datasets and its own defaults."""
    DATASETS_BY_MODEL[model] = tuple(datasets)
    MODEL_DEFAULTS[model] = {**(defaults or {}), "model": model, "dataset": datasets[0]}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def defaults_for(model: str, optimizer: str | None = None) -> dict[str, Any]:
    """Every setting's default for model family ``model`` (and ``optimizer``, where it has its own)."""
    return {**DEFAULTS, **MODEL_DEFAULTS[model], **OPTIMIZER_DEFAULTS.get(optimizer or "", {})}


def named_model(settings: TrainSettings) -> str:
    """The model that project and run names start with: the Kconfig tree's name for it (resnet18 for
    resnet50/train.py --model-name resnet18, as for MODEL_RESNET18), else the family."""
    return next((model for model, (family, values) in TRAINED_BY.items()
                 if family == settings.model and all(getattr(settings, k) == v for k, v in values.items())),
                settings.model)


def steps_for_epochs(settings: TrainSettings, train_items: int, world_size: int) -> TrainSettings:
    """``settings`` with --epochs turned into --max-iters: the steps that draw ``epochs`` x
    ``train_items`` items, at batch-size x gradient-accumulation x ``world_size`` per step."""
    if not settings.epochs:
        return settings
    per_step = settings.batch_size * settings.gradient_accumulation * world_size
    return dataclasses.replace(settings, max_iters=max(1, math.ceil(settings.epochs * train_items / per_step)))


def check_value(field: dataclasses.Field, value: Any) -> None:
    """A UserError naming the flag when ``value`` is outside the field's range or choices."""
    info: Meta = field.metadata["meta"]
    name = flag(field.name)[2:]
    allowed = info.allowed()
    if allowed is not None and value not in allowed:
        raise UserError(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")
    if not info.constrained:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{name} must be a finite number (got {value})")
    low = -math.inf if info.low is None else info.low
    high = math.inf if info.high is None else info.high
    too_high = value >= high if info.high_open else value > high
    too_low = value <= low if info.low_open else value < low
    if not too_low and not too_high:
        return
    if info.low_open and math.isinf(high):
        raise UserError(f"{name} must be greater than {low:g} (got {value})")
    if isinstance(field.default, float) and math.isfinite(high):  # a fraction such as beta: [0, 1)
        raise UserError(f"{name} must be in [{low:g}, {high:g}{')' if info.high_open else ']'} (got {value})")
    if too_high:
        raise UserError(f"{name} must be at most {high:g} (got {value})")
    raise UserError(f"{name} must not be negative (got {value})" if low == 0
                    else f"{name} must be at least {low:g} (got {value})")


def base_optimizer(values: Mapping[str, Any]) -> str:
    """The optimizer that takes the steps: AdamWPrune's base, else the optimizer itself."""
    return values["adamwprune_base"] if values["optimizer"] == "adamwprune" else values["optimizer"]


def selector_value(values: Mapping[str, Any], selector: str) -> Any:
    return base_optimizer(values) if selector == "base_optimizer" else values[selector]


def check_applicable(given: Iterable[str], values: Mapping[str, Any]) -> None:
    """Refuse a flag given for a method that is not selected (``--momentum`` with AdamW), or given
    a value that only its default may have (``--simulate-gpus 0``: leave the flag out)."""
    for name in given:
        info = METAS[name]
        if info.given_low is not None and values[name] < info.given_low:
            raise UserError(f"{flag(name)} must be at least {info.given_low:g} (got {values[name]}); "
                            f"{DEFAULTS[name]} is the default: leave the flag out")
        if info.applies_to is None or selector_value(values, info.applies_to[0]) in info.applies_with():
            continue
        selector = info.applies_to[0]
        choices = ", ".join(str(value) for value in info.applies_with())
        if selector == "gpu_monitor":
            raise UserError(f"{flag(name)} applies with {flag(selector)} only")
        if selector == "base_optimizer":
            raise UserError(f"{flag(name)} applies to --optimizer {choices} (or adamwprune with "
                            f"--adamwprune-base {choices}) only (this run steps with {base_optimizer(values)})")
        raise UserError(f"{flag(name)} applies to {flag(selector)} {choices} only "
                        f"(this run has {flag(selector)} {values[selector]})")


def resume_differences(saved: Mapping[str, Any], now: TrainSettings) -> list[str]:
    """The settings that change what a run means, where ``now`` differs from the checkpoint's."""
    differences = []
    for name, info in METAS.items():
        if info.resumable or not now.applies(name):
            continue
        before, after = saved.get(name), getattr(now, name)
        if before != after:
            differences.append(f"{flag(name)} is {after!r}, the checkpoint has {before!r}")
    return differences


def resumable_flags() -> list[str]:
    """The flags that may change when a run is resumed (docs/training.md lists them)."""
    return [flag(name) for name, info in METAS.items() if info.resumable]
