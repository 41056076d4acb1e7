"""The delivery process: follows a run's journal and feeds every selected backend.

Started by ExperimentTracker (one per run, in its own session so Ctrl-C reaches
only the trainer), or by hand through ``adamwprune replay``. Each backend runs in
its own thread with its own queue, so a backend that raises or hangs costs only
its own records, never the other backend's or the trainer's time.

Progress goes to ``<run_dir>/delivery.json``; the libraries' chatter to
``<run_dir>/delivery.log``; failures, once per backend, to the report pipe, which the
trainer's ExperimentTracker logs (logger ``adamwprune.tracking``), or, in a replay, to that
logger directly.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import queue
import select
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

import orjson

from adamwprune.fileio import atomic_write_bytes
from adamwprune.tracking.backends import Backend, load_backend
from adamwprune.tracking.commands import replay_command
from adamwprune.tracking.journal import IMAGES_EVENT, JOURNAL_NAME, JournalReader, record_problem
from adamwprune.tracking.logs import log
from adamwprune.tracking.runinfo import read_run_info
from adamwprune.tracking.values import join_metrics

STATUS_NAME = "delivery.json"
REPLAY_STATUS_NAME = "replay.json"  # a replay's own progress, beside the run's delivery.json
LOG_NAME = "delivery.log"
POLL_S = 1.0  # how often the journal is checked when nothing wakes the process earlier
STATUS_EVERY_S = 1.0
_END = object()


def resend_hint(run_dir: Path, backend: str) -> str:
    return f"resend: {replay_command(run_dir, backend)}"


class Reporter:
    """Passes on one-line notices: to the ``adamwprune.tracking`` logger (WARNING), or to
    ``stream``, the report pipe that the trainer's ExperimentTracker reads (one JSON object a
    line: ``{"report": line}``, and the final ``{"result": {...}}``)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def __call__(self, line: str) -> None:
        text = f"adamwprune tracking: {line}"
        if self.stream is None:
            log.warning("%s", text)
        elif not self.send({"report": text}):  # the trainer is gone: keep it in delivery.log
            print(text, file=sys.stderr, flush=True)

    def send(self, message: dict) -> bool:
        """Write one message to the pipe; False when there is no pipe or nobody reads it."""
        if self.stream is None:
            return False
        try:
            self.stream.write(orjson.dumps(message).decode() + "\n")
            self.stream.flush()
            return True
        except (OSError, ValueError):
            return False


