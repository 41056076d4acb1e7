"""The generated ``config.py``: typed values from .config, for ``from config import config``.

config.py records the sha256 of the .config it was made from. ``load_config``
regenerates it when .config changed, and config.py checks the same on import, so
a hand-edited .config is never read stale.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
import sys
from pathlib import Path

from adamwprune.errors import UserError
from adamwprune.fileio import atomic_write_bytes
from adamwprune.kconfig.symbols import CHOICES, FLOAT_RANGES, allowed_values
from adamwprune.kconfig.tree import PREFIX, choice_value, load_tree, resolve_project

DOTCONFIG = ".config"
PYCONFIG = "config.py"
DIGEST_RE = re.compile(r'^DOTCONFIG_SHA256 = "([0-9a-f]{64})"$', re.MULTILINE)

TEMPLATE = '''\
# Generated from .config by adamwprune.kconfig -- do not edit: change .config
# (make menuconfig, make defconfig); this file is regenerated when .config changes.
"""AdamWPrune configuration: ``from config import config``, then ``config.ENABLE_TRACKIO``."""

from types import SimpleNamespace

__all__ = ["config"]

DOTCONFIG_SHA256 = "{digest}"

config = SimpleNamespace(
{fields}
)


def _current(config):
    """This file's values, or fresh ones when .config changed since it was written."""
    import hashlib
    import pathlib

    dotconfig = pathlib.Path(__file__).resolve().with_name(".config")
    try:
        digest = hashlib.sha256(dotconfig.read_bytes()).hexdigest()
    except FileNotFoundError:
        return config
    if digest == DOTCONFIG_SHA256:
        return config
    from adamwprune.kconfig import load_config

    return load_config(dotconfig.parent)


config = _current(config)
'''


def typed_values(kconf) -> dict[str, object]:
    """Every symbol written to .config, typed (bool/int/float/str), plus the derived
    choice strings (MODEL, OPTIMIZER, ...). Raises UserError on an invalid value."""
    import kconfiglib

    model = choice_value(kconf, "MODEL")
    values: dict[str, object] = {}
    for derived in CHOICES:
        value = choice_value(kconf, derived)
        if value is not None:
            values[derived] = value
    for sym in kconf.unique_defined_syms:
        if not sym.config_string:
            continue  # hidden by its dependencies: not in .config either
        text = sym.str_value
        if sym.orig_type is kconfiglib.BOOL:
            values[sym.name] = sym.tri_value == 2
        elif sym.orig_type is kconfiglib.INT:
            values[sym.name] = int(text)
        elif sym.name in FLOAT_RANGES:
            values[sym.name] = parse_float(sym.name, text)
        else:
            allowed = allowed_values(sym.name, model)
            if allowed is not None and text not in allowed:
                raise UserError(f'{PREFIX}{sym.name}="{text}" is not valid for {model}; '
                                f"valid: {', '.join(allowed)}")
            values[sym.name] = text
    return values


def parse_float(name: str, text: str) -> float:
    low, high, low_open, high_open = FLOAT_RANGES[name]
    try:
        value = float(text)
    except ValueError:
        raise UserError(f'{PREFIX}{name}="{text}" is not a number (expected a float such as 6e-4)') from None
    too_high = value >= high if high_open else value > high
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or too_high:
        bound = f"{high:g}" if math.isfinite(high) else "inf"
        raise UserError(f'{PREFIX}{name}="{text}" is out of range: {low:g} {"<" if low_open else "<="} value '
                        f"{'<' if high_open else '<='} {bound}")
    return value


def render(values: dict[str, object], digest: str) -> str:
    fields = "\n".join(f"    {name}={value!r}," for name, value in values.items())
    return TEMPLATE.format(digest=digest, fields=fields)


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_pyconfig(kconf, root: Path) -> None:
    """(Re)write root/config.py from the configuration loaded in ``kconf``, which
    must be what root/.config holds."""
    atomic_write_bytes(root / PYCONFIG, render(typed_values(kconf), digest_of(root / DOTCONFIG)).encode())


def regenerate(root: Path) -> None:
    """Parse root/.config with the Kconfig tree and rewrite root/config.py."""
    kconf = load_tree(root, root / DOTCONFIG)
    if kconf.syms["TRACKER_PROJECT"].str_value == "":
        resolve_project(kconf, root)  # a hand-written .config without a project name
    write_pyconfig(kconf, root)


def is_current(root: Path) -> bool:
    try:
        match = DIGEST_RE.search((root / PYCONFIG).read_text())
    except FileNotFoundError:
        return False
    return bool(match) and match.group(1) == digest_of(root / DOTCONFIG)


def load_config(root: Path | str | None = None):
    """The generated ``config`` object for root (default: the current directory),
    regenerating config.py first when .config changed; None without a .config."""
    root = Path(root) if root is not None else Path.cwd()
    if not (root / DOTCONFIG).is_file():
        return None
    if not is_current(root):
        regenerate(root)
    try:
        return _import_config(root)
    except (SyntaxError, AttributeError, NameError) as err:  # config.py edited by hand: it is generated
        print(f"note: {root / PYCONFIG} was damaged ({type(err).__name__}: {err.msg if isinstance(err, SyntaxError) else err}); "
              "regenerated it from .config", file=sys.stderr, flush=True)
        regenerate(root)
        return _import_config(root)


def _import_config(root: Path):
    spec = importlib.util.spec_from_file_location("_adamwprune_generated_config", root / PYCONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.config
