"""Configuration layer: Kconfig tree -> .config -> generated, typed ``config.py``.

    make defconfig DEFCONFIG=gpt2-pydocs-cpu TRACKER=trackio   # python -m adamwprune.kconfig defconfig ...
    make menuconfig | make | make show | make test_matrix

Trainers call ``load_config()`` and ``trainer_defaults(cfg)``: config values become
argparse defaults, so command-line flags still win.
"""

from __future__ import annotations

from adamwprune.kconfig.generated import load_config
from adamwprune.kconfig.symbols import TRACKER_SWITCHES, TRAINER_DESTS
from adamwprune.tracking.selection import format_trackers

__all__ = ["load_config", "trainer_defaults"]


def trainer_defaults(cfg) -> dict[str, object]:
    """Trainer argparse defaults from a config object (only for symbols it has)."""
    defaults: dict[str, object] = {}
    for symbol, dest in TRAINER_DESTS.items():
        if not hasattr(cfg, symbol):
            continue
        defaults[dest] = getattr(cfg, symbol)
    if any(hasattr(cfg, symbol) for symbol in TRACKER_SWITCHES.values()):
        defaults["tracker"] = format_trackers(
            tuple(name for name, symbol in TRACKER_SWITCHES.items() if getattr(cfg, symbol, False)))
    return defaults
