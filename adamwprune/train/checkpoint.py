"""Checkpoints written atomically: a reader sees the old file or the new one, never half of one.

``ckpt_last.pt`` (everything needed to resume) is written at each eval point and at
the end; ``ckpt_best.pt`` (model weights) only when the validation loss improves.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from adamwprune.fileio import atomic_write

LAST_NAME = "ckpt_last.pt"
BEST_NAME = "ckpt_best.pt"


def save_atomic(state: dict[str, Any], path: Path | str) -> Path:
    """torch.save ``state`` to ``path`` atomically and durably (fsync, then rename)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda out: torch.save(state, out), durable=True)


def load(path: Path | str, map_location: Any = "cpu") -> dict[str, Any]:
    """torch.load ``path``; a file that is not a readable checkpoint is a UserError naming it."""
    import pickle

    import torch

    from adamwprune.errors import UserError

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, EOFError, pickle.UnpicklingError, RuntimeError, ValueError, ImportError,
            AttributeError) as err:  # not a torch.save file, truncated, unreadable, or from other code
        detail = str(err).strip().split("\n")[0].split(". ")[0] or type(err).__name__  # first sentence
        raise UserError(f"cannot read checkpoint {path}: {detail}") from err


class BestCheckpoint:
    """Keeps the best validation loss seen and saves ``ckpt_best.pt`` only when it improves."""

    def __init__(self, path: Path | str, best_val_loss: float = math.inf, enabled: bool = True):
        self.path = Path(path)
        self.best_val_loss = best_val_loss
        self.enabled = enabled

    def update(self, val_loss: float, make_state: Callable[[], dict[str, Any]]) -> bool:
        """Record ``val_loss``; if it beats the best so far, save ``make_state()`` and return True.

        NaN never counts as an improvement. ``make_state`` is only called when saving.
        """
        if not val_loss < self.best_val_loss:  # also False for NaN
            return False
        self.best_val_loss = val_loss
        if self.enabled:
            save_atomic(make_state(), self.path)
        return True
