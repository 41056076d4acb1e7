"""Configuration layer: defconfig -> .config -> config.py, make variables, bad input.

Every command runs in tmp_path (its own .config and config.py); the Kconfig tree
and defconfigs come from this checkout.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from adamwprune.kconfig import load_config, trainer_defaults
from adamwprune.kconfig.runner import variable_flags
from adamwprune.kconfig.symbols import TRAINER_DESTS
from adamwprune.kconfig.tree import list_defconfigs
from adamwprune.tracking.naming import project_name
from helpers import (REPO, TRAINER_CONTRACT_DESTS, child_env, defconfig, kconfig, make, make_error,
                     one_line_error, read_assignments, write_defconfig)

ALL_DEFCONFIGS = list_defconfigs(REPO)


def typed(raw: str) -> object:
    """The Python value a raw .config value should become (floats per the symbol table)."""
    if raw in ("y", "n"):
        return raw == "y"
    if raw.startswith('"'):
        return raw[1:-1]
    return int(raw)


# --- defconfig -> .config -> config.py -----------------------------------------------------

def test_the_spec_and_issue_defconfigs_exist():
    assert {"gpt2-finewebedu-a10gx4", "gpt2-pydocs-cpu", "test-matrix-cpu", "lenet5",
            "resnet50"} <= set(ALL_DEFCONFIGS)
    assert (REPO / "gpt2/defconfigs/gpt2-finewebedu-a10gx4").is_file()


@pytest.mark.parametrize("name", ALL_DEFCONFIGS)
def test_defconfig_round_trips_through_dotconfig_and_config_py(tmp_path, name):
    from adamwprune.kconfig.symbols import FLOAT_RANGES

    defconfig(tmp_path, name)
    source = next(p for p in REPO.glob(f"**/defconfigs/{name}") if ".venv" not in p.parts)
    wanted = read_assignments(source)
    written = read_assignments(tmp_path / ".config")
    for symbol, raw in wanted.items():
        assert written[symbol] == raw, symbol  # every line of the defconfig is in .config
    cfg = load_config(tmp_path)
    for symbol, raw in written.items():
        value = getattr(cfg, symbol)
        expected = float(typed(raw)) if symbol in FLOAT_RANGES else typed(raw)
        if symbol == "TRACKER_PROJECT":
            expected = raw.strip('"')
        assert value == expected and type(value) is type(expected), symbol
    # savedefconfig gives a minimal file that reproduces the same .config
    assert kconfig(tmp_path, "savedefconfig", "saved").returncode == 0
    again = tmp_path / "again"
    again.mkdir()
    defconfig(again, str(tmp_path / "saved"))
    assert read_assignments(again / ".config") == written | {
        "TRACKER_PROJECT": f'"{project_name(cfg.MODEL, directory="again")}"'}
    assert set(read_assignments(tmp_path / "saved")) <= set(wanted), "savedefconfig is not minimal"


def test_config_values_are_typed(tmp_path):
    defconfig(tmp_path, "gpt2-finewebedu-a10gx4")
    cfg = load_config(tmp_path)
    assert cfg.LEARNING_RATE == 6e-4 and type(cfg.LEARNING_RATE) is float
    assert cfg.GPU_MONITOR_INTERVAL == 1.0 and type(cfg.GPU_MONITOR_INTERVAL) is float
    assert cfg.BATCH_SIZE == 16 and type(cfg.BATCH_SIZE) is int
    assert cfg.COMPILE is True and cfg.ENABLE_WANDB is False
    assert cfg.GPT2_MODEL_NAME == "gpt2" and cfg.DATASET == "finewebedu"
    # derived strings from the choices
    assert (cfg.MODEL, cfg.OPTIMIZER, cfg.PRUNING_METHOD, cfg.LR_SCHEDULE) == (
        "gpt2", "adamwspam", "none", "cosine")
    assert cfg.NPROC == 4 and cfg.GPU_MONITOR is True


def test_float_type_comes_from_the_symbol_table_not_the_text(tmp_path):
    dc = write_defconfig(tmp_path / "dc", "CONFIG_LEARNING_RATE=\"1\"", "CONFIG_OUTPUT_DIR=\"1e3\"")
    defconfig(tmp_path, str(dc))
    cfg = load_config(tmp_path)
    assert cfg.LEARNING_RATE == 1.0 and type(cfg.LEARNING_RATE) is float
    assert cfg.OUTPUT_DIR == "1e3"  # a string symbol stays a string even when it looks like a number


def test_bare_name_and_path_give_the_same_configuration(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    defconfig(tmp_path / "a", "gpt2-finewebedu-a10gx4")
    defconfig(tmp_path / "b", "gpt2/defconfigs/gpt2-finewebedu-a10gx4")
    a, b = read_assignments(tmp_path / "a/.config"), read_assignments(tmp_path / "b/.config")
    assert a.pop("TRACKER_PROJECT") != b.pop("TRACKER_PROJECT")  # directory names differ
    assert a == b


def test_spec_developer_snippet_reads_the_generated_config(tmp_path):
    defconfig(tmp_path, "gpt2-pydocs-cpu", "TRACKER=both")
    snippet = ("import sys\nsys.path.append('.')\nfrom config import config\n"
               "print(getattr(config, 'ENABLE_TRACKIO', False), getattr(config, 'ENABLE_WANDB', False),"
               " getattr(config, 'TRACKER_PROJECT', 'my-project'), getattr(config, 'WANDB_PROJECT', 'p'))")
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, check=True)
    project = read_assignments(tmp_path / ".config")["TRACKER_PROJECT"].strip('"')
    assert proc.stdout.split() == ["True", "True", project, "p"]


def test_config_py_is_regenerated_when_dotconfig_changes(tmp_path):
    defconfig(tmp_path, "gpt2-pydocs-cpu")
    dotconfig = tmp_path / ".config"
    dotconfig.write_text(dotconfig.read_text().replace("CONFIG_BATCH_SIZE=16", "CONFIG_BATCH_SIZE=5"))
    # a plain import notices the change and rewrites config.py ...
    code = "from config import config; print(config.BATCH_SIZE)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "5"
    assert "BATCH_SIZE=5," in (tmp_path / "config.py").read_text()
    # ... and so does load_config
    dotconfig.write_text(dotconfig.read_text().replace("CONFIG_BATCH_SIZE=5", "CONFIG_BATCH_SIZE=7"))
    assert load_config(tmp_path).BATCH_SIZE == 7
    assert "BATCH_SIZE=7," in (tmp_path / "config.py").read_text()


def test_load_config_without_dotconfig_is_none(tmp_path):
    assert load_config(tmp_path) is None


def test_hand_written_minimal_dotconfig_gets_defaults_and_a_project(tmp_path):
    (tmp_path / ".config").write_text("CONFIG_MODEL_LENET5=y\nCONFIG_BATCH_SIZE=32\n")
    cfg = load_config(tmp_path)
    assert (cfg.MODEL, cfg.BATCH_SIZE, cfg.DATASET) == ("lenet5", 32, "mnist")
    assert cfg.TRACKER_PROJECT == project_name("lenet5", directory=tmp_path.name)
    assert not hasattr(cfg, "BLOCK_SIZE")  # GPT-2 only: hidden, so not in the config


# --- TRACKER= and other make variables ------------------------------------------------------

TRACKER_TABLE = [
    ((), (False, False)),
    (("TRACKER=none",), (False, False)),
    (("TRACKER=trackio",), (True, False)),
    (("TRACKER=wandb",), (False, True)),
    (("TRACKER=both",), (True, True)),
    (("TRACKER=wandb,trackio",), (True, True)),
    (("TRACKER=trackio,wandb",), (True, True)),
    (("TRACKER=Wandb, trackio",), (True, True)),
]


@pytest.mark.parametrize("variables,expected", TRACKER_TABLE, ids=lambda v: str(v))
def test_make_defconfig_tracker_table(tmp_path, variables, expected):
    # the defconfig asks for W&B; TRACKER on the command line decides, and without it tracking is off
    dc = write_defconfig(tmp_path / "tracked", "CONFIG_ENABLE_WANDB=y", "CONFIG_DATASET=\"pydocs\"")
    proc = make(tmp_path, "defconfig", f"DEFCONFIG={dc}", *variables)
    assert proc.returncode == 0, proc.stderr
    cfg = load_config(tmp_path)
    assert (cfg.ENABLE_TRACKIO, cfg.ENABLE_WANDB) == expected
    assert trainer_defaults(cfg)["tracker"] == {(False, False): "none", (True, False): "trackio",
                                                (False, True): "wandb", (True, True): "both"}[expected]


def test_bad_tracker_value_fails_with_the_valid_choices(tmp_path):
    proc = make(tmp_path, "defconfig", "DEFCONFIG=gpt2-pydocs-cpu", "TRACKER=nowandb")
    message = make_error(proc)
    assert "nowandb" in message and "valid choices: none, trackio, wandb, both" in message
    assert not (tmp_path / ".config").exists()


def test_gpu_monitor_variable(tmp_path):
    proc = make(tmp_path, "defconfig", "DEFCONFIG=gpt2-pydocs-cpu", "GPU_MONITOR=y")
    assert proc.returncode == 0, proc.stderr
    cfg = load_config(tmp_path)
    assert cfg.GPU_MONITOR is True and cfg.GPU_MONITOR_INTERVAL == 1.0
    # without GPU_MONITOR= the defconfig's choice stays
    assert make(tmp_path, "defconfig", "DEFCONFIG=gpt2-finewebedu-a10gx4").returncode == 0
    assert load_config(tmp_path).GPU_MONITOR is True
    assert "valid choices: y, n" in make_error(
        make(tmp_path, "defconfig", "DEFCONFIG=gpt2-pydocs-cpu", "GPU_MONITOR=maybe"))



@pytest.mark.parametrize("off", ["n", "off"])
def test_a_command_line_n_switches_off_what_the_defconfig_turns_on(tmp_path, off):
    assert read_assignments(REPO / "gpt2/defconfigs/gpt2-finewebedu-a10gx4")["GPU_MONITOR"] == "y"
    proc = make(tmp_path, "defconfig", "DEFCONFIG=gpt2-finewebedu-a10gx4", f"GPU_MONITOR={off}")
    assert proc.returncode == 0, proc.stderr
    assert read_assignments(tmp_path / ".config")["GPU_MONITOR"] == "n"
    assert "GPU_MONITOR=False," in (tmp_path / "config.py").read_text()
    assert load_config(tmp_path).GPU_MONITOR is False

def test_project_name_is_auto_unless_given(tmp_path):
    defconfig(tmp_path, "lenet5")
    script = subprocess.run([str(REPO / "scripts/generate-project-name.sh"), "lenet5", "tracking"],
                            cwd=tmp_path, env=child_env(), capture_output=True, text=True, check=True)
    written = read_assignments(tmp_path / ".config")["TRACKER_PROJECT"]
    assert written == f'"{script.stdout.strip()}"'
    assert re.fullmatch(r'"lenet5-[0-9a-f]{5}"', written)
    dc = write_defconfig(tmp_path / "named", "CONFIG_TRACKER_PROJECT=\"my-experiments\"")
    defconfig(tmp_path, str(dc))
    assert load_config(tmp_path).TRACKER_PROJECT == "my-experiments"


# --- bad input: one line, non-zero exit -----------------------------------------------------

def test_unknown_defconfig_lists_the_available_ones(tmp_path):
    message = one_line_error(kconfig(tmp_path, "defconfig", "gpt2-nope"))
    assert "unknown defconfig 'gpt2-nope'" in message
    assert "available defconfigs: " + ", ".join(ALL_DEFCONFIGS) in message
    assert "available defconfigs" in make_error(make(tmp_path, "defconfig"))  # no DEFCONFIG= at all


@pytest.mark.parametrize("line,expected", [
    ("CONFIG_NOT_A_SYMBOL=y", "CONFIG_NOT_A_SYMBOL is not a symbol defined by Kconfig"),
    ("CONFIG_BATCH_SIZ=4", "did you mean CONFIG_BATCH_SIZE?"),
    ("CONFIG_COMPILE=maybe", "line 2: 'maybe' is not a valid value for the bool symbol COMPILE"),
    ("CONFIG_BATCH_SIZE=many", "the value 'many' is invalid for BATCH_SIZE"),
    ("CONFIG_BLOCK_SIZE=4096", "CONFIG_BLOCK_SIZE=4096 has no effect: outside the range 8..1024"),
    ("CONFIG_SGD_MOMENTUM=\"0.9\"", "it depends on OPTIMIZER_SGD, which is not met"),
    ("CONFIG_OPTIMIZER_SGD=y", "CONFIG_OPTIMIZER_ADAMW=y has no effect: CONFIG_OPTIMIZER_SGD is selected"),
    ("CONFIG_LEARNING_RATE=\"fast\"", "CONFIG_LEARNING_RATE=\"fast\" is not a number"),
    ("CONFIG_ADAM_BETA2=\"1.5\"", "CONFIG_ADAM_BETA2=\"1.5\" is out of range"),
    ("CONFIG_DATASET=\"mnist\"", "is not valid for gpt2; valid: finewebedu, shakespeare, pydocs"),
    ("CONFIG_GPT2_MODEL_NAME=\"gpt3\"", "valid: gpt2-tiny, gpt2, gpt2-medium, gpt2-large, gpt2-xl"),
    ("garbage", "line 2: malformed line 'garbage'"),
])
def test_bad_defconfig_lines_are_errors_naming_the_problem(tmp_path, line, expected):
    dc = write_defconfig(tmp_path / "bad", "CONFIG_OPTIMIZER_ADAMW=y", line)
    message = one_line_error(kconfig(tmp_path, "defconfig", str(dc)))
    assert message.startswith(f"{dc}: ") and expected in message
    assert not (tmp_path / ".config").exists()


def test_malformed_dotconfig_line_is_an_error_for_run_and_trainer(tmp_path):
    defconfig(tmp_path, "gpt2-pydocs-cpu")
    dotconfig = tmp_path / ".config"
    dotconfig.write_text(dotconfig.read_text() + "CONFIG_BATCH_SIZE 8\n")
    line = len(dotconfig.read_text().splitlines())
    message = one_line_error(kconfig(tmp_path, "run"))
    assert message == f"{dotconfig}: line {line}: malformed line 'CONFIG_BATCH_SIZE 8'"
    trainer = subprocess.run([sys.executable, str(REPO / "gpt2/train.py"), "--help"], cwd=tmp_path,
                             env=child_env(), capture_output=True, text=True, timeout=60)
    assert trainer.returncode != 0
    assert trainer.stderr.strip().splitlines()[-1].endswith("malformed line 'CONFIG_BATCH_SIZE 8'")
    assert len(trainer.stderr.strip().splitlines()) == 1



def test_a_half_open_range_is_enforced_at_its_open_edge_in_dotconfig(tmp_path):
    """Betas are in [0, 1): 1.0 in .config is a one-line error, 0.999 is accepted."""
    defconfig(tmp_path, "gpt2-pydocs-cpu")
    dotconfig = tmp_path / ".config"
    text = dotconfig.read_text()
    beta2 = re.search(r"^CONFIG_ADAM_BETA2=.*$", text, flags=re.MULTILINE).group(0)
    dotconfig.write_text(text.replace(beta2, 'CONFIG_ADAM_BETA2="1.0"'))
    message = one_line_error(kconfig(tmp_path, "run"))
    assert message.startswith('CONFIG_ADAM_BETA2="1.0" is out of range') and message.endswith("value < 1")
    dotconfig.write_text(text.replace(beta2, 'CONFIG_ADAM_BETA2="0.999"'))
    assert load_config(tmp_path).ADAM_BETA2 == 0.999

def test_make_without_dotconfig_says_what_to_do(tmp_path):
    message = make_error(make(tmp_path))
    assert "run `make defconfig DEFCONFIG=<name>` first" in message
    assert ", ".join(ALL_DEFCONFIGS) in message
    assert "make defconfig DEFCONFIG=" in one_line_error(kconfig(tmp_path, "show"))


def test_unknown_command_line_variable_and_bad_usage_are_one_line(tmp_path):
    assert "unknown variable FOO" in one_line_error(
        kconfig(tmp_path, "defconfig", "gpt2-pydocs-cpu", "--set", "FOO=1"))
    assert "--set expects VAR=VALUE" in one_line_error(
        kconfig(tmp_path, "defconfig", "gpt2-pydocs-cpu", "--set", "TRACKER"))
    assert "invalid choice" in one_line_error(kconfig(tmp_path, "frobnicate"))


def test_make_and_make_defconfig_check_command_line_variables_alike(tmp_path):
    """``make`` (run) and ``make defconfig`` reject the same variables with the same words."""
    defconfig(tmp_path, "gpt2-pydocs-cpu")
    for bad in ("FOO=1", "GPU_MONITOR=maybe", "TRACKER=mlflow", "EXECUTOR=slrum"):
        at_defconfig = one_line_error(kconfig(tmp_path, "defconfig", "gpt2-pydocs-cpu", "--set", bad))
        assert one_line_error(kconfig(tmp_path, "run", "--set", bad)) == at_defconfig
    assert one_line_error(kconfig(tmp_path, "run", "--set", "FOO=1")) == \
        "unknown variable FOO; valid: TRACKER, GPU_MONITOR, SEEDS, PARALLEL_JOBS, CONTINUE, EXECUTOR"
    assert one_line_error(kconfig(tmp_path, "run", "--set", "EXECUTOR=slrum")) == \
        "EXECUTOR='slrum': valid choices: local, slurm"
    assert variable_flags({"GPU_MONITOR": "off", "TRACKER": "wandb, trackio"}) == [
        "--tracker", "both", "--no-gpu-monitor"]
    assert variable_flags({"GPU_MONITOR": "Yes"}) == ["--gpu-monitor"] and variable_flags({}) == []


# --- config -> trainer ----------------------------------------------------------------------



def test_trainer_defaults_give_exactly_the_contract_dests_known_to_the_trainer(tmp_path):
    from adamwprune.train.cli import build_parser
    from adamwprune.train.gpt2 import FAMILY
    from adamwprune.train.vision import LENET5, RESNET50

    parser_dests = {action.dest for family in (FAMILY, LENET5, RESNET50) for action in build_parser(family)._actions}
    dc = write_defconfig(tmp_path / "everything", "CONFIG_DATASET=\"pydocs\"",
                         "CONFIG_OPTIMIZER_SGD=y", "CONFIG_PRUNING_MAGNITUDE=y",
                         "CONFIG_GPU_MONITOR=y", "CONFIG_TRACKER_RUN_NAME=\"r1\"",
                         "CONFIG_WANDB_ENTITY=\"team\"")
    adv = write_defconfig(tmp_path / "adv", "CONFIG_DATASET=\"pydocs\"", "CONFIG_OPTIMIZER_ADAMWADV=y")
    seen = set()
    for name in [str(dc), str(adv), *ALL_DEFCONFIGS]:
        defconfig(tmp_path, name)
        defaults = trainer_defaults(load_config(tmp_path))
        assert set(defaults) <= TRAINER_CONTRACT_DESTS <= parser_dests, name
        seen |= set(defaults)
    assert seen == TRAINER_CONTRACT_DESTS == set(TRAINER_DESTS.values()) | {"tracker"}


def test_precedence_flags_over_config_over_builtin(tmp_path, monkeypatch):
    from adamwprune.train.cli import parse_args
    from adamwprune.train.gpt2 import FAMILY
    from adamwprune.train.settings import DEFAULTS

    monkeypatch.chdir(tmp_path)
    builtin = parse_args(FAMILY, [])
    assert builtin.batch_size == DEFAULTS["batch_size"] != 16
    defconfig(tmp_path, "gpt2-pydocs-cpu", "TRACKER=trackio")
    configured = parse_args(FAMILY, [])
    assert (configured.batch_size, configured.block_size, configured.learning_rate) == (16, 128, 1e-3)
    assert (configured.tracker, configured.model_name, configured.dataset) == (
        "trackio", "gpt2-tiny", "pydocs")
    assert configured.tracker_project == load_config(tmp_path).TRACKER_PROJECT
    flagged = parse_args(FAMILY, ["--batch-size", "3", "--tracker", "none", "--learning-rate", "0.5"])
    assert (flagged.batch_size, flagged.tracker, flagged.learning_rate) == (3, "none", 0.5)
    assert flagged.block_size == 128  # not given as a flag: still from the config
