"""Tracker backends, run inside the delivery process only.

A backend is a small class with ``start``, ``log``, ``finish`` and ``where``
(after HF accelerate's GeneralTracker). ``BACKEND_CLASSES`` maps a tracker name to its
class's import path; ExperimentTracker(extra_backends=...) adds custom ones.
trackio and wandb are imported here, lazily, never in the training process.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from adamwprune.tracking.commands import trackio_show_command, wandb_sync_command
from adamwprune.tracking.runinfo import RunInfo

__all__ = ["BACKEND_CLASSES", "Backend", "TrackioBackend", "WandbBackend", "load_backend",
           "trackio_show_command"]  # trackio_show_command: kept here for the trainer's end-of-run hint

BACKEND_CLASSES = {
    "trackio": "adamwprune.tracking.backends:TrackioBackend",
    "wandb": "adamwprune.tracking.backends:WandbBackend",
}


class Backend:
    """One tracking system. Methods may raise or hang; the caller isolates them.

    Besides ``start`` / ``log`` / ``finish`` / ``where``, a backend says what its own storage
    holds (:meth:`stored`: the delivery process confirms every record against it, and skips
    what is already there when it restarts or replays) and which steps it would drop
    (:meth:`rejects`: counted as rejected, never handed over).
    """

    storage = "its storage"  # how the summary names where the confirmed records are
    takes_images = False     # True: :meth:`log_images` is implemented (records of images reach it)

    def __init__(self, info: RunInfo):
        self.info = info

    def start(self) -> None:
        raise NotImplementedError

    def log(self, metrics: dict, step: int) -> None:
        raise NotImplementedError

    def log_images(self, images: dict[str, tuple[Path, str]], step: int) -> None:
        """``images``: name -> (PNG file, caption), logged at ``step`` (with ``takes_images``)."""
        raise NotImplementedError

    def finish(self, status: str) -> None:
        """``status``: finished, failed, interrupted or crashed."""
        raise NotImplementedError

    def where(self) -> str:
        """One line telling the user where to look at the run."""
        return ""

    def stored(self) -> Stored | None:
        """What this run's records in the backend's own storage are (None: it cannot tell)."""
        return None

    def rejects(self, step: int) -> str | None:
        """Why the backend would drop a record at ``step`` (None: it takes it)."""
        return None


class Stored:
    """The metric names a backend holds at each step of a run, read from its own storage."""

    def __init__(self, rows):
        self.names: dict[int, set[str]] = {}
        for step, names in rows:
            self.names.setdefault(step, set()).update(names)

    def holds(self, step: int, metrics) -> bool:
        return set(metrics) <= self.names.get(step, set())

    @property
    def last_step(self) -> int:
        return max(self.names, default=-1)


def load_backend(import_path: str, info: RunInfo) -> Backend:
    """An instance of the backend class at ``import_path`` (``module:Class``)."""
    module_name, _, class_name = import_path.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(info)


class TrackioBackend(Backend):
    """Trackio, local. Its storage is the project's SQLite store plus, in jsonl storage mode (a
    network filesystem), the inbox of JSONL fragments not yet imported into it: both are read,
    neither is imported here (see readback.trackio_points)."""

    takes_images = True

    @property
    def storage(self) -> str:
        from trackio import utils

        return "its SQLite store and inbox" if utils.get_storage_mode() == "jsonl" else "its SQLite store"

    def start(self) -> None:
        import trackio
        from trackio.sqlite_storage import SQLiteStorage

        from adamwprune.tracking.readback import trackio_inbox_runs

        name = self.info.run_name
        in_sqlite = name in (SQLiteStorage.get_runs(self.info.project) or [])
        inbox = trackio_inbox_runs(self.info.project)  # runs SQLite does not know yet
        if not self.info.resume and (in_sqlite or name in inbox):
            raise RuntimeError(f"Trackio project {self.info.project} already has a run named "
                               f"{name} (from another run directory); a new run does not "
                               "append to it: pick another run name (this run's records stay in its journal)")
        config = {**self.info.config, **({"tags": self.info.tags} if self.info.tags else {})}
        self._run = trackio.init(project=self.info.project, name=name,
                                 config=config, group=self.info.group,
                                 resume="allow" if self.info.resume else "never",
                                 auto_log_gpu=False, auto_log_cpu=False)
        if self.info.resume and not in_sqlite and inbox.get(name):
            # trackio.init looked in SQLite only and made a new run id: keep the run's own id, so
            # once imported it is one run (get_logs by name shows only the newest id's rows)
            self._run.id = inbox[name]

    def log(self, metrics: dict, step: int) -> None:
        self._run.log(metrics, step=step)

    def log_images(self, images: dict[str, tuple[Path, str]], step: int) -> None:
        """trackio.Image copies each file into Trackio's media folder (TRACKIO_DIR/media)."""
        import trackio

        self._run.log({name: trackio.Image(str(path), caption=caption or None)
                       for name, (path, caption) in images.items()}, step=step)

    def finish(self, status: str) -> None:
        """Trackio has no run state: a run that did not finish gets an alert saying how it ended
        (stored with the run, shown on the dashboard)."""
        if status != "finished":
            import trackio

            level = trackio.AlertLevel.WARN if status == "interrupted" else trackio.AlertLevel.ERROR
            self._run.alert(title=f"run {status}", level=level,
                            text=f"the training run ended as {status}; the journal's end record keeps it")
        self._run.finish()

    def where(self) -> str:
        return trackio_show_command(self.info.project)

    def stored(self) -> Stored:
        """SQLite's rows and the inbox's (a step may come twice: Stored merges by step)."""
        from adamwprune.tracking.readback import trackio_points

        return Stored((row.get("step"), row) for row in trackio_points(self.info.project, self.info.run_name))


