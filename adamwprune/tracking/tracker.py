"""ExperimentTracker: the one object trainers log through.

``log()`` serializes the metrics and appends them to ``<run_dir>/metrics.jsonl``
with one unbuffered write, then returns: no backend code runs in the training
process. A delivery process (adamwprune.tracking.delivery), started here, follows
the journal and feeds Trackio and/or W&B. Only global rank 0 tracks anything.

Status lines, the end-of-run summary and the delivery process's failure reports go to the
``adamwprune.tracking`` logger (see adamwprune.tracking.logs), never to stdout.
"""

from __future__ import annotations

import atexit
import logging
import netrc
import operator
import os
import subprocess
import sys
import signal
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import orjson

from adamwprune import child_env
from adamwprune.errors import UserError
from adamwprune.tracking.backends import BACKEND_CLASSES
from adamwprune.tracking.commands import replay_command, tool, wandb_login_command
from adamwprune.tracking.delivery import LOG_NAME, STATUS_NAME
from adamwprune.tracking.journal import JOURNAL_NAME, JournalWriter, last_step
from adamwprune.tracking.logs import log
from adamwprune.tracking.naming import default_run
from adamwprune.tracking.protocol import is_rank_zero
from adamwprune.tracking.runlock import RunLock
from adamwprune.tracking.runinfo import RUN_INFO_NAME, RunInfo, new_wandb_id, read_run_info, write_run_info
from adamwprune.tracking.selection import format_trackers, parse_trackers, require_installed
from adamwprune.tracking.values import split_metrics

STATUSES = ("finished", "failed", "interrupted", "crashed")
WANDB_MODES = ("online", "offline", "dryrun", "disabled")
RELAY_JOIN_S = 5.0  # at finish, how long the delivery process's result may take to arrive once it exited
SUPERVISE_EVERY_S = 1.0  # how often log() looks whether the delivery process is still alive
MAX_RESTARTS = 3  # delivery processes started again after one died, per session


