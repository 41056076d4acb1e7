"""Unit-level tests of the training loop's parts: schedule, checkpoints, hooks, metrics helpers."""

from __future__ import annotations

import math
import os

import pytest
import torch

from adamwprune.errors import UserError
from adamwprune.optim import build_optimizer, check_optimizer
from adamwprune.pruning import NoPruning, build_pruner, check_pruning_method, measure_sparsity
from adamwprune.train import checkpoint as ckpt
from adamwprune.train.hardware import peak_bf16_flops
from adamwprune.train.loop import TrainSettings, check_can_continue, perplexity
from adamwprune.train.schedule import learning_rate

SCHEDULE = dict(base_lr=1e-3, min_lr=1e-4, warmup_iters=10, max_iters=110)


# --- LR schedule ---------------------------------------------------------------------------

def test_warmup_is_linear_up_to_the_base_lr():
    assert [learning_rate(i, **SCHEDULE) for i in (0, 4, 9)] == pytest.approx([1e-4, 5e-4, 1e-3])


def test_cosine_decays_from_base_to_min_and_stays_there():
    assert learning_rate(10, **SCHEDULE) == pytest.approx(1e-3)
    assert learning_rate(60, **SCHEDULE) == pytest.approx((1e-3 + 1e-4) / 2)  # halfway: cos = 0
    assert learning_rate(110, **SCHEDULE) == pytest.approx(1e-4)
    assert learning_rate(500, **SCHEDULE) == pytest.approx(1e-4)
    lrs = [learning_rate(i, **SCHEDULE) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_constant_schedule_keeps_the_base_lr_after_warmup():
    assert learning_rate(5, **SCHEDULE, schedule="constant") == pytest.approx(6e-4)
    assert learning_rate(1000, **SCHEDULE, schedule="constant") == pytest.approx(1e-3)


# --- checkpoints -----------------------------------------------------------------------------

def test_best_checkpoint_is_saved_only_when_val_loss_improves(tmp_path):
    path = tmp_path / ckpt.BEST_NAME
    best = ckpt.BestCheckpoint(path)
    saves = []

    def state_for(val_loss):
        def make():
            saves.append(val_loss)
            return {"val_loss": val_loss}
        return make

    sequence = [5.0, 4.0, 4.5, 4.0, 3.0, float("nan"), 3.5, 2.5]
    improved = [best.update(v, state_for(v)) for v in sequence]
    assert improved == [True, True, False, False, True, False, False, True]
    assert saves == [5.0, 4.0, 3.0, 2.5]
    assert best.best_val_loss == 2.5
    assert ckpt.load(path) == {"val_loss": 2.5}
    assert os.listdir(tmp_path) == [ckpt.BEST_NAME]  # no temp file left behind


def test_disabled_best_checkpoint_tracks_the_best_but_writes_nothing(tmp_path):
    best = ckpt.BestCheckpoint(tmp_path / ckpt.BEST_NAME, enabled=False)
    assert best.update(1.0, lambda: pytest.fail("must not build state"))
    assert best.best_val_loss == 1.0 and not any(tmp_path.iterdir())


def test_failed_save_keeps_the_previous_checkpoint_and_no_temp_file(tmp_path):
    path = tmp_path / ckpt.LAST_NAME
    ckpt.save_atomic({"iteration": 1}, path)
    with pytest.raises(Exception):
        ckpt.save_atomic({"iteration": 2, "bad": lambda: None}, path)  # lambdas don't pickle
    assert ckpt.load(path) == {"iteration": 1}
    assert os.listdir(tmp_path) == [ckpt.LAST_NAME]


# --- optimizer and pruning hooks -------------------------------------------------------------

def _groups():
    weight, bias = torch.nn.Parameter(torch.ones(3, 3)), torch.nn.Parameter(torch.ones(3))
    return [{"params": [weight], "weight_decay": 0.1}, {"params": [bias], "weight_decay": 0.0}]


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW), ("AdamW", torch.optim.AdamW)])
def test_build_optimizer_gives_the_named_optimizer_with_per_group_decay(name, cls):
    opt = build_optimizer(name, _groups(), lr=0.01, betas=(0.8, 0.9), momentum=0.7, weight_decay=0.5)
    assert type(opt) is cls
    assert opt.defaults["fused"] is True  # torch >= 2.4 has fused CPU kernels for all three
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[0]["lr"] == 0.01
    if cls is torch.optim.SGD:
        assert opt.param_groups[0]["momentum"] == 0.7
    else:
        assert opt.param_groups[0]["betas"] == (0.8, 0.9)


@pytest.mark.parametrize("name", ["adamwspam", "adamwprune"])
def test_research_optimizers_are_refused_until_they_exist(name):
    with pytest.raises(UserError, match=f"optimizer '{name}' is not available yet"):
        check_optimizer(name)


def test_unknown_optimizer_lists_the_choices():
    with pytest.raises(UserError, match="choose one of sgd, adam, adamw, adamwspam, adamwprune"):
        build_optimizer("lion", _groups(), lr=0.1)


@pytest.mark.parametrize("method", ["magnitude", "movement", "state"])
def test_pruning_methods_are_refused_until_they_exist(method):
    with pytest.raises(UserError, match=f"pruning method '{method}' is not available yet"):
        check_pruning_method(method)


def test_no_pruning_leaves_weights_untouched():
    weight = torch.randn(4, 4)
    before = weight.clone()
    pruner = build_pruner("none", [("w", weight)], target_sparsity=0.5)
    assert isinstance(pruner, NoPruning)
    pruner.step(1)
    assert torch.equal(weight, before)


def test_sparsity_is_the_fraction_of_exact_zeros_over_all_prunable_weights():
    a = torch.tensor([[0.0, 1.0], [2.0, 0.0]])  # 2 of 4
    b = torch.tensor([0.0, 0.0, 0.0, 1e-30])      # 3 of 4 (tiny is not zero)
    assert measure_sparsity([("a", a), ("b", b)]).item() == pytest.approx(5 / 8)
    assert measure_sparsity([]).item() == 0.0


# --- metric helpers ------------------------------------------------------------------------

def test_perplexity_is_exp_of_val_loss_capped_at_20():
    assert perplexity(10.96) == pytest.approx(57550.31, rel=1e-3)  # the spec's (rounded) example
    assert perplexity(2.0) == pytest.approx(math.exp(2.0))
    assert perplexity(50.0) == perplexity(20.0) == pytest.approx(math.exp(20.0))


def test_peak_flops_lookup_prefers_the_specific_name():
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_bf16_flops("NVIDIA A10G") == 70e12
    assert peak_bf16_flops("NVIDIA A10") == 125e12
    assert peak_bf16_flops("Some Future GPU") is None


def test_settings_reject_nonsense_with_a_flag_name():
    with pytest.raises(UserError, match="eval-interval must be at least 1"):
        TrainSettings(eval_interval=0).validate()
    with pytest.raises(UserError, match="learning-rate must not be negative"):
        TrainSettings(learning_rate=-1).validate()
    with pytest.raises(UserError, match=r"target-sparsity must be in \[0, 1\)"):
        TrainSettings(target_sparsity=1.0).validate()


def test_a_finished_run_cannot_be_resumed_without_a_larger_limit():
    with pytest.raises(UserError, match="pass a larger --max-iters"):
        check_can_continue(100, 5.0, TrainSettings(max_iters=100))
    with pytest.raises(UserError, match="pass a larger --max-time"):
        check_can_continue(10, 60.0, TrainSettings(max_iters=100, max_time=60))
    check_can_continue(10, 5.0, TrainSettings(max_iters=100, max_time=60))
