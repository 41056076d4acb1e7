#!/usr/bin/env python3
"""A real SLURM cluster on this one machine, for trying and testing EXECUTOR=slurm.

    python3 scripts/local_slurm.py start /tmp/slurm    # prints: export SLURM_CONF=/tmp/slurm/slurm.conf
    python3 scripts/local_slurm.py stop /tmp/slurm     # stops every daemon it started, by PID

It starts Debian's daemons by hand (no systemd), everything under one folder: munged (its own key
and socket), MariaDB on 127.0.0.1 for slurmdbd (without accounting ``sacct`` fails and submitit
sees every job as UNKNOWN), slurmctld, and two slurmd, "n1" and "n2", on their own ports, so a
job can span two nodes. Needs root and ``apt-get install munge slurmctld slurmd slurm-client
slurmdbd mariadb-server``. Ports are picked free at start; node addresses are 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

NODES = ("n1", "n2")
PARTITION = "debug"
HELD = "hold"  # a partition that is down: its jobs stay pending (for trying a pending limit)
CLUSTER = "local"
DAEMONS = ("slurmd-n2", "slurmd-n1", "slurmctld", "slurmdbd", "mariadbd", "munged")  # stop order
REQUIRED = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")


class SetupError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def missing_programs() -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [name for name in REQUIRED if not shutil.which(name, path=path)]


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if done.returncode:
        why = (done.stderr or done.stdout).strip()[-400:]
        raise SetupError(f"{' '.join(argv[:2])} failed ({done.returncode}): {why}")
    return done


def _wait_for(base: Path, daemon: str, ready, seconds: float = 60) -> None:
    """Until ``ready()``; fails at once, with the end of its log, when the daemon has exited."""
    deadline = time.monotonic() + seconds
    pid = int((base / "pids" / daemon).read_text())
    while time.monotonic() < deadline:
        if ready():
            return
        if not _alive(pid):
            break
        time.sleep(0.2)
    log = base / "log" / f"{daemon}.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-2:] if log.exists() else []
    why = "exited" if not _alive(pid) else f"did not come up in {seconds:.0f} s"
    raise SetupError(f"{daemon} {why}" + (f": {' | '.join(tail)}" if tail else ""))


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _daemon(base: Path, name: str, argv: list[str], user: str | None = None) -> None:
    """Start a daemon in the foreground of its own session; its PID goes to <base>/pids/<name>."""
    log = open(base / "log" / f"{name}.log", "ab")
    prefix = ["runuser", "-u", user, "--"] if user else []
    process = subprocess.Popen(prefix + argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    (base / "pids" / name).write_text(str(process.pid))


def slurm_conf(base: Path, ports: dict[str, int]) -> str:
    nodes = "\n".join(f"NodeName={name} NodeHostname={socket.gethostname()} NodeAddr=127.0.0.1 "
                      f"Port={ports[name]} CPUs={os.cpu_count() or 1} RealMemory=1024 State=UNKNOWN"
                      for name in NODES)
    return f"""\
