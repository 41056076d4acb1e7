"""The run journal: ``<run_dir>/metrics.jsonl``, one JSON record per line.

The writer is the only tracking code on the training process's hot path: it
serializes a record and appends it with a single unbuffered ``os.write`` on an
``O_APPEND`` descriptor, so a record is in the kernel (and survives ``kill -9``)
before ``log()`` returns. The reader follows the file as it grows; a trailing
line without its newline is an unfinished write and is left for later.

Record shapes::

    {"step": 10, "time": 1732700000.12, "metrics": {...}, "nonfinite": {"val_loss": "nan"}}
    {"event": "end", "status": "finished", "time": ...}
    {"event": "start", "time": ..., "resumed": true}
    {"event": "images", "step": 80, "time": ..., "images": {"gpu/memory": {"path": "gpu_memory.png",
     "caption": "..."}}}   (paths relative to the run directory)
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Iterator

import orjson

JOURNAL_NAME = "metrics.jsonl"
IMAGES_EVENT = "images"  # a record of image files, delivered to the backends that take images


class JournalWriter:
    """Appends whole records or nothing.

    A write that lands short (a full disk, a file size limit) is cut back to the end of the
    last whole record and raised as OSError: the caller counts the record as lost, and no torn
    line is left for the next record to be glued to.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._torn_at: int | None = None  # a torn write not cut back yet

    def write_metrics(self, step: int, finite: dict, nonfinite: dict | None) -> None:
        record = {"step": step, "time": time.time(), "metrics": finite}
        if nonfinite:
            record["nonfinite"] = nonfinite
        self._append(record)

    def write_images(self, step: int, images: dict) -> None:
        self._append({"event": IMAGES_EVENT, "step": step, "time": time.time(), "images": images})

    def write_event(self, event: str, **fields) -> None:
        self._append({"event": event, "time": time.time(), **fields})

    def _append(self, record: dict) -> None:
        data = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        if self._torn_at is not None:  # raises while the torn write cannot be cut back
            os.ftruncate(self._fd, self._torn_at)
            self._torn_at = None
        end = os.lseek(self._fd, 0, os.SEEK_END)  # the one writer's end: where a torn write is cut back to
        try:
            written = os.write(self._fd, data)
        except OSError:
            self._cut_back(end)
            raise
        if written != len(data):
            self._cut_back(end)
            raise OSError(errno.ENOSPC, f"only {written} of {len(data)} bytes written (disk full?)")

    def _cut_back(self, end: int) -> None:
        try:
            os.ftruncate(self._fd, end)
        except OSError:  # cannot even shrink the file now: the next append tries first
            self._torn_at = end

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class JournalReader:
    """Reads complete records from a journal, from a byte offset onwards."""

    def __init__(self, path: Path, offset: int = 0):
        self.path = path
        self.offset = offset
        self.bad_lines = 0
        self._file = None
        self._partial = b""

    def read_available(self) -> Iterator[dict]:
        """Yield the records completed since the last call; never blocks."""
        if self._file is None:
            if not self.path.exists():
                return
            self._file = open(self.path, "rb")
            self._file.seek(self.offset)
        chunk = self._file.read()
        if not chunk:
            return
        data = self._partial + chunk
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        for line in data[:cut].splitlines():
            self.offset += len(line) + 1
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                self.bad_lines += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


_NONFINITE = {"nan", "inf", "-inf"}


def record_problem(record) -> str | None:
    """Why a parsed journal line is not a record this module writes (None: it is one)."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    if "event" in record:
        if not isinstance(record["event"], str):
            return "an event that is not a name"
        return _images_problem(record) if record["event"] == IMAGES_EVENT else None
    step = record.get("step")
    if type(step) is not int or step < 0:
        return "no step (a whole number >= 0)"
    if not isinstance(record.get("metrics"), dict):
        return "no metrics object"
    nonfinite = record.get("nonfinite", {})
    if not isinstance(nonfinite, dict) or not set(nonfinite.values()) <= _NONFINITE:
        return "a nonfinite map that is not name -> nan/inf/-inf"
    return None


def _images_problem(record: dict) -> str | None:
    step, images = record.get("step"), record.get("images")
    if type(step) is not int or step < 0:
        return "images without a step (a whole number >= 0)"
    if not isinstance(images, dict) or not images or not all(
            isinstance(image, dict) and isinstance(image.get("path"), str) for image in images.values()):
        return "images that are not name -> {path, caption}"
    return None


def last_step(path: Path, tail_bytes: int = 1 << 16) -> int:
    """The highest step among the journal's last records (-1 when it has none).

    Reads only the file's tail: a resumed run needs it at start, however long the run.
    """
    with open(path, "rb") as journal:
        size = journal.seek(0, os.SEEK_END)
        journal.seek(max(0, size - tail_bytes))
        lines = journal.read().split(b"\n")
    steps = []
    for line in lines[1:] if size > tail_bytes else lines:  # the first may be cut
        try:
            steps.append(orjson.loads(line)["step"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # an event record, the empty tail, or an unfinished write
    return max(steps, default=-1)


def read_journal(path: Path) -> list[dict]:
    """All complete records of a finished journal."""
    reader = JournalReader(path)
    try:
        return list(reader.read_available())
    finally:
        reader.close()
