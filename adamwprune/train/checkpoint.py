"""Checkpoints: their format, atomic writes, and the checks a resume goes through.

``ckpt_last.pt`` (everything needed to resume) is written at each eval point and at
the end; ``ckpt_best.pt`` (the model and its eval) only when the selection metric
improves. Both are written atomically: a reader sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import math
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from adamwprune.errors import UserError
from adamwprune.fileio import atomic_write
from adamwprune.train.settings import FIELDS, TrainSettings, resume_differences

LAST_NAME = "ckpt_last.pt"
BEST_NAME = "ckpt_best.pt"
# 2: every setting of the run is saved and compared on resume;
# 3: the pruner's state and the metrics of the best eval are saved too
FORMAT = 3
# ckpt_last.pt:
#   format, settings, run (project, run_name), model_description (adapter.describe())
#   model, optimizer, pruner (state_dicts), iteration, training_time (seconds, all sessions)
#   best_val_loss (lowest seen), best_metrics (the eval that the selection metric chose)
#   rng: {per_rank: [{train, torch, cuda}], eval}
# ckpt_best.pt: format, settings, run, model_description, model, iteration, val_loss, best_metrics
RESUME_KEYS = ("model", "optimizer", "iteration", "best_val_loss", "training_time", "settings",
               "pruner", "best_metrics")


def save_atomic(state: dict[str, Any], path: Path | str) -> Path:
    """torch.save ``state`` to ``path`` atomically and durably (fsync, then rename).

    A write error (a full disk) is raised as that OSError: torch.save would turn it into a
    RuntimeError from its zip writer that does not say why. The previous file stays intact.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(out) -> None:
        watched = _WriteErrors(out)
        try:
            torch.save(state, watched)
        except RuntimeError:
            if watched.error is not None:
                raise watched.error from None
            raise

    return atomic_write(path, write, durable=True)


class _WriteErrors:
    """A binary file that keeps the OSError of a failed write (torch.save's writer hides it)."""

    def __init__(self, file):
        self.file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.file.flush()


def save_or_warn(state: dict[str, Any], path: Path | str) -> bool:
    """:func:`save_atomic`; a write error (a full disk) is one warning line on stderr instead, and
    the previous checkpoint stays as it was. Training goes on either way."""
    try:
        save_atomic(state, path)
        return True
    except OSError as err:
        print(f"warning: cannot save {path} ({err.strerror or err}); the previous {Path(path).name} "
              "is kept as it was, training goes on (free space or choose another --output-dir)",
              file=sys.stderr, flush=True)
        return False


def load(path: Path | str, map_location: Any = "cpu") -> dict[str, Any]:
    """torch.load ``path``; a file that is not a readable checkpoint is a UserError naming it."""
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, EOFError, pickle.UnpicklingError, RuntimeError, ValueError, ImportError,
            AttributeError) as err:  # not a torch.save file, truncated, unreadable, or from other code
        detail = str(err).strip().split("\n")[0].split(". ")[0] or type(err).__name__  # first sentence
        raise UserError(f"cannot read checkpoint {path}: {detail}") from err


class BestCheckpoint:
    """Keeps the best eval by the selection metric and saves ``ckpt_best.pt`` when it improves.

    Also keeps the lowest ``val_loss`` seen, which every model reports as ``final/best_val_loss``.
    """

    def __init__(self, path: Path | str, metric: str = "val_loss", mode: str = "min", enabled: bool = True):
        if mode not in ("min", "max"):
            raise ValueError(f"selection mode must be 'min' or 'max', not {mode!r}")
        self.path = Path(path)
        self.metric, self.mode, self.enabled = metric, mode, enabled
        self.best_val_loss = math.inf
        self.best_metrics: dict[str, float] = {}

    def better(self, value: float) -> bool:
        """Whether ``value`` of the selection metric beats the best so far (never for NaN)."""
        if self.metric not in self.best_metrics:
            return not math.isnan(value)
        best = self.best_metrics[self.metric]
        return value < best if self.mode == "min" else value > best

    def update(self, metrics: dict[str, float], make_state: Callable[[], dict[str, Any]]) -> bool:
        """Record an eval's ``metrics``; if it is the best so far, save ``make_state()`` and return True."""
        if metrics["val_loss"] < self.best_val_loss:  # also False for NaN
            self.best_val_loss = metrics["val_loss"]
        if not self.better(metrics[self.metric]):
            return False
        self.best_metrics = dict(metrics)
        if self.enabled:
            save_or_warn(make_state(), self.path)
        return True

    def restore(self, best_val_loss: float, best_metrics: dict[str, float]) -> None:
        self.best_val_loss, self.best_metrics = float(best_val_loss), dict(best_metrics)


@dataclass(frozen=True)
class ResumeState:
    """A ``ckpt_last.pt`` state checked against this run; :func:`check_resume_state` makes one."""

    state: dict[str, Any]


def check_can_continue(iteration: int, training_time: float, settings: TrainSettings) -> None:
    """Refuse to resume a run that has already reached its iteration or time limit."""
    if iteration >= settings.max_iters:
        raise UserError(f"nothing to do: the run already reached iteration {iteration} "
                        f"(max-iters {settings.max_iters}); pass a larger --max-iters to continue")
    if settings.max_time and training_time >= settings.max_time:
        raise UserError(f"nothing to do: the run already used its time budget "
                        f"({training_time:.0f}s of max-time {settings.max_time:g}s); "
                        "pass a larger --max-time (or 0) to continue")


def check_resume_state(state: Any, model_description: dict[str, Any], settings: TrainSettings,
                       source: Path | str = "the checkpoint") -> ResumeState:
    """Check that ``state`` (from ``source``) can continue this run: the one place resume is checked.

    Call it before a tracked run is opened: a refusal must leave the run's journal untouched.
    """
    if not isinstance(state, dict):
        raise UserError(f"cannot resume from {source}: it is not a training checkpoint")
    if state.get("format") != FORMAT:
        raise UserError(f"cannot resume from {source}: checkpoint format {state.get('format')!r} is not "
                        f"supported (expected {FORMAT}); start a new run")
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise UserError(f"cannot resume from {source}: it lacks {', '.join(missing)} "
                        f"(is it {BEST_NAME}?); pass the run directory or its {LAST_NAME}")
    differences = resume_differences(state["settings"], settings)
    saved = state.get("model_description", {})
    differences += [f"the model's {key} is {value!r}, the checkpoint has {saved.get(key)!r}"
                    for key, value in model_description.items() if saved.get(key) != value and key not in FIELDS]
    if differences:
        raise UserError(f"cannot resume {source}: " + "; ".join(differences)
                        + "; resume with the original settings, or start a new run")
    check_can_continue(int(state["iteration"]), float(state["training_time"]), settings)
    return ResumeState(state)
