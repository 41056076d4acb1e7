"""Command line of ``gpt2/train.py``: flags over config over built-in defaults, then the loop.

Defaults come from the generated configuration (``make defconfig`` / ``.config``)
when there is one; any flag given on the command line wins.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from adamwprune.errors import UserError

PROG = "gpt2/train.py"
MODEL_FAMILY = "gpt2"

# Built-in defaults (no configuration): GPT-2 124M on FineWeb-Edu with AdamW, untracked.
BUILTIN_DEFAULTS: dict[str, Any] = {
    "model_name": "gpt2", "dataset": "finewebedu", "block_size": 1024, "compile": False,
    "batch_size": 12, "gradient_accumulation": 4, "learning_rate": 6e-4, "min_lr": 6e-5,
    "warmup_iters": 2000, "lr_schedule": "cosine", "weight_decay": 0.1, "grad_clip": 1.0,
    "max_iters": 10000, "max_time": 0, "log_interval": 10, "eval_interval": 500, "eval_samples": 200,
    "save_checkpoint": True, "output_dir": "runs", "device": "auto", "seed": 1337,
    "optimizer": "adamw", "beta1": 0.9, "beta2": 0.95, "momentum": 0.9, "pruning_method": "none",
    "target_sparsity": 0.5, "pruning_warmup": 1000, "pruning_ramp": 0, "tracker": "none", "tracker_project": "",
    "tracker_run_name": "", "wandb_entity": "", "wandb_offline": False, "gpu_monitor": False,
    "gpu_monitor_interval": 1.0, "data_dir": None, "resume": None,
}


def build_parser() -> argparse.ArgumentParser:
    from adamwprune.optim import OPTIMIZERS
    from adamwprune.pruning import METHODS
    from adamwprune.train.schedule import SCHEDULES

    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train GPT-2 with the shared AdamWPrune loop, tracked in Trackio and/or W&B. "
                    "Defaults shown come from the generated configuration (make defconfig) when "
                    "there is one, else built-in; flags always win.")
    model = parser.add_argument_group("model and data")
    model.add_argument("--model-name", help="GPT-2 size: gpt2, gpt2-medium, gpt2-large, gpt2-xl, gpt2-tiny")
    model.add_argument("--dataset", help="finewebedu, shakespeare or pydocs (offline, built in)")
    model.add_argument("--data-dir", help="where prepared datasets live "
                                          "(default: $ADAMWPRUNE_DATA_DIR or ./data)")
    model.add_argument("--block-size", type=int, help="context length in tokens")
    model.add_argument("--compile", action=argparse.BooleanOptionalAction, help="torch.compile the model")

    batch = parser.add_argument_group("training")
    batch.add_argument("--batch-size", type=int, help="sequences per micro-batch (per process)")
    batch.add_argument("--gradient-accumulation", type=int, help="micro-batches per optimizer step")
    batch.add_argument("--learning-rate", type=float, help="peak learning rate")
    batch.add_argument("--min-lr", type=float, help="learning rate at the end of cosine decay")
    batch.add_argument("--warmup-iters", type=int, help="linear warmup steps")
    batch.add_argument("--lr-schedule", choices=SCHEDULES, help="decay after warmup")
    batch.add_argument("--weight-decay", type=float, help="decoupled weight decay (2-D weights only)")
    batch.add_argument("--grad-clip", type=float, help="clip the gradient norm to this (0 = off)")
    batch.add_argument("--max-iters", type=int, help="optimizer steps to train for")
    batch.add_argument("--max-time", type=float,
                       help="stop after this many seconds of total training time (0 = no limit)")
    batch.add_argument("--log-interval", type=int, help="log train metrics every N steps")
    batch.add_argument("--eval-interval", type=int, help="evaluate every N steps (also at 0 and at the end)")
    batch.add_argument("--eval-samples", type=int, help="validation batches per evaluation")
    batch.add_argument("--save-checkpoint", action=argparse.BooleanOptionalAction,
                       help="write ckpt_last.pt / ckpt_best.pt into the run directory")
    batch.add_argument("--output-dir", help="runs go to OUTPUT_DIR/PROJECT/RUN_NAME")
    batch.add_argument("--device", help="auto (cuda if available), cpu or cuda")
    batch.add_argument("--seed", type=int, help="random seed")
    batch.add_argument("--resume", nargs="?", const="auto", metavar="RUN_DIR_OR_CKPT",
                       help="continue from ckpt_last.pt into the same tracked run: of the named run "
                            "(--tracker-run-name), of RUN_DIR_OR_CKPT, or else the newest run of the project")

    optim = parser.add_argument_group("optimizer and pruning")
    optim.add_argument("--optimizer", choices=OPTIMIZERS,
                       help="sgd, adam, adamw (adamwspam and adamwprune: not available yet)")
    optim.add_argument("--beta1", type=float, help="Adam beta1")
    optim.add_argument("--beta2", type=float, help="Adam beta2")
    optim.add_argument("--momentum", type=float, help="SGD momentum")
    optim.add_argument("--pruning-method", choices=METHODS,
                       help="none (magnitude, movement, state: not available yet)")
    optim.add_argument("--target-sparsity", type=float, help="fraction of prunable weights to zero")
    optim.add_argument("--pruning-warmup", type=int, help="steps before pruning starts")
    optim.add_argument("--pruning-ramp", type=int,
                       help="steps from 0 to the target sparsity after the warmup (0: until max-iters)")

    track = parser.add_argument_group("experiment tracking")
    track.add_argument("--tracker", help="none, trackio, wandb, both, or a comma list such as wandb,trackio")
    track.add_argument("--tracker-project", help="project name ('' = auto: {model}-{checksum})")
    track.add_argument("--tracker-run-name", help="run name ('' = {model}_{optimizer}_{timestamp})")
    track.add_argument("--wandb-entity", help="W&B team or user ('' = your default)")
    track.add_argument("--wandb-offline", action=argparse.BooleanOptionalAction,
                       help="write W&B runs offline (sync later with `wandb sync`)")
    track.add_argument("--gpu-monitor", action=argparse.BooleanOptionalAction,
                       help="log GPU memory/utilization/power/temperature metrics")
    track.add_argument("--gpu-monitor-interval", type=float, help="seconds between GPU samples")
    parser.set_defaults(**BUILTIN_DEFAULTS)
    return parser


def config_defaults() -> dict[str, Any]:
    """The trainer defaults from the generated configuration, or {} when there is none."""
    from adamwprune import kconfig

    cfg = kconfig.load_config()
    return dict(kconfig.trainer_defaults(cfg)) if cfg else {}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    parser.set_defaults(**config_defaults())
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace):
    """The loop's settings from the flags; TrainSettings checks them as it is built."""
    from adamwprune.train.loop import TrainSettings

    return TrainSettings(**{f.name: getattr(args, f.name) for f in fields(TrainSettings)})


