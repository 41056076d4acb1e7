"""What the training loop needs from a tracker, and the tracker of every rank but 0.

The rank-0 decision is made once, where the tracker is opened
(:func:`adamwprune.tracking.open_tracker`): rank 0 gets an ExperimentTracker,
the others a :class:`NullTracker`, so no loop code asks "is there a tracker?".
"""

from __future__ import annotations

import os
from typing import Mapping, Protocol


def is_rank_zero() -> bool:
    """Whether this process is global rank 0 (torchrun sets RANK; a plain process is rank 0)."""
    return int(os.environ.get("RANK", "0")) == 0


class Tracker(Protocol):
    @property
    def last_step(self) -> int:
        """The highest step recorded so far (on resume, by earlier sessions too); -1 if none."""

    def log(self, metrics: Mapping, step: int | None = None) -> None: ...

    def log_system(self, metrics: Mapping) -> None: ...

    def log_images(self, images: Mapping, captions: Mapping | None = None) -> None: ...

    def record_gpus(self, description: Mapping) -> None: ...

    def finish(self, status: str = "finished") -> None: ...


class NullTracker:
    """Records nothing: the tracker of every rank but 0, and of code that tracks nothing."""

    last_step = -1

    def log(self, metrics: Mapping, step: int | None = None) -> None:
        return None

    def log_system(self, metrics: Mapping) -> None:
        return None

    def log_images(self, images: Mapping, captions: Mapping | None = None) -> None:
        return None

    def record_gpus(self, description: Mapping) -> None:
        return None

    def finish(self, status: str = "finished") -> None:
        return None
