"""``python -m adamwprune.kconfig <command>``: what the Makefile targets and scripts/ call.

Everything works on the current directory: .config and config.py are written
there, the Kconfig tree and defconfigs come from it (or from this checkout when
it has no Kconfig).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from adamwprune.errors import UserError
from adamwprune.kconfig.generated import DOTCONFIG, typed_values, write_pyconfig
from adamwprune.kconfig.symbols import CHOICES, TRACKER_SWITCHES
from adamwprune.kconfig.tree import (apply_command_line, auto_project_names, find_defconfig,
                                     list_defconfigs, load_tree, resolve_project, set_symbol,
                                     tree_root, write_dotconfig)
from adamwprune.tracking.naming import project_name
from adamwprune.tracking.selection import TRACKER_NAMES, parse_trackers

PROG = "adamwprune.kconfig"
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PROJECT_NAME_PURPOSES = ("tracking",)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other user error
        raise UserError(f"{message} (see {self.prog} --help)")


def _variables(pairs: Sequence[str]) -> dict[str, str]:
    variables = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--set expects VAR=VALUE, got {pair!r}")
        variables[name] = value
    return variables


def _shown(path: Path, root: Path) -> str:
    for base in (root, tree_root(root)):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return str(path)


def cmd_defconfig(root: Path, args) -> int:
    path = find_defconfig(args.name, root)
    kconf = load_tree(root, path)
    apply_command_line(kconf, _variables(args.set))
    resolve_project(kconf, root)
    try:
        values = typed_values(kconf)  # reject bad values before anything is written
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    source = _shown(path, root)
    write_dotconfig(kconf, root / DOTCONFIG, f"make defconfig DEFCONFIG={source}")
    write_pyconfig(kconf, root)
    trackers = [name for name, symbol in TRACKER_SWITCHES.items() if values[symbol]]
    print(f"{DOTCONFIG} and config.py written from {source}: {values['MODEL']}, "
          f"optimizer {values['OPTIMIZER']}, pruning {values['PRUNING_METHOD']}, "
          f"trackers {','.join(trackers) or 'none'}, project {values['TRACKER_PROJECT']}")
    return 0


def cmd_menuconfig(root: Path, args) -> int:
    dotconfig = root / DOTCONFIG
    # loaded strictly: a broken .config is refused, never edited silently
    kconf = load_tree(root, dotconfig if dotconfig.exists() else None)
    os.environ["KCONFIG_CONFIG"] = str(dotconfig)  # never fall back to another tree's .config
    import menuconfig

    menuconfig.menuconfig(kconf)
    if not dotconfig.exists():
        print(f"no {DOTCONFIG} saved")
        return 0
    kconf = load_tree(root, dotconfig)
    before = kconf.syms["TRACKER_PROJECT"].str_value
    if resolve_project(kconf, root) != before:
        write_dotconfig(kconf, dotconfig, "make menuconfig")
    write_pyconfig(kconf, root)  # checks every value (typed_values) before writing
    return 0


def cmd_savedefconfig(root: Path, args) -> int:
    """Write the minimal defconfig for .config (auto project name and trackers left out)."""
    kconf = load_tree(root, root / DOTCONFIG)
    if kconf.syms["TRACKER_PROJECT"].str_value in auto_project_names(root):
        set_symbol(kconf, "TRACKER_PROJECT", "")
    apply_command_line(kconf, {})  # trackers come from TRACKER= at defconfig time
    print(kconf.write_min_config(str(root / args.output)))
    return 0


def cmd_run(root: Path, args) -> int:
    from adamwprune.kconfig.runner import run

    variables = _variables(args.set)
    if args.executor:
        variables["EXECUTOR"] = args.executor
    return run(root, variables, force_matrix=args.matrix)


def cmd_show(root: Path, args) -> int:
    from adamwprune.kconfig.runner import show

    return show(root)


def cmd_list(root: Path, args) -> int:
    print("\n".join(list_defconfigs(tree_root(root))))
    return 0


def cmd_cli_set_var(root: Path, args) -> int:
    if not ENV_NAME_RE.match(args.variable):
        raise UserError(f"{args.variable!r} is not a variable name")
    print("y" if args.variable in os.environ else "n")
    return 0


def cmd_tracker_enabled(root: Path, args) -> int:
    if args.tracker not in TRACKER_NAMES:
        raise UserError(f"unknown tracker {args.tracker!r}; valid choices: {', '.join(TRACKER_NAMES)}")
    print("y" if args.tracker in parse_trackers(args.value) else "n")
    return 0


def cmd_project_name(root: Path, args) -> int:
    if args.purpose is not None and args.purpose not in PROJECT_NAME_PURPOSES:
        raise UserError(f"unknown purpose {args.purpose!r}; valid: {', '.join(PROJECT_NAME_PURPOSES)}")
    print(project_name(args.model))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    sub = command("defconfig", cmd_defconfig, "write .config and config.py from a defconfig")
    sub.add_argument("name", help="defconfig name (gpt2-pydocs-cpu) or path")
    sub.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                     help="make command-line variable: TRACKER=..., GPU_MONITOR=y|n")
    command("menuconfig", cmd_menuconfig, "edit .config in kconfiglib's menuconfig")
    sub = command("savedefconfig", cmd_savedefconfig, "write a minimal defconfig for .config")
    sub.add_argument("output", nargs="?", default="defconfig", help="file to write (default: defconfig)")
    sub = command("run", cmd_run, "run the configured training, or the test matrix")
    sub.add_argument("--matrix", action="store_true", help="run as a test matrix even for one combination")
    sub.add_argument("--executor", choices=tuple(CHOICES["MATRIX_EXECUTOR"].values()),
                     help="where the matrix's runs go (make's EXECUTOR=): this machine, or SLURM jobs")
    sub.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                     help="make command-line variable for this run: TRACKER=..., GPU_MONITOR=y|n")
    command("show", cmd_show, "serve the Trackio dashboard of the configured project")
    command("list", cmd_list, "list the available defconfigs")
    sub = command("cli-set-var", cmd_cli_set_var, "print y if VAR is set in the environment, else n")
    sub.add_argument("variable")
    sub = command("tracker-enabled", cmd_tracker_enabled,
                  "print y if the tracker NAME is among those VALUE selects, else n")
    sub.add_argument("tracker", metavar="NAME")
    sub.add_argument("value", nargs="?", default="", metavar="VALUE")
    sub = command("project-name", cmd_project_name, "print the auto project name {model}-{checksum}")
    sub.add_argument("model")
    sub.add_argument("purpose", nargs="?")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(Path.cwd(), args)


def entry() -> None:
    from adamwprune.errors import run_main

    sys.exit(run_main(main, None, PROG))
