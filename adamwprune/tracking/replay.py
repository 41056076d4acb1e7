"""Re-send a run journal to trackers (``adamwprune replay``).

For a run whose delivery process died too, or a run tracked locally (or with
``--tracker none``) that should go to W&B later. It is the delivery code run by
hand; records a backend can tell it already holds (Trackio) are skipped.
"""

from __future__ import annotations

from pathlib import Path

from adamwprune.errors import UserError
from adamwprune.tracking.backends import BACKEND_CLASSES
from adamwprune.tracking.delivery import Reporter, deliver
from adamwprune.tracking.journal import JOURNAL_NAME
from adamwprune.tracking.selection import parse_trackers, require_installed
from adamwprune.tracking.tracker import preflight, summary_line
from adamwprune.tracking.runinfo import read_run_info, write_run_info


def replay(run_dir: Path, trackers: str, timeout: float = 300.0) -> dict:
    """Deliver ``run_dir``'s journal to ``trackers``; prints one result line per backend.

    Failures are reported through the ``adamwprune.tracking`` logger as they happen.
    """
    names = parse_trackers(trackers)
    if not names:
        raise UserError("replay needs a tracker: --tracker trackio, wandb or both")
    require_installed(names)  # before reading anything: the install command, not a traceback
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if not (run_dir / JOURNAL_NAME).exists():
        raise UserError(f"{run_dir / JOURNAL_NAME} not found; nothing to replay")
    offline = preflight(names, info.wandb_offline)
    if offline != info.wandb_offline:
        info.wandb_offline = offline
        write_run_info(info)
    result = deliver(run_dir, {name: BACKEND_CLASSES[name] for name in names}, replay=True,
                     drain_timeout=timeout, report=Reporter())
    for name, backend in result["backends"].items():  # the program's result: stdout
        line, _ = summary_line(name, backend)
        print(f"replay: {line} ({backend['sent']} sent now, {backend['skipped']} already there)", flush=True)
    return result
