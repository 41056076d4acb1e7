"""README.md's commands work as printed (issue 11: first run as a newcomer).

The slow test runs every command of every fenced ```bash block, in order, from the root of a
fresh clone of this repository (the working tree as it is, committed or not), whose .venv is
this test's own venv: so nothing is installed, and set-up is told to fail rather than install
(SETUP_VENV_CHECK). Trackio, W&B (offline) and the data of each run stay in a temporary
directory. A command whose trailing comment says ``# needs: …`` (a network, a GPU, a terminal,
a browser) is left out; so is ``make test``, which runs this test (CI runs it), and ``make demo``
runs until its training is under way (its two minutes of training would double this test's time).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, VENV, like_a_terminal_job

README = REPO / "README.md"
NEEDS = re.compile(r"\s#\s*needs:")
COVERED_ELSEWHERE = {"make test": "runs the whole suite, this test included; CI runs it (.ci/run)"}
UNTIL_UNDER_WAY = {"make demo": re.compile(r"^iter\s+\d+/")}  # stopped (Ctrl-C) at its first iteration line
COMMAND_TIMEOUT = 240


def bash_blocks(text: str) -> list[list[str]]:
    """The commands of each fenced ```bash block (indented ones too), continued lines joined."""
    blocks, current, indent = [], None, ""
    for line in text.splitlines():
        fence = re.match(r"^(\s*)```(\w*)\s*$", line)
        if current is None:
            if fence and fence.group(2) == "bash":
                current, indent = [], fence.group(1)
        elif fence:
            blocks.append(current)
            current = None
        else:
            current.append(line[len(indent):] if line.startswith(indent) else line)
    commands_of = []
    for lines in blocks:
        commands, pending = [], ""
        for line in lines:
            pending += line
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            if pending.strip() and not pending.lstrip().startswith("#"):
                commands.append(re.sub(r"\s+", " ", pending.strip()))
            pending = ""
        commands_of.append(commands)
    return commands_of


def without_comment(command: str) -> str:
    return re.split(r"\s#", command, maxsplit=1)[0].strip()


def readme_commands() -> list[str]:
    return [command for block in bash_blocks(README.read_text()) for command in block]


# --- quick checks of the text -------------------------------------------------------------------

def test_the_first_commands_are_make_demo_and_make_test():
    first = bash_blocks(README.read_text())[0]
    assert [without_comment(c) for c in first] == ["make demo", "make test"]


def test_every_command_says_which_python_it_means():
    """No bare python / adamwprune / trackio / wandb: they are .venv/bin/… (or make)."""
    for command in readme_commands():
        for word in re.split(r"\s*(?:&&|\|\||;|\|)\s*", without_comment(command)):
            program = next((w for w in word.split() if "=" not in w), "")
            assert program.startswith((".venv/bin/", "make", "scripts/")), command


def test_the_first_training_example_runs_offline_on_a_cpu():
    first = next(c for c in readme_commands() if "gpt2/train.py" in c and "--help" not in c)
    assert all(flag in first for flag in ("--dataset pydocs", "--model-name gpt2-tiny", "--device cpu",
                                          "--max-iters")), first
    finewebedu = [c for c in readme_commands() if "--dataset finewebedu" in c]
    prepare = next(i for i, c in enumerate(readme_commands()) if c.startswith("make prepare-data"))
    assert finewebedu and all(readme_commands().index(c) > prepare for c in finewebedu)


def test_the_blocks_are_parsed_as_bash_sees_them():
    text = "x\n```bash\na \\\n    b   # c\n# only a comment\n\n```\n  ```bash\n  d\n  ```\n```python\ne\n```\n"
    assert bash_blocks(text) == [["a b # c"], ["d"]]
    assert without_comment("a b # needs: gpu") == "a b" and NEEDS.search("a b # needs: gpu")


# --- the commands, run ----------------------------------------------------------------------------

def fresh_clone(dest: Path) -> Path:
    """A clone of HEAD with the working tree's tracked and untracked (not ignored) files over it."""
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(dest)], check=True, timeout=120)
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "-co", "--exclude-standard"],
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        source, target = REPO / name, dest / name
        if not source.exists() and not source.is_symlink():  # deleted in the working tree
            target.unlink(missing_ok=True)
            continue
        if source.is_dir() and not source.is_symlink():  # a nested repository
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        shutil.copy2(source, target, follow_symlinks=False)
    (dest / ".venv").symlink_to(VENV, target_is_directory=True)
    return dest


def command_env(tmp: Path, clone: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {
        "TRACKER", "GPU_MONITOR", "srctree", "KCONFIG_CONFIG", "MAKEFLAGS", "MFLAGS", "MAKELEVEL",
        "WANDB_API_KEY", "RANK", "LOCAL_RANK", "WORLD_SIZE", "ADAMWPRUNE_DATA_DIR", "VIRTUAL_ENV"}}
    (tmp / "wandb-root").mkdir(exist_ok=True)
    env.update(PYTHONPATH=str(clone),  # the clone's adamwprune, not the one .venv's editable install names
               PYTHONUNBUFFERED="1", SETUP_VENV_CHECK="1", TRACKIO_DIR=str(tmp / "trackio"),
               WANDB_DIR=str(tmp / "wandb-root"), WANDB_MODE="offline", NETRC=str(tmp / "no-netrc"),
               HF_HOME=str(tmp / "hf"), BROWSER="true")
    return env


def run_until(command: str, clone: Path, env: dict, pattern: re.Pattern) -> tuple[bool, str]:
    """Run until a line matches (then Ctrl-C it): (matched or exited 0, output)."""
    proc = subprocess.Popen(["bash", "-c", command], cwd=clone, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=like_a_terminal_job)
    lines, matched, deadline = [], False, time.monotonic() + COMMAND_TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if not ready:
                continue
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if pattern.search(line):
                matched = True
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        lines.append(proc.stdout.read())
    return matched or proc.returncode == 0, "".join(lines)


@pytest.mark.slow
def test_every_readme_command_runs_as_printed(tmp_path):
    check = subprocess.run([sys.executable, str(REPO / "scripts/setup_venv.py"), "--venv", str(VENV),
                            "--check", "dev", "all"], capture_output=True, text=True, timeout=300)
    if check.returncode != 0:  # make in the clone would install into this venv: refuse
        pytest.skip(f"{VENV} is not set up for this pyproject.toml (run make test): {check.stdout.strip()}")
    clone = fresh_clone(tmp_path / "clone")
    env = command_env(tmp_path, clone)
    ran, failures = [], []
    for command in readme_commands():
        plain = without_comment(command)
        if NEEDS.search(command) or plain in COVERED_ELSEWHERE:
            continue
        started = time.monotonic()
        if plain in UNTIL_UNDER_WAY:
            ok, output = run_until(plain, clone, env, UNTIL_UNDER_WAY[plain])
        else:
            try:
                proc = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True,
                                      text=True, timeout=COMMAND_TIMEOUT)
                ok, output = proc.returncode == 0, proc.stdout + proc.stderr
                if not ok:
                    output += f"\n(exit status {proc.returncode})"
            except subprocess.TimeoutExpired as err:
                ok, output = False, f"{err.stdout or ''}{err.stderr or ''}\n(timed out after {COMMAND_TIMEOUT} s)"
        ran.append(f"{time.monotonic() - started:5.1f}s  {plain}")
        if not ok:
            failures.append(f"README command failed: {command}\n" + "\n".join(output.splitlines()[-15:]))
    print("\n".join(ran))
    assert not failures, "\n\n".join(failures)
    assert any("gpt2/train.py" in line for line in ran) and any("make demo" in line for line in ran), ran
