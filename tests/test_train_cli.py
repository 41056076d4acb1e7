"""gpt2/train.py's command line, in process: flags, help, early one-line errors."""

from __future__ import annotations

import pytest

from adamwprune.errors import UserError
from adamwprune.train.cli import RUN_CONTROL, build_parser, main, parse_args
from adamwprune.train.gpt2 import FAMILY
from adamwprune.train.settings import DEFAULTS, METAS
from helpers import TRAINER_CONTRACT_DESTS


@pytest.fixture(autouse=True)
def no_config(tmp_path, monkeypatch):
    """Run where there is no .config, so only built-in defaults and flags count."""
    monkeypatch.chdir(tmp_path)


def test_every_contract_dest_plus_resume_and_data_dir_is_a_documented_flag():
    from adamwprune.train.vision import LENET5, RESNET50

    options = {action.dest: action for family in (FAMILY, LENET5, RESNET50)  # --epochs: the classifiers'
               for action in build_parser(family)._actions if action.option_strings}
    assert TRAINER_CONTRACT_DESTS | {"resume", "data_dir"} <= set(options)
    for dest, action in options.items():
        assert action.help and action.help.strip(), dest
    flags = {name for name in DEFAULTS if METAS[name].flag}  # all but the model family (the script's)
    matrix_only = {"tracker_group", "tracker_tags"}  # set per run by make test_matrix, no Kconfig symbol
    assert flags | set(RUN_CONTROL) == TRAINER_CONTRACT_DESTS | matrix_only | {
        "resume", "data_dir", "restart", "check_only"}
    assert flags | set(RUN_CONTROL) == set(options) - {"help"}


def test_help_shows_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(FAMILY, ["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--tracker ", "--tracker-project", "--tracker-run-name", "--resume", "--data-dir",
                 "--compile, --no-compile", "--max-time", "--gpu-monitor"):
        assert flag in text, flag
    assert "(default: finewebedu)" in text and "(default: adamw)" in text and "(default: none)" in text


def test_builtin_defaults_without_a_configuration():
    args = parse_args(FAMILY, [])
    assert (args.model_name, args.dataset, args.optimizer, args.tracker) == ("gpt2", "finewebedu", "adamw", "none")
    assert args.tracker_project == "" and args.tracker_run_name == ""  # filled in at run time


def test_the_spec_command_line_parses():
    args = parse_args(FAMILY, ["--dataset", "finewebedu", "--optimizer", "adamwspam", "--tracker", "trackio",
                       "--tracker-project", "my-experiments", "--tracker-run-name", "experiment-1"])
    assert (args.dataset, args.optimizer, args.tracker, args.tracker_project, args.tracker_run_name) == (
        "finewebedu", "adamwspam", "trackio", "my-experiments", "experiment-1")


@pytest.mark.parametrize("argv, message", [
    (["--tracker", "mlflow"], "unknown tracker 'mlflow'"),
    (["--tracker", "none,trackio"], "combines 'none' with a tracker"),
    (["--optimizer", "adamwprune", "--pruning-method", "magnitude"],
     "adamwprune prunes by its own state: use --pruning-method state, not magnitude"),
    (["--pruning-method", "state"], "state scores weights from adamwprune's own moments: use --optimizer adamwprune"),
    (["--optimizer", "adamwprune", "--adamwprune-variant", "bitter9"], "bitter9 is bitter7 compiled: use "),
    (["--optimizer", "adamwprune", "--adamwprune-variant", "bitter10"], "unknown adamwprune-variant 'bitter10'"),
    (["--adamwprune-base", "adam"], "--adamwprune-base applies to --optimizer adamwprune only"),
    (["--optimizer", "adamwprune", "--adamwprune-base", "sgd"], "unknown adamwprune-base 'sgd'"),
    (["--optimizer", "adamwprune", "--spam-theta", "5"],
     r"--spam-theta applies to --optimizer adamwspam \(or adamwprune with --adamwprune-base adamwspam\) only"),
    (["--eval-interval", "0"], "eval-interval must be at least 1"),
    (["--beta1", "1.0"], r"beta1 must be in \[0, 1\) \(got 1.0\)"),
    (["--optimizer", "sgd", "--momentum", "-0.9"], r"momentum must be in \[0, 1\)"),
    (["--learning-rate", "1e-4", "--min-lr", "1e-3"], "min-lr .* must not exceed learning-rate"),
    (["--dataset", "pydocs", "--model-name", "gpt3"], "unknown model-name 'gpt3'"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--dataset", "pydocs", "--model-name", "gpt2-tiny", "--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_input_is_a_user_error_before_any_work(argv, message, tmp_path):
    with pytest.raises(UserError, match=message):
        main(FAMILY, argv + ["--output-dir", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()


def test_resume_without_a_checkpoint_says_where_it_looked(tmp_path):
    with pytest.raises(UserError, match=r"cannot resume: no ckpt_last.pt under .*runs/p"):
        main(FAMILY, ["--dataset", "pydocs", "--model-name", "gpt2-tiny", "--device", "cpu", "--resume",
              "--tracker-project", "p", "--output-dir", str(tmp_path / "runs")])
    with pytest.raises(UserError, match="cannot resume: .*nowhere does not exist"):
        main(FAMILY, ["--dataset", "pydocs", "--model-name", "gpt2-tiny", "--device", "cpu",
              "--resume", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "runs")])