class WandbBackend(Backend):
    """W&B, online or offline. Its storage here is the run's local transaction log
    (``run-*.wandb``), written online and offline alike: online, "confirmed" means recorded
    locally, not uploaded."""

    takes_images = True

    def __init__(self, info: RunInfo):
        super().__init__(info)
        self._run = None
        self._last_step = -1

    @property
    def storage(self) -> str:
        offline = self._run is None or self._run.settings.mode in ("offline", "dryrun")
        return "its offline run files" if offline else "its local run files (recorded locally, not yet confirmed uploaded)"

    def start(self) -> None:
        import wandb

        mode = "offline" if self.info.wandb_offline else None  # None: honour WANDB_MODE
        self._run = wandb.init(project=self.info.project, name=self.info.run_name,
                               id=self.info.wandb_id, resume="allow", entity=self.info.wandb_entity,
                               config=self.info.config, mode=mode, group=self.info.group,
                               tags=self.info.tags or None,
                               settings=wandb.Settings(console="off", init_timeout=60))

    def rejects(self, step: int) -> str | None:
        if step < self._last_step:
            return f"W&B drops a step lower than its last one ({self._last_step})"
        return None

    def log(self, metrics: dict, step: int) -> None:
        self._run.log(metrics, step=step)
        self._last_step = max(self._last_step, step)

    def log_images(self, images: dict[str, tuple[Path, str]], step: int) -> None:
        """wandb.Image copies each file into the run's media/images folder (synced with the run)."""
        import wandb

        self.log({name: wandb.Image(str(path), caption=caption or None) for name, (path, caption) in images.items()},
                 step)

    def finish(self, status: str) -> None:
        self._run.finish(exit_code=0 if status == "finished" else 1)

    def where(self) -> str:
        if self._run is None:
            return ""
        if self._run.settings.mode in ("offline", "dryrun"):
            return wandb_sync_command(*self._local_dirs(offline_only=True))
        return self._run.url or ""

    def _local_dirs(self, offline_only: bool = False) -> list[Path]:
        """This run id's local run directories, oldest first (one per session)."""
        root = (Path(self._run.settings.sync_dir).parent if self._run is not None
                else Path(os.environ.get("WANDB_DIR") or ".") / "wandb")
        pattern = f"offline-run-*-{self.info.wandb_id}" if offline_only else f"*run-*-{self.info.wandb_id}"
        return sorted((d for d in root.glob(pattern) if any(d.glob("*.wandb"))), key=lambda d: d.name.split("run-", 1)[1])

    def stored(self) -> Stored:
        """Every local run directory of this run id (one per session: a resume or a replay adds
        one), read with wandb's own reader."""
        from adamwprune.tracking.readback import wandb_history

        rows = []
        for run_dir in self._local_dirs():
            rows += wandb_history(run_dir)[0]
        # an image is stored as flattened fields (name._type, name.path, ...): it holds the name
        stored = Stored((row.get("_step"), [*row, *(key[:-len("._type")] for key in row if key.endswith("._type"))])
                        for row in rows)
        self._last_step = max(self._last_step, stored.last_step)
        return stored
