"""The one training loop every model shares (GPT-2 now; LeNet-5 and ResNet next).

Model-specific parts live behind a small ``ModelAdapter``: how to build the
model, fetch a batch, compute the loss, and count what throughput is measured
in (tokens for GPT-2). Everything else is here: train step with gradient
accumulation, LR schedule, log and eval points, best/last checkpoints, resume,
DDP, the optimizer and pruning hooks, and the tracked metrics.

Iteration numbering: ``iteration`` counts completed optimizer steps. Metrics
logged at step ``k`` describe the model after ``k`` steps (step 0 = before
training), so a resumed run continues at ``k + 1`` with no repeated step.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from adamwprune.errors import UserError
from adamwprune.train import checkpoint as ckpt
from adamwprune.train.distributed import DistContext, all_reduce_mean, barrier, broadcast_int, gather_objects
from adamwprune.train.schedule import learning_rate
from adamwprune.train.settings import FIELDS, TrainSettings, resume_differences

CHECKPOINT_FORMAT = 2  # 2: every setting of the run is saved and compared on resume
PERPLEXITY_CAP = 20.0
# what a resume needs from ckpt_last.pt (ckpt_best.pt has only the model weights)
RESUME_KEYS = ("model", "optimizer", "iteration", "best_val_loss", "training_time", "settings")


class ModelAdapter(Protocol):
    """The model-specific part of a run."""

    throughput_metric: str          # e.g. "tokens_per_sec"
    throughput_unit: str            # e.g. "tok" (progress line)

    def check(self) -> None:
        """Raise a UserError for settings the data or model cannot take (before a run is opened)."""
        ...
    def build_model(self) -> Any: ...
    def items_per_batch(self, batch_size: int) -> int: ...
    def get_batch(self, split: str, batch_size: int, generator: Any, device: str) -> Any: ...
    def loss(self, model: Any, batch: Any) -> Any: ...
    def eval_metrics(self, val_loss: float) -> dict[str, float]: ...
    def flops_per_item(self, model: Any) -> float | None: ...
    def optimizer_groups(self, model: Any, weight_decay: float) -> list[dict[str, Any]]: ...
    def prunable_parameters(self, model: Any) -> Sequence[tuple[str, Any]]: ...
    def describe(self) -> dict[str, Any]:
        """What the checkpoint must match on resume (model name, sizes, dataset)."""
        ...


def perplexity(val_loss: float) -> float:
    """exp(min(val_loss, 20)): the spec's perplexity, capped so huge losses don't overflow."""
    return math.exp(min(val_loss, PERPLEXITY_CAP))


def check_can_continue(iteration: int, training_time: float, settings: TrainSettings) -> None:
    """Refuse to resume a run that has already reached its iteration or time limit."""
    if iteration >= settings.max_iters:
        raise UserError(f"nothing to do: the run already reached iteration {iteration} "
                        f"(max-iters {settings.max_iters}); pass a larger --max-iters to continue")
    if settings.max_time and training_time >= settings.max_time:
        raise UserError(f"nothing to do: the run already used its time budget "
                        f"({training_time:.0f}s of max-time {settings.max_time:g}s); "
                        "pass a larger --max-time (or 0) to continue")


@dataclass(frozen=True)
class ResumeState:
    """A ``ckpt_last.pt`` state checked against this run; :func:`check_resume_state` makes one."""

    state: dict[str, Any]


def check_resume_state(state: Any, adapter: ModelAdapter, settings: TrainSettings,
                       source: Path | str = "the checkpoint") -> ResumeState:
    """Check that ``state`` (from ``source``) can continue this run: the one place resume is checked.

    Call it before a tracked run is opened: a refusal must leave the run's journal untouched.
    """
    if not isinstance(state, dict):
        raise UserError(f"cannot resume from {source}: it is not a training checkpoint")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"cannot resume from {source}: checkpoint format {state.get('format')!r} is not "
                        f"supported (expected {CHECKPOINT_FORMAT}); start a new run")
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise UserError(f"cannot resume from {source}: it lacks {', '.join(missing)} "
                        f"(is it {ckpt.BEST_NAME}?); pass the run directory or its {ckpt.LAST_NAME}")
    differences = resume_differences(state["settings"], settings)
    saved = state.get("model_description", {})
    differences += [f"the model's {key} is {value!r}, the checkpoint has {saved.get(key)!r}"
                    for key, value in adapter.describe().items()
                    if saved.get(key) != value and key not in FIELDS]
    if differences:
        raise UserError(f"cannot resume {source}: " + "; ".join(differences)
                        + "; resume with the original settings, or start a new run")
    check_can_continue(int(state["iteration"]), float(state["training_time"]), settings)
    return ResumeState(state)


class StopReason(IntEnum):
    CONTINUE = 0
    MAX_ITERS = 1
    MAX_TIME = 2
    INTERRUPTED = 3
    DIVERGED = 4


@dataclass
class TrainResult:
    iteration: int
    best_val_loss: float
    total_training_time: float
    stop_reason: StopReason
    run_dir: Path | None = None
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)


class DivergedError(UserError):
    """The loss became NaN/inf: a user-fixable problem (learning rate too high)."""


def train(adapter: ModelAdapter, settings: TrainSettings, *, ctx: DistContext, tracker: Any | None,
          run_dir: Path, run_info: dict[str, Any], resume_state: ResumeState | None = None,
          progress: Callable[[str], None] | None = None, keep_history: bool = False) -> TrainResult:
    """Run the loop and close ``tracker`` with the matching status.

    ``tracker`` is an ExperimentTracker on rank 0 and None elsewhere. ``resume_state``
    comes from :func:`check_resume_state`, called before the tracker was opened.
    Status: "finished" (max iters/time), "interrupted" (Ctrl-C; ckpt_last is
    saved), "failed" (any exception, re-raised; NaN loss is a UserError).
    """
    trainer: Trainer | None = None
    status = "failed"
    try:
        if resume_state is not None and not isinstance(resume_state, ResumeState):
            raise TypeError("resume_state must come from check_resume_state(), not a raw checkpoint")
        trainer = Trainer(adapter, settings, ctx=ctx, tracker=tracker, run_dir=run_dir, run_info=run_info,
                          progress=progress, keep_history=keep_history)
        trainer.setup(resume_state)
        result = trainer.run()
        status = "interrupted" if result.stop_reason == StopReason.INTERRUPTED else "finished"
        return result
    except KeyboardInterrupt:
        status = "interrupted"
        if trainer is not None:
            trainer.save_after_hard_interrupt()
        raise
    finally:
        if trainer is not None:
            trainer.close()
        if tracker is not None:
            tracker.finish(status=status)


class Trainer:
    """State of one run of the loop; use :func:`train` rather than this class directly."""

    def __init__(self, adapter: ModelAdapter, settings: TrainSettings, *, ctx: DistContext,
                 tracker: Any | None, run_dir: Path, run_info: dict[str, Any],
                 progress: Callable[[str], None] | None = None, keep_history: bool = False):
        self.adapter = adapter
        self.s = settings
        self.ctx = ctx
        self.tracker = tracker if ctx.is_main else None
        self.run_dir = Path(run_dir)
        self.run_info = dict(run_info)
        if not ctx.is_main:
            self.progress: Callable[[str], None] = lambda line: None
        else:
            self.progress = progress or (lambda line: print(line, flush=True))
        self.history: list[tuple[int, dict[str, float]]] | None = [] if keep_history else None
        self.iteration = 0
        self.consistent = False          # False until set up, and while an update is half applied
        self.gpu_monitor = None
        self.logged_through = -1         # steps up to here are already in the journal (resume)
        self._interrupt = _InterruptFlag()
        self.model: Any = None           # built by setup()
        self.optimizer: Any = None
        self.elapsed_before = 0.0        # training time of earlier sessions (resume)
        self.session_start: float | None = None  # set when run() starts the clock
        self.current_lr = settings.learning_rate  # the LR of the step just taken
        self.sec_per_iter = 0.0          # last measured; for the ETA

    # ------------------------------------------------------------------ set-up
    def setup(self, resume_state: ResumeState | None) -> None:
        import torch

        s, ctx = self.s, self.ctx
        from adamwprune.optim import build_optimizer
        from adamwprune.pruning import build_pruner

        torch.manual_seed(s.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        if ctx.device_type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model = self.adapter.build_model().to(ctx.device)
        self.optimizer = build_optimizer(
            s.optimizer, self.adapter.optimizer_groups(self.model, s.weight_decay), lr=s.learning_rate,
            betas=(s.beta1, s.beta2), momentum=s.momentum, weight_decay=s.weight_decay)
        self.prunable = list(self.adapter.prunable_parameters(self.model))
        self.pruner = build_pruner(s.pruning_method, self.prunable, target_sparsity=s.target_sparsity,
                                   warmup_iters=s.pruning_warmup, ramp_iters=s.pruning_ramp,
                                   max_iters=s.max_iters)
        self.train_generator = torch.Generator().manual_seed(s.seed + 1 + ctx.rank)
        self.eval_generator = torch.Generator().manual_seed(s.seed + 1_000_003)
        torch.manual_seed(s.seed + 2 + ctx.rank)  # dropout differs per rank
        self.best = ckpt.BestCheckpoint(self.run_dir / ckpt.BEST_NAME,
                                        enabled=s.save_checkpoint and ctx.is_main)
        if resume_state is not None:
            self._restore(resume_state.state)
            # a crash can leave journaled steps past ckpt_last: they are not logged twice
            self.logged_through = self.tracker.last_step if self.tracker is not None else -1

        self.train_model = self.model
        if s.compile:
            self.train_model = torch.compile(self.model)
        self.eval_model = self.train_model
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [ctx.local_rank] if ctx.device_type == "cuda" else None
            self.train_model = DistributedDataParallel(self.train_model, device_ids=device_ids)
        self.autocast = self._autocast_factory()
        self.items_per_iter = (self.adapter.items_per_batch(s.batch_size) * s.gradient_accumulation
                               * ctx.world_size)
        flops = self.adapter.flops_per_item(self.model)
        from adamwprune.train.hardware import cuda_peak_flops

        peak = cuda_peak_flops(ctx.device)
        self.flops_per_iter_per_peak = (flops * self.items_per_iter / ctx.world_size / peak
                                        if flops and peak else None)
        self.consistent = True

    def _autocast_factory(self) -> Callable[[], contextlib.AbstractContextManager]:
        import torch

        if self.ctx.device_type == "cuda" and torch.cuda.is_bf16_supported():
            return lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext

    def _restore(self, state: dict[str, Any]) -> None:
        """Load a state that check_resume_state accepted."""
        import torch

        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = int(state["iteration"])
        self.best.best_val_loss = float(state["best_val_loss"])
        self.elapsed_before = float(state["training_time"])
        rng = state.get("rng", {})
        per_rank = rng.get("per_rank", [])
        if len(per_rank) == self.ctx.world_size:
            mine = per_rank[self.ctx.rank]
            self.train_generator.set_state(mine["train"])
            torch.set_rng_state(mine["torch"])
            if mine.get("cuda") is not None and self.ctx.device_type == "cuda":
                torch.cuda.set_rng_state(mine["cuda"], device=self.ctx.device)
        else:  # different process count: a fresh, still deterministic stream per rank
            self.train_generator.manual_seed(self.s.seed + 1 + self.ctx.rank + 7919 * self.iteration)
        if rng.get("eval") is not None:
            self.eval_generator.set_state(rng["eval"])

    # -------------------------------------------------------------------- loop
    def run(self) -> TrainResult:
        import torch

        self.session_start = time.perf_counter()
        self._start_gpu_monitor()
        self._reset_interval(torch)
        self.progress(self._banner())
        if self.iteration == 0:
            self._log(0, self._eval_point())
            self._reset_interval(torch)
        with self._interrupt.installed():
            reason = StopReason.CONTINUE
            while reason == StopReason.CONTINUE:
                self._train_step()
                reason = self._after_step()
        return TrainResult(iteration=self.iteration, best_val_loss=self.best.best_val_loss,
                           total_training_time=self.elapsed(), stop_reason=reason, run_dir=self.run_dir,
                           history=self.history or [])

    def _train_step(self) -> None:
        """One optimizer step over ``gradient_accumulation`` micro-batches."""
        import torch

        s, ctx = self.s, self.ctx
        lr = learning_rate(self.iteration, base_lr=s.learning_rate, min_lr=s.min_lr,
                           warmup_iters=s.warmup_iters, max_iters=s.max_iters, schedule=s.lr_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.current_lr = lr
        accumulation = s.gradient_accumulation
        for micro in range(accumulation):
            last_micro = micro == accumulation - 1
            sync = (contextlib.nullcontext() if last_micro or not ctx.distributed
                    else self.train_model.no_sync())
            # On a GPU the previous step's kernels are still running: building this batch overlaps them.
            batch = self.adapter.get_batch("train", s.batch_size, self.train_generator, ctx.device)
            with sync:
                with self.autocast():
                    loss = self.adapter.loss(self.train_model, batch)
                    if accumulation > 1:
                        loss = loss / accumulation
                loss.backward()
            self.interval_loss += loss.detach()
        self.consistent = False
        if s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.pruner.step(self.iteration + 1)
        self.iteration += 1              # with the update, so a checkpoint never pairs it with the old count
        self.consistent = True
        self.interval_iters += 1
        self.clock_iters += 1

    def _after_step(self) -> StopReason:
        """Log, evaluate, checkpoint and decide whether to stop after step ``self.iteration``."""
        s, ctx, it = self.s, self.ctx, self.iteration
        reason = StopReason.MAX_ITERS if it >= s.max_iters else StopReason.CONTINUE
        log_now = it % s.log_interval == 0 or reason != StopReason.CONTINUE
        if not ctx.distributed and reason == StopReason.CONTINUE:
            reason = self._local_stop_reason()
            log_now = log_now or reason != StopReason.CONTINUE
        metrics: dict[str, float] = {}
        if log_now:
            metrics = self._train_metrics()
            if ctx.is_main and not math.isfinite(metrics["train_loss"]):
                reason = StopReason.DIVERGED
        if ctx.distributed and log_now:
            # Only rank 0 sees the loss, the clock and Ctrl-C that count: it decides for all.
            if ctx.is_main and reason == StopReason.CONTINUE:
                reason = self._local_stop_reason()
            reason = StopReason(broadcast_int(ctx, int(reason)))
        stopping = reason != StopReason.CONTINUE
        evaluate = (reason in (StopReason.CONTINUE, StopReason.MAX_ITERS, StopReason.MAX_TIME)
                    and (it % s.eval_interval == 0 or stopping))
        if log_now and ctx.is_main:
            self.progress(self._progress_line(metrics, reason))
        if evaluate:
            metrics.update(self._eval_point())
        if stopping and ctx.is_main:
            metrics.update(self._final_metrics())
        self._log(it, metrics)
        if evaluate or reason == StopReason.INTERRUPTED:
            self._save_last()
        if evaluate:
            self._reset_interval_clock()
        if reason == StopReason.DIVERGED:
            raise DivergedError(
                f"training diverged: loss is {metrics.get('train_loss', float('nan'))} at iteration {it}; "
                f"lower the learning rate (--learning-rate, now {s.learning_rate:g}) "
                "or raise --warmup-iters")
        if reason == StopReason.INTERRUPTED and ctx.is_main:
            self.progress(f"interrupted at iteration {it}; resume with --resume")
        return reason

    def _local_stop_reason(self) -> StopReason:
        if self._interrupt.requested:
            return StopReason.INTERRUPTED
        if self.s.max_time and self.elapsed() >= self.s.max_time:
            return StopReason.MAX_TIME
        return StopReason.CONTINUE

    # ------------------------------------------------------------ measurements
    def elapsed(self) -> float:
        """Total training time in seconds, across resumed sessions."""
        if self.session_start is None:
            return self.elapsed_before
        return self.elapsed_before + (time.perf_counter() - self.session_start)

    def _reset_interval(self, torch: Any) -> None:
        self.interval_loss = torch.zeros((), device=self.ctx.device)
        self.interval_iters = 0
        self._reset_interval_clock()

    def _reset_interval_clock(self) -> None:
        """Throughput is timed from here; eval time is excluded by resetting after each eval."""
        self.interval_start = time.perf_counter()
        self.clock_iters = 0

    def _train_metrics(self) -> dict[str, float]:
        """train_loss (mean over the interval and the ranks), learning_rate, sparsity, throughput.

        One host sync on rank 0; under DDP one all-reduce of the loss sum on every rank.
        """
        import torch

        from adamwprune.pruning import measure_sparsity

        metrics: dict[str, float] = {}
        # Every rank reaches each log point (same steps everywhere): one collective per interval.
        interval_loss = all_reduce_mean(self.ctx, self.interval_loss.float())
        if self.ctx.is_main:
            iters = max(self.interval_iters, 1)
            sparsity = measure_sparsity(self.prunable).to(self.interval_loss.device)
            loss_sum, sparsity_value = torch.stack([interval_loss, sparsity.float()]).tolist()
            seconds = max(time.perf_counter() - self.interval_start, 1e-9)
            timed_iters = self.clock_iters
            items_per_sec = timed_iters * self.items_per_iter / seconds
            if timed_iters:
                self.sec_per_iter = seconds / timed_iters
            metrics = {"train_loss": loss_sum / iters, "learning_rate": self.current_lr,
                       "sparsity": sparsity_value, self.adapter.throughput_metric: items_per_sec}
            if self.flops_per_iter_per_peak is not None and timed_iters:
                metrics["mfu"] = self.flops_per_iter_per_peak * timed_iters / seconds
        self.interval_loss.zero_()
        self.interval_iters = 0
        self._reset_interval_clock()
        return metrics

    def _evaluate(self) -> float:
        """Mean loss over ``eval_samples`` random held-out batches, in eval mode, without gradients."""
        import torch

        model = self.eval_model
        model.eval()
        try:
            total = torch.zeros((), device=self.ctx.device)
            with torch.no_grad():
                for _ in range(self.s.eval_samples):
                    batch = self.adapter.get_batch("val", self.s.batch_size, self.eval_generator,
                                                   self.ctx.device)
                    with self.autocast():
                        total += self.adapter.loss(model, batch).float()
            return (total / self.s.eval_samples).item()
        finally:
            model.train()

    def _eval_point(self) -> dict[str, float]:
        """Rank 0 evaluates and saves the best checkpoint on improvement; other ranks wait."""
        metrics: dict[str, float] = {}
        if self.ctx.is_main:
            val_loss = self._evaluate()
            metrics = {"val_loss": val_loss, **self.adapter.eval_metrics(val_loss)}
            improved = self.best.update(val_loss, self._best_state)
            extras = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "val_loss")
            note = " (best" + (", saved " + ckpt.BEST_NAME if self.best.enabled else "") + ")" if improved else ""
            self.progress(f"eval  {self.iteration:>6} | val_loss {val_loss:.4f} | {extras}{note}")
        barrier(self.ctx)
        return metrics

    def _final_metrics(self) -> dict[str, float]:
        best = self.best.best_val_loss
        final = {"final/total_training_time": self.elapsed()}
        if math.isfinite(best):
            final["final/best_val_loss"] = best
            final.update({f"final/best_{k}": v for k, v in self.adapter.eval_metrics(best).items()})
        return final

    def _log(self, step: int, metrics: dict[str, float]) -> None:
        if not metrics or not self.ctx.is_main or step <= self.logged_through:
            return
        if self.tracker is not None:
            self.tracker.log(metrics, step=step)
        if self.history is not None:
            self.history.append((step, dict(metrics)))

    # ------------------------------------------------------------- checkpoints
    def _best_state(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "model": self.model.state_dict(), "iteration": self.iteration,
                "val_loss": self.best.best_val_loss, "model_description": self.adapter.describe(),
                "run": self.run_info, "settings": asdict(self.s)}

    def _save_last(self) -> None:
        """Write ckpt_last.pt (rank 0) with every rank's RNG state; all ranks must call this."""
        import torch

        if not self.s.save_checkpoint:
            return
        mine = {"train": self.train_generator.get_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(self.ctx.device) if self.ctx.device_type == "cuda" else None}
        per_rank = gather_objects(self.ctx, mine)
        if self.ctx.is_main:
            state = {
                "format": CHECKPOINT_FORMAT, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "iteration": self.iteration,
                "best_val_loss": self.best.best_val_loss, "training_time": self.elapsed(),
                "rng": {"per_rank": per_rank, "eval": self.eval_generator.get_state()},
                "model_description": self.adapter.describe(), "run": self.run_info,
                "settings": asdict(self.s),
            }
            ckpt.save_atomic(state, self.run_dir / ckpt.LAST_NAME)
        barrier(self.ctx)

    def save_after_hard_interrupt(self) -> None:
        """After a second Ctrl-C: keep ckpt_last only if no update was half applied."""
        if not (self.ctx.is_main and not self.ctx.distributed and self.s.save_checkpoint):
            return
        if not self.consistent:
            print(f"interrupted mid-update; {ckpt.LAST_NAME} keeps the last eval point", file=sys.stderr)
            return
        self._save_last()
        print(f"saved {self.run_dir / ckpt.LAST_NAME} at iteration {self.iteration}", file=sys.stderr)

    # ---------------------------------------------------------------- extras
    def _start_gpu_monitor(self) -> None:
        if not (self.s.gpu_monitor and self.tracker is not None):
            return
        from adamwprune.gpu import GpuMonitor

        self.gpu_monitor = GpuMonitor(self.tracker, self.s.gpu_monitor_interval)
        self.gpu_monitor.start()

    def close(self) -> None:
        if self.gpu_monitor is not None:
            self.gpu_monitor.stop()
            self.gpu_monitor = None

    def _banner(self) -> str:
        s = self.s
        limit = f"max-iters {s.max_iters}" + (f", max-time {s.max_time:g}s" if s.max_time else "")
        start = f"resuming after iteration {self.iteration}" if self.iteration else "training"
        return (f"{start}: {limit}, {self.items_per_iter} {self.adapter.throughput_unit}/iter, "
                f"device {self.ctx.device}" + (f" x{self.ctx.world_size}" if self.ctx.distributed else ""))

    def _progress_line(self, metrics: dict[str, float], reason: StopReason) -> str:
        s, it = self.s, self.iteration
        rate = metrics.get(self.adapter.throughput_metric, 0.0)
        parts = [f"iter {it:>6}/{s.max_iters}", f"loss {metrics.get('train_loss', float('nan')):.4f}",
                 f"lr {self.current_lr:.2e}", f"{_si(rate)} {self.adapter.throughput_unit}/s"]
        if "mfu" in metrics:
            parts.append(f"mfu {100 * metrics['mfu']:.1f}%")
        elapsed = self.elapsed()
        parts.append(f"time {_clock(elapsed)}")
        if reason == StopReason.CONTINUE:
            eta = (s.max_iters - it) * self.sec_per_iter
            if s.max_time:
                eta = min(eta, max(s.max_time - elapsed, 0.0))
            parts.append(f"ETA {_clock(eta)}")
        else:
            parts.append(f"stop: {reason.name.lower().replace('_', '-')}")
        return " | ".join(parts)


def _si(value: float) -> str:
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= threshold:
            return f"{value / threshold:.1f}{suffix}"
    return f"{value:.0f}"


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _InterruptFlag:
    """First Ctrl-C asks the loop to stop at the next step boundary; a second one interrupts at once.

    A SIGINT within ``same_press_s`` of the first counts as the same Ctrl-C: under torchrun a
    worker gets the terminal's SIGINT and then the one torchrun forwards.
    """

    same_press_s = 2.0

    def __init__(self) -> None:
        self.requested = False
        self._first_at = 0.0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                if time.monotonic() - self._first_at < self.same_press_s:
                    return
                raise KeyboardInterrupt
            self.requested = True
            self._first_at = time.monotonic()
            print("\nstopping after this step (saving ckpt_last.pt); Ctrl-C again to abort",
                  file=sys.stderr, flush=True)

        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