class BackendWorker(threading.Thread):
    """Owns one backend: start, log each record in order, finish, then confirm every record of
    the session against the backend's own storage.

    Counts (each record of the session in exactly one of the first four, or unconfirmed):
    ``confirmed`` (in the backend's storage at the end), ``rejected`` (a step the backend would
    drop: never handed over), ``missing`` (handed over, or skipped as stored, but not in the
    storage at the end), or all ``unconfirmed`` when the storage cannot be read. ``failed``:
    records whose hand-over raised (or that a failed backend never got), a subset of missing.
    ``skip_stored``: records the storage already holds at the start are not sent again (a
    restarted delivery process, a replay).
    """

    def __init__(self, name: str, import_path: str, info, report: Reporter,
                 run_dir: Path, skip_stored: bool):
        super().__init__(name=f"deliver-{name}", daemon=True)
        self.backend_name = name
        self.import_path = import_path
        self.info = info
        self.report = report
        self.run_dir = run_dir
        self.skip_stored = skip_stored
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.records: list[tuple[int, tuple[str, ...]]] = []  # the session's records, not rejected
        self.sent = self.failed = self.skipped = self.rejected = 0
        self.confirmed: int | None = None
        self.unconfirmed = ""      # why the storage could not be read
        self.reject_reason = ""
        self.state = "starting"
        self.error = ""
        self.where = ""
        self.storage = ""
        self._backend: Backend | None = None

    def run(self) -> None:
        already = None
        try:
            self._backend = load_backend(self.import_path, self.info)
            if self.skip_stored:
                already = self._backend.stored()
            self._backend.start()
            self.state = "running"
        except Exception as err:  # any backend error: isolate it, keep the others going
            self._fail("start", err)
        while True:
            item = self.queue.get()
            if item[0] is _END:
                status = item[1]
                break
            self._deliver(*item, already)
        if self.state != "failed":
            try:
                self._backend.finish(status)
                self.state = "done"
            except Exception as err:
                self._fail("finish", err)
        self._confirm()
        self._set_where()

    def _deliver(self, step: int, metrics: dict, images: bool, already) -> None:
        """Hand one record over: ``metrics`` (name -> value), or with ``images`` name -> {path, caption}."""
        if self.state == "failed":
            self.records.append((step, tuple(metrics)))
            self.failed += 1
            return
        if already is not None and already.holds(step, metrics):
            self.records.append((step, tuple(metrics)))
            self.skipped += 1
            return
        reason = self._backend.rejects(step)
        if images and not reason and not self._backend.takes_images:
            reason = "it takes no images"
        if reason:
            self.rejected += 1
            if not self.reject_reason:
                self.reject_reason = reason
                self.report(f"{self.backend_name} rejects the record at step {step}: {reason}; "
                            "such records are counted as rejected and not sent (they stay in the journal)")
            return
        self.records.append((step, tuple(metrics)))
        try:
            if images:
                self._backend.log_images({name: (self.run_dir / image["path"], image.get("caption", ""))
                                          for name, image in metrics.items()}, step)
            else:
                self._backend.log(metrics, step)
            self.sent += 1
        except Exception as err:
            self.failed += 1
            self._fail("log", err, keep_going=True)

    def _confirm(self) -> None:
        """Count the session's records that the backend's own storage holds now."""
        if self._backend is None:
            self.confirmed = 0
            return
        self.storage = self._backend.storage
        try:
            stored = self._backend.stored()
        except Exception as err:
            stored, self.unconfirmed = None, f"reading it failed: {type(err).__name__}: {err}"[:300]
        if stored is None:
            self.unconfirmed = self.unconfirmed or "this backend cannot read its storage back"
            return
        self.confirmed = sum(1 for step, names in self.records if stored.holds(step, names))

    def _set_where(self) -> None:
        if self._backend is None:
            return
        try:
            self.where = self._backend.where()
        except Exception as err:
            self.where = f"(could not tell: {err})"

    def _fail(self, phase: str, err: BaseException, keep_going: bool = False) -> None:
        first = not self.error
        self.error = f"{phase}: {type(err).__name__}: {err}".replace("\n", " ")[:500]
        if not keep_going:
            self.state = "failed"
        if first:
            self.report(f"{self.backend_name} failed at {phase} ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}); training goes on, its "
                        f"records stay in {self.run_dir / JOURNAL_NAME} "
                        f"({resend_hint(self.run_dir, self.backend_name)})")

    def summary(self, total: int) -> dict:
        """Counts of the ``total`` records this session handed to the worker."""
        missing = None if self.confirmed is None else total - self.rejected - self.confirmed
        return {"state": self.state, "records": total, "confirmed": self.confirmed,
                "rejected": self.rejected, "reject_reason": self.reject_reason, "missing": missing,
                "failed": self.failed, "sent": self.sent, "skipped": self.skipped,
                "unconfirmed": self.unconfirmed, "pending": self.queue.qsize(), "error": self.error,
                "storage": self.storage, "where": self.where}


def deliver(run_dir: Path, backends: dict[str, str], *, offset: int = 0, session_start: int = 0,
            parent_pid: int | None = None, wake_fd: int | None = None, drain_timeout: float = 60.0,
            replay: bool = False, skip_stored: bool = False, report: Reporter) -> dict:
    """Deliver the journal from byte ``offset`` to ``backends`` (name -> import path).

    Follows the file until the end record of the session that starts at byte
    ``session_start`` (earlier sessions' end records are passed over), or, with
    ``parent_pid``, until that process is gone (status ``crashed``); with ``replay`` reads
    what is there. ``wake_fd`` is the read end of a pipe the trainer holds open:
    ``end <status>`` on it, or its end of file (finish, or the trainer's death), ends the
    wait at once; the status sent there ends the run when the journal's end record could not
    be written (a full disk). ``skip_stored`` (implied by ``replay``): records a backend
    already holds are not sent again. One delivery per run at a time: it waits for an
    earlier one that is still at work (a killed trainer's) to finish.
    Returns the final status dict, also written to ``delivery.json`` when the disk allows.
    """
    lock = DeliveryLock(run_dir, report)
    try:
        return _deliver(run_dir, backends, offset=offset, session_start=session_start,
                        parent_pid=parent_pid, wake_fd=wake_fd, drain_timeout=drain_timeout,
                        replay=replay, skip_stored=skip_stored, report=report)
    finally:
        lock.release()


