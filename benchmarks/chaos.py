"""Chaos: kill -9 the trainer, its delivery process or both at a random moment, resume, and
count from Trackio's and W&B's own storage what was lost or duplicated, and whether the printed
summary matched the storage.

    python benchmarks/chaos.py --trials 50 --seed 1 --write docs/chaos.md      (make chaos N=50)
    python benchmarks/chaos.py --trials 3 --json                                 (the test suite's short run)

A trial is one tracked run of ``--steps`` records with both backends (W&B offline), logged by a
process that stands in for a trainer that checkpoints every step: a resumed session continues at
the step after the last one journaled, as ``--resume`` does. Seeded by ``--seed`` and the trial's
number: the moment (seconds after the first record); the victim takes turns (trainer, delivery,
both), so any three trials cover all three.
- delivery killed: the trainer goes on; its tracker must notice and start delivery again;
- trainer killed (with or without its delivery process): a second session resumes the run and
  finishes it; its delivery catches up on whatever the first session left undelivered.
Then, per backend: lost = journaled steps the storage lacks; duplicated = rows beyond one per
step; summary matched = the final summary's confirmed and missing counts equal what the storage
holds and lacks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VICTIMS = ("trainer", "delivery", "both")
PROJECT = "chaos"
MARKERS = ("<!-- chaos:begin (benchmarks/chaos.py writes this part) -->", "<!-- chaos:end -->")

SESSION = """
import json, sys, time
from adamwprune.tracking import ExperimentTracker
run_dir, steps, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume"
tracker = ExperimentTracker("both", project="chaos", run_name="r", run_dir=run_dir, resume=resume,
                            config={"purpose": "chaos"})
print("delivery", tracker._delivery.pid, flush=True)
for step in range(tracker.last_step + 1, steps):
    tracker.log({"loss": 4.0 / (step + 1), "learning_rate": 1e-3, "tokens": step * 1024}, step=step)
    if step == 0:
        print("logging", flush=True)
    time.sleep(0.005)
