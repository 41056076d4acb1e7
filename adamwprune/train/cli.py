"""The shared command line of every ``<model>/train.py``: flags over config over defaults, then the loop.

Every flag comes from a field of :class:`adamwprune.train.settings.TrainSettings`
that applies to the family's model. Defaults come from the generated configuration
(``make defconfig`` / ``.config``) when there is one, else from the settings; any
flag given on the command line wins. Everything that can be checked from the flags
and the data is checked before a run directory or a tracked run exists.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from functools import partial
from pathlib import Path
from typing import Any, Sequence

from adamwprune.deps import TRAINER, require
from adamwprune.errors import UserError, run_main
from adamwprune.pruning.schedule import short_ramp_warning
from adamwprune.train import settings as S
from adamwprune.train.distributed import launched_world_size
from adamwprune.train.family import ModelFamily

RUN_CONTROL = ("resume", "restart", "check_only")  # flags that steer this invocation, not settings of the run


def run_family(family: ModelFamily, argv: Sequence[str] | None) -> int:
    """What ``<model>/train.py`` does: :func:`main`, with a one-line message for a user error, and
    for a Python without torch (or the trainer's other modules): that one says how to set up."""
    require(family.prog, TRAINER, sys.argv[1:] if argv is None else argv)
    code = run_main(partial(main, family), argv, prog=family.prog)
    if launched_world_size() > 1:
        # A torchrun worker leaves without the interpreter's teardown: torch's gloo threads can abort
        # a process while it is torn down ("terminate called without an active exception": 4 of 30
        # two-process runs on a loaded 2-core machine, 0 of 30 this way), and torchrun then reports a
        # finished run as failed. By now the run has closed all it wrote (checkpoints, journal,
        # tracker, process group).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def family_settings(family: ModelFamily, cls: type = S.TrainSettings) -> dict[str, S.Meta]:
    """The settings that have a flag for this family (its own and the shared ones)."""
    return {name: info for name, info in S.metas(cls).items() if info.flag
            and (info.applies_to is None or info.applies_to[0] != "model" or family.name in info.applies_with())}


def build_parser(family: ModelFamily, shown_defaults: dict[str, Any] | None = None,
                 cls: type = S.TrainSettings) -> argparse.ArgumentParser:
    """The family's parser, one flag per setting of ``cls``; ``shown_defaults`` only feed --help.

    Flags left out are absent from the parsed namespace, so that the caller knows
    which settings were given on the command line.
    """
    shown = {**{f.name: f.default for f in dataclasses.fields(cls)}, **S.MODEL_DEFAULTS.get(family.name, {}),
             **(shown_defaults or {})}
    parser = argparse.ArgumentParser(
        prog=family.prog, argument_default=argparse.SUPPRESS,
        description=f"{family.description} Defaults shown come from the generated configuration "
                    "(make defconfig) when there is one, else built-in; flags always win.")
    groups = {name: parser.add_argument_group(name) for name in S.GROUPS}
    hints = typing.get_type_hints(cls)
    for name, info in family_settings(family, cls).items():
        kind = hints[name]
        # choices are checked by the settings, for a one-line error like every other value
        choices = f"; one of: {', '.join(info.allowed())}" if info.choices else ""
        options: dict[str, Any] = {"help": f"{info.help}{choices} (default: {_shown(shown[name])})"}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif kind in (int, float):
            options["type"] = kind
        groups[info.group].add_argument(S.flag(name), **options)
    run = parser.add_argument_group("this invocation")
    run.add_argument("--resume", nargs="?", const="auto", metavar="RUN_DIR_OR_CKPT",
                     help="continue from ckpt_last.pt into the same tracked run: of the named run "
                          "(--tracker-run-name), of RUN_DIR_OR_CKPT, or else the newest run of the project")
    run.add_argument("--restart", action="store_true",
                     help="start a run that stopped before its first checkpoint again under its name; "
                          "the old run directory is moved aside and its tracked run renamed")
    run.add_argument("--check-only", action="store_true",
                     help="check the flags, configuration, data, device and trackers, then exit without "
                          "starting a run (make does this once before it starts torchrun)")
    return parser


def _shown(value: Any) -> str:
    return "''" if value == "" else str(value)


def config_defaults() -> dict[str, Any]:
    """The trainer defaults from the generated configuration, or {} when there is none."""
    from adamwprune import kconfig

    cfg = kconfig.load_config()
    if not cfg:
        return {}
    # a Kconfig model that another family's trainer trains (resnet18) sets what makes it that model
    return {**kconfig.trainer_defaults(cfg), **S.TRAINED_BY.get(cfg.MODEL, ("", {}))[1]}


def parse_args(family: ModelFamily, argv: Sequence[str] | None) -> argparse.Namespace:
    """Every setting (flag over config over default), plus ``given``: the settings on the command line."""
    configured = config_defaults()
    parsed = vars(build_parser(family, configured).parse_args(argv))
    given = {name: value for name, value in parsed.items() if name not in RUN_CONTROL}
    optimizer = given.get("optimizer", configured.get("optimizer"))
    defaults = S.defaults_for(family.name, optimizer)  # AdamWADV has its own weight decay and min lr
    return argparse.Namespace(**{**defaults, **configured, **given, "model": family.name},
                              resume=parsed.get("resume"), restart=parsed.get("restart", False),
                              check_only=parsed.get("check_only", False), given=set(given))


def settings_from_args(args: argparse.Namespace) -> S.TrainSettings:
    """Check and build the run's settings (the one place a command line becomes settings)."""
    from adamwprune.optim import check_optimizer
    from adamwprune.pruning import check_pruning_method
    from adamwprune.tracking.selection import format_trackers, parse_trackers, require_installed

    values = {name: getattr(args, name) for name in S.FIELDS}
    trackers = parse_trackers(values["tracker"])
    require_installed(trackers)  # the install command now, not after the data is opened
    values["tracker"] = format_trackers(trackers)
    values["optimizer"] = check_optimizer(values["optimizer"])
    values["pruning_method"] = check_pruning_method(values["pruning_method"])
    S.check_applicable(args.given, values)
    if args.resume and args.restart:
        raise UserError("--resume continues a run and --restart starts it again: give one of them")
    if "max_iters" in args.given and values["epochs"]:
        if "epochs" in args.given:
            raise UserError("--epochs and --max-iters both say how long to train: give one of them")
        values["epochs"] = 0  # --max-iters on the command line wins over EPOCHS from the configuration
    return S.TrainSettings(**values)


def main(family: ModelFamily, argv: Sequence[str] | None = None) -> int:
    args = parse_args(family, argv)
    settings = settings_from_args(args)
    adapter = family.make_adapter(settings)  # opens and checks the data: before anything is created
    if settings.epochs:  # before the learning-rate and pruning schedules read --max-iters
        settings = S.steps_for_epochs(settings, adapter.train_items(), launched_world_size())
    warning = short_ramp_warning(settings)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if args.check_only:
        check_environment(settings)
        return 0

    from adamwprune.provenance import run_metadata
    from adamwprune.tracking import open_tracker
    from adamwprune.train.distributed import init_distributed, shutdown
    from adamwprune.train.loop import StopReason, train

    ctx = init_distributed(settings.device)
    try:
        # A checkpoint that cannot continue this run is refused here, before the tracked run is reopened.
        settings, run_dir, resume_state = _resolve_run(args, settings, ctx, adapter.describe())
        metadata = run_metadata(argv=[sys.argv[0], *(sys.argv[1:] if argv is None else argv)],
                                world_size=ctx.world_size, device=ctx.device, seed=settings.seed)
        tracker = open_tracker(
            settings.tracker, project=settings.tracker_project, run_name=settings.tracker_run_name,
            run_dir=run_dir, config={**settings.tracked(), "device": ctx.device, **metadata},
            wandb_entity=settings.wandb_entity or None, wandb_offline=settings.wandb_offline,
            resume=resume_state is not None, group=settings.tracker_group or None,
            tags=[tag.strip() for tag in settings.tracker_tags.split(",") if tag.strip()])
        run_info = {"model": family.name, "project": settings.tracker_project,
                    "run_name": settings.tracker_run_name}
        result = train(adapter, settings, ctx=ctx, tracker=tracker, run_dir=run_dir, run_info=run_info,
                       resume_state=resume_state)
    finally:
        shutdown(ctx)
    if ctx.is_main:
        _write_result(result, run_dir, ctx.device_type)
        _print_summary(result, settings, run_dir)
    return 130 if result.stop_reason == StopReason.INTERRUPTED else 0


RESULT_NAME = "result.json"


def _write_result(result, run_dir: Path, device_type: str) -> None:
    """``<run_dir>/result.json``: how this session ended, for a test matrix's summary (and anyone).

    Peak memory is this process's maximum resident set (rank 0 under DDP) and, on a GPU, the
    peak of torch's allocator on rank 0's device.
    """
    import resource

    import orjson
    import torch

    from adamwprune.fileio import atomic_write_bytes

    data = {"iterations": result.iteration, "stop_reason": result.stop_reason.name.lower(),
            "training_seconds": round(result.total_training_time, 3), "best_metrics": result.best_metrics,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_gpu_mb": (round(torch.cuda.max_memory_allocated() / 2**20, 1)
                            if device_type == "cuda" else None)}
    try:
        atomic_write_bytes(run_dir / RESULT_NAME, orjson.dumps(data, option=orjson.OPT_INDENT_2))
    except OSError as err:
        print(f"warning: cannot write {run_dir / RESULT_NAME} ({err.strerror or err})", file=sys.stderr, flush=True)


