"""``python -m adamwprune multinode``: ONE GPT-2 run over N nodes of a SLURM cluster.

Submits scripts/gpt2_multinode.sbatch (one torchrun per node, joined by a c10d rendezvous; see
docs/slurm-multinode.md) from the current directory, where the trainer reads config.py, and with
``--wait`` follows the job in SLURM's accounting until it ends.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from adamwprune import child_env
from adamwprune.errors import UserError
from adamwprune.scheduler import ACTIVE, POLL_S, job_states, partitions, slurm_output

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "scripts" / "gpt2_multinode.sbatch"
TRAINER = ROOT / "gpt2" / "train.py"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, required=True, help="nodes of the run (one torchrun each)")
    parser.add_argument("--gpus-per-node", type=int, default=1,
                        help="trainer processes per node, and GPUs asked for per node unless the device "
                             "is cpu (default 1)")
    parser.add_argument("--partition", default="", help="SLURM partition (default: the cluster's default)")
    parser.add_argument("--time", type=int, help="time limit in minutes (default: the partition's)")
    parser.add_argument("--wait", action="store_true",
                        help="wait for the job; exit 0 only when sacct says COMPLETED")
    parser.add_argument("trainer_flags", nargs="*", metavar="-- TRAINER_FLAGS",
                        help="flags for gpt2/train.py, after a --: they override config.py")


def check_scheduler(partition: str, nodes: int, wait: bool) -> None:
    """SLURM here and answering, the partition and its size (sbatch takes a job wanting more nodes than
    the partition has, and it pends for ever), and accounting when the job is to be waited for (its end
    state is read from sacct)."""
    partition, sizes = partitions("multinode", ("sbatch", "sinfo", "sacct", "scontrol"),
                                  "run it on a login node of the cluster",
                                  "--wait reads the job's end from sacct" if wait else None, partition)
    if partition and nodes > sizes[partition]:
        raise UserError(f"--nodes {nodes}: partition {partition} has {sizes[partition]} nodes (sinfo)")


def run_device(trainer_flags: list[str], root: Path) -> str:
    """The device the run asks for: --device among the flags, else config's DEVICE, else auto."""
    for i, flag in enumerate(trainer_flags):
        if flag.startswith("--device="):
            return flag.split("=", 1)[1]
        if flag == "--device" and i + 1 < len(trainer_flags):
            return trainer_flags[i + 1]
    from adamwprune.kconfig import load_config

    cfg = load_config(root)
    return getattr(cfg, "DEVICE", "auto") if cfg else "auto"


def sbatch_command(args: argparse.Namespace, root: Path) -> list[str]:
    """sbatch for the template: the allocation from the options, the trainer's flags after it."""
    command = ["sbatch", "--parsable", f"--nodes={args.nodes}", "--ntasks-per-node=1", f"--chdir={root}",
               "--export=ALL"]  # TRACKIO_DIR, WANDB_*, PYTHONPATH and the settings below reach every node
    if args.partition:
        command.append(f"--partition={args.partition}")
    if args.time:
        command.append(f"--time={args.time}")
    if run_device(args.trainer_flags, root) != "cpu":
        command.append(f"--gpus-per-node={args.gpus_per_node}")
    return command + [str(TEMPLATE), *args.trainer_flags]


def submit(args: argparse.Namespace, root: Path) -> tuple[str, str]:
    """Submit the job; returns its id and its output file."""
    env = {**child_env(), "PYTHON": sys.executable, "TRAINER": str(TRAINER),
           "GPUS_PER_NODE": str(args.gpus_per_node)}
    done = subprocess.run(sbatch_command(args, root), capture_output=True, text=True, env=env, timeout=120)
    if done.returncode:
        why = "; ".join(done.stderr.strip().splitlines()) or f"exit status {done.returncode}"
        raise UserError(f"sbatch refused the job, nothing was submitted: {why}; check --nodes, --partition, "
                        "--time and --gpus-per-node (asked for unless the device is cpu) against sinfo")
    job_id = done.stdout.strip().split(";")[0]
    details = slurm_output(["scontrol", "show", "job", "-o", job_id], f"cannot read job {job_id} back")
    output = next((field.split("=", 1)[1] for field in details.split() if field.startswith("StdOut=")), "?")
    return job_id, output


def job_end(job_id: str) -> dict[str, str]:
    """sacct's record of the job (state, nodes, elapsed_s, exit_code) once it has ended."""
    while True:
        info = job_states([job_id], who="multinode").get(job_id)
        if info is not None and info["state"] not in ACTIVE:
            return info
        time.sleep(POLL_S)  # pending, running, or not yet in the accounting


def run(args: argparse.Namespace) -> int:
    if args.nodes < 1 or args.gpus_per_node < 1:
        raise UserError("--nodes and --gpus-per-node must be at least 1")
    root = Path.cwd()
    check_scheduler(args.partition, args.nodes, args.wait)
    job_id, output = submit(args, root)
    print(f"submitted SLURM job {job_id}: one GPT-2 run over {args.nodes} nodes x {args.gpus_per_node} "
          f"processes; output: {output}", flush=True)
    if not args.wait:
        return 0
    try:
        end = job_end(job_id)
    except KeyboardInterrupt:
        print(f"stopped waiting; job {job_id} keeps running (scancel {job_id} stops it)", file=sys.stderr)
        raise
    print(f"job {job_id} {end['state']} on {end['nodes']} after {end['elapsed_s']} s (exit code {end['exit_code']}); "
          f"output: {output}", flush=True)
    return 0 if end["state"] == "COMPLETED" else 1