def main(argv: Sequence[str] | None = None) -> int:
    from adamwprune.optim import check_optimizer
    from adamwprune.pruning import check_pruning_method
    from adamwprune.tracking.selection import format_trackers, parse_trackers

    args = parse_args(argv)
    trackers = parse_trackers(args.tracker)
    args.tracker = format_trackers(trackers)
    args.optimizer = check_optimizer(args.optimizer)
    args.pruning_method = check_pruning_method(args.pruning_method)
    settings = settings_from_args(args)

    # Everything that can fail on bad input fails here, before a process group or a tracked run exists.
    from adamwprune.data import get_dataset
    from adamwprune.models.gpt2 import PRESETS

    if args.model_name not in PRESETS:
        raise UserError(f"unknown GPT-2 model {args.model_name!r}; choose one of: {', '.join(PRESETS)}")
    if args.block_size < 1:
        raise UserError(f"block-size must be at least 1 (got {args.block_size})")
    dataset = get_dataset(args.dataset, data_dir=args.data_dir)

    from adamwprune.train.distributed import broadcast_object, init_distributed, shutdown
    from adamwprune.train.gpt2 import GPT2Adapter
    from adamwprune.train.loop import StopReason, train

    adapter = GPT2Adapter(dataset, model_name=args.model_name, block_size=args.block_size)
    ctx = init_distributed(args.device)
    try:
        # A checkpoint that cannot continue this run is refused here, before the tracked run is reopened.
        run_dir, resume_state = _resolve_run(args, ctx, broadcast_object, adapter, settings)
        run_info = {"model": MODEL_FAMILY, "project": args.tracker_project, "run_name": args.tracker_run_name}
        tracker = None
        if ctx.is_main:
            from adamwprune.tracking import ExperimentTracker

            tracker = ExperimentTracker(
                trackers, project=args.tracker_project, run_name=args.tracker_run_name, run_dir=run_dir,
                config=_tracked_config(args, ctx), wandb_entity=args.wandb_entity or None,
                wandb_offline=bool(args.wandb_offline), resume=resume_state is not None)
        result = train(adapter, settings, ctx=ctx, tracker=tracker, run_dir=run_dir, run_info=run_info,
                       resume_state=resume_state)
    finally:
        shutdown(ctx)
    if ctx.is_main:
        _print_summary(result, trackers, args, run_dir)
    return 130 if result.stop_reason == StopReason.INTERRUPTED else 0


