"""Which trackers a run uses, parsed from what the user typed (TRACKER=, --tracker)."""

from __future__ import annotations

from adamwprune.errors import UserError

TRACKER_NAMES = ("trackio", "wandb")  # the built-in trackers, in canonical order
ALIASES = {"none": (), "both": TRACKER_NAMES}
VALID_WORDS = ("none", "trackio", "wandb", "both")


def parse_trackers(text: str | None) -> tuple[str, ...]:
    """Parse a tracker selection into backend names, in canonical order.

    Accepts ``none`` (also an empty/absent value), ``trackio``, ``wandb``, ``both``
    and comma lists of those in any order; case-insensitive, whitespace
    tolerated, duplicates collapsed. ``none`` cannot be combined with a backend.
    """
    if text is None or not text.strip():
        return ()
    words = [word.strip().lower() for word in text.split(",")]
    chosen: set[str] = set()
    saw_none = False
    for word in words:
        if not word:
            raise UserError(f"empty item in tracker list {text!r}; "
                            f"use a comma list of {', '.join(VALID_WORDS)}")
        if word not in VALID_WORDS:
            raise UserError(f"unknown tracker {word!r} in {text!r}; "
                            f"valid choices: {', '.join(VALID_WORDS)} or a comma list such as wandb,trackio")
        if word == "none":
            saw_none = True
        else:
            chosen.update(ALIASES.get(word, (word,)))
    if saw_none and chosen:
        raise UserError(f"tracker list {text!r} combines 'none' with a tracker; "
                        "use 'none' alone or list only trackers")
    return tuple(name for name in TRACKER_NAMES if name in chosen)


def format_trackers(backends: tuple[str, ...] | list[str]) -> str:
    """The canonical spelling of a selection: ``none``, ``trackio``, ``wandb`` or ``both``."""
    names = tuple(name for name in TRACKER_NAMES if name in backends)
    if not names:
        return "none"
    return "both" if names == TRACKER_NAMES else names[0]


def missing_trackers(backends) -> list[str]:
    """The built-in trackers of ``backends`` whose library this Python cannot import.

    Looked up with ``importlib.util.find_spec``: nothing is imported (the training process
    never imports a tracker library).
    """
    from adamwprune.deps import missing

    return [name for name in TRACKER_NAMES if name in backends and missing([name])]


def require_installed(backends) -> None:
    """One-line UserError naming the install command when a selected tracker is not installed.

    Called before anything is created (ExperimentTracker, ``--check-only``, replay); ``none``
    needs no tracker library.
    """
    gone = missing_trackers(backends)
    if not gone:
        return
    import sys

    from adamwprune.tracking.commands import as_typed, tracker_install_command

    names = " and ".join(gone)
    plural = len(gone) > 1
    raise UserError(f"the {names} tracker{'s are' if plural else ' is'} selected but {names} "
                    f"{'are' if plural else 'is'} not installed in this Python ({as_typed(sys.executable)}): "
                    f"install {'them' if plural else 'it'} with `{tracker_install_command(gone)}` "
                    "(or select tracker none)")
