"""What a training run shows and hears on the terminal: number formats and Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from typing import Any, Iterator


def si(value: float) -> str:
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= threshold:
            return f"{value / threshold:.1f}{suffix}"
    return f"{value:.0f}"


def clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class InterruptFlag:
    """First Ctrl-C asks the loop to stop at the next step boundary; a second one interrupts at once.

    A SIGINT within ``same_press_s`` of the first counts as the same Ctrl-C: under torchrun a
    worker gets the terminal's SIGINT and then the one torchrun forwards. SIGTERM and SIGUSR2
    count as a Ctrl-C too: it is how SLURM (scancel, preemption, the warning before the time
    limit) and container runtimes ask a job to stop, so the run saves ckpt_last.pt and can be
    resumed.
    """

    same_press_s = 2.0
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)

    def __init__(self) -> None:
        self.requested = False
        self._first_at = 0.0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.getsignal(signum) for signum in self.signals}

        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                if time.monotonic() - self._first_at < self.same_press_s:
                    return
                raise KeyboardInterrupt
            self.requested = True
            self._first_at = time.monotonic()
            what = "" if signum == signal.SIGINT else f"{signal.Signals(signum).name}: "
            print(f"\n{what}stopping after this step (saving ckpt_last.pt); Ctrl-C again to abort",
                  file=sys.stderr, flush=True)

        for signum in self.signals:
            signal.signal(signum, handler)
        try:
            yield
        finally:
            for signum, action in previous.items():
                signal.signal(signum, action)