def check_environment(settings: S.TrainSettings) -> None:
    """The checks the run makes later, once per process (device) or on rank 0 (trackers).

    Done here, in one process, they fail with one line; under torchrun the same mistake
    would be reported by every rank, and then by torchrun.
    """
    from adamwprune.tracking.selection import parse_trackers
    from adamwprune.tracking.tracker import preflight
    from adamwprune.train.distributed import resolve_device

    resolve_device(settings.device)
    preflight(parse_trackers(settings.tracker), settings.wandb_offline)


def _resolve_run(args: argparse.Namespace, settings: S.TrainSettings, ctx, model_description: dict):
    """Fill in project and run name, find and check the checkpoint to resume; same answer on every rank.

    Returns the completed settings, the run directory and a checked ResumeState (None for a new run).
    """
    from adamwprune.tracking.naming import default_run_name, project_name, run_dir_for
    from adamwprune.train import checkpoint as ckpt
    from adamwprune.train.distributed import broadcast_object

    project = settings.tracker_project or project_name(S.named_model(settings))
    run_name = settings.tracker_run_name
    if args.resume:
        resume_path = _find_checkpoint(args.resume, settings.output_dir, project, run_name)
        saved = ckpt.load(resume_path)
        run = saved.get("run", {}) if isinstance(saved, dict) else {}
        # the project and run name are the checkpoint's; everything else is compared with it
        settings = dataclasses.replace(settings, tracker_project=run.get("project") or project,
                                       tracker_run_name=run.get("run_name") or run_name)
        state = ckpt.check_resume_state(saved, model_description, settings, source=resume_path)
        return settings, resume_path.parent, state
    if not run_name:
        run_name = broadcast_object(ctx, default_run_name(S.named_model(settings), settings.optimizer))
    settings = dataclasses.replace(settings, tracker_project=project, tracker_run_name=run_name)
    run_dir = run_dir_for(settings.output_dir, project, run_name)
    if (run_dir / ckpt.LAST_NAME).exists():
        raise UserError(f"{run_dir} already holds a run; continue it with --resume "
                        "or choose another --tracker-run-name")
    # rank 0's view decides (it is the one that moves the directory)
    # a test matrix writes the run's output to train.log in its run directory before it starts
    if broadcast_object(ctx, run_dir.is_dir() and any(p.name != "train.log" for p in run_dir.iterdir())):
        if not args.restart:
            raise UserError(f"{run_dir} holds a run that stopped before its first checkpoint; start it "
                            "again with --restart (the old run is moved aside) or choose another "
                            "--tracker-run-name")
        if ctx.is_main:
            from adamwprune.tracking.supersede import supersede

            moved = supersede(run_dir, project, run_name)
            print(f"restart: the earlier run is now {moved}", flush=True)
        broadcast_object(ctx, None)  # the other ranks wait for the move
    return settings, run_dir, None