ClusterName={CLUSTER}
SlurmctldHost={socket.gethostname()}(127.0.0.1)
SlurmctldPort={ports['slurmctld']}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={base}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool/%n
SlurmctldPidFile={base}/run/slurmctld.pid
SlurmdPidFile={base}/run/slurmd-%n.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
SchedulerType=sched/backfill
# a pass every 2 s (SLURM's defaults: 60 s for the main loop, 30 s for backfill), so a sandbox's
# seconds-long jobs held back by an array's %N limit do not wait most of a minute to start
SchedulerParameters=sched_interval=2,bf_interval=2
MinJobAge=86400
KillWait=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports['slurmdbd']}
AccountingStoragePass={base}/munge/munge.socket
JobAcctGatherType=jobacct_gather/none
{nodes}
PartitionName={PARTITION} Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
PartitionName={HELD} Nodes={','.join(NODES)} MaxTime=INFINITE State=DOWN
"""


def start(base: Path) -> dict[str, str]:
    """Bring the cluster up under ``base``; returns the environment its clients need."""
    if os.geteuid() != 0:
        raise SetupError("a local SLURM needs root (its daemons run as root here)")
    missing = missing_programs()
    if missing:
        raise SetupError(f"missing {', '.join(missing)}: apt-get install munge slurmctld slurmd slurm-client "
                         "slurmdbd mariadb-server")
    if (base / "pids").is_dir() and any((base / "pids").iterdir()):
        raise SetupError(f"{base} already holds a cluster: stop it first (local_slurm.py stop {base})")
    for sub in ("munge", "db", "state", "spool", "run", "log", "pids"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    ports = {name: free_port() for name in ("slurmctld", "slurmdbd", "mariadb", *NODES)}

    munge = base / "munge"
    shutil.chown(munge, "munge", "munge")
    key = munge / "munge.key"
    if not key.exists():
        _run(["mungekey", "--create", "--keyfile", str(key)])
    shutil.chown(key, "munge", "munge")
    key.chmod(0o600)
    _daemon(base, "munged", ["munged", "--foreground", f"--socket={munge}/munge.socket",
                             f"--key-file={key}", f"--pid-file={munge}/munged.pid",
                             f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed"], user="munge")

    datadir = base / "db"
    if not (datadir / "mysql").is_dir():
        _run(["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
              "--auth-root-authentication-method=normal"])
    sock = base / "run" / "mariadb.sock"
    _daemon(base, "mariadbd", ["mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
                               f"--port={ports['mariadb']}", "--bind-address=127.0.0.1", "--user=root",
                               f"--pid-file={base}/run/mariadbd.pid", "--skip-log-error"])
    _wait_for(base, "munged", (munge / "munge.socket").exists)
    _wait_for(base, "mariadbd", lambda: _port_open(ports["mariadb"]))
    _run(["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "-e",
          "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';"
          "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"])

    dbd_conf = base / "slurmdbd.conf"
    dbd_conf.write_text(f"AuthType=auth/munge\nAuthInfo=socket={munge}/munge.socket\nDbdHost=localhost\n"
                        f"DbdAddr=127.0.0.1\nDbdPort={ports['slurmdbd']}\nSlurmUser=root\n"
                        f"PidFile={base}/run/slurmdbd.pid\n"
                        f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
                        f"StoragePort={ports['mariadb']}\nStorageUser=slurm\nStoragePass=slurm\n"
                        "StorageLoc=slurm_acct_db\n")
    dbd_conf.chmod(0o600)
    conf = base / "slurm.conf"
    conf.write_text(slurm_conf(base, ports))
    env = {"SLURM_CONF": str(conf)}
    os.environ.update(env)

    _daemon(base, "slurmdbd", ["slurmdbd", "-D"])  # reads slurmdbd.conf beside $SLURM_CONF
    _wait_for(base, "slurmdbd", lambda: _port_open(ports["slurmdbd"]))
    _daemon(base, "slurmctld", ["slurmctld", "-D", "-i", "-f", str(conf)])
    _wait_for(base, "slurmctld", lambda: _port_open(ports["slurmctld"]))
    for node in NODES:
        _daemon(base, f"slurmd-{node}", ["slurmd", "-D", "-N", node, "-f", str(conf)])
    for node in NODES:
        _wait_for(base, f"slurmd-{node}", _nodes_idle)
    return env


def _nodes_idle() -> bool:
    done = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True)
    states = dict(line.split() for line in done.stdout.splitlines() if line.strip())
    return all(states.get(node, "").startswith(("idle", "mix", "alloc")) for node in NODES)


def cancel_jobs(base: Path, seconds: float = 45) -> None:
    """Cancel every job still queued or running and wait for them to end: a job step outlives its
    slurmd (slurmstepd and srun would wait for a controller that is gone)."""
    env = {**os.environ, "SLURM_CONF": str(base / "slurm.conf")}
    listing = subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True, env=env, timeout=60)
    jobs = listing.stdout.split() if listing.returncode == 0 else []
    if not jobs:
        return
    subprocess.run(["scancel", *jobs], capture_output=True, env=env, timeout=60)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True, env=env, timeout=60)
        if left.returncode or not left.stdout.split():
            return
        time.sleep(0.5)


def stop(base: Path) -> list[str]:
    """Cancel the jobs left, then SIGTERM each daemon this folder started (then SIGKILL after 10 s);
    returns what was stopped."""
    if (base / "pids" / "slurmctld").exists():
        cancel_jobs(base)
    stopped = []
    for name in DAEMONS:
        pid_file = base / "pids" / name
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
            stopped.append(name)
        except ProcessLookupError:
            pass
        pid_file.unlink()
    return stopped


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    base = args.folder.resolve()
    try:
        if args.action == "start":
            began = time.monotonic()
            env = start(base)
            print(f"local SLURM up in {time.monotonic() - began:.1f} s (nodes {', '.join(NODES)}, "
                  f"partition {PARTITION}); logs in {base}/log", file=sys.stderr)
            print(" ".join(f"export {k}={v}" for k, v in env.items()))
        else:
            stopped = stop(base)
            print(f"stopped {', '.join(stopped) or 'nothing'}", file=sys.stderr)
    except SetupError as err:
        print(f"local_slurm: error: {err}", file=sys.stderr)
        if args.action == "start":
            stop(base)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