class ExperimentTracker:
    """Track one run in the selected backends (``none``, ``trackio``, ``wandb``, ``both``).

    Use as a context manager (the exit status becomes the run's state) or call
    :meth:`finish`. ``extra_backends`` maps a name to ``"module:Class"`` of a
    custom :class:`adamwprune.tracking.backends.Backend`. ``group`` and ``tags`` file the run
    with others compared with it (a test matrix): W&B's group and tags, Trackio's group (the
    tags go into its run config).

    Nothing but the trackers is required; the defaults (adamwprune.tracking.naming.default_run):

    - ``project``: ``{model}-{checksum}`` (checksum of this machine and directory), where
      ``model`` is ``config["model"]`` when that is a usable name, else ``experiment``;
    - ``run_name``: the name of ``run_dir`` when that is given, else
      ``{model}_{optimizer}_{YYYYmmdd-HHMMSS}`` (``{model}_{YYYYmmdd-HHMMSS}`` without
      ``config["optimizer"]``), with ``-2``, ``-3``, ... added if that directory is taken;
    - ``run_dir``: ``runs/<project>/<run_name>`` under the current directory.

    A selected tracker whose library is not installed is a one-line UserError naming the
    install command, raised before the run directory is created.
    """

    def __init__(self, trackers: str | Sequence[str] = "none", *, project: str | None = None,
                 run_name: str | None = None, run_dir: str | os.PathLike | None = None,
                 config: Mapping | None = None,
                 wandb_entity: str | None = None, wandb_offline: bool = False,
                 resume: bool = False, finish_timeout: float = 120.0,
                 extra_backends: Mapping[str, str] | None = None,
                 group: str | None = None, tags: Sequence[str] = ()):
        text = trackers if isinstance(trackers, str) else ",".join(trackers)
        self.backends = parse_trackers(text)
        if resume and not (run_dir or run_name):
            raise UserError("resume=True continues a run: name it with run_dir (or run_name, and project "
                            "when it is not the default one)")
        self.project, self.run_name, self.run_dir = default_run(config or {}, project=project,
                                                                run_name=run_name, run_dir=run_dir)
        self.finish_timeout = finish_timeout
        self.enabled = is_rank_zero()  # used directly (not through open_tracker), it still tracks on rank 0 only
        self.nonfinite_counts: dict[str, int] = {}
        self.lost_records = 0
        self.rejected: dict[str, int] = {}  # per backend: records at a step it would drop
        self.restarts = 0  # delivery processes started again after one died
        self._last_step = -1
        self._lock = threading.Lock()
        self._finished = False
        self._journal: JournalWriter | None = None
        self._info: RunInfo | None = None
        self._delivery: DeliveryProcess | None = None
        self._run_lock: RunLock | None = None
        self._next_check = 0.0
        if not self.enabled:
            return
        wandb_offline = preflight(self.backends, wandb_offline)
        _require_writable(self.run_dir, "run directory", "choose another --output-dir")
        self._run_lock = RunLock(self.run_dir, "resume it")  # held until finish; the kernel's after kill -9
        try:
            info = self._run_info(dict(config or {}), wandb_entity or None, wandb_offline, resume)
            info.group, info.tags = group or None, list(tags)
            journal_path = self.run_dir / JOURNAL_NAME
            offset = journal_path.stat().st_size if journal_path.exists() else 0
            if offset and not resume:
                raise UserError(f"{self.run_dir} already holds a run journal; resume it (--resume) "
                                "or pick another run name")
        except BaseException:
            self._run_lock.release()
            raise
        write_run_info(info)
        self._info = info
        if offset:
            self._last_step = last_step(journal_path)  # log_system / auto steps continue, not restart
        self._journal = JournalWriter(journal_path)
        self._journal.write_event("start", resumed=bool(offset), trackers=format_trackers(self.backends))
        self._selected = {name: BACKEND_CLASSES[name] for name in self.backends}
        self._selected.update(extra_backends or {})
        self._session_start = offset  # where this session's records start in the journal
        selected = self._selected
        if selected:  # a resumed run's delivery first catches up on what earlier sessions left undelivered
            self._delivery = DeliveryProcess(self.run_dir, selected, offset, finish_timeout,
                                             catch_up=bool(offset))
        atexit.register(self._finish_at_exit)
        names = "+".join(selected) or "none (journal only)"
        log.info("tracking: %s | project %s | run %s | run dir %s", names, self.project, self.run_name,
                 self.run_dir)

    def _run_info(self, config: dict, entity: str | None, offline: bool, resume: bool) -> RunInfo:
        wandb_id = new_wandb_id()
        if resume and (self.run_dir / RUN_INFO_NAME).exists():
            wandb_id = read_run_info(self.run_dir).wandb_id or wandb_id
        return RunInfo(project=self.project, run_name=self.run_name, run_dir=self.run_dir,
                       config=config, wandb_id=wandb_id, wandb_entity=entity,
                       wandb_offline=offline, resume=resume)

    @property
    def last_step(self) -> int:
        """The highest step journaled so far (on resume, from the earlier sessions too); -1 if none."""
        return self._last_step

    # -- hot path -----------------------------------------------------------------
    def log(self, metrics: Mapping, step: int | None = None) -> None:
        """Record ``metrics`` at ``step`` (default: one past the last step). Never blocks
        on a backend; NaN/inf are recorded and counted."""
        if self._journal is None:
            return
        finite, nonfinite = split_metrics(metrics)
        with self._lock:
            step = self._last_step + 1 if step is None else _check_step(step)
            if step < self._last_step:
                self._reject_lower_step(step)
            self._write(step, finite, nonfinite)
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + SUPERVISE_EVERY_S
                self._supervise()

    def log_system(self, metrics: Mapping) -> None:
        """Record metrics sampled off the training thread (GPU monitor) at the current step."""
        if self._journal is None:
            return
        finite, nonfinite = split_metrics(metrics)
        with self._lock:
            self._write(max(self._last_step, 0), finite, nonfinite)

    def log_images(self, images: Mapping[str, os.PathLike | str], captions: Mapping[str, str] | None = None) -> None:
        """Record image files (PNGs the run wrote, e.g. the GPU graphs) at the last step, under the
        given names; the delivery process hands them to the backends that take images (Trackio,
        W&B) and confirms them like any record. A path inside the run directory is journaled
        relative to it, so a moved run directory still replays."""
        if self._journal is None:
            return
        captions = captions or {}
        entries = {}
        for name, path in images.items():
            path = Path(path).resolve()
            if not path.is_file():
                raise ValueError(f"image {name!r}: {path} is not a file")
            inside = path.is_relative_to(self.run_dir.resolve())
            entries[str(name)] = {"path": str(path.relative_to(self.run_dir.resolve()) if inside else path),
                                  "caption": str(captions.get(name, ""))}
        if not entries:
            return
        with self._lock:
            self._append(self._journal.write_images, max(self._last_step, 0), entries)

    def record_gpus(self, description: Mapping) -> None:
        """Keep the GPU monitor's device mapping in run.json (once per session, when it starts);
        a disk that refuses it costs one warning, never the run."""
        if self._info is None:
            return
        self._info.gpus = dict(description)
        try:
            write_run_info(self._info)
        except OSError as err:
            log.warning("adamwprune tracking: cannot record the GPUs in %s (%s); gpu.jsonl's header "
                        "holds them too", self.run_dir / RUN_INFO_NAME, err)

    def _write(self, step: int, finite: dict, nonfinite: dict | None) -> None:
        if step > self._last_step:
            self._last_step = step
        if nonfinite:
            self._count_nonfinite(nonfinite, step)
        try:
            self._append(self._journal.write_metrics, step, finite, nonfinite)
        except orjson.JSONEncodeError as err:  # a value JSON cannot hold: the caller's to fix
            raise _unencodable(finite, err) from None

    def _append(self, write, *args) -> None:
        """One journal record; a record the disk does not take is counted as lost, once said."""
        try:
            write(*args)
        except OSError as err:
            self.lost_records += 1
            if self.lost_records == 1:
                log.warning("adamwprune tracking: cannot write %s (%s); training goes on but these "
                            "metrics are lost", self._journal.path, err)

    def _reject_lower_step(self, step: int) -> None:
        """W&B drops a step lower than its last one: say so at the call, once, and count it."""
        for name in self.backends:
            if name == "wandb":
                self.rejected[name] = self.rejected.get(name, 0) + 1
                if self.rejected[name] == 1:
                    log.warning("adamwprune tracking: step %s is lower than step %s, logged before; W&B "
                                "drops such a record, so it is not sent there and is counted as rejected "
                                "(the journal%s keeps it)", step, self._last_step,
                                " and Trackio" if "trackio" in self.backends else "")

    def _supervise(self) -> None:
        """Start the delivery process again if it died before the run ended (bounded)."""
        delivery = self._delivery
        if delivery is None or delivery.returncode is None:
            return
        if self.restarts >= MAX_RESTARTS:
            return
        self.restarts += 1
        log.warning("adamwprune tracking: the delivery process (pid %s) %s before the run ended; started "
                    "it again (%s of %s): it sends what the backends do not hold yet", delivery.pid,
                    delivery.how_it_ended(), self.restarts, MAX_RESTARTS)
        delivery.close()
        try:
            self._delivery = DeliveryProcess(self.run_dir, self._selected, self._session_start,
                                             self.finish_timeout, catch_up=True)
        except OSError as err:
            self._delivery = None
            log.warning("adamwprune tracking: cannot start the delivery process again (%s); records stay "
                        "in the journal (%s)", err, self._resend_hint())

    def _resend_hint(self) -> str:
        return "resend: " + replay_command(self.run_dir, format_trackers(self.backends))

    def _count_nonfinite(self, nonfinite: dict, step: int) -> None:
        for name, kind in nonfinite.items():
            count = self.nonfinite_counts.get(name, 0) + 1
            self.nonfinite_counts[name] = count
            if count == 1:
                log.warning("adamwprune tracking: %s is %s at step %s (logged as is; further "
                            "non-finite values are counted)", name, kind, step)

    # -- end of run ---------------------------------------------------------------
    def finish(self, status: str = "finished") -> dict | None:
        """Close the journal, wait (bounded) for delivery, log one line per backend.

        Returns the delivery result (per backend: records confirmed in its own storage,
        rejected, missing, failed) or None when there was nothing to deliver or no result came.
        Never raises for a tracking fault (a full disk, a dead delivery process).
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        if self._journal is None or self._finished:
            return None
        self._finished = True
        atexit.unregister(self._finish_at_exit)
        with self._lock:
            try:
                self._journal.write_event("end", status=status)
            except OSError as err:  # the delivery process gets the status through its wake pipe
                log.warning("adamwprune tracking: cannot write the end of the run to %s (%s); the "
                            "backends still get status %s", self._journal.path, err.strerror or err, status)
            self._journal.close()
        result = self._drain(status)
        self._run_lock.release()
        self._log_summary(status, result)
        return result

    def _drain(self, status: str) -> dict | None:
        """Wait for the delivery process's result, starting it again (bounded) if it died."""
        while self._delivery is not None:
            self._supervise()  # died before the end: the replacement reads the end now
            delivery = self._delivery
            if delivery is None:
                break
            delivery.end(status)
            result = delivery.wait(self.finish_timeout + 10)
            if result is not None:
                return result
            if delivery.returncode is None:
                log.warning("tracking: delivery still running in the background (pid %s); progress in %s",
                            delivery.pid, self.run_dir / STATUS_NAME)
                return None
            if self.restarts >= MAX_RESTARTS:
                log.warning("adamwprune tracking: the delivery process (pid %s) %s before it finished, %s "
                            "times; giving up", delivery.pid, delivery.how_it_ended(), self.restarts + 1)
                return None
        return None

    def _log_summary(self, status: str, result: dict | None) -> None:
        """One line for the run, one per backend (WARNING when it lost records), the NaN counts."""
        log.info("tracking: run %s %s; run dir %s", self.run_name, status, self.run_dir)
        if self._selected and result is None:
            log.warning("tracking: what the backends hold is unconfirmed (no result from the delivery "
                        "process; see %s); %s", self.run_dir / LOG_NAME, self._resend_hint())
        for name, backend in (result or {}).get("backends", {}).items():
            line, troubled = summary_line(name, backend)
            if troubled:
                line += f"; resend: {replay_command(self.run_dir, name)}"
            log.log(logging.WARNING if troubled else logging.INFO, "tracking: %s", line)
        if self.lost_records:
            log.warning("tracking: %s records could not be written to the journal and are lost", self.lost_records)
        if self.nonfinite_counts:
            counts = ", ".join(f"{k} x{v}" for k, v in self.nonfinite_counts.items())
            log.warning("tracking: non-finite values logged: %s", counts)

    def _finish_at_exit(self) -> None:
        self.finish("finished")

    def __enter__(self) -> "ExperimentTracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("interrupted")
        else:
            self.finish("failed")


