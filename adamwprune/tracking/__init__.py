"""Experiment tracking: one ExperimentTracker that fans out to Trackio and W&B.

The training process only appends to a journal (``<run_dir>/metrics.jsonl``);
a delivery process started per run follows it and feeds the backends. Messages go
through the ``adamwprune.tracking`` logger (docs/tracking.md).
"""

from adamwprune.tracking.naming import default_run_name, project_name
from adamwprune.tracking.protocol import NullTracker, Tracker, is_rank_zero
from adamwprune.tracking.selection import format_trackers, parse_trackers, require_installed

__all__ = ["ExperimentTracker", "NullTracker", "Tracker", "default_run_name", "format_trackers",
           "open_tracker", "parse_trackers", "project_name"]


def open_tracker(trackers, **options) -> Tracker:
    """The rank-0 decision, made once: an ExperimentTracker on global rank 0, a NullTracker elsewhere.

    A selected tracker that is not installed is a UserError on every rank (the same one), so no
    rank goes on to wait for a rank 0 that has stopped.
    """
    require_installed(parse_trackers(trackers if isinstance(trackers, str) else ",".join(trackers)))
    if not is_rank_zero():
        return NullTracker()
    from adamwprune.tracking.tracker import ExperimentTracker

    return ExperimentTracker(trackers, **options)


def __getattr__(name: str):
    if name == "ExperimentTracker":
        from adamwprune.tracking.tracker import ExperimentTracker
        return ExperimentTracker
    raise AttributeError(name)
