"""Network access for dataset downloads, with short timeouts and one-line errors.

Every check runs in a daemon thread with a hard deadline, because a DNS lookup is not
covered by socket timeouts and could otherwise hang an offline machine for minutes.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from typing import Callable, TypeVar

from adamwprune.errors import UserError

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 10.0


def call_with_deadline(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run ``fn`` in a daemon thread; a UserError if it raises or is not done in time."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as err:  # handed to the caller below, never dropped
            outcome["error"] = err

    thread = threading.Thread(target=target, name=f"deadline: {what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise UserError(f"{what}: no answer within {timeout_s:g} s (offline?)")
    if "error" in outcome:
        err = outcome["error"]
        if isinstance(err, UserError):
            raise err
        raise UserError(f"{what}: {_one_line(err)}")
    return outcome["value"]  # type: ignore[return-value]


def _one_line(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        err = err.reason if isinstance(err.reason, BaseException) else err
    lines = str(err).strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > 160:
        first = first[:157] + "..."
    return f"{type(err).__name__}: {first}".rstrip(": ")


def check_reachable(url: str, timeout_s: float = DEFAULT_TIMEOUT_S, purpose: str = "") -> None:
    """Make sure ``url`` answers a GET with success (an error status from a proxy or a
    captive portal counts as unreachable)."""
    def probe() -> None:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            response.read(1)

    call_with_deadline(probe, timeout_s + 1, f"cannot reach {url}{f' ({purpose})' if purpose else ''}")


def fetch_text(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """Download a (small) UTF-8 text file."""
    def get() -> str:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read().decode("utf-8")

    return call_with_deadline(get, 4 * timeout_s, f"cannot download {url}")
