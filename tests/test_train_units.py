"""Unit-level tests of the training loop's parts: schedule, checkpoints, hooks, metrics helpers."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import pytest
import torch

from adamwprune.data import get_dataset
from adamwprune.errors import UserError
from adamwprune.optim import build_optimizer
from adamwprune.pruning import NoPruning, build_pruner, measure_sparsity
from adamwprune.tracking import ExperimentTracker, NullTracker
from adamwprune.train import checkpoint as ckpt
from adamwprune.train.distributed import DistContext
from adamwprune.train.checkpoint import ResumeState, check_can_continue, check_resume_state
from adamwprune.train.gpt2 import GPT2Adapter, perplexity
from adamwprune.train.hardware import peak_bf16_flops
from adamwprune.train.loop import Trainer, train
from adamwprune.train.settings import TrainSettings
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
    improved = [best.update({"val_loss": v}, state_for(v)) for v in sequence]
    assert improved == [True, True, False, False, True, False, False, True]
    assert saves == [5.0, 4.0, 3.0, 2.5]
    assert best.best_val_loss == 2.5
    assert ckpt.load(path) == {"val_loss": 2.5}
    assert os.listdir(tmp_path) == [ckpt.BEST_NAME]  # no temp file left behind


def test_disabled_best_checkpoint_tracks_the_best_but_writes_nothing(tmp_path):
    best = ckpt.BestCheckpoint(tmp_path / ckpt.BEST_NAME, enabled=False)
    assert best.update({"val_loss": 1.0}, lambda: pytest.fail("must not build state"))
    assert best.best_val_loss == 1.0 and not any(tmp_path.iterdir())


def test_failed_save_keeps_the_previous_checkpoint_and_no_temp_file(tmp_path):
    path = tmp_path / ckpt.LAST_NAME
    ckpt.save_atomic({"iteration": 1}, path)
    with pytest.raises(Exception):
        ckpt.save_atomic({"iteration": 2, "bad": lambda: None}, path)  # lambdas don't pickle
    assert ckpt.load(path) == {"iteration": 1}
    assert os.listdir(tmp_path) == [ckpt.LAST_NAME]


@pytest.mark.parametrize("content", [b"", b"not a checkpoint\n", b'{"a": 1}', "truncated"])
def test_a_file_that_is_not_a_checkpoint_is_a_one_line_user_error_naming_it(tmp_path, content):
    path = tmp_path / "some.pt"
    if content == "truncated":
        ckpt.save_atomic({"weights": torch.ones(1000)}, path)
        content = path.read_bytes()[:500]
    path.write_bytes(content)
    with pytest.raises(UserError, match=f"cannot read checkpoint {path}: ") as error:
        ckpt.load(path)
    assert "\n" not in str(error.value)


# --- resume checks ---------------------------------------------------------------------------

def tiny_adapter(model_name="gpt2-tiny", block_size=16):
    return GPT2Adapter(get_dataset("pydocs"), model_name=model_name, block_size=block_size)


def tiny_settings(**values):
    """Settings that match tiny_adapter()."""
    return TrainSettings(**{"model_name": "gpt2-tiny", "block_size": 16, "dataset": "pydocs", **values})


def last_state(adapter, iteration=4, training_time=1.0):
    """What ckpt_last.pt holds (the loop's _save_last), minus the tensors the checks never read."""
    settings = tiny_settings(model_name=adapter.model_name, block_size=adapter.block_size)
    return {"format": 3, "model": {}, "optimizer": {}, "pruner": {}, "iteration": iteration,
            "best_val_loss": 2.0, "best_metrics": {"val_loss": 2.0}, "training_time": training_time,
            "rng": {}, "model_description": adapter.describe(), "run": {"project": "p", "run_name": "r"},
            "settings": dataclasses.asdict(settings)}


def test_resume_checks_accept_a_matching_ckpt_last():
    adapter = tiny_adapter()
    checked = check_resume_state(last_state(adapter), adapter.describe(), tiny_settings(max_iters=8))
    assert isinstance(checked, ResumeState) and checked.state["iteration"] == 4


def test_resume_from_ckpt_best_or_a_foreign_object_is_refused_with_a_hint(tmp_path):
    adapter = tiny_adapter()
    best = {"format": 3, "model": {}, "iteration": 4, "val_loss": 2.0, "best_metrics": {}, "settings": {},
            "model_description": adapter.describe(), "run": {}}  # the loop's _best_state
    with pytest.raises(UserError, match=r"cannot resume from .*ckpt_best.pt: it lacks optimizer, "
                                        r"best_val_loss, training_time, pruner .*pass the run directory or its "
                                        r"ckpt_last.pt"):
        check_resume_state(best, adapter.describe(), TrainSettings(), source=tmp_path / "ckpt_best.pt")
    with pytest.raises(UserError, match="is not a training checkpoint"):
        check_resume_state([1, 2], adapter.describe(), TrainSettings())
    with pytest.raises(UserError, match="checkpoint format 7 is not supported"):
        check_resume_state({**last_state(adapter), "format": 7}, adapter.describe(), TrainSettings())


def test_resume_with_other_model_settings_or_a_spent_budget_is_refused():
    state = last_state(tiny_adapter(), iteration=8, training_time=30.0)
    with pytest.raises(UserError, match="--model-name is 'gpt2', the checkpoint has 'gpt2-tiny'.*"
                                        "--block-size is 64, the checkpoint has 16"):
        check_resume_state(state, tiny_adapter("gpt2", 64).describe(), TrainSettings(max_iters=100, dataset="pydocs",
                                                                            block_size=64))
    with pytest.raises(UserError, match="pass a larger --max-iters"):
        check_resume_state(state, tiny_adapter().describe(), tiny_settings(max_iters=8))
    with pytest.raises(UserError, match="pass a larger --max-time"):
        check_resume_state(state, tiny_adapter().describe(), tiny_settings(max_iters=100, max_time=30))


def test_train_takes_only_a_checked_resume_state_and_fails_the_tracked_run(tracking_env):
    run_dir = tracking_env / "run"
    tracker = ExperimentTracker("none", project="p", run_name="r", run_dir=run_dir)
    adapter = tiny_adapter()
    with pytest.raises(TypeError, match="check_resume_state"):
        train(adapter, TrainSettings(), ctx=DistContext(device="cpu"), tracker=tracker, run_dir=run_dir,
              run_info={}, resume_state=last_state(adapter))
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(e["event"], e.get("status")) for e in events] == [("start", None), ("end", "failed")]


