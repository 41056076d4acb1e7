"""One source per setting: the settings dataclass, the trainer's --help, Kconfig and config.py agree."""

from __future__ import annotations

import dataclasses
import re
import typing

import kconfiglib
import pytest

from adamwprune.errors import UserError
from adamwprune.kconfig.generated import typed_values
from adamwprune.kconfig.symbols import CHOICES, float_ranges, trainer_dests
from adamwprune.kconfig.tree import REPO_ROOT, open_tree
from adamwprune.train import settings as S
from adamwprune.train.cli import build_parser, parse_args, settings_from_args
from adamwprune.train.gpt2 import FAMILY
from adamwprune.train.vision import LENET5

KCONFIG_TYPES = {bool: kconfiglib.BOOL, int: kconfiglib.INT, str: kconfiglib.STRING, float: kconfiglib.STRING}


@pytest.fixture(autouse=True)
def no_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .config: only the settings' defaults and flags count


def help_defaults(cls: type = S.TrainSettings, family=FAMILY) -> dict[str, str]:
    """flag -> the default that ``family``'s --help shows for it."""
    defaults = {}
    for action in build_parser(family, cls=cls)._actions:
        match = re.search(r"\(default: (.*)\)$", action.help or "")
        if action.option_strings and match:
            defaults[action.option_strings[0]] = match.group(1)
    return defaults


def kconfig_defaults(model: str, optimizer: str, gpu_monitor: bool) -> dict[str, object]:
    """The trainer settings that a fresh Kconfig tree gives for this model, optimizer and GPU switch."""
    kconf = open_tree(REPO_ROOT)
    assert kconf.syms["GPU_MONITOR"].set_value(2 if gpu_monitor else 0)
    for derived, value in (("MODEL", model), ("OPTIMIZER", optimizer)):
        member = next(sym for sym, v in CHOICES[derived].items() if v == value)
        assert kconf.syms[member].set_value(2)
    values = typed_values(kconf)
    return {dest: values[symbol] for symbol, dest in trainer_dests().items() if symbol in values}


def test_help_kconfig_and_the_settings_dataclass_give_the_same_defaults():
    shown = {**help_defaults(family=LENET5), **help_defaults()}  # GPT-2's, and the classifiers' own (--epochs)
    built = dataclasses.asdict(S.TrainSettings())
    for name, default in S.DEFAULTS.items():
        assert built[name] == default
        if S.METAS[name].flag:  # the model family is the script's, not a flag
            assert shown[S.flag(name)] == ("''" if default == "" else str(default)), name
    compared = set()
    for model in CHOICES["MODEL"].values():
        for optimizer, gpu_monitor in (("sgd", False), ("adamw", True), ("adamwspam", False), ("adamwadv", False),
                                          ("adamwprune", False)):
            kconfig = kconfig_defaults(model, optimizer, gpu_monitor)
            expected = {**S.defaults_for(model, optimizer), "optimizer": optimizer, "gpu_monitor": gpu_monitor}
            assert kconfig == {name: expected[name] for name in kconfig}, (model, optimizer)
            compared |= set(kconfig)
    assert compared == set(trainer_dests().values())  # every setting with a symbol was compared


def test_kconfig_types_and_int_ranges_are_the_settings_ones():
    kconf = open_tree(REPO_ROOT)
    hints = typing.get_type_hints(S.TrainSettings)
    for symbol, name in trainer_dests().items():
        if symbol in CHOICES:
            assert set(CHOICES[symbol].values()) <= set(S.METAS[name].allowed()), name
            continue
        sym = kconf.syms[symbol]
        assert sym.orig_type is KCONFIG_TYPES[hints[name]], name
        if sym.orig_type is kconfiglib.INT and sym.ranges:
            low, high, _ = sym.ranges[0]
            info = S.METAS[name]
            assert (int(low.str_value), int(high.str_value)) == (info.low, info.high), name


def test_adding_a_setting_is_one_field():
    dropout = S.setting(0.0, "dropout probability", "training", symbol="DROPOUT", low=0.0, high=1.0,
                        high_open=True)
    extended = dataclasses.make_dataclass("Extended", [("dropout", float, dropout)],
                                          bases=(S.TrainSettings,), frozen=True)
    parsed = build_parser(FAMILY, cls=extended).parse_args(["--dropout", "0.25"])
    assert parsed.dropout == 0.25 and help_defaults(extended)["--dropout"] == "0.0"
    assert trainer_dests(extended)["DROPOUT"] == "dropout"
    assert float_ranges(extended)["DROPOUT"] == (0.0, 1.0, False, True)
    assert extended(dropout=0.5).dropout == 0.5
    with pytest.raises(UserError, match=r"dropout must be in \[0, 1\) \(got 1.0\)"):
        extended(dropout=1.0)


@pytest.mark.parametrize("argv, message", [
    (["--momentum", "0.8"], "--momentum applies to --optimizer sgd only (this run has --optimizer adamw)"),
    (["--optimizer", "sgd", "--beta2", "0.9"],
     "--beta2 applies to --optimizer adam, adamw, adamwspam, adamwadv, adamwprune only "
     "(this run has --optimizer sgd)"),
    (["--target-sparsity", "0.7"], "--target-sparsity applies to --pruning-method magnitude, movement, "
                                   "state only (this run has --pruning-method none)"),
    (["--lr-schedule", "constant", "--min-lr", "0"], "--min-lr applies to --lr-schedule cosine only"),
    (["--gpu-monitor-interval", "2"], "--gpu-monitor-interval applies with --gpu-monitor only"),
    (["--resume", "--restart"], "give one of them"),
])
def test_a_setting_of_a_method_not_selected_is_a_one_line_error(argv, message):
    with pytest.raises(UserError) as error:
        settings_from_args(parse_args(FAMILY, argv))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_settings_of_the_selected_method_are_used_and_tracked():
    settings = settings_from_args(parse_args(FAMILY, ["--optimizer", "sgd", "--momentum", "0.8"]))
    assert settings.momentum == 0.8
    tracked = settings.tracked()
    assert tracked["momentum"] == 0.8 and "beta1" not in tracked and "target_sparsity" not in tracked
    assert "momentum" not in S.TrainSettings().tracked()


def test_resume_differences_name_each_setting_that_changes_the_run():
    saved = dataclasses.asdict(S.TrainSettings(optimizer="sgd", momentum=0.9))
    now = S.TrainSettings(optimizer="adamw", seed=7, max_iters=99, eval_interval=3, tracker="both")
    assert S.resume_differences(saved, now) == [
        "--seed is 7, the checkpoint has 1337", "--optimizer is 'adamw', the checkpoint has 'sgd'"]
    assert "--max-iters" in S.resumable_flags() and "--optimizer" not in S.resumable_flags()
