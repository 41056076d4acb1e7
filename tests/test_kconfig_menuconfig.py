"""``make menuconfig``: kconfiglib's curses menuconfig, driven through a pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time
from pathlib import Path

from adamwprune.kconfig import load_config
from adamwprune.kconfig.tree import load_tree, resolve_project, set_symbol
from adamwprune.tracking.naming import project_name
from helpers import child_env, defconfig, read_assignments

ANSI_RE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][AB0]|\x1b[=>]")


class Terminal:
    """A child process on a pty of 40x120 with TERM=xterm; collects what it draws."""

    def __init__(self, argv: list[str], cwd: Path):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
                os.chdir(cwd)
                os.execve(argv[0], argv, child_env(TERM="xterm"))
            finally:
                os._exit(127)
        self.screen = b""

    def text(self) -> str:
        return ANSI_RE.sub(b" ", self.screen).decode(errors="replace")

    def wait_for(self, needle: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while needle not in self.text():
            assert time.monotonic() < end, f"{needle!r} not shown; screen: {self.text()[-1500:]}"
            if not self._read(0.2):
                assert needle in self.text(), f"exited before showing {needle!r}: {self.text()[-1500:]}"

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.screen += chunk
        return bool(chunk)

    def send(self, keys: bytes) -> None:
        self.screen = b""  # wait_for looks at what is drawn from now on
        os.write(self.fd, keys)

    def exit_code(self, timeout: float = 30) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._read(0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        raise AssertionError("menuconfig did not exit")


def test_menuconfig_shows_experiment_tracking_and_saves_a_change(tmp_path):
    defconfig(tmp_path, "gpt2-pydocs-cpu")
    assert load_config(tmp_path).ENABLE_TRACKIO is False
    term = Terminal([sys.executable, "-m", "adamwprune.kconfig", "menuconfig"], tmp_path)
    term.wait_for("Experiment Tracking  --->")
    term.send(b"jjjj\r")  # Model, Training, Optimizer, Pruning, then into Experiment Tracking
    term.wait_for("Enable Trackio tracking")
    term.send(b" ")  # the first entry: toggle Trackio on
    term.send(b"Q")
    term.wait_for("Save configuration?")
    term.send(b"y")
    assert term.exit_code() == 0
    assert "Configuration saved to" in term.text()
    assert read_assignments(tmp_path / ".config")["ENABLE_TRACKIO"] == "y"
    assert "ENABLE_TRACKIO=True," in (tmp_path / "config.py").read_text()  # regenerated at exit
    assert load_config(tmp_path).ENABLE_TRACKIO is True


def test_menuconfig_refuses_a_broken_dotconfig(tmp_path):
    (tmp_path / ".config").write_text("CONFIG_NO_SUCH_THING=y\n")
    term = Terminal([sys.executable, "-m", "adamwprune.kconfig", "menuconfig"], tmp_path)
    assert term.exit_code() == 2
    assert "CONFIG_NO_SUCH_THING is not a symbol defined by Kconfig" in term.text()


def test_auto_project_name_follows_a_model_change_but_a_chosen_name_stays(tmp_path):
    defconfig(tmp_path, "gpt2-pydocs-cpu")
    kconf = load_tree(tmp_path, tmp_path / ".config")
    set_symbol(kconf, "MODEL_LENET5", "y")  # what picking LeNet-5 in menuconfig does
    assert resolve_project(kconf, tmp_path) == project_name("lenet5", directory=tmp_path.name)
    set_symbol(kconf, "TRACKER_PROJECT", "mine")
    set_symbol(kconf, "MODEL_RESNET50", "y")
    assert resolve_project(kconf, tmp_path) == "mine"