def preflight(backends: Sequence[str], wandb_offline: bool) -> bool:
    """Check up front what would make a backend fail later; return whether W&B runs offline.

    First of all, that every selected tracker's library is installed (nothing is imported).
    """
    require_installed(backends)
    if "trackio" in backends:
        _require_writable(_trackio_dir(), "Trackio directory", "set TRACKIO_DIR to a writable directory")
    return _check_wandb(wandb_offline) if "wandb" in backends else wandb_offline


def _check_step(step) -> int:
    """A step as an int: whole numbers only (2.9 is refused, not cut to 2), never negative."""
    try:
        value = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be a whole number, got {step!r}") from None
    if value < 0:
        raise ValueError(f"step must be >= 0, got {value}")
    return value


def _unencodable(finite: dict, err: Exception) -> ValueError:
    """The error naming the metric whose value the journal (JSON) cannot hold."""
    for name, value in finite.items():
        try:
            orjson.dumps({name: value})
        except orjson.JSONEncodeError as problem:
            return ValueError(f"metric {name!r} cannot be logged ({problem}): log a float or a valid string")
    return ValueError(f"metrics cannot be logged ({err})")


def summary_line(name: str, backend: dict) -> tuple[str, bool]:
    """The end-of-run line of one backend, and whether it tells of lost or unconfirmed records."""
    total, confirmed = backend["records"], backend["confirmed"]
    if confirmed is None:
        line = f"{name}: {backend['sent']} of {total} records sent, unconfirmed ({backend['unconfirmed']})"
    else:
        line = f"{name}: {confirmed} of {total} records confirmed in {backend['storage']}"
    if backend["rejected"]:
        line += f", {backend['rejected']} rejected ({backend['reject_reason']})"
    if backend["missing"]:
        line += f", {backend['missing']} missing"
    if backend["failed"]:
        line += f", {backend['failed']} failed"
    if backend["state"] in ("failed", "hung"):
        line += f" ({backend['state']}: {backend['error']})"
    if backend.get("where"):
        line += f" -> {backend['where']}"
    troubled = bool(confirmed is None or backend["missing"] or backend["failed"]
                    or backend["state"] in ("failed", "hung"))
    return line, troubled


