"""User-facing errors: one line that says what went wrong and what to do."""

from __future__ import annotations

import sys
from typing import Callable, Sequence


class UserError(Exception):
    """A mistake in input or environment that the user can fix.

    Entry points print the message as one line and exit with status 2;
    they never show a traceback for it.
    """


def run_main(main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None, prog: str = "adamwprune") -> int:
    """Call ``main(argv)``; turn a UserError into a one-line message and exit code 2."""
    try:
        return int(main(argv) or 0)
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