def _deliver(run_dir: Path, backends: dict[str, str], *, offset: int, session_start: int,
             parent_pid: int | None, wake_fd: int | None, drain_timeout: float, replay: bool,
             skip_stored: bool, report: Reporter) -> dict:
    info = read_run_info(run_dir)
    if replay or skip_stored:  # continue the tracked run that already holds part of the records
        info.resume = True
    workers = [BackendWorker(name, path, info, report, run_dir, skip_stored=replay or skip_stored)
               for name, path in backends.items()]
    for worker in workers:
        worker.start()
    reader = JournalReader(run_dir / JOURNAL_NAME, offset)
    status_file = StatusFile(run_dir / (REPLAY_STATUS_NAME if replay else STATUS_NAME), report)
    records = invalid = 0
    last_end: str | None = None  # how the latest session in the journal ended (None: it did not)
    wake = Wake(wake_fd)

    def pump() -> str | None:
        """Hand every newly completed record to the workers; this session's end status if seen."""
        nonlocal records, invalid, last_end
        for record in reader.read_available():
            problem = record_problem(record)
            if problem:
                invalid += 1
                if invalid == 1:
                    report(f"{run_dir / JOURNAL_NAME}: a line that is not a record ({problem}: "
                           f"{orjson.dumps(record).decode()[:120]}), before byte {reader.offset}; skipped, "
                           "like any other such line (counted in the status)")
                continue
            if "event" in record and record["event"] != IMAGES_EVENT:
                if record["event"] == "start":
                    last_end = None
                elif record["event"] == "end":
                    last_end = record.get("status", "finished")
                    if not replay and reader.offset > session_start:
                        return last_end
                continue
            records += 1
            if record.get("event") == IMAGES_EVENT:
                item = (record["step"], record["images"], True)
            else:
                item = (record["step"], join_metrics(record["metrics"], record.get("nonfinite")), False)
            for worker in workers:
                worker.queue.put(item)
        return None

    last_status_write = 0.0
    while (status := pump()) is None:
        if replay:
            status = last_end or "crashed"  # no end record after the last start: it never finished
            break
        if wake.status is not None:  # the trainer ended the run, its end record is not in the journal
            status = pump() or wake.status
            break
        if parent_pid is not None and os.getppid() != parent_pid:
            # The trainer is gone without an end record (kill -9, OOM): take what it wrote.
            status = pump() or "crashed"
            report(f"training process {parent_pid} ended without finishing the run; "
                   f"delivering what its journal holds and marking the run {status}")
            break
        now = time.monotonic()
        if now - last_status_write > STATUS_EVERY_S:
            status_file.write(_status(workers, records, "running", None, reader, invalid))
            last_status_write = now
        wake.wait()
    for worker in workers:
        worker.queue.put((_END, status))
    deadline = time.monotonic() + drain_timeout
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.state = "hung"
            worker.error = worker.error or f"no answer within {drain_timeout:.0f} s"
            worker.unconfirmed = "it did not finish"
            report(f"{worker.backend_name} did not finish within {drain_timeout:.0f} s "
                   f"({worker.sent} sent, {worker.queue.qsize()} pending); giving up on it "
                   f"({resend_hint(run_dir, worker.backend_name)})")
    reader.close()
    result = _status(workers, records, "done", status, reader, invalid)
    status_file.write(result)
    return result


class DeliveryLock:
    """``<run_dir>/delivery.lock``: one delivery per run at a time (a flock, released by the kernel
    when its holder dies)."""

    NAME = "delivery.lock"

    def __init__(self, run_dir: Path, report: Reporter):
        self._fd = os.open(Path(run_dir) / self.NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 100, 0).decode(errors="replace").strip() or "another process"
            report(f"waiting for the earlier delivery of this run ({holder}) to finish first")
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"pid {os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only the PID is not shown
            os.ftruncate(self._fd, 0)

    def release(self) -> None:
        os.close(self._fd)


