"""The Kconfig tree through kconfiglib: parse it, load (def)config files strictly,
apply command-line variables, find defconfigs, write .config.

kconfiglib only warns about most mistakes in a configuration file (unknown
symbols, malformed lines, invalid values) and then drops the line; here each of
those is a UserError naming the file, the line and the symbol.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from adamwprune.errors import UserError
from adamwprune.kconfig.symbols import CHOICES
from adamwprune.tracking.naming import project_name
from adamwprune.tracking.selection import parse_trackers

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "CONFIG_"
BOOL_WORDS = {"y": "y", "yes": "y", "1": "y", "true": "y", "on": "y",
              "n": "n", "no": "n", "0": "n", "false": "n", "off": "n"}
COMMAND_LINE_VARIABLES = ("TRACKER", "GPU_MONITOR", "SEEDS", "PARALLEL_JOBS", "CONTINUE", "EXECUTOR")
# kconfiglib says a bad line is ignored; here it is an error, so drop that wording
IGNORED_RE = re.compile(r"^ignoring |[.]? *(-- )?[Aa]ssignment ignored[.]?$| \(defined at [^)]*\)")


def tree_root(root: Path) -> Path:
    """The directory holding the Kconfig tree: ``root`` if it has one, else this checkout."""
    return root if (root / "Kconfig").is_file() else REPO_ROOT


def open_tree(root: Path):
    """Parse ``Kconfig`` (sourced files use rsource, so no $srctree is needed)."""
    import kconfiglib

    tree = tree_root(root)
    try:
        kconf = kconfiglib.Kconfig(str(tree / "Kconfig"), warn_to_stderr=False)
    except kconfiglib.KconfigError as err:
        raise UserError(f"{tree / 'Kconfig'}: {str(err).splitlines()[0]}") from None
    if kconf.warnings:
        raise UserError(f"Kconfig tree problem: {kconf.warnings[0].splitlines()[0]}")
    return kconf


def load_strict(kconf, path: Path) -> None:
    """Load a .config/defconfig file; any line kconfiglib would drop or ignore is an error."""
    kconf.warnings.clear()
    try:
        path.read_bytes().decode("utf-8")
        kconf.load_config(str(path))
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        line = err.object[:err.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line} is not UTF-8 text (byte 0x{err.object[err.start]:02x}); "
                        "save the file as UTF-8") from None
    problems = [_undefined_message(kconf, name) for name, _ in kconf.missing_syms]
    problems += [_clean_warning(text) for text in kconf.warnings]
    problems += _ineffective_assignments(kconf)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{path}: {problems[0]}{more}")


def load_tree(root: Path, path: Path | None):
    """The Kconfig tree of ``root`` with the configuration file ``path`` loaded strictly
    (None: the tree's defaults)."""
    kconf = open_tree(root)
    if path is not None:
        load_strict(kconf, path)
    return kconf


def _undefined_message(kconf, name: str) -> str:
    close = difflib.get_close_matches(name, [sym.name for sym in kconf.unique_defined_syms], n=1)
    hint = f"; did you mean {PREFIX}{close[0]}?" if close else ""
    return f"{PREFIX}{name} is not a symbol defined by Kconfig (unknown symbol){hint}"


def _clean_warning(text: str) -> str:
    """kconfiglib's "path:12: warning: ignoring malformed line 'x'" -> "line 12: malformed line 'x'"."""
    head, sep, message = text.partition("warning: ")
    line = head.rstrip(": ").rpartition(":")[2]
    where = f"line {line}: " if line.isdigit() else ""
    message = (message if sep else text).splitlines()[0]
    return where + IGNORED_RE.sub("", message)


def _ineffective_assignments(kconf) -> list[str]:
    """Assignments that kconfiglib accepted but that do not end up in the configuration."""
    import kconfiglib

    problems = []
    for sym in kconf.unique_defined_syms:
        wanted = sym.user_value
        if wanted is None:
            continue
        if sym.orig_type is kconfiglib.BOOL:
            if wanted != 2 or sym.tri_value == 2:
                continue  # "is not set" on a choice member is normal
            shown = "y"
        else:
            if wanted == sym.str_value:
                continue
            shown = f'"{wanted}"' if sym.orig_type is kconfiglib.STRING else wanted
        problems.append(f"{PREFIX}{sym.name}={shown} has no effect: {_why_not(sym)}")
    return problems


def _why_not(sym) -> str:
    import kconfiglib

    if sym.choice is not None and sym.visibility:
        other = sym.choice.selection
        return (f"{PREFIX}{other.name} is selected in the same choice" if other is not None
                else "its choice has no selection")
    if not sym.visibility:
        return f"it depends on {kconfiglib.expr_str(sym.direct_dep)}, which is not met"
    for low, high, cond in sym.ranges:
        if kconfiglib.expr_value(cond):
            return f"outside the range {low.str_value}..{high.str_value}"
    return "the value is not accepted"


def choice_value(kconf, derived: str) -> str | None:
    """The value of a choice turned string (``OPTIMIZER`` -> ``"adamw"``), None when hidden."""
    for member, value in CHOICES[derived].items():
        if kconf.syms[member].tri_value == 2:
            return value
    return None


def set_symbol(kconf, name: str, value: str) -> None:
    sym = kconf.syms[name]
    if not sym.set_value(value) or sym.str_value != value:
        raise UserError(f"cannot set {PREFIX}{name}={value}: {_why_not(sym)}")


@dataclass(frozen=True)
class CommandLine:
    """make's command-line variables, checked; None where a variable was not given."""
    trackers: tuple[str, ...] | None = None  # TRACKER=, as backend names
    gpu_monitor: bool | None = None  # GPU_MONITOR=
    seeds: int | None = None  # SEEDS=: the test matrix's seed axis
    parallel_jobs: int | None = None  # PARALLEL_JOBS=: test-matrix runs at a time
    continue_dir: str | None = None  # CONTINUE=: the results folder of a matrix to continue
    executor: str | None = None  # EXECUTOR=: local or slurm


def parse_command_line(variables: dict[str, str]) -> CommandLine:
    """Check make's command-line variables (names and values); the one place that does,
    for ``make defconfig`` (apply_command_line) and ``make`` (the trainer's flags)."""
    for name in variables:
        if name not in COMMAND_LINE_VARIABLES:
            raise UserError(f"unknown variable {name}; valid: {', '.join(COMMAND_LINE_VARIABLES)}")
    trackers = parse_trackers(variables["TRACKER"]) if "TRACKER" in variables else None
    gpu_monitor = (parse_bool("GPU_MONITOR", variables["GPU_MONITOR"]) == "y"
                   if "GPU_MONITOR" in variables else None)
    counts = {name: _count(name, variables[name]) for name in ("SEEDS", "PARALLEL_JOBS") if variables.get(name)}
    executor = variables.get("EXECUTOR", "").strip().lower() or None
    executors = tuple(CHOICES["MATRIX_EXECUTOR"].values())
    if executor is not None and executor not in executors:
        raise UserError(f"EXECUTOR={variables['EXECUTOR']!r}: valid choices: {', '.join(executors)}")
    return CommandLine(trackers, gpu_monitor, counts.get("SEEDS"), counts.get("PARALLEL_JOBS"),
                       variables.get("CONTINUE") or None, executor)


def _count(name: str, text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 1000:
        raise UserError(f"{name}={text!r}: give a whole number from 1 to 1000")
    return int(text)


def apply_command_line(kconf, variables: dict[str, str]) -> None:
    """Apply make's command-line variables. TRACKER decides the trackers: without it,
    tracking is off whatever the defconfig says (the spec's "No tracking (default)")."""
    command_line = parse_command_line(variables)
    trackers = command_line.trackers or ()
    set_symbol(kconf, "ENABLE_TRACKIO", "y" if "trackio" in trackers else "n")
    set_symbol(kconf, "ENABLE_WANDB", "y" if "wandb" in trackers else "n")
    if command_line.gpu_monitor is not None:
        set_symbol(kconf, "GPU_MONITOR", "y" if command_line.gpu_monitor else "n")
    if command_line.executor is not None:
        set_symbol(kconf, f"MATRIX_EXECUTOR_{command_line.executor.upper()}", "y")


def parse_bool(name: str, text: str) -> str:
    word = BOOL_WORDS.get(text.strip().lower())
    if word is None:
        raise UserError(f"{name}={text!r} is not a yes/no value; valid choices: y, n")
    return word


def auto_project_names(root: Path) -> set[str]:
    return {project_name(model, directory=root.name) for model in CHOICES["MODEL"].values()}


def resolve_project(kconf, root: Path) -> str:
    """Fill TRACKER_PROJECT with ``{model}-{checksum}`` unless the user chose a name.

    The checksum uses root's name as the directory (root is the current directory
    for make). An empty value, or the auto name of some model (left over from a
    model change in menuconfig), counts as "not chosen"."""
    sym = kconf.syms["TRACKER_PROJECT"]
    if sym.str_value in auto_project_names(root) | {""}:
        model = choice_value(kconf, "MODEL")
        set_symbol(kconf, "TRACKER_PROJECT", project_name(model, directory=root.name))
    return sym.str_value


def write_dotconfig(kconf, path: Path, source: str) -> None:
    header = (f"# AdamWPrune configuration from {source}.\n"
              "# Edit with `make menuconfig`; config.py is generated from this file.\n")
    kconf.write_config(str(path), header=header)


def defconfig_dirs(tree: Path) -> list[Path]:
    """``defconfigs/`` and every ``<model>/defconfigs/`` of the tree."""
    dirs = [tree / "defconfigs"] + sorted(tree.glob("*/defconfigs"))
    return [d for d in dirs if d.is_dir() and not d.parent.name.startswith(".")]


def list_defconfigs(tree: Path) -> list[str]:
    return sorted({f.name for d in defconfig_dirs(tree) for f in d.iterdir()
                   if f.is_file() and not f.name.startswith(".")})


def available_hint(tree: Path) -> str:
    names = list_defconfigs(tree)
    return "available defconfigs: " + (", ".join(names) if names else "none")


def find_defconfig(name: str, root: Path) -> Path:
    """A defconfig given as a path (``gpt2/defconfigs/x``) or a bare name (``x``)."""
    tree = tree_root(root)
    if not name.strip():
        raise UserError(f"no defconfig given: make defconfig DEFCONFIG=<name>; {available_hint(tree)}")
    given = Path(name).expanduser()
    for base in ((given,) if given.is_absolute() else (root / given, tree / given)):
        if base.is_file():
            return base
    if given.name == name:
        matches = [d / name for d in defconfig_dirs(tree) if (d / name).is_file()]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            places = ", ".join(str(m.relative_to(tree)) for m in matches)
            raise UserError(f"defconfig {name!r} is ambiguous ({places}); give the path")
    raise UserError(f"unknown defconfig {name!r}; {available_hint(tree)}")
