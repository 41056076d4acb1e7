"""Project and run names (spec: "Smart Project Names", "Project Name Generation").

project name = ``{model}-{checksum}``, where checksum is the first 5 hex digits of
``md5("{short hostname}-{first interface IPv4}-{current directory name}")``.
The same inputs always give the same name, so every run from one checkout on
one machine lands in one project; another machine or directory gets another.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from collections.abc import Mapping
from pathlib import Path

from adamwprune.errors import UserError

MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def short_hostname() -> str:
    return socket.gethostname().split(".", 1)[0]


def first_interface_ip() -> str:
    """IPv4 address of the first non-loopback interface (like ``hostname -I | cut -d' ' -f1``).

    Interfaces are taken in kernel index order; returns ``127.0.0.1`` when the
    machine has no other address, so the name stays defined offline.
    """
    for _, name in sorted(socket.if_nameindex()):
        if name == "lo":
            continue
        address = _ipv4_of(name)
        if address and not address.startswith("127."):
            return address
    return "127.0.0.1"


def _ipv4_of(interface: str) -> str | None:
    try:
        import fcntl
        import struct
    except ImportError:  # not a POSIX system: no per-interface lookup
        return None
    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), siocgifaddr,
                                 struct.pack("256s", interface.encode()[:15]))
        except OSError:  # interface without an IPv4 address
            return None
    return socket.inet_ntoa(packed[20:24])


def project_checksum(hostname: str, ip: str, directory: str) -> str:
    return hashlib.md5(f"{hostname}-{ip}-{directory}".encode()).hexdigest()[:5]


def project_name(model: str, *, hostname: str | None = None, ip: str | None = None,
                 directory: str | None = None) -> str:
    """``{model}-{checksum}`` for this machine and working directory (inputs injectable for tests)."""
    from adamwprune.errors import UserError

    if not MODEL_NAME_RE.match(model or ""):
        raise UserError(f"model name {model!r} is not usable in a project name; "
                        "use letters, digits, '.', '_' or '-', e.g. gpt2")
    hostname = short_hostname() if hostname is None else hostname
    ip = first_interface_ip() if ip is None else ip
    directory = Path(os.getcwd()).name if directory is None else directory
    return f"{model}-{project_checksum(hostname, ip, directory)}"


def default_run_name(model: str, optimizer: str, when: float | None = None) -> str:
    """``{model}_{optimizer}_{timestamp}``, timestamp as local ``YYYYmmdd-HHMMSS``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    return f"{model}_{optimizer}_{stamp}"


def run_dir_for(output_dir: str | os.PathLike, project: str, run_name: str) -> Path:
    """Where a run lives: ``OUTPUT_DIR/PROJECT/RUN_NAME`` (the one place this layout is spelled).

    The project and the run name are single path components (UserError otherwise), so a run
    stays inside the output directory.
    """
    for what, name in (("project name", project), ("run name", run_name)):
        if not name or name in (".", "..") or "/" in name or "\0" in name or (os.sep != "/" and os.sep in name):
            raise UserError(f"{what} {name!r} must be one directory name (not empty, no '/', not '.' or "
                            f"'..'): a run lives in OUTPUT_DIR/PROJECT/RUN_NAME")
    return Path(output_dir) / project / run_name


DEFAULT_OUTPUT_DIR = "runs"  # the default run directory is runs/<project>/<run_name> under the cwd
DEFAULT_MODEL = "experiment"  # the "model" of a project name when the config names none


def default_run(config: Mapping, *, project: str | None = None, run_name: str | None = None,
                run_dir: str | os.PathLike | None = None, when: float | None = None) -> tuple[str, str, Path]:
    """``(project, run_name, run_dir)``, each defaulted when not given (None or empty).

    - project: ``{model}-{checksum}`` (:func:`project_name`), ``model`` being ``config["model"]``
      when that is a usable name, else ``experiment``;
    - run_name: the name of ``run_dir`` when given, else ``{model}_{optimizer}_{timestamp}``
      (:func:`default_run_name`; ``{model}_{timestamp}`` when ``config`` has no optimizer),
      with ``-2``, ``-3``, ... added when that run directory is already taken;
    - run_dir: ``runs/<project>/<run_name>``, relative to the current directory.

    ``when``: the time of the timestamp (default: now).
    """
    model = _usable(config.get("model")) or DEFAULT_MODEL
    project = project or project_name(model)
    if run_dir:
        return project, run_name or Path(os.path.abspath(run_dir)).name, Path(run_dir)
    if run_name:
        return project, run_name, run_dir_for(DEFAULT_OUTPUT_DIR, project, run_name)
    optimizer = _usable(config.get("optimizer"))
    base = default_run_name(model, optimizer, when) if optimizer else \
        f"{model}_{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}"
    run_name, number = base, 1
    while _taken(run_dir_for(DEFAULT_OUTPUT_DIR, project, run_name)):  # two runs in one second
        number += 1
        run_name = f"{base}-{number}"
    return project, run_name, run_dir_for(DEFAULT_OUTPUT_DIR, project, run_name)


def _usable(value) -> str | None:
    return value if isinstance(value, str) and MODEL_NAME_RE.match(value) else None


def _taken(path: Path) -> bool:
    try:
        return path.exists() and (not path.is_dir() or any(path.iterdir()))
    except OSError:  # unreadable: ExperimentTracker's writability check says so
        return False
