"""The one training loop every model shares.

A model meets the loop through a :class:`ModelAdapter` (batches, loss, eval
statistics -> named metrics, the metric that picks the best checkpoint); the
optimizer comes from the ``adamwprune.optim`` registry and the pruner from
``adamwprune.pruning``. One optimizer step, in one place (:meth:`Trainer.train_step`)::

    backward (x gradient_accumulation) -> pruner.before_step() -> clip -> optimizer.step()
        -> pruner.after_step(step) -> zero_grad

After each step the loop decides (stop or not, and why; under DDP rank 0 decides
for all) and then acts (log, evaluate, checkpoint).

A validation point is ``eval_samples`` batches of ``eval_batch_size`` held-out items, each
processed in micro-batches of at most ``batch_size`` (:func:`eval_plan`); under DDP the
micro-batches are split over the ranks and the per-micro-batch sums gathered. The batches
come from one draw of the eval generator per validation point, so they are the same at any
world size and the eval stream (saved in checkpoints) advances alike on every rank.

Iteration numbering: ``iteration`` counts completed optimizer steps. Metrics
logged at step ``k`` describe the model after ``k`` steps (step 0 = before
training), so a resumed run continues at ``k + 1`` with no repeated step.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel

from adamwprune.errors import UserError
from adamwprune.optim import build_optimizer, interval_metrics
from adamwprune.pruning import build_pruner
from adamwprune.tracking.protocol import NullTracker, Tracker
from adamwprune.train import checkpoint as ckpt
from adamwprune.train.console import InterruptFlag, clock, si
from adamwprune.train.meter import IntervalMeter, read_all
from adamwprune.train.distributed import DistContext, all_reduce_mean, barrier, broadcast_int, gather_objects
from adamwprune.train.evaluation import EVAL_NOTE_SECONDS, eval_budget_warning, eval_plan, eval_points, slice_batch
from adamwprune.train.schedule import learning_rate
from adamwprune.train.settings import TrainSettings

class ModelAdapter(Protocol):
    """The model-specific part of a run."""

    throughput_metric: str          # e.g. "tokens_per_sec"
    throughput_unit: str            # e.g. "tok" (progress line)
    selection: tuple[str, str]      # the metric that picks ckpt_best.pt and "min" or "max"

    def check(self) -> None:
        """Raise a UserError for settings the data or model cannot take (before a run is opened)."""
    def build_model(self) -> torch.nn.Module: ...
    def items_per_batch(self, batch_size: int) -> int: ...
    def get_batch(self, split: str, batch_size: int, generator: torch.Generator, device: str) -> Any:
        """``batch_size`` items drawn with ``generator``: a tensor, or a tuple/list/dict of tensors with the
        items along the first dimension (the loop slices eval batches into micro-batches there; an adapter
        whose batches are something else defines ``slice_batch(batch, start, stop)``)."""
    # Optional: ``eval_batch_at(index, batches, batch_size, device)`` gives batch ``index`` of a
    # validation point's ``batches`` itself (a fixed split evaluated whole, in order), instead of
    # a random draw with get_batch("val", ...).
    def loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor: ...
    def eval_batch(self, model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Summable statistics of one held-out batch (loss sum, token count, correct count ...)."""
    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        """Named metrics (``val_loss`` first, then e.g. ``val_perplexity``) from the summed statistics."""
    def flops_per_item(self, model: torch.nn.Module) -> float | None: ...
    def optimizer_groups(self, model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]: ...
    def prunable_parameters(self, model: torch.nn.Module) -> Sequence[tuple[str, torch.nn.Parameter]]: ...
    def describe(self) -> dict[str, Any]:
        """What the checkpoint must match on resume (model name, sizes, dataset)."""


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
    best_metrics: dict[str, float]
    total_training_time: float
    stop_reason: StopReason
    run_dir: Path | None = None


class DivergedError(UserError):
    """The loss became NaN/inf: a user-fixable problem (learning rate too high)."""


