"""Tracker backends, run inside the delivery process only.

A backend is a small class with ``start``, ``log``, ``finish`` and ``where``
(after HF accelerate's GeneralTracker). ``BACKEND_CLASSES`` maps a tracker name to its
class's import path; ExperimentTracker(extra_backends=...) adds custom ones.
trackio and wandb are imported here, lazily, never in the training process.
"""

from __future__ import annotations

import importlib

from adamwprune.tracking.commands import trackio_show_command, wandb_sync_command
from adamwprune.tracking.runinfo import RunInfo

__all__ = ["BACKEND_CLASSES", "Backend", "TrackioBackend", "WandbBackend", "load_backend",
           "trackio_show_command"]  # trackio_show_command: kept here for the trainer's end-of-run hint

BACKEND_CLASSES = {
    "trackio": "adamwprune.tracking.backends:TrackioBackend",
    "wandb": "adamwprune.tracking.backends:WandbBackend",
}


class Backend:
    """One tracking system. Methods may raise or hang; the caller isolates them."""

    def __init__(self, info: RunInfo):
        self.info = info

    def start(self) -> None:
        raise NotImplementedError

    def log(self, metrics: dict, step: int) -> None:
        raise NotImplementedError

    def finish(self, status: str) -> None:
        """``status``: finished, failed, interrupted or crashed."""
        raise NotImplementedError

    def where(self) -> str:
        """One line telling the user where to look at the run."""
        return ""

    def delivered_filter(self):
        """For replay: a predicate ``(step, metrics) -> bool`` true for records the
        backend already holds, or None when the backend cannot tell."""
        return None


def load_backend(import_path: str, info: RunInfo) -> Backend:
    """An instance of the backend class at ``import_path`` (``module:Class``)."""
    module_name, _, class_name = import_path.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(info)


class TrackioBackend(Backend):
    def start(self) -> None:
        import trackio

        self._run = trackio.init(project=self.info.project, name=self.info.run_name,
                                 config=self.info.config,
                                 resume="allow" if self.info.resume else "never",
                                 auto_log_gpu=False, auto_log_cpu=False)

    def log(self, metrics: dict, step: int) -> None:
        self._run.log(metrics, step=step)

    def finish(self, status: str) -> None:
        # trackio has no run state; the journal's end record keeps the status.
        self._run.finish()

    def where(self) -> str:
        return trackio_show_command(self.info.project)

    def delivered_filter(self):
        from trackio.sqlite_storage import SQLiteStorage

        stored: dict[int, set[str]] = {}
        for row in SQLiteStorage.get_logs(self.info.project, self.info.run_name) or []:
            stored.setdefault(row.get("step"), set()).update(row)
        return lambda step, metrics: set(metrics) <= stored.get(step, set())


class WandbBackend(Backend):
    def start(self) -> None:
        import wandb

        mode = "offline" if self.info.wandb_offline else None  # None: honour WANDB_MODE
        self._run = wandb.init(project=self.info.project, name=self.info.run_name,
                               id=self.info.wandb_id, resume="allow", entity=self.info.wandb_entity,
                               config=self.info.config, mode=mode,
                               settings=wandb.Settings(console="off", init_timeout=60))

    def log(self, metrics: dict, step: int) -> None:
        self._run.log(metrics, step=step)

    def finish(self, status: str) -> None:
        self._run.finish(exit_code=0 if status == "finished" else 1)

    def where(self) -> str:
        run = getattr(self, "_run", None)
        if run is None:
            return ""
        if run.settings.mode in ("offline", "dryrun"):
            return wandb_sync_command(run.settings.sync_dir)
        return run.url or ""
