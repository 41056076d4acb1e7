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
from pathlib import Path

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
    """Where a run lives: ``OUTPUT_DIR/PROJECT/RUN_NAME`` (the one place this layout is spelled)."""
    return Path(output_dir) / project / run_name