def train(adapter: ModelAdapter, settings: TrainSettings, *, ctx: DistContext, tracker: Tracker | None,
          run_dir: Path, run_info: dict[str, Any], resume_state: ckpt.ResumeState | None = None,
          progress: Callable[[str], None] | None = None) -> TrainResult:
    """Run the loop and close ``tracker`` with the matching status.

    ``tracker``: an ExperimentTracker on rank 0, a NullTracker (or None) elsewhere.
    ``resume_state`` comes from :func:`checkpoint.check_resume_state`, called before the
    tracker was opened. Status: "finished" (max iters/time), "interrupted" (Ctrl-C;
    ckpt_last is saved), "failed" (any exception, re-raised; NaN loss is a UserError).
    """
    tracker = tracker if tracker is not None else NullTracker()
    trainer: Trainer | None = None
    status = "failed"
    try:
        if resume_state is not None and not isinstance(resume_state, ckpt.ResumeState):
            raise TypeError("resume_state must come from check_resume_state(), not a raw checkpoint")
        trainer = Trainer(adapter, settings, ctx=ctx, tracker=tracker, run_dir=run_dir, run_info=run_info,
                          progress=progress)
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
        tracker.finish(status=status)


def _tensor_bytes(tree: Any) -> float:
    """Bytes of every tensor in a nest of dicts and lists (an optimizer's or a pruner's state)."""
    if torch.is_tensor(tree):
        return float(tree.numel() * tree.element_size())
    values = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, (list, tuple)) else ()
    return float(sum(_tensor_bytes(value) for value in values))


