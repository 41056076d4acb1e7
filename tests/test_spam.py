"""AdamWSPAM and AdamWADV: the rules checked by hand, then through the real loop."""

from __future__ import annotations

import math

import pytest
import torch

from adamwprune.errors import UserError
from adamwprune.optim import build_optimizer
from adamwprune.optim.spam import AdamWSPAM
from adamwprune.train.cli import parse_args, settings_from_args
from helpers import train_tiny_gpt2
from adamwprune.train.gpt2 import FAMILY
from adamwprune.train.schedule import learning_rate


def spam(weight: torch.nn.Parameter, **options) -> AdamWSPAM:
    settings = {"lr": 0.1, "betas": (0.9, 0.999), "weight_decay": 0.0, "fused": False, **options}
    return AdamWSPAM([weight], **settings)


def test_spikes_are_clipped_to_sqrt_theta_v_where_g_squared_exceeds_theta_v():
    weight = torch.nn.Parameter(torch.zeros(4))
    optimizer = spam(weight, theta=4.0, clip_delay=0, reset_interval=None, warmup_steps=None)
    weight.grad = torch.ones(4)
    optimizer.step()  # creates the moments
    optimizer.interval_metrics()
    optimizer.state[weight]["exp_avg_sq"].copy_(torch.tensor([1.0, 4.0, 0.01, 1.0]))
    # theta * v = [4, 16, 0.04, 4]: g^2 = [9, 9, 1, 3.61] exceeds it at elements 0 and 2
    weight.grad = torch.tensor([3.0, -3.0, -1.0, 1.9])
    optimizer.step()
    assert torch.allclose(weight.grad, torch.tensor([2.0, -3.0, -0.2, 1.9]))
    assert optimizer.interval_metrics()["spam_clipped_fraction"].item() == 0.5


def test_no_clipping_during_the_delay_after_the_start_and_after_each_reset():
    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = spam(weight, theta=1.0, clip_delay=3, reset_interval=5, warmup_steps=None)
    clipped = []
    for step in range(1, 13):
        weight.grad = torch.full((3,), 100.0 if step % 2 else 0.01)  # every other step a spike
        optimizer.step()
        clipped.append(optimizer.interval_metrics()["spam_clipped_fraction"].item() > 0)
    # resets before steps 6 and 11; clipping only from the 4th step after the start or a reset
    spikes_clipped = [step for step, hit in enumerate(clipped, 1) if hit]
    assert spikes_clipped == [5, 9]


def test_the_warm_up_multiplier_at_chosen_steps():
    optimizer = spam(torch.nn.Parameter(torch.zeros(1)), warmup_steps=100)
    assert optimizer.warmup_factor(1) == 1e-3  # 0.5 * (1 - cos(pi / 100)) = 2.5e-4, floored
    assert optimizer.warmup_factor(25) == pytest.approx(0.5 * (1 - math.cos(math.pi / 4)))
    assert optimizer.warmup_factor(50) == pytest.approx(0.5)
    assert optimizer.warmup_factor(100) == optimizer.warmup_factor(5000) == 1.0


def test_a_reset_zeroes_both_moments_but_not_the_step_count():
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = spam(weight, reset_interval=3, warmup_steps=None, clip_delay=100)
    for _ in range(3):
        weight.grad = torch.ones(2)
        optimizer.step()
    state = optimizer.state[weight]
    assert state["exp_avg"].abs().sum() > 0 and float(state["step"]) == 3
    weight.grad = torch.zeros(2)
    optimizer.step()  # step 4: reset first, then a zero gradient adds nothing
    assert state["exp_avg"].abs().sum() == 0 and state["exp_avg_sq"].abs().sum() == 0
    assert float(state["step"]) == 4  # bias correction goes on with the global step
    assert optimizer.interval_metrics()["spam_resets"] == 1.0


# --- through the loop ----------------------------------------------------------------------------

def tiny_run(tmp_path, name: str, resume=None, **values):
    return train_tiny_gpt2(tmp_path / name, resume=resume is not None,
                           **{"eval_interval": 5, "optimizer": "adamwspam", **values})