print("result", json.dumps(tracker.finish()), flush=True)
"""


def env_for(workdir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "RANK")}
    env.update(TRACKIO_DIR=str(workdir / "trackio"), WANDB_DIR=str(workdir / "wandb-root"),
               WANDB_MODE="offline", NETRC=str(workdir / "no-netrc"), PYTHONPATH=str(ROOT),
               WANDB_SILENT="true")
    return env


def start_session(workdir: Path, run_dir: Path, steps: int, resume: bool) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", SESSION, str(run_dir), str(steps),
                             "resume" if resume else "new"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env_for(workdir), cwd=workdir)
    first = proc.stdout.readline().split()
    if first[:1] != ["delivery"]:
        proc.kill()
        raise RuntimeError(f"session did not start: {first}")
    return proc, int(first[1])


def finish_session(proc: subprocess.Popen, timeout: float = 300) -> dict | None:
    out, _ = proc.communicate(timeout=timeout)
    for line in out.splitlines():
        if line.startswith("result "):
            return json.loads(line[len("result "):])
    return None


def stored_steps(workdir: Path, run_dir: Path) -> dict[str, list[int]]:
    """Every step each backend's own storage holds for the run (with repeats), read in a fresh
    process (trackio reads TRACKIO_DIR at import)."""
    code = ("import json, sys\n"
            "from pathlib import Path\n"
            "from adamwprune.tracking.readback import trackio_points, wandb_history\n"
            "from adamwprune.tracking.runinfo import read_run_info\n"
            "run_dir, root = Path(sys.argv[1]), Path(sys.argv[2])\n"
            "wandb_id = read_run_info(run_dir).wandb_id\n"
            "wandb = [row['_step'] for d in sorted(root.glob(f'*run-*-{wandb_id}')) if any(d.glob('*.wandb'))\n"
            "         for row in wandb_history(d)[0]]\n"
            "print(json.dumps({'trackio': [r['step'] for r in trackio_points('chaos', 'r')], 'wandb': wandb}))")
    proc = subprocess.run([sys.executable, "-c", code, str(run_dir), str(workdir / "wandb-root" / "wandb")],
                          capture_output=True, text=True, env=env_for(workdir), timeout=300, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def trial(number: int, seed: int, steps: int) -> dict:
    rng = random.Random(seed * 100_003 + number)
    victim, moment = VICTIMS[(number - 1) % len(VICTIMS)], round(rng.uniform(0.1, 3.0), 2)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        workdir = Path(tmp)
        (workdir / "wandb-root").mkdir()
        run_dir = workdir / "r"
        started = time.monotonic()
        proc, delivery_pid = start_session(workdir, run_dir, steps, resume=False)
        proc.stdout.readline()  # "logging": the first record is journaled
        time.sleep(moment)
        killed = []
        for pid, who in ((delivery_pid, "delivery"), (proc.pid, "trainer")):
            if victim in (who, "both"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # it had already ended: the row's "killed" says so
                    continue
                killed.append(who)
        result = finish_session(proc)
        sessions = 1
        if victim != "delivery" or result is None:  # the trainer is gone: resume the run
            proc, _ = start_session(workdir, run_dir, steps, resume=True)
            result, sessions = finish_session(proc), 2
        journaled = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                     if '"step"' in line]
        stored = stored_steps(workdir, run_dir)
        row = {"trial": number, "victim": victim, "killed": killed, "moment_s": moment, "sessions": sessions,
               "journaled": len(journaled), "journal_whole": journaled == list(range(steps)),
               "seconds": round(time.monotonic() - started, 1)}
        for name, held in stored.items():
            summary = (result or {}).get("backends", {}).get(name, {})
            present = set(held) & set(journaled)
            lost = len(set(journaled) - present)
            row[name] = {"stored": len(held), "lost": lost, "duplicated": len(held) - len(set(held)),
                         "confirmed": summary.get("confirmed"),
                         "matched": (summary.get("confirmed") == len(present) and summary.get("missing") == lost
                                     and summary.get("records") == len(journaled))}
        return row


def table(rows: list[dict], args: argparse.Namespace) -> list[str]:
    lines = [f"Command: `python benchmarks/chaos.py --trials {args.trials} --seed {args.seed} --steps {args.steps}"
             f"{' --write ' + str(args.write) if args.write else ''}` ({sum(r['seconds'] for r in rows) / 60:.0f} min)",
             "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
             f"{platform.python_version()}, {platform.system()}.",
             "",
             "| victim | trials | sessions | Trackio lost | Trackio duplicated | W&B lost | W&B duplicated | summary matched |",
             "|---|---|---|---|---|---|---|---|"]
    for victim in VICTIMS:
        group = [r for r in rows if r["victim"] == victim]
        if not group:
            continue
        matched = sum(r["trackio"]["matched"] and r["wandb"]["matched"] for r in group)
        lines.append(f"| {victim} | {len(group)} | {sum(r['sessions'] for r in group)} | "
                     f"{sum(r['trackio']['lost'] for r in group)} | {sum(r['trackio']['duplicated'] for r in group)} | "
                     f"{sum(r['wandb']['lost'] for r in group)} | {sum(r['wandb']['duplicated'] for r in group)} | "
                     f"{matched} of {len(group)} |")
    total = sum(r["trackio"]["matched"] and r["wandb"]["matched"] for r in rows)
    lines += ["", f"All {len(rows)} trials: {sum(r['trackio']['lost'] + r['wandb']['lost'] for r in rows)} records "
              f"lost, {sum(r['trackio']['duplicated'] + r['wandb']['duplicated'] for r in rows)} duplicated, "
              f"summary matched the storage in {total}; the planned process was still running and killed in "
              f"{sum(len(r['killed']) == (2 if r['victim'] == 'both' else 1) for r in rows)}; every journal whole (steps 0-{args.steps - 1}, once "
              f"each) in {sum(r['journal_whole'] for r in rows)}. Moments (s after the first record), by trial: "
              + ", ".join(f"{r['trial']}:{r['victim'][0]}@{r['moment_s']}" for r in rows) + "."]
    return lines


def write(path: Path, lines: list[str]) -> None:
    text = path.read_text()
    begin, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
    path.write_text(text[:begin] + "\n" + "\n".join(lines) + "\n" + text[end:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=500, help="records per run (5 ms apart)")
    parser.add_argument("--json", action="store_true", help="one JSON line per trial instead of the table")
    parser.add_argument("--write", type=Path, help="replace the table between the markers of this file")
    args = parser.parse_args()
    if args.trials < 1 or args.steps < 1:
        parser.error("--trials and --steps must be at least 1")
    rows = []
    for number in range(1, args.trials + 1):
        row = trial(number, args.seed, args.steps)
        rows.append(row)
        print(json.dumps(row) if args.json else
              f"trial {number}: {row['victim']} at {row['moment_s']} s: trackio lost {row['trackio']['lost']} "
              f"dup {row['trackio']['duplicated']}, wandb lost {row['wandb']['lost']} dup "
              f"{row['wandb']['duplicated']}, summary matched "
              f"{row['trackio']['matched'] and row['wandb']['matched']} ({row['seconds']} s)", flush=True)
    if not args.json:
        print("\n".join(table(rows, args)))
    if args.write:
        write(args.write, table(rows, args))
    bad = [r for r in rows if r["trackio"]["lost"] or r["wandb"]["lost"] or r["trackio"]["duplicated"]
           or r["wandb"]["duplicated"] or not (r["trackio"]["matched"] and r["wandb"]["matched"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