class DeliveryProcess:
    """One delivery process as the trainer sees it: started in its own session (Ctrl-C stays
    with the trainer), a wake pipe (``end <status>``, then end of file) and a report pipe whose
    lines a thread logs and whose last message is the result."""

    def __init__(self, run_dir: Path, backends: Mapping[str, str], session_start: int, finish_timeout: float,
                 catch_up: bool = False):
        """``catch_up``: read the whole journal, sending what the backends do not hold yet (a resumed
        run, a restarted delivery); otherwise only this session's records, from ``session_start``."""
        wake_read, wake_write = os.pipe()
        report_read, report_write = os.pipe()
        cmd = [sys.executable, "-m", "adamwprune.tracking.delivery", str(run_dir),
               "--offset", str(0 if catch_up else session_start), "--session-start", str(session_start),
               "--parent-pid", str(os.getpid()),
               "--drain-timeout", str(max(1.0, finish_timeout - 2)),
               *[f"--backend={name}={path}" for name, path in backends.items()],
               "--wake-fd", str(wake_read), "--report-fd", str(report_write)]
        if catch_up:
            cmd.append("--skip-stored")
        pass_fds = [wake_read, report_write]
        try:
            with open(run_dir / LOG_NAME, "ab") as delivery_log:
                self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=delivery_log,
                                                stderr=subprocess.STDOUT, pass_fds=pass_fds,
                                                start_new_session=True, env=child_env())
        except BaseException:
            os.close(wake_write)
            os.close(report_read)
            raise
        finally:
            for fd in pass_fds:
                os.close(fd)
        self.pid = self.process.pid
        self.result: dict | None = None
        self._wake_fd: int | None = wake_write
        self._relay = threading.Thread(target=self._relay_reports, args=(report_read,),
                                       name="adamwprune-delivery-reports", daemon=True)
        self._relay.start()

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def how_it_ended(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def _relay_reports(self, report_fd: int) -> None:
        """Log each report line; keep the result (a thread; ends when the pipe closes)."""
        with open(report_fd, "rb") as pipe:
            for line in pipe:
                try:
                    message = orjson.loads(line)
                except orjson.JSONDecodeError:
                    log.warning("%s", line.decode(errors="replace").rstrip("\n"))
                    continue
                if "result" in message:
                    self.result = message["result"]
                elif "report" in message:
                    log.warning("%s", message["report"])

    def end(self, status: str) -> None:
        """Tell the process the run ended (also when the journal's end record could not be written)."""
        if self._wake_fd is None:
            return
        try:
            os.write(self._wake_fd, f"end {status}\n".encode())
        except BrokenPipeError:
            log.info("tracking: the delivery process (pid %s) is gone before the end of the run", self.pid)
        self.close()

    def close(self) -> None:
        if self._wake_fd is not None:
            os.close(self._wake_fd)
            self._wake_fd = None

    def wait(self, timeout: float) -> dict | None:
        """The result, once the process has exited and its report pipe is drained (None: none came)."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._relay.join(RELAY_JOIN_S)
        return self.result


def _trackio_dir() -> Path:
    if os.environ.get("TRACKIO_DIR"):
        return Path(os.environ["TRACKIO_DIR"])
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(hf_home) / "trackio"


def _require_writable(directory: Path, what: str, hint: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise UserError(f"{what} {directory} is not writable ({err.strerror or err}); {hint}") from None


def _check_wandb(offline_switch: bool) -> bool:
    """Validate the W&B mode before training starts; return whether to run offline.

    Online without an API key would sit at wandb's login prompt: fail now instead.
    """
    if offline_switch:
        return True
    mode = (os.environ.get("WANDB_MODE") or "online").strip().lower()
    if mode not in WANDB_MODES:
        raise UserError(f"WANDB_MODE={mode!r} is not a W&B mode; use one of {', '.join(WANDB_MODES)}")
    if mode in ("offline", "dryrun"):
        _require_writable(Path(os.environ.get("WANDB_DIR") or "."), "W&B directory",
                          "set WANDB_DIR to a writable directory")
        return True
    if mode == "online" and not _wandb_api_key_present():
        raise UserError(f"W&B is online but not logged in: run `{wandb_login_command()}`, or track "
                        "offline with WANDB_MODE=offline (or --wandb-offline, CONFIG_WANDB_OFFLINE=y) "
                        f"and `{tool('wandb', 'wandb')} sync` later")
    return False


def _wandb_api_key_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        entry = netrc.netrc(os.environ.get("NETRC")).authenticators(host or "")
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])