@pytest.mark.slow
def test_resets_count_optimizer_steps_with_gradient_accumulation_and_the_logged_rate_is_applied(tmp_path):
    records = tiny_run(tmp_path, "accum", gradient_accumulation=3, max_iters=12, spam_interval=5,
                       spam_warmup_steps=4)
    resets = {r["step"]: r["metrics"]["spam_resets"] for r in records if "spam_resets" in r["metrics"]}
    assert [step for step, count in resets.items() if count] == [6, 11]  # before steps 6 and 11, once each
    optimizer = spam(torch.nn.Parameter(torch.zeros(1)), warmup_steps=4)
    since_reset = {step: (step - 1) % 5 + 1 for step in range(1, 13)}
    for r in records:
        if "learning_rate" in r["metrics"]:
            scheduled = learning_rate(r["step"] - 1, base_lr=2e-3, min_lr=2e-4, warmup_iters=0, max_iters=12)
            expected = scheduled * optimizer.warmup_factor(since_reset[r["step"]])
            assert r["metrics"]["learning_rate"] == pytest.approx(expected, rel=1e-12), r["step"]


@pytest.mark.slow
def test_a_resumed_run_equals_an_uninterrupted_one_bit_for_bit_across_a_reset(tmp_path):
    common = {"max_iters": 14, "spam_interval": 6, "spam_clip_delay": 2, "spam_warmup_steps": 3,
              "spam_spike_detection": True, "spam_amsgrad": True, "lr_schedule": "constant"}
    straight = tiny_run(tmp_path, "straight", **common)
    tiny_run(tmp_path, "resumed", **{**common, "max_iters": 5})
    resumed = tiny_run(tmp_path, "resumed", resume=True, **common)

    def values(records):
        return {(r["step"], k): v for r in records for k, v in r["metrics"].items()
                if k in ("train_loss", "val_loss", "learning_rate", "spam_clipped_fraction", "grad_norm")}

    assert values(straight) == values(resumed)
    assert any(r["metrics"].get("spam_clipped_fraction", 0) > 0 for r in straight)  # clipping happened
    assert sum(r["metrics"].get("spam_resets", 0) for r in straight) == 2


@pytest.mark.slow
def test_the_loss_keeps_falling_across_a_momentum_reset(tmp_path):
    records = tiny_run(tmp_path, "falls", max_iters=80, spam_interval=20, spam_warmup_steps=5,
                       eval_interval=20, eval_samples=16, lr_schedule="constant", learning_rate=1e-3)
    val = {r["step"]: r["metrics"]["val_loss"] for r in records if "val_loss" in r["metrics"]}
    assert val[0] - 0.5 > val[20] > val[40] > val[80], val  # resets came before steps 21, 41 and 61
    clipped = [r["metrics"]["spam_clipped_fraction"] for r in records if "spam_clipped_fraction" in r["metrics"]]
    assert max(clipped) < 0.5  # no step had its gradients wiped out


@pytest.mark.parametrize("argv, message", [
    (["--optimizer", "adamwspam", "--spam-theta", "0"], "spam-theta must be greater than 0"),
    (["--optimizer", "adamwspam", "--spam-theta", "-5"], "spam-theta must be greater than 0"),
    (["--optimizer", "adamwspam", "--spam-interval", "0"], "spam-interval must be at least 1"),
    (["--optimizer", "adamwspam", "--spam-warmup-steps", "-1"], "spam-warmup-steps must not be negative"),
    (["--optimizer", "adamwspam", "--spam-clip-delay", "-1"], "spam-clip-delay must not be negative"),
    (["--optimizer", "adamw", "--spam-theta", "5"], "--spam-theta applies to --optimizer adamwspam (or "
     "adamwprune with --adamwprune-base adamwspam) only (this run steps with adamw)"),
    (["--optimizer", "sgd", "--adv-amsgrad"], "--adv-amsgrad applies to --optimizer adamwadv (or "
     "adamwprune with --adamwprune-base adamwadv) only (this run steps with sgd)"),
])
def test_bad_spam_input_is_one_line_before_any_work(argv, message, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as error:
        settings_from_args(parse_args(FAMILY, argv))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_adamwadv_is_adamw_with_amsgrad_and_its_own_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = settings_from_args(parse_args(FAMILY, ["--optimizer", "adamwadv"]))
    assert (settings.weight_decay, settings.min_lr, settings.grad_clip) == (0.01, 1e-6, 1.0)
    optimizer = build_optimizer("adamwadv", [{"params": [torch.nn.Parameter(torch.ones(2, 2))]}], settings)
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["amsgrad"] is True
    assert optimizer.defaults["weight_decay"] == 0.01