def _resolve_run(args: argparse.Namespace, ctx, broadcast_object, adapter, settings):
    """Fill in project and run name, find and check the checkpoint to resume; same answer on every rank.

    Returns the run directory and a checked ResumeState (None for a new run).
    """
    from adamwprune.train import checkpoint as ckpt
    from adamwprune.train.loop import check_resume_state
    from adamwprune.tracking.naming import default_run_name, project_name

    if not args.tracker_project:
        args.tracker_project = project_name(MODEL_FAMILY)
    resume_path = None
    if args.resume:
        resume_path = _find_checkpoint(args)
        state = check_resume_state(ckpt.load(resume_path), adapter, settings, source=resume_path)
        run = state.state.get("run", {})
        args.tracker_project = run.get("project") or args.tracker_project
        args.tracker_run_name = run.get("run_name") or args.tracker_run_name
    else:
        state = None
        if not args.tracker_run_name:
            args.tracker_run_name = broadcast_object(ctx, default_run_name(MODEL_FAMILY, args.optimizer))
    run_dir = resume_path.parent if resume_path else Path(args.output_dir) / args.tracker_project / args.tracker_run_name
    if state is None and (run_dir / ckpt.LAST_NAME).exists():
        raise UserError(f"{run_dir} already holds a run; continue it with --resume "
                        "or choose another --tracker-run-name")
    return run_dir, state


def _find_checkpoint(args: argparse.Namespace) -> Path:
    from adamwprune.train.checkpoint import LAST_NAME

    if args.resume != "auto":
        path = Path(args.resume)
        path = path / LAST_NAME if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"cannot resume: {path} does not exist")
        return path
    project_dir = Path(args.output_dir) / args.tracker_project
    if args.tracker_run_name:
        path = project_dir / args.tracker_run_name / LAST_NAME
        if not path.is_file():
            raise UserError(f"cannot resume: {path} does not exist (was --save-checkpoint off?)")
        return path
    candidates = sorted(project_dir.glob(f"*/{LAST_NAME}"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise UserError(f"cannot resume: no {LAST_NAME} under {project_dir}; "
                        "name the run with --tracker-run-name or pass its directory to --resume")
    return candidates[-1]


def _tracked_config(args: argparse.Namespace, ctx) -> dict[str, Any]:
    config = {key: value for key, value in vars(args).items() if key != "resume"}
    config.update(model=MODEL_FAMILY, world_size=ctx.world_size, device=ctx.device)
    return config


def _print_summary(result, trackers: tuple[str, ...], args: argparse.Namespace, run_dir: Path) -> None:
    import math

    from adamwprune.train.loop import perplexity

    best = result.best_val_loss
    best_text = (f"best val_loss {best:.4f} (perplexity {perplexity(best):.2f})" if math.isfinite(best)
                 else "no validation loss")
    print(f"done: {result.iteration} iterations in {result.total_training_time:.0f}s, {best_text}; "
          f"run dir {run_dir}", flush=True)
    if "trackio" in trackers:
        from adamwprune.tracking.backends import trackio_show_command

        print(f"view it: {trackio_show_command(args.tracker_project)}", flush=True)