class Wake:
    """The read end of the trainer's wake pipe: sleeps until it speaks or POLL_S passes."""

    def __init__(self, fd: int | None):
        self.fd = fd
        self.status: str | None = None  # ``end <status>`` received
        self._pending = b""

    def wait(self) -> None:
        if self.fd is None:
            time.sleep(POLL_S / 20)  # the pipe has closed: the end record or the trainer's exit is near
            return
        readable, _, _ = select.select([self.fd], [], [], POLL_S)
        if not readable:
            return
        data = os.read(self.fd, 4096)
        if not data:
            os.close(self.fd)
            self.fd = None
            return
        self._pending += data
        for line in self._pending.split(b"\n")[:-1]:
            if line.startswith(b"end "):
                self.status = line[4:].decode(errors="replace")
        self._pending = self._pending.rsplit(b"\n", 1)[-1]


class StatusFile:
    """``delivery.json``: progress for whoever looks; a failed write is reported once, not fatal
    (the trainer gets the final result through the report pipe)."""

    def __init__(self, path: Path, report: Reporter):
        self.path = path
        self.report = report
        self.failed = False

    def write(self, data: dict) -> None:
        try:
            atomic_write_bytes(self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2))
        except OSError as err:
            if not self.failed:
                self.failed = True
                self.report(f"cannot write {self.path} ({err.strerror or err}); delivery goes on, "
                            "its progress is not saved there")


class ChatterLog:
    """stdout/stderr of the delivery process (``delivery.log``), where trackio and wandb print.
    A write that fails (a full disk) drops the text and is reported once, instead of raising
    inside a backend call."""

    def __init__(self, stream: TextIO, report: Reporter):
        self.stream = stream
        self.report = report
        self.failed = False

    def write(self, text: str) -> int:
        return self._guard(self.stream.write, text) or len(text)

    def flush(self) -> None:
        self._guard(self.stream.flush)

    def _guard(self, call, *args):
        try:
            return call(*args)
        except OSError as err:
            if not self.failed:
                self.failed = True
                self.report(f"cannot write {LOG_NAME} ({err.strerror or err}); the tracker libraries' "
                            "output is dropped, delivery goes on")
            return None

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def _status(workers, records: int, state: str, status: str | None, reader: JournalReader,
            invalid: int) -> dict:
    return {"pid": os.getpid(), "state": state, "status": status, "records": records,
            "bad_lines": reader.bad_lines, "invalid_records": invalid, "journal_offset": reader.offset,
            "backends": {worker.backend_name: worker.summary(records) for worker in workers}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adamwprune.tracking.delivery",
                                     description="Deliver a run journal to tracker backends "
                                                 "(started by ExperimentTracker).")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--backend", action="append", default=[], metavar="NAME=MODULE:CLASS")
    parser.add_argument("--offset", type=int, default=0, help="the byte of the journal to read from")
    parser.add_argument("--session-start", type=int, default=0,
                        help="the byte where this session's records start (earlier end records are passed over)")
    parser.add_argument("--parent-pid", type=int)
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--report-fd", type=int)
    parser.add_argument("--wake-fd", type=int)
    parser.add_argument("--skip-stored", action="store_true",
                        help="do not send again what a backend already holds (a restarted delivery)")
    args = parser.parse_args(argv)
    os.nice(10)  # on a busy machine the trainer comes first; delivery catches up at the end
    # The trainer decides when delivery ends (its end record, or its death: --parent-pid). A stop
    # meant for the trainer reaches this process too where a scheduler signals every process of a
    # job (SLURM: SIGTERM on scancel, SIGUSR2 before the time limit); it must not cut delivery short
    # of the records the trainer is still writing. SIGKILL still ends it, and the tracker restarts it.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)
    report = Reporter(os.fdopen(args.report_fd, "w") if args.report_fd is not None else None)
    sys.stdout = ChatterLog(sys.stdout, report)  # the libraries print; a full disk must not stop them
    sys.stderr = ChatterLog(sys.stderr, report)
    backends = dict(spec.split("=", 1) for spec in args.backend)
    result = deliver(args.run_dir, backends, offset=args.offset, session_start=args.session_start,
                     parent_pid=args.parent_pid,
                     wake_fd=args.wake_fd, drain_timeout=args.drain_timeout, skip_stored=args.skip_stored,
                     report=report)
    report.send({"result": result})
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # hung backend threads must not keep this process alive


if __name__ == "__main__":
    main()
