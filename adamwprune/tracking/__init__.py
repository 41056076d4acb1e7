"""Experiment tracking: one ExperimentTracker that fans out to Trackio and W&B.

The training process only appends to a journal (``<run_dir>/metrics.jsonl``);
a delivery process started per run follows it and feeds the backends.
"""

from adamwprune.tracking.naming import default_run_name, project_name
from adamwprune.tracking.selection import format_trackers, parse_trackers

__all__ = ["ExperimentTracker", "default_run_name", "format_trackers", "parse_trackers",
           "project_name"]


def __getattr__(name: str):
    if name == "ExperimentTracker":
        from adamwprune.tracking.tracker import ExperimentTracker
        return ExperimentTracker
    raise AttributeError(name)
