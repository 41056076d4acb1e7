"""Re-send a run journal to trackers (``adamwprune replay``).

For a run whose delivery process died too, or a run tracked locally (or with
``--tracker none``) that should go to W&B later. It is the delivery code run by
hand; records a backend already holds (Trackio's store, W&B's run files of that run id) are
skipped, so a repeated replay adds nothing. It holds the run's lock (one writer per run) and
keeps its progress in ``replay.json``, beside the run's ``delivery.json``.
"""

from __future__ import annotations

import math
from pathlib import Path

from adamwprune.errors import UserError
from adamwprune.tracking.backends import BACKEND_CLASSES
from adamwprune.tracking.delivery import Reporter, deliver
from adamwprune.tracking.journal import JOURNAL_NAME
from adamwprune.tracking.selection import parse_trackers, require_installed
from adamwprune.tracking.tracker import preflight, summary_line
from adamwprune.tracking.runlock import RunLock
from adamwprune.tracking.runinfo import read_run_info, write_run_info


def replay(run_dir: Path, trackers: str, timeout: float = 300.0) -> dict:
    """Deliver ``run_dir``'s journal to ``trackers``; prints one result line per backend.

    Failures are reported through the ``adamwprune.tracking`` logger as they happen.
    """
    names = parse_trackers(trackers)
    if not names:
        raise UserError("replay needs a tracker: --tracker trackio, wandb or both")
    require_installed(names)  # before reading anything: the install command, not a traceback
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise UserError(f"--timeout must be a positive number of seconds, got {timeout}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        problem = "is not a run directory (it is a file)" if run_dir.exists() else "not found"
        raise UserError(f"{run_dir} {problem}; give the run directory that holds run.json and metrics.jsonl")
    info = read_run_info(run_dir)
    if not (run_dir / JOURNAL_NAME).exists():
        raise UserError(f"{run_dir / JOURNAL_NAME} not found; nothing to replay")
    lock = RunLock(run_dir, "replay it")
    try:
        offline = preflight(names, info.wandb_offline)
        if offline != info.wandb_offline:
            info.wandb_offline = offline
            write_run_info(info)
        result = deliver(run_dir, {name: BACKEND_CLASSES[name] for name in names}, replay=True,
                         drain_timeout=timeout, report=Reporter())
    finally:
        lock.release()
    skipped = result["invalid_records"] + result["bad_lines"]
    if skipped:
        print(f"replay: skipped {skipped} journal lines that are not records ({result['bad_lines']} not JSON, "
              f"{result['invalid_records']} not record-shaped); the other {result['records']} were replayed",
              flush=True)
    for name, backend in result["backends"].items():  # the program's result: stdout
        line, _ = summary_line(name, backend)
        print(f"replay: {line} ({backend['sent']} sent now, {backend['skipped']} already there)", flush=True)
    return result
