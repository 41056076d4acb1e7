"""Helpers shared by the test files (fixtures live in conftest.py).

Test files import this module as ``helpers``: pytest puts tests/ on sys.path
because tests/ is not a package (rootdir conftest, "prepend" import mode).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import adamwprune
from adamwprune.train.settings import METAS

REPO = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)  # the venv running the tests; the Makefile's $(VENV)
ERROR_PREFIX = "adamwprune.kconfig: error: "
ASSIGNMENT_RE = re.compile(r"^CONFIG_(\w+)=(.*)$")
UNSET_RE = re.compile(r"^# CONFIG_(\w+) is not set$")

# The settings the Kconfig layer may set on the trainer (config <-> trainer contract), from the
# one source of settings: every one with a Kconfig symbol, plus the tracker (from ENABLE_*).
TRAINER_CONTRACT_DESTS = {name for name, info in METAS.items() if info.symbol} | {"tracker"}


def child_env(**extra: str) -> dict[str, str]:
    """adamwprune's child environment, less the make variables and Kconfig paths of the
    shell that runs the tests (they would change what a test sees), plus ``extra``."""
    env = adamwprune.child_env()
    for name in ("TRACKER", "GPU_MONITOR", "srctree", "KCONFIG_CONFIG"):
        env.pop(name, None)
    env.update(extra)
    return env


def like_a_terminal_job() -> None:
    """Popen's preexec_fn for a process a test sends Ctrl-C (SIGINT) to: SIGINT as a terminal's
    foreground job has it. A suite run in the background of a non-interactive shell (nohup, &)
    inherits SIGINT ignored, and a Python that starts with SIGINT ignored never raises
    KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def trackio_rows(project: str, run_name: str, env: dict | None = None) -> list[dict]:
    """A Trackio run's rows, read in a fresh process (trackio reads TRACKIO_DIR at import)."""
    code = ("import json, sys\n"
            "from adamwprune.tracking.readback import trackio_points\n"
            "rows = trackio_points(sys.argv[1], sys.argv[2])\n"
            "print(json.dumps([{k: v for k, v in r.items() if k != 'timestamp'} for r in rows]))")
    proc = subprocess.run([sys.executable, "-c", code, project, run_name], capture_output=True,
                          text=True, env=env or child_env(), timeout=120, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def trackio_run_names(project: str, env: dict | None = None) -> list[str]:
    """The names of a Trackio project's runs (with repeats), read in a fresh process."""
    code = ("import json, sys\n"
            "from trackio.sqlite_storage import SQLiteStorage\n"
            "print(json.dumps(SQLiteStorage.get_runs(sys.argv[1])))")
    proc = subprocess.run([sys.executable, "-c", code, project], capture_output=True, text=True,
                          env=env or child_env(), timeout=120, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def trackio_alerts(project: str, run_name: str, env: dict | None = None) -> list[tuple[str, str]]:
    """(title, level) of a Trackio run's alerts, read in a fresh process like :func:`trackio_rows`."""
    code = ("import json, sys\n"
            "from trackio.sqlite_storage import SQLiteStorage\n"
            "alerts = SQLiteStorage.get_alerts(sys.argv[1], run_name=sys.argv[2])\n"
            "print(json.dumps([[a['title'], a['level']] for a in alerts]))")
    proc = subprocess.run([sys.executable, "-c", code, project, run_name], capture_output=True,
                          text=True, env=env or child_env(), timeout=120, check=True)
    return [tuple(alert) for alert in json.loads(proc.stdout.strip().splitlines()[-1])]


# --- the configuration layer: python -m adamwprune.kconfig and make ------------------------

def kconfig(root: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """``python -m adamwprune.kconfig ARGS`` in root."""
    return subprocess.run([sys.executable, "-m", "adamwprune.kconfig", *args], cwd=root,
                          env=child_env(**env), capture_output=True, text=True, timeout=timeout)


def make_command(root: Path, *args: str) -> list[str]:
    """The real Makefile run in root, with this venv (its install stamp taken as done)."""
    return ["make", "--no-print-directory", "-C", str(root), "-f", str(REPO / "Makefile"),
            f"VENV={VENV}", "-o", str(VENV / ".installed"), *args]


def make(root: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(make_command(root, *args), env=child_env(**env), capture_output=True,
                          text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single error line of a failed command (without the prefix)."""
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(ERROR_PREFIX), proc.stderr
    return lines[0][len(ERROR_PREFIX):]


def make_error(proc: subprocess.CompletedProcess) -> str:
    """Our one error line in make's stderr (make adds its own "*** Error 2" line)."""
    assert proc.returncode != 0, proc.stdout
    ours = [line for line in proc.stderr.splitlines() if not line.startswith("make")]
    assert len(ours) == 1 and ours[0].startswith(ERROR_PREFIX), proc.stderr
    return ours[0][len(ERROR_PREFIX):]


def read_assignments(path: Path) -> dict[str, str]:
    """NAME -> raw value of a .config/defconfig ("n" for "# CONFIG_X is not set")."""
    values = {}
    for line in path.read_text().splitlines():
        if match := ASSIGNMENT_RE.match(line):
            values[match.group(1)] = match.group(2)
        elif match := UNSET_RE.match(line):
            values[match.group(1)] = "n"
    return values


def defconfig(root: Path, name: str, *variables: str) -> subprocess.CompletedProcess:
    """``make defconfig`` as make calls it (``--set VAR=VALUE`` per command-line variable)."""
    args = ["defconfig", name] + [item for var in variables for item in ("--set", var)]
    proc = kconfig(root, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


def write_defconfig(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


TINY_GPT2 = {"model_name": "gpt2-tiny", "dataset": "pydocs", "block_size": 32, "batch_size": 4, "eval_samples": 1,
             "log_interval": 1, "warmup_iters": 0, "learning_rate": 2e-3, "min_lr": 2e-4, "device": "cpu",
             "eval_batch_size": 4}


def train_tiny_gpt2(run_dir: Path, resume: bool = False, **values) -> list[dict]:
    """Train gpt2-tiny on pydocs in this process through the real loop (tracker "none": the journal
    only), resuming from run_dir's ckpt_last.pt when asked; returns the journal's metric records."""
    from adamwprune.tracking import ExperimentTracker
    from adamwprune.train import checkpoint as ckpt
    from adamwprune.train.distributed import DistContext
    from adamwprune.train.gpt2 import FAMILY
    from adamwprune.train.loop import train
    from adamwprune.train.settings import TrainSettings

    settings = TrainSettings(**{**TINY_GPT2, **values})
    adapter = FAMILY.make_adapter(settings)
    tracker = ExperimentTracker("none", project="p", run_name=run_dir.name, run_dir=run_dir, resume=resume)
    state = (ckpt.check_resume_state(ckpt.load(run_dir / ckpt.LAST_NAME), adapter.describe(), settings)
             if resume else None)
    train(adapter, settings, ctx=DistContext(device="cpu"), tracker=tracker, run_dir=run_dir,
          run_info={"project": "p", "run_name": run_dir.name}, resume_state=state, progress=lambda line: None)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if "metrics" in record]


# --- DDP without torchrun: the real loop in N gloo processes -------------------------------

def _gloo_rank(rank: int, world_size: int, workdir: str, target, args: tuple) -> None:
    import torch
    import torch.distributed as dist

    from adamwprune.train.distributed import DistContext

    init_file = Path(workdir) / f"gloo-init-{world_size}"
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        result = target(DistContext(rank=rank, local_rank=rank, world_size=world_size, device="cpu"), *args)
        torch.save(result, Path(workdir) / f"gloo-result-{world_size}-{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_gloo_ranks(world_size: int, target, *args, workdir: Path) -> list:
    """``target(ctx, *args)`` in ``world_size`` spawned processes joined in one gloo group (CPU DDP,
    as torchrun would set it up); returns each rank's result, in rank order. ``target`` must be a
    module-level function (it is pickled into the children) and its result picklable."""
    import torch
    import torch.multiprocessing as mp

    (Path(workdir) / f"gloo-init-{world_size}").unlink(missing_ok=True)
    mp.spawn(_gloo_rank, args=(world_size, str(workdir), target, args), nprocs=world_size, join=True)
    return [torch.load(Path(workdir) / f"gloo-result-{world_size}-{rank}.pt", weights_only=False)
            for rank in range(world_size)]