def _find_checkpoint(resume: str, output_dir: str, project: str, run_name: str) -> Path:
    from adamwprune.tracking.naming import run_dir_for
    from adamwprune.train.checkpoint import LAST_NAME

    if resume != "auto":
        path = Path(resume)
        path = path / LAST_NAME if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"cannot resume: {path} does not exist")
        return path
    if run_name:
        path = run_dir_for(output_dir, project, run_name) / LAST_NAME
        if not path.is_file():
            hint = (" (it stopped before its first checkpoint, or ran with --no-save-checkpoint); "
                    "start it again with --restart" if path.parent.is_dir() else " (was --save-checkpoint off?)")
            raise UserError(f"cannot resume: {path} does not exist{hint}")
        return path
    project_dir = Path(output_dir) / project
    candidates = sorted(project_dir.glob(f"*/{LAST_NAME}"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise UserError(f"cannot resume: no {LAST_NAME} under {project_dir}; "
                        "name the run with --tracker-run-name or pass its directory to --resume")
    return candidates[-1]


def _print_summary(result, settings: S.TrainSettings, run_dir: Path) -> None:
    best = ", ".join(f"{name} {value:.4g}" for name, value in result.best_metrics.items())
    print(f"done: {result.iteration} iterations in {result.total_training_time:.0f}s, "
          f"best eval: {best or 'none'}; run dir {run_dir}", flush=True)
    if settings.tracker in ("trackio", "both"):
        from adamwprune.tracking.backends import trackio_show_command

        print(f"view it: {trackio_show_command(settings.tracker_project)}", flush=True)
