"""One writer per run: an exclusive lock on ``<run_dir>/run.lock`` for the life of a session.

Held by the process that writes the run's journal (the trainer's rank 0, through
ExperimentTracker) and by ``adamwprune replay``. It is a ``flock``: the kernel releases it when
the holder dies, so after ``kill -9`` the next start proceeds. The file keeps the holder's PID,
for the message a second writer gets.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from adamwprune.errors import UserError

LOCK_NAME = "run.lock"


class RunLock:
    def __init__(self, run_dir: Path, purpose: str):
        """Take the lock or raise a one-line UserError naming the PID that holds it."""
        self.path = Path(run_dir) / LOCK_NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            raise UserError(f"{run_dir} is in use by {holder}; one process writes a run at a time "
                            f"(wait for it to end, or stop it, before you {purpose})") from None
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"pid {os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, a second writer is told "another process"
            os.ftruncate(self._fd, 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = -1