def test_a_trainer_that_cannot_be_built_still_finishes_the_tracked_run_as_failed(tracking_env):
    run_dir = tracking_env / "run"
    tracker = ExperimentTracker("none", project="p", run_name="r", run_dir=run_dir)
    with pytest.raises(TypeError):
        train(tiny_adapter(), TrainSettings(), ctx=DistContext(device="cpu"), tracker=tracker,
              run_dir=run_dir, run_info=None)  # dict(None) fails inside Trainer()
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "end" and events[-1]["status"] == "failed"


def test_a_hard_interrupt_right_after_a_step_saves_the_new_weights_with_the_new_count(tmp_path):
    settings = TrainSettings(batch_size=2, max_iters=10, eval_samples=1, warmup_iters=0)
    trainer = Trainer(tiny_adapter(), settings, ctx=DistContext(device="cpu"), tracker=NullTracker(),
                      run_dir=tmp_path, run_info={})
    trainer.setup(None)
    trainer.train_step()  # a second Ctrl-C landing as the step returns finds a consistent state
    trainer.save_after_hard_interrupt()
    saved = ckpt.load(tmp_path / ckpt.LAST_NAME)
    assert saved["iteration"] == 1
    assert all(torch.equal(saved["model"][k], v) for k, v in trainer.model.state_dict().items())
    assert saved["optimizer"]["state"]  # the update the weights came from


# --- optimizer and pruning hooks -------------------------------------------------------------

def _groups():
    weight, bias = torch.nn.Parameter(torch.ones(3, 3)), torch.nn.Parameter(torch.ones(3))
    return [{"params": [weight], "weight_decay": 0.1}, {"params": [bias], "weight_decay": 0.0}]


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW), ("AdamW", torch.optim.AdamW)])
def test_build_optimizer_gives_the_named_optimizer_with_per_group_decay(name, cls):
    settings = TrainSettings(learning_rate=0.01, min_lr=0.0, beta1=0.8, beta2=0.9, momentum=0.7,
                             weight_decay=0.5)
    opt = build_optimizer(name, _groups(), settings)
    assert type(opt) is cls
    assert opt.defaults["fused"] is True  # torch >= 2.4 has fused CPU kernels for all three
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[0]["lr"] == 0.01
    if cls is torch.optim.SGD:
        assert opt.param_groups[0]["momentum"] == 0.7
    else:
        assert opt.param_groups[0]["betas"] == (0.8, 0.9)


def test_unknown_optimizer_lists_the_choices():
    with pytest.raises(UserError, match="choose one of sgd, adam, adamw, adamwspam, adamwadv, adamwprune"):
        build_optimizer("lion", _groups(), TrainSettings())


def test_no_pruning_leaves_weights_untouched():
    weight = torch.randn(4, 4)
    before = weight.clone()
    pruner = build_pruner("none", [("w", weight)], None, TrainSettings())
    assert isinstance(pruner, NoPruning)
    pruner.before_step()
    pruner.after_step(1)
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


@pytest.mark.parametrize("values, message", [
    (dict(eval_interval=0), "eval-interval must be at least 1"),
    (dict(learning_rate=-1), "learning-rate must not be negative"),
    (dict(target_sparsity=1.0), r"target-sparsity must be in \[0, 1\) \(got 1.0\)"),
    (dict(beta1=1.0), r"beta1 must be in \[0, 1\)"),
    (dict(beta2=-0.5), r"beta2 must be in \[0, 1\)"),
    (dict(momentum=-0.1), r"momentum must be in \[0, 1\)"),
    (dict(weight_decay=-0.1), "weight-decay must not be negative"),
    (dict(learning_rate=float("nan")), "learning-rate must be a finite number"),
    (dict(learning_rate=1e-4, min_lr=1e-3), r"min-lr \(0.001\) must not exceed learning-rate \(0.0001\)"),
    (dict(gpu_monitor_interval=0.0), "gpu-monitor-interval must be at least 0.001"),
    (dict(max_time=float("nan")), "max-time must be a finite number"),
])
def test_settings_reject_nonsense_with_a_flag_name_as_they_are_built(values, message):
    with pytest.raises(UserError, match=message):
        TrainSettings(**values)


def test_settings_accept_the_edges_of_their_ranges():
    TrainSettings(beta1=0.0, beta2=0.999, momentum=0.0, min_lr=6e-4, learning_rate=6e-4, grad_clip=0.0)


def test_a_finished_run_cannot_be_resumed_without_a_larger_limit():
    with pytest.raises(UserError, match="pass a larger --max-iters"):
        check_can_continue(100, 5.0, TrainSettings(max_iters=100))
    with pytest.raises(UserError, match="pass a larger --max-time"):
        check_can_continue(10, 60.0, TrainSettings(max_iters=100, max_time=60))
    check_can_continue(10, 5.0, TrainSettings(max_iters=100, max_time=60))
