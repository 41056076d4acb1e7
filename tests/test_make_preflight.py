"""Issue #9: with NPROC > 1, a mistake the trainer can see before it starts (settings, data,
device, trackers) is one line from one process, not one per torchrun rank plus torchrun's
traceback. ``make`` checks with ``<model>/train.py --check-only`` before it starts torchrun."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from adamwprune.data.tokens import byte_encoder, write_documents
from adamwprune.train.cli import main
from adamwprune.train.gpt2 import FAMILY
from helpers import REPO, defconfig, kconfig, make, write_defconfig

TRAINER_ERROR = "gpt2/train.py: error: "
NO_CUDA = "device 'cuda' was requested but no CUDA GPU is available"
NOT_PREPARED = "dataset 'finewebedu' is not prepared"

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the run would start")


def single_error(proc: subprocess.CompletedProcess) -> str:
    """The one error line of a run that failed before torchrun: said once, nothing else on stderr."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert "torch.distributed.run" not in proc.stdout, "torchrun was started"
    ours = [line for line in proc.stderr.splitlines() if not line.startswith("make")]  # make's "*** Error 2"
    assert len(ours) == 1 and ours[0].startswith(TRAINER_ERROR), proc.stderr
    assert [line for line in proc.stderr.splitlines() if "error:" in line] == ours
    assert ours[0] not in proc.stdout
    return ours[0][len(TRAINER_ERROR):]


def small_ddp_defconfig(tmp_path: Path, *lines: str) -> Path:
    """gpt2-pydocs-cpu (offline data, seconds to check) with two processes and ``lines`` instead
    of the base's lines for the same symbols."""
    lines = ("CONFIG_NPROC=2", *lines)
    replaced = {line.split("=", 1)[0] for line in lines}
    base = (REPO / "gpt2" / "defconfigs" / "gpt2-pydocs-cpu").read_text().splitlines()
    kept = [line for line in base if line.split("=", 1)[0] not in replaced]
    return write_defconfig(tmp_path / "ddp", *kept, *lines)


def fake_finewebedu(data_dir: Path) -> None:
    """A tiny byte-level finewebedu that opens and fills 1024-token blocks (never trained on)."""
    write_documents(data_dir / "finewebedu", dataset="finewebedu", encoder=byte_encoder(),
                    documents=[f"document {i} " * 300 for i in range(8)], val_every=2, shard_tokens=None)


def test_issue_9_a10gx4_defconfig_on_a_cpu_machine_fails_with_one_line(tmp_path, tracking_env):
    """The issue's commands: the first mistake (here the unprepared dataset) is said once."""
    env = {"ADAMWPRUNE_DATA_DIR": str(tmp_path / "data")}
    setup = make(tmp_path, "defconfig", "DEFCONFIG=gpt2-finewebedu-a10gx4", "TRACKER=both", **env)
    assert setup.returncode == 0, setup.stderr
    proc = make(tmp_path, timeout=120, **env)
    assert proc.returncode == 2 and "Error 2" in proc.stderr  # make passes on the trainer's status
    message = single_error(proc)
    assert NOT_PREPARED in message, message  # the first mistake: the data (CUDA is checked after it)
    assert "--check-only" in proc.stdout


@pytest.mark.slow
@needs_no_cuda
def test_issue_9_a10gx4_with_its_data_prepared_says_no_cuda_once(tmp_path, tracking_env):
    fake_finewebedu(tmp_path / "data")
    env = {"ADAMWPRUNE_DATA_DIR": str(tmp_path / "data")}
    defconfig(tmp_path, "gpt2-finewebedu-a10gx4", "TRACKER=both")
    message = single_error(kconfig(tmp_path, "run", timeout=120, **env))
    assert message.startswith(NO_CUDA), message


@pytest.mark.slow
@needs_no_cuda
def test_two_processes_asking_for_cuda_on_a_cpu_machine_say_so_once(tmp_path, tracking_env):
    defconfig(tmp_path, str(small_ddp_defconfig(tmp_path, 'CONFIG_DEVICE="cuda"')))
    message = single_error(kconfig(tmp_path, "run", timeout=120))
    assert message == f"{NO_CUDA}; use --device cpu or --device auto"


@pytest.mark.slow
def test_two_processes_with_wandb_not_logged_in_say_so_once(tmp_path, tracking_env, monkeypatch):
    """A tracker mistake (found on rank 0 only, after the process group is up) is checked first too."""
    monkeypatch.delenv("WANDB_MODE")
    defconfig(tmp_path, str(small_ddp_defconfig(tmp_path)), "TRACKER=wandb")
    message = single_error(kconfig(tmp_path, "run", timeout=120))
    assert message.startswith("W&B is online but not logged in"), message


def test_check_only_passes_without_creating_a_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset", "pydocs", "--device", "cpu", "--output-dir", str(tmp_path / "runs"), "--check-only"]
    assert main(FAMILY, argv) == 0
    assert not (tmp_path / "runs").exists() and capsys.readouterr().out == ""