class Trainer:
    """State of one run of the loop; use :func:`train` rather than this class directly."""

    def __init__(self, adapter: ModelAdapter, settings: TrainSettings, *, ctx: DistContext,
                 tracker: Tracker, run_dir: Path, run_info: dict[str, Any],
                 progress: Callable[[str], None] | None = None):
        self.adapter, self.s, self.ctx, self.tracker = adapter, settings, ctx, tracker
        self.run_dir = Path(run_dir)
        self.run_info = dict(run_info)
        quiet: Callable[[str], None] = lambda line: None  # noqa: E731 -- ranks but 0 print nothing
        self.progress = (progress or (lambda line: print(line, flush=True))) if ctx.is_main else quiet
        metric, mode = adapter.selection
        self.best = ckpt.BestCheckpoint(self.run_dir / ckpt.BEST_NAME, metric, mode,
                                        enabled=settings.save_checkpoint and ctx.is_main)
        self.iteration = 0
        self.consistent = False          # False until set up, and while an update is half applied
        self.logged_through = -1         # steps up to here are already in the journal (resume)
        self.elapsed_before = 0.0        # training time of earlier sessions (resume)
        self.session_start: float | None = None  # set when run() starts the clock
        self.current_lr = settings.learning_rate  # the LR of the step just taken
        self.sec_per_iter = 0.0          # last measured; for the ETA
        self.eval_seconds: float | None = None  # one validation point, measured (without warm-up)
        self.eval_noted = False          # the long-evaluation note is said once per session
        self.budget_checked = False      # the eval budget warning is considered once per session
        self.start_iteration = 0         # the iteration this session started from
        self.meter = IntervalMeter(ctx.device)
        self.state_bytes_logged = False
        self.gpu_monitor = None
        self._interrupt = InterruptFlag()
        # built by setup():
        self.model: torch.nn.Module | None = None
        self.train_model = self.eval_model = self.optimizer = self.pruner = None
        self.train_generator = self.eval_generator = None
        self.autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        self.items_per_iter = 0
        self.flops_per_iter_per_peak: float | None = None

    # ------------------------------------------------------------------ set-up
    def setup(self, resume_state: ckpt.ResumeState | None) -> None:
        s, ctx = self.s, self.ctx
        torch.manual_seed(s.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        if ctx.device_type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            if torch.cuda.is_bf16_supported():
                self.autocast = lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        self.model = self.adapter.build_model().to(ctx.device)
        self.optimizer = build_optimizer(s.optimizer, self.adapter.optimizer_groups(self.model, s.weight_decay), s)
        self.pruner = build_pruner(s.pruning_method, self.adapter.prunable_parameters(self.model),
                                   self.optimizer, s)
        self.train_generator = torch.Generator().manual_seed(s.seed + 1 + ctx.rank)
        self.eval_generator = torch.Generator().manual_seed(s.seed + 1_000_003)
        torch.manual_seed(s.seed + 2 + ctx.rank)  # dropout differs per rank
        if resume_state is not None:
            self._restore(resume_state.state)
            # a crash can leave journaled steps past ckpt_last: they are not logged twice
            self.logged_through = self.tracker.last_step
        self.start_iteration = self.iteration
        self.train_model = self.eval_model = torch.compile(self.model) if s.compile else self.model
        if ctx.distributed:
            device_ids = [ctx.local_rank] if ctx.device_type == "cuda" else None
            self.train_model = DistributedDataParallel(self.train_model, device_ids=device_ids)
        self.items_per_iter = self.adapter.items_per_batch(s.batch_size) * s.gradient_accumulation * ctx.world_size
        from adamwprune.train.hardware import cuda_peak_flops

        flops, peak = self.adapter.flops_per_item(self.model), cuda_peak_flops(ctx.device)
        if flops and peak:
            self.flops_per_iter_per_peak = flops * self.items_per_iter / ctx.world_size / peak
        self.consistent = True

    def _restore(self, state: dict[str, Any]) -> None:
        """Load a state that check_resume_state accepted."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.pruner.load_state_dict(state["pruner"])
        self.iteration = int(state["iteration"])
        self.best.restore(state["best_val_loss"], state["best_metrics"])
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
        self.session_start = time.perf_counter()
        self._start_gpu_monitor()
        self.progress(self._banner())
        if self.iteration == 0:
            self._log(0, self._eval_point())
        self.meter.reset()
        with self._interrupt.installed():
            reason = StopReason.CONTINUE
            while reason == StopReason.CONTINUE:
                self.train_step()
                reason = self._after_step()
        return TrainResult(iteration=self.iteration, best_val_loss=self.best.best_val_loss,
                           best_metrics=self.best.best_metrics, total_training_time=self.elapsed(), stop_reason=reason, run_dir=self.run_dir)

    def train_step(self) -> None:
        """One optimizer step over ``gradient_accumulation`` micro-batches."""
        s, ctx = self.s, self.ctx
        self.current_lr = learning_rate(self.iteration, base_lr=s.learning_rate, min_lr=s.min_lr,
                                        warmup_iters=s.warmup_iters, max_iters=s.max_iters,
                                        schedule=s.lr_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = self.current_lr
        for micro in range(s.gradient_accumulation):
            last_micro = micro == s.gradient_accumulation - 1
            sync = (contextlib.nullcontext() if last_micro or not ctx.distributed
                    else self.train_model.no_sync())
            # On a GPU the previous step's kernels are still running: building this batch overlaps them.
            batch = self.adapter.get_batch("train", s.batch_size, self.train_generator, ctx.device)
            with sync:
                with self.autocast():
                    loss = self.adapter.loss(self.train_model, batch) / s.gradient_accumulation
                loss.backward()
            self.meter.add_loss(loss)
        self.consistent = False
        self.pruner.before_step()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads)  # before clipping, pruned gradients excluded
        if s.grad_clip > 0:
            torch.nn.utils.clip_grads_with_norm_(self.model.parameters(), s.grad_clip, grad_norm)
        self.optimizer.step()
        self.pruner.after_step(self.iteration + 1)
        self.optimizer.zero_grad(set_to_none=True)
        self.iteration += 1              # with the update, so a checkpoint never pairs it with the old count
        self.consistent = True
        self.meter.add_step(grad_norm)

    def _after_step(self) -> StopReason:
        """Measure at log points, decide whether to stop, then act on it."""
        if self.gpu_monitor is not None:
            self.gpu_monitor.step = self.iteration  # the step its samples are tagged with in gpu.jsonl
        local = StopReason.CONTINUE if self.ctx.distributed else self._local_stop_reason()
        log_now = (self.iteration % self.s.log_interval == 0 or self.iteration >= self.s.max_iters
                   or local != StopReason.CONTINUE)
        metrics = self._train_metrics() if log_now else {}
        reason = self._decide(local, log_now, metrics)
        self._act(reason, log_now, metrics)
        return reason

    def _decide(self, local: StopReason, log_now: bool, metrics: dict[str, float]) -> StopReason:
        """Why to stop after this step (CONTINUE: don't). Under DDP only rank 0 sees the loss,
        the clock and Ctrl-C that count: it decides at log points and tells the others."""
        reason = StopReason.MAX_ITERS if self.iteration >= self.s.max_iters else local
        if self.ctx.is_main and log_now and not math.isfinite(metrics["train_loss"]):
            reason = StopReason.DIVERGED
        if self.ctx.distributed and log_now:
            if self.ctx.is_main and reason == StopReason.CONTINUE:
                reason = self._local_stop_reason()
            reason = StopReason(broadcast_int(self.ctx, int(reason)))
        return reason

    def _act(self, reason: StopReason, log_now: bool, metrics: dict[str, float]) -> None:
        """Log, evaluate and checkpoint as ``reason`` says; every rank calls this."""
        it, stopping = self.iteration, reason != StopReason.CONTINUE
        evaluate = (reason in (StopReason.CONTINUE, StopReason.MAX_ITERS, StopReason.MAX_TIME)
                    and (it % self.s.eval_interval == 0 or stopping))
        if log_now:
            if self.gpu_monitor is not None:  # one GPU row per log step, in the row of the training step
                metrics.update(self.gpu_monitor.interval_metrics(it))
            self.progress(self._progress_line(metrics, reason))
            if not stopping:
                self._check_eval_budget()
        if evaluate:
            metrics.update(self._eval_point())
        if stopping and self.ctx.is_main:
            metrics.update(self._final_metrics())
        self._log(it, metrics)
        if evaluate or reason == StopReason.INTERRUPTED:
            self._save_last()
        if evaluate:
            self.meter.restart_clock()
        if reason == StopReason.DIVERGED:
            raise DivergedError(
                f"training diverged: loss is {metrics.get('train_loss', float('nan'))} at iteration {it}; "
                f"lower the learning rate (--learning-rate, now {self.s.learning_rate:g}) "
                "or raise --warmup-iters")
        if reason == StopReason.INTERRUPTED:
            self.progress(f"interrupted at iteration {it}; resume with --resume")

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

    def _train_metrics(self) -> dict[str, float]:
        """train_loss (mean over the interval and the ranks), learning_rate, sparsity, grad norms,
        throughput, the optimizer's own (AdamWSPAM: clipped fraction, resets, the applied rate).

        One host sync on rank 0; under DDP one all-reduce of the loss sum on every rank.
        """
        meter, metrics = self.meter, {}
        # Every rank reaches each log point (same steps everywhere): one collective per interval.
        loss_sum = all_reduce_mean(self.ctx, meter.loss.float())
        from_optimizer = interval_metrics(self.optimizer)  # on every rank, so its counters restart
        if self.ctx.is_main:
            steps, seconds = max(meter.iters, 1), meter.seconds()
            values = read_all({"loss_sum": loss_sum, "sparsity": self.pruner.sparsity(),
                               "grad_norm_sum": meter.grad_norm_sum, "grad_norm_max": meter.grad_norm_max,
                               **from_optimizer})
            if meter.timed_iters:
                self.sec_per_iter = seconds / meter.timed_iters
            metrics = {"train_loss": values.pop("loss_sum") / steps, "learning_rate": self.current_lr,
                       "sparsity": values.pop("sparsity"), "grad_norm": values.pop("grad_norm_sum") / steps,
                       "grad_norm_max": values.pop("grad_norm_max"),
                       self.adapter.throughput_metric: meter.timed_iters * self.items_per_iter / seconds,
                       **values}
            if self.flops_per_iter_per_peak is not None and meter.timed_iters:
                metrics["mfu"] = self.flops_per_iter_per_peak * meter.timed_iters / seconds
            if not self.state_bytes_logged:  # once per session, when the optimizer state exists
                metrics["optimizer_state_bytes"] = _tensor_bytes(list(self.optimizer.state.values()))
                metrics["pruning_state_bytes"] = _tensor_bytes(self.pruner.state_dict())
                self.state_bytes_logged = True
        meter.reset()
        return metrics

    def _evaluate(self) -> dict[str, float]:
        """The adapter's metrics over ``eval_samples`` random held-out batches of ``eval_batch_size``
        (eval mode, no gradients); every rank evaluates its share of the micro-batches (:func:`eval_plan`).

        The eval generator gives one number per validation point, on every rank alike; batch ``i``
        of the point is drawn with a generator seeded from it plus ``i``. So the batches depend
        neither on the world size nor on the micro-batch size, and the generator's state after a
        point is the same on every rank (the one saved in ckpt_last.pt).
        """
        s, ctx, adapter = self.s, self.ctx, self.adapter
        base = int(torch.randint(0, 2 ** 62, (1,), generator=self.eval_generator))
        plan = list(eval_plan(s.eval_samples, s.eval_batch_size, min(s.batch_size, s.eval_batch_size),
                              ctx.rank, ctx.world_size))
        slicer = getattr(adapter, "slice_batch", slice_batch)
        fixed = getattr(adapter, "eval_batch_at", None)
        model, names, rows = self.eval_model, None, []
        started = warm = time.perf_counter()
        model.eval()
        try:
            with torch.no_grad():
                batch, drawn = None, -1
                for done, (index, start, stop) in enumerate(plan, start=1):
                    if index != drawn:
                        batch = (fixed(index, s.eval_samples, s.eval_batch_size, ctx.device) if fixed else
                                 adapter.get_batch("val", s.eval_batch_size,
                                                   torch.Generator().manual_seed(base + index), ctx.device))
                        drawn = index
                    part = batch if stop - start == s.eval_batch_size else slicer(batch, start, stop)
                    with self.autocast():
                        stats = adapter.eval_batch(model, part)
                    names = names or list(stats)
                    # summed in float64 (counts stay exact), each micro-batch apart: see below
                    rows.append(torch.stack([torch.as_tensor(stats[name], device=ctx.device, dtype=torch.float64)
                                             for name in names]))
                    if done <= 2 and len(plan) > 1:
                        warm = self._timed(warm, started, done, len(plan))
            values = torch.stack(rows).tolist() if rows else []  # one host sync
        finally:
            model.train()
        shares = gather_objects(ctx, (names, values))
        ended = time.perf_counter()
        # the first micro-batch pays for warm-up (torch.compile, allocator): the rest tell the pace
        self.eval_seconds = ((ended - warm) * len(plan) / (len(plan) - 1) if len(plan) > 1 and warm > started
                             else ended - started)
        # Exactly rounded sums of the micro-batches' values: the same however the ranks split them.
        known = next(share_names for share_names, _ in shares if share_names)
        totals = {name: math.fsum(row[share_names.index(name)] for share_names, share_rows in shares
                                  for row in share_rows) for name in known}
        return adapter.summarize(totals)

    def _timed(self, warm: float, started: float, done: int, count: int) -> float:
        """After the first micro-batch: the time the rest is measured from. After the second:
        say how long the evaluation will take if that is long (once per session, rank 0)."""
        if self.ctx.device_type == "cuda":
            torch.cuda.synchronize(self.ctx.device)
        now = time.perf_counter()
        if done == 1:
            return now
        projected = (warm - started) + (now - warm) * (count - 1)
        if projected > EVAL_NOTE_SECONDS and not self.eval_noted:
            self.eval_noted = True
            s = self.s
            items = s.eval_samples * self.adapter.items_per_batch(s.eval_batch_size)
            self.progress(f"eval  {self.iteration:>6} | about {clock(projected)} for {s.eval_samples} batches x "
                          f"{s.eval_batch_size} ({si(items)} {self.adapter.throughput_unit})"
                          + (f" over {self.ctx.world_size} processes" if self.ctx.distributed else "")
                          + "; --eval-samples and --eval-batch-size set its size")
        return warm

    def _eval_point(self) -> dict[str, float]:
        """Every rank evaluates its share; rank 0 reports and saves the best checkpoint on improvement."""
        if self.gpu_monitor is not None:
            self.gpu_monitor.mark_eval(self.iteration)
        metrics = self._evaluate()
        if self.ctx.is_main:
            improved = self.best.update(metrics, self._best_state)
            extras = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "val_loss")
            note = " (best" + (", saved " + ckpt.BEST_NAME if self.best.enabled else "") + ")" if improved else ""
            self.progress(f"eval  {self.iteration:>6} | val_loss {metrics['val_loss']:.4f} | {extras}{note}")
        barrier(self.ctx)
        return metrics if self.ctx.is_main else {}

    def _time_left(self) -> float | None:
        """Seconds of --max-time left at the start of this session (None: no time limit)."""
        return max(self.s.max_time - self.elapsed_before, 0.0) if self.s.max_time else None

    def _check_eval_budget(self) -> None:
        """Once per session, at the first log point with both a step time and an eval time measured:
        warn (rank 0, stderr) when the planned evaluations take more than a quarter of the session."""
        if self.budget_checked or not self.ctx.is_main or self.eval_seconds is None or self.sec_per_iter <= 0:
            return
        self.budget_checked = True
        warning = eval_budget_warning(self.s, self.start_iteration, self._time_left(), self.sec_per_iter,
                                      self.eval_seconds, whole_split=hasattr(self.adapter, "eval_batch_at"))
        if warning:
            print(warning, file=sys.stderr, flush=True)

    def _final_metrics(self) -> dict[str, float]:
        """final/total_training_time, final/best_val_loss (lowest seen), final/best_<metric> of the best eval."""
        final = {"final/total_training_time": self.elapsed()}
        if math.isfinite(self.best.best_val_loss):
            final["final/best_val_loss"] = self.best.best_val_loss
        final.update({f"final/best_{name}": value for name, value in self.best.best_metrics.items()
                      if name != "val_loss"})
        return final

    def _log(self, step: int, metrics: dict[str, float]) -> None:
        if metrics and step > self.logged_through:
            self.tracker.log(metrics, step=step)

    # ------------------------------------------------------------- checkpoints
    def _header(self) -> dict[str, Any]:
        return {"format": ckpt.FORMAT, "settings": asdict(self.s), "run": self.run_info,
                "model_description": self.adapter.describe(), "model": self.model.state_dict(),
                "iteration": self.iteration}

    def _best_state(self) -> dict[str, Any]:
        return {**self._header(), "val_loss": self.best.best_metrics["val_loss"],
                "best_metrics": self.best.best_metrics}

    def _save_last(self) -> None:
        """Write ckpt_last.pt (rank 0) with every rank's RNG state; all ranks must call this."""
        if not self.s.save_checkpoint:
            return
        mine = {"train": self.train_generator.get_state(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(self.ctx.device) if self.ctx.device_type == "cuda" else None}
        per_rank = gather_objects(self.ctx, mine)
        if self.ctx.is_main:
            state = {**self._header(), "optimizer": self.optimizer.state_dict(),
                     "pruner": self.pruner.state_dict(), "training_time": self.elapsed(),
                     "best_val_loss": self.best.best_val_loss, "best_metrics": self.best.best_metrics,
                     "rng": {"per_rank": per_rank, "eval": self.eval_generator.get_state()}}
            ckpt.save_or_warn(state, self.run_dir / ckpt.LAST_NAME)
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
        """With --gpu-monitor, on global rank 0: sample the GPUs (or --simulate-gpus N simulated ones)
        into the run directory's gpu.jsonl; one line says what is sampled, or why nothing is. A run
        over several nodes: NVML sees only its own node's GPUs, so local rank 0 of every other node
        samples its node into ``<run_dir>/node<n>/`` (gpu.jsonl and graphs; not tracked)."""
        if not (self.s.gpu_monitor and self.ctx.local_rank == 0 and (self.ctx.is_main or self.ctx.node > 0)):
            return
        from adamwprune.gpu import GpuMonitor

        directory = self.run_dir if self.ctx.is_main else self.run_dir / f"node{self.ctx.node}"
        monitor, line = GpuMonitor.open(directory, self.s.gpu_monitor_interval,
                                        simulate_gpus=self.s.simulate_gpus, step=self.iteration)
        if self.ctx.is_main:
            self.progress(f"gpu monitor: {line}")
        else:  # the one line of another node's rank 0 (under srun --label it names its node)
            print(f"gpu monitor: {line}", flush=True)
        if monitor is not None:
            self.gpu_monitor = monitor.start()
            if self.ctx.is_main:
                self.run_info["gpu_monitor"] = monitor.describe()  # in the checkpoints' run info
                self.tracker.record_gpus(self.run_info["gpu_monitor"])  # and in run.json

    def close(self) -> None:
        """Stop the GPU monitor and draw its graphs into the run directory, however the run ended,
        and log them to the trackers as images; graphs that cannot be drawn cost one warning line,
        never the run."""
        monitor, self.gpu_monitor = self.gpu_monitor, None
        if monitor is None:
            return
        monitor.stop()
        try:
            written = monitor.write_report()
        except Exception as err:  # UserError: no sample yet; or matplotlib, a full disk ...
            reason = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
            print(f"warning: GPU graphs not drawn ({reason}); draw them with "
                  f"`adamwprune gpu-report {self.run_dir}`", file=sys.stderr, flush=True)
            return
        self.progress(f"gpu monitor: graphs in {self.run_dir}: {', '.join(path.name for path in written)}")
        from adamwprune.gpu.plots import tracker_images

        self.tracker.log_images(*tracker_images(written, monitor.source.simulated))  # where it is tracked

    def _banner(self) -> str:
        s = self.s
        if s.max_time:
            left = self._time_left()
            spent = f" ({left:.0f}s left)" if self.elapsed_before else ""
            limit = f"max-time {s.max_time}s{spent} or max-iters {s.max_iters}, whichever ends first"
        else:
            limit = f"max-iters {s.max_iters}"
        start = f"resuming after iteration {self.iteration}" if self.iteration else "training"
        return (f"{start}: {limit}, {self.items_per_iter} {self.adapter.throughput_unit}/iter, "
                f"device {self.ctx.device}" + (f" x{self.ctx.world_size}" if self.ctx.distributed else ""))

    def _remaining(self) -> tuple[float, bool]:
        """Projected seconds to the end of the run and whether the time limit is what ends it
        (from the measured sec/iter and eval time; with a time limit and nothing measured: the time)."""
        s, it, elapsed = self.s, self.iteration, self.elapsed()
        evals = eval_points(it, s.max_iters, s.eval_interval) if it < s.max_iters else 0
        by_iters = (s.max_iters - it) * self.sec_per_iter + evals * (self.eval_seconds or 0.0)
        if not s.max_time:
            return by_iters, False
        by_time = max(s.max_time - elapsed, 0.0)
        time_binds = self.sec_per_iter <= 0 or by_time < by_iters
        return (by_time if time_binds else by_iters), time_binds

    def _progress_line(self, metrics: dict[str, float], reason: StopReason) -> str:
        """``iter N/MAX_ITERS`` when the iterations end the run, ``iter N ... | time USED/MAX_TIME`` when
        the time limit does (with both set: whichever is projected to end it first)."""
        s, it = self.s, self.iteration
        remaining, time_binds = self._remaining()
        if reason in (StopReason.MAX_ITERS, StopReason.MAX_TIME):
            time_binds = reason == StopReason.MAX_TIME
        rate = metrics.get(self.adapter.throughput_metric, 0.0)
        lr = metrics.get("learning_rate", self.current_lr)  # the applied rate (AdamWSPAM warms it up)
        parts = [f"iter {it:>6}" if time_binds else f"iter {it:>6}/{s.max_iters}",
                 f"loss {metrics.get('train_loss', float('nan')):.4f}",
                 f"lr {lr:.2e}", f"{si(rate)} {self.adapter.throughput_unit}/s"]
        if "mfu" in metrics:
            parts.append(f"mfu {100 * metrics['mfu']:.1f}%")
        if s.pruning_method != "none" and "sparsity" in metrics:
            parts.append(f"sparsity {100 * metrics['sparsity']:.1f}%")
        elapsed = self.elapsed()
        parts.append(f"time {clock(elapsed)}/{clock(s.max_time)}" if time_binds else f"time {clock(elapsed)}")
        if reason == StopReason.CONTINUE:
            parts.append(f"ETA {clock(remaining)}")
        else:
            parts.append(f"stop: {reason.name.lower().replace('_', '-')}")
        return " | ".join(parts)
