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
import os
import queue
import select
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

import orjson

from adamwprune.fileio import atomic_write_bytes
from adamwprune.tracking.backends import Backend, load_backend
from adamwprune.tracking.commands import replay_command
from adamwprune.tracking.journal import JOURNAL_NAME, JournalReader
from adamwprune.tracking.logs import log
from adamwprune.tracking.runinfo import read_run_info
from adamwprune.tracking.values import join_metrics

STATUS_NAME = "delivery.json"
LOG_NAME = "delivery.log"
POLL_S = 1.0  # how often the journal is checked when nothing wakes the process earlier
STATUS_EVERY_S = 1.0
_END = object()


def resend_hint(run_dir: Path, backend: str) -> str:
    return f"resend: {replay_command(run_dir, backend)}"


class Reporter:
    """Passes on one-line notices: to the ``adamwprune.tracking`` logger (WARNING), or to
    ``stream`` (the report pipe that the trainer's ExperimentTracker logs from)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def __call__(self, line: str) -> None:
        text = f"adamwprune tracking: {line}"
        if self.stream is None:
            log.warning("%s", text)
            return
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # the trainer is gone: keep it in delivery.log (our stderr)
            print(text, file=sys.stderr, flush=True)


class BackendWorker(threading.Thread):
    """Owns one backend: start, log each record in order, finish; counts the outcome."""

    def __init__(self, name: str, import_path: str, info, report: Reporter,
                 run_dir: Path, skip_delivered: bool):
        super().__init__(name=f"deliver-{name}", daemon=True)
        self.backend_name = name
        self.import_path = import_path
        self.info = info
        self.report = report
        self.run_dir = run_dir
        self.skip_delivered = skip_delivered
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.delivered = self.failed = self.skipped = 0
        self.state = "starting"
        self.error = ""
        self.where = ""
        self._backend: Backend | None = None

    def run(self) -> None:
        already = None
        try:
            self._backend = load_backend(self.import_path, self.info)
            if self.skip_delivered:
                already = self._backend.delivered_filter()
            self._backend.start()
            self.state = "running"
        except Exception as err:  # any backend error: isolate it, keep the others going
            self._fail("start", err)
        while True:
            item = self.queue.get()
            if item[0] is _END:
                status = item[1]
                break
            step, metrics = item
            if self.state == "failed":
                self.failed += 1
            elif already is not None and already(step, metrics):
                self.skipped += 1
            else:
                try:
                    self._backend.log(metrics, step)
                    self.delivered += 1
                except Exception as err:
                    self.failed += 1
                    self._fail("log", err, keep_going=True)
        if self.state != "failed":
            try:
                self._backend.finish(status)
                self.state = "done"
            except Exception as err:
                self._fail("finish", err)
        self._set_where()

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

    def summary(self) -> dict:
        return {"state": self.state, "delivered": self.delivered, "failed": self.failed,
                "skipped": self.skipped, "pending": self.queue.qsize(), "error": self.error,
                "where": self.where}


def deliver(run_dir: Path, backends: dict[str, str], *, offset: int = 0, parent_pid: int | None = None,
            wake_fd: int | None = None, drain_timeout: float = 60.0, replay: bool = False,
            report: Reporter) -> dict:
    """Deliver the journal from ``offset`` to ``backends`` (name -> import path).

    Follows the file until its end record (or, with ``parent_pid``, until that
    process is gone: status ``crashed``); with ``replay`` reads what is there.
    ``wake_fd`` is the read end of a pipe the trainer holds open: its end of file
    (finish, or the trainer's death) ends the wait at once instead of at the next poll.
    Returns the final status dict, also written to ``delivery.json``.
    """
    info = read_run_info(run_dir)
    if replay:
        info.resume = True
    workers = [BackendWorker(name, path, info, report, run_dir, skip_delivered=replay)
               for name, path in backends.items()]
    for worker in workers:
        worker.start()
    reader = JournalReader(run_dir / JOURNAL_NAME, offset)
    status_path = run_dir / STATUS_NAME
    records = 0

    def pump() -> str | None:
        """Hand every newly completed record to the workers; the end status if seen."""
        nonlocal records
        for record in reader.read_available():
            if "event" in record:
                if record["event"] == "end":
                    return record.get("status", "finished")
                continue
            records += 1
            item = (record["step"], join_metrics(record["metrics"], record.get("nonfinite")))
            for worker in workers:
                worker.queue.put(item)
        return None

    last_status_write = 0.0
    while (status := pump()) is None:
        if replay:
            status = "crashed"  # a journal without an end record: the run never finished
            break
        if parent_pid is not None and os.getppid() != parent_pid:
            # The trainer is gone without an end record (kill -9, OOM): take what it wrote.
            status = pump() or "crashed"
            report(f"training process {parent_pid} ended without finishing the run; "
                   f"delivering what its journal holds and marking the run {status}")
            break
        now = time.monotonic()
        if now - last_status_write > STATUS_EVERY_S:
            _write_status(status_path, workers, records, "running", None, reader)
            last_status_write = now
        wake_fd = _wait_for_wake(wake_fd)
    for worker in workers:
        worker.queue.put((_END, status))
    deadline = time.monotonic() + drain_timeout
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.state = "hung"
            worker.error = worker.error or f"no answer within {drain_timeout:.0f} s"
            report(f"{worker.backend_name} did not finish within {drain_timeout:.0f} s "
                   f"({worker.delivered} delivered, {worker.queue.qsize()} pending); giving up on it "
                   f"({resend_hint(run_dir, worker.backend_name)})")
    reader.close()
    return _write_status(status_path, workers, records, "done", status, reader)


def _wait_for_wake(wake_fd: int | None) -> int | None:
    """Sleep up to POLL_S, less if the wake pipe closes; return the fd while it is still open."""
    if wake_fd is None:
        time.sleep(POLL_S / 20)  # the pipe has closed: the end record or the trainer's exit is near
        return None
    readable, _, _ = select.select([wake_fd], [], [], POLL_S)
    if readable and not os.read(wake_fd, 4096):
        os.close(wake_fd)
        return None
    return wake_fd


def _write_status(path: Path, workers, records: int, state: str, status: str | None,
                  reader: JournalReader) -> dict:
    data = {"pid": os.getpid(), "state": state, "status": status, "records": records,
            "bad_lines": reader.bad_lines, "journal_offset": reader.offset,
            "backends": {worker.backend_name: worker.summary() for worker in workers}}
    atomic_write_bytes(path, orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adamwprune.tracking.delivery",
                                     description="Deliver a run journal to tracker backends "
                                                 "(started by ExperimentTracker).")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--backend", action="append", default=[], metavar="NAME=MODULE:CLASS")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--parent-pid", type=int)
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--report-fd", type=int)
    parser.add_argument("--wake-fd", type=int)
    args = parser.parse_args(argv)
    os.nice(10)  # on a busy machine the trainer comes first; delivery catches up at the end
    report = Reporter(os.fdopen(args.report_fd, "w") if args.report_fd is not None else sys.stderr)
    backends = dict(spec.split("=", 1) for spec in args.backend)
    deliver(args.run_dir, backends, offset=args.offset, parent_pid=args.parent_pid, wake_fd=args.wake_fd,
            drain_timeout=args.drain_timeout, report=report)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # hung backend threads must not keep this process alive


if __name__ == "__main__":
    main()
