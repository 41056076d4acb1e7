"""The library's messages go through Python ``logging``, never ``print``.

Logger names: ``adamwprune`` and its children (``adamwprune.tracking`` for the tracker's
status lines, end-of-run summary and delivery failures). Standard library semantics:

- **Nothing configured** (no handler on the root logger or on the logger chain of the
  record): a fallback handler on ``adamwprune`` writes each message as one plain line to
  the *current* ``sys.stderr``. It is ``logging.lastResort`` at INFO instead of WARNING,
  decided per message, so configuring logging later (even after import) still takes over.
- **Anything configured** (``logging.basicConfig(...)``, ``dictConfig``, a handler on the
  root, on ``adamwprune`` or on a child such as ``adamwprune.tracking``): the fallback
  stays silent and the records go to your handlers (they propagate as usual).
- **Level**: ``adamwprune`` is set to INFO when it is imported with no level of its own
  (as Lightning does), so the status lines show by default. Silence them with
  ``logging.getLogger("adamwprune").setLevel(logging.WARNING)`` (failures still show) or
  ``ERROR``; or add a ``logging.NullHandler()`` to it and set ``propagate = False``.

Programs (``adamwprune replay``, the self-tests, the trainer's progress lines) still print
their own results to stdout; only library messages come through here.
"""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "adamwprune"


class FallbackHandler(logging.Handler):
    """Writes a record to the current ``sys.stderr`` only when no other handler would get it."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if self._handled_elsewhere(record):
            return
        stream = sys.stderr
        if stream is None:  # pythonw, a closed stderr
            return
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # the same policy as logging.StreamHandler
            self.handleError(record)

    def _handled_elsewhere(self, record: logging.LogRecord) -> bool:
        """Whether a handler other than this one is on the record's way up to the root."""
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return True
            if not logger.propagate:
                return False
            logger = logger.parent
        return False


def _install() -> logging.Logger:
    package = logging.getLogger(LOGGER_NAME)
    if package.level == logging.NOTSET:
        package.setLevel(logging.INFO)
    if not any(type(handler).__name__ == FallbackHandler.__name__ for handler in package.handlers):  # once, even if reloaded
        package.addHandler(FallbackHandler())
    return package


_install()
log = logging.getLogger(f"{LOGGER_NAME}.tracking")
