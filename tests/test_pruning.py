"""Magnitude, movement and AdamWPrune state pruning: schedules, each variant's score, exact targets,
masks that only grow, zeros that stay zero (weights, gradients, moments), resume, and the logged
sparsity read back from Trackio."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from adamwprune.errors import UserError
from adamwprune.optim import build_optimizer
from adamwprune.pruning import build_pruner, lowest, variants
from adamwprune.pruning.methods import MovementPruner, StatePruner
from adamwprune.pruning.schedule import scheduled_sparsity, short_ramp_warning
from adamwprune.train import checkpoint as ckpt
from adamwprune.train.cli import main, parse_args, settings_from_args
from adamwprune.train.gpt2 import FAMILY
from adamwprune.train.settings import TrainSettings
from helpers import REPO, trackio_rows, train_tiny_gpt2


@pytest.mark.parametrize("schedule, halfway", [("zhu-gupta", 0.875), ("cubic-in", 0.125), ("linear", 0.5)])
def test_each_schedule_at_chosen_steps(schedule, halfway):
    at = dict(target=0.8, warmup=100, ramp=200, max_iters=1000, schedule=schedule)
    assert scheduled_sparsity(99, **at) == 0.0 and scheduled_sparsity(100, **at) == 0.0
    assert scheduled_sparsity(200, **at) == pytest.approx(0.8 * halfway)
    assert scheduled_sparsity(300, **at) == scheduled_sparsity(900, **at) == pytest.approx(0.8)
    assert scheduled_sparsity(550, **{**at, "ramp": 0}) == pytest.approx(0.8 * halfway)  # 0: until max-iters


def toy(method: str, target: float, scope: str = "global", optimizer: str = "adamw", **values):
    """A small MLP with its optimizer and pruner, trained by hand on a fixed regression task."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32),
                                torch.nn.Tanh(), torch.nn.Linear(32, 1))
    settings = TrainSettings(optimizer=optimizer, pruning_method=method, target_sparsity=target,
                             pruning_warmup=5, pruning_ramp=20, pruning_interval=3, pruning_scope=scope,
                             max_iters=40, learning_rate=1e-2, min_lr=0.0, **values)
    optimizer_ = build_optimizer(optimizer, [{"params": list(model.parameters())}], settings)
    prunable = [(name, p) for name, p in model.named_parameters() if p.dim() == 2]
    return model, optimizer_, build_pruner(method, prunable, optimizer_, settings), prunable


def step(model, optimizer, pruner, number: int) -> None:
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(number))
    loss = (model(x).squeeze(-1) - x[:, :4].sum(-1)).pow(2).mean()
    loss.backward()
    pruner.before_step()
    optimizer.step()
    pruner.after_step(number)
    optimizer.zero_grad(set_to_none=True)


def zero_fraction(weights) -> float:
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


METHODS = [("magnitude", "adamw", {}), ("movement", "adamw", {}),
           *(("state", "adamwprune", {"adamwprune_variant": v}) for v in variants.names()),
           ("state", "adamwprune", {"adamwprune_base": "adamwspam", "spam_clip_delay": 2, "spam_interval": 12}),
           ("state", "adamwprune", {"adamwprune_base": "adamwadv"})]


@pytest.mark.parametrize("method, optimizer, values", METHODS,
                         ids=["magnitude", "movement", *variants.names(), "state-on-adamwspam", "state-on-adamwadv"])
@pytest.mark.parametrize("target", [0.5, 0.9])
def test_each_method_reaches_its_target_and_masks_only_grow(method, optimizer, values, target):
    model, optimizer, pruner, prunable = toy(method, target, optimizer=optimizer, **values)
    previous = [mask.clone() for mask in pruner.masks]
    for number in range(1, 41):
        step(model, optimizer, pruner, number)
        assert all(bool((old | ~new).all()) for old, new in zip(previous, pruner.masks)), number  # never back
        previous = [mask.clone() for mask in pruner.masks]
        if number == 25:  # the end of the ramp
            assert abs(zero_fraction([p for _, p in prunable]) - target) < 0.005
    assert abs(pruner.sparsity().item() - target) < 0.005
    for (_, weight), mask in zip(prunable, pruner.masks):
        assert bool((weight[~mask] == 0).all())
        state = optimizer.state[weight]
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):  # 15 steps after the last mask update
            assert key not in state or bool((state[key][~mask] == 0).all()), key


W = torch.tensor([[2.0, -1.0, 0.5, -4.0]])
M = torch.tensor([[0.5, 0.25, -1.0, 0.0]])
V = torch.tensor([[0.25, 1.0, 4.0, 0.01]])
E = variants.EPS


@pytest.mark.parametrize("variant, expected", [
    ("bitter0", [2 * 0.5 * 2 / (0.5 + E), 0.25 * 1 / (1 + E), 0.5 * 0.5 / (2 + E), 0.0]),
    ("bitter1", [2.0, 1.0, 0.5, 4.0]),
    ("bitter3", [2 * (0.5 + E) ** 0.5, (0.25 + E) ** 0.5, 0.5 * (1 + E) ** 0.5, 4 * E ** 0.5]),
    ("bitter4", [2 * (0.5 + E) ** 0.5, (0.25 + E) ** 0.5, 0.5 * (1 + E) ** 0.5, 4 * E ** 0.5]),
    ("bitter5", [0.5 / (0.5 + E) + 0.2, -0.25 / (1 + E) + 0.1, -1 / (2 + E) + 0.05, 0.4]),
    ("bitter6", [2 * (0.5 + E) ** 0.5 * (0.25 / (0.25 + E)) ** 0.5, (0.25 + E) ** 0.5 * (0.0625 / (1 + E)) ** 0.5,
                 0.5 * (1 + E) ** 0.5 * (1 / (4 + E)) ** 0.5, 0.0]),
    ("bitter7", [2 * (0.25 + E) ** 0.25, (1 + E) ** 0.25, 0.5 * (4 + E) ** 0.25, 4 * (0.01 + E) ** 0.25]),
])
def test_each_variant_scores_hand_made_tensors_as_its_formula_says(variant, expected):
    assert variants.score(variant, W, M, V).flatten().tolist() == pytest.approx(expected, rel=1e-6)
    assert variants.score(variant, W).flatten().tolist() == [2.0, 1.0, 0.5, 4.0]  # no Adam state yet: |w|


def test_bitter0_keeps_a_small_weight_with_steady_momentum_over_a_large_idle_one():
    weight = torch.nn.Parameter(torch.tensor([[0.1, 1.0, 0.5, 0.2]]))
    optimizer = torch.optim.AdamW([weight], lr=0.0)
    weight.grad = torch.zeros_like(weight)
    optimizer.step()  # creates the state, lr 0: the weights stay
    optimizer.state[weight]["exp_avg"].copy_(torch.tensor([[1.0, 0.0, 0.01, 0.5]]))
    optimizer.state[weight]["exp_avg_sq"].copy_(torch.tensor([[1e-4, 1.0, 1.0, 1.0]]))
    settings = TrainSettings(optimizer="adamwprune", pruning_method="state", target_sparsity=0.5, max_iters=10)
    pruner = StatePruner([("w", weight)], optimizer, settings)
    pruner._update_masks(0.5)
    assert pruner.masks[0].tolist() == [[True, False, False, True]]  # magnitude alone would keep 1.0 and 0.5


@pytest.mark.parametrize("target", [0.5, 0.9])
def test_bitter4_prunes_deeper_layers_more_and_still_meets_the_target(target):
    sizes = [512, 512, 1024, 1024]
    shares = variants.layer_sparsities(target, sizes)
    assert shares == sorted(shares) and max(shares) <= variants.LAYER_CAP
    assert sum(n * s for n, s in zip(sizes, shares)) / sum(sizes) == pytest.approx(target, abs=1e-9)
    if target == 0.5:  # nothing capped: first and last layer in the ratio 0.7 : 1.3
        assert shares[-1] / shares[0] == pytest.approx(1.3 / 0.7)
    model, optimizer, pruner, prunable = toy("state", target, optimizer="adamwprune", adamwprune_variant="bitter4")
    for number in range(1, 26):
        step(model, optimizer, pruner, number)
    per_layer = [zero_fraction([p]) for _, p in prunable]
    expected = variants.layer_sparsities(target, [p.numel() for _, p in prunable])
    assert per_layer == pytest.approx(expected, abs=1 / 16)  # rounded per matrix (the last has 32 weights)
    assert per_layer[0] < per_layer[1] and abs(zero_fraction([p for _, p in prunable]) - target) < 0.02


def test_state_pruning_keeps_only_its_masks_while_movement_keeps_a_score_per_weight():
    def pruning_bytes(method: str, optimizer: str) -> int:
        _, _, pruner, prunable = toy(method, 0.5, optimizer=optimizer)
        saved = pruner.state_dict()
        tensors = [t for value in saved.values() if isinstance(value, list) for t in value]
        return sum(t.numel() * t.element_size() for t in tensors), sum(p.numel() for _, p in prunable)

    state, weights = pruning_bytes("state", "adamwprune")
    movement, _ = pruning_bytes("movement", "adamw")
    assert state == weights and movement == 5 * weights  # bool masks; + float32 scores


def test_layer_scope_gives_every_matrix_the_target():
    model, optimizer, pruner, prunable = toy("magnitude", 0.7, scope="layer")
    for number in range(1, 26):
        step(model, optimizer, pruner, number)
    assert all(abs(zero_fraction([p]) - 0.7) <= 0.5 / p.numel() for _, p in prunable)  # rounded per matrix


def test_pruned_gradients_are_zero_before_the_step_and_sgd_momentum_too():
    model, optimizer, pruner, prunable = toy("magnitude", 0.5, optimizer="sgd")
    for number in range(1, 26):
        step(model, optimizer, pruner, number)
    x = torch.randn(8, 16)
    model(x).sum().backward()
    pruner.before_step()
    for (_, weight), mask in zip(prunable, pruner.masks):
        assert bool((weight.grad[~mask] == 0).all())
        assert bool((optimizer.state[weight]["momentum_buffer"][~mask] == 0).all())


def test_movement_scores_weights_that_the_gradient_pushes_towards_zero_lowest():
    weight = torch.nn.Parameter(torch.tensor([[2.0, 2.0, -2.0, -2.0]]))
    settings = TrainSettings(pruning_method="movement", target_sparsity=0.5, pruning_warmup=0, max_iters=10)
    pruner = MovementPruner([("w", weight)], torch.optim.SGD([weight], lr=0.1), settings)
    # descent moves w by -grad: towards zero for (2, +1) and (-2, -1), away for the others
    weight.grad = torch.tensor([[1.0, -1.0, -1.0, 1.0]])
    pruner.before_step()
    assert pruner.scores()[0].tolist() == [[-2.0, 2.0, -2.0, 2.0]]  # S = -w * grad
    pruner._update_masks(0.5)
    assert pruner.masks[0].tolist() == [[False, True, False, True]]


def test_bad_pruning_input_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"target-sparsity must be in \[0, 1\) \(got 1.0\)"):
        settings_from_args(parse_args(FAMILY, ["--pruning-method", "magnitude", "--target-sparsity", "1"]))
    with pytest.raises(UserError, match="unknown pruning-schedule 'cosine'"):
        settings_from_args(parse_args(FAMILY, ["--pruning-method", "magnitude", "--pruning-schedule", "cosine"]))
    with pytest.raises(UserError, match="--pruning-interval applies to --pruning-method"):
        settings_from_args(parse_args(FAMILY, ["--pruning-interval", "10"]))
    main(FAMILY, ["--dataset", "pydocs", "--pruning-method", "magnitude", "--target-sparsity", "0.8",
                  "--pruning-warmup", "50", "--pruning-ramp", "100", "--max-iters", "100", "--check-only"])
    warning = capsys.readouterr().err.strip()
    assert warning == ("warning: the pruning ramp ends at step 150, after --max-iters 100: this run will reach "
                       "70.0% sparsity, not the target 80.0%")
    assert short_ramp_warning(TrainSettings()) is None


def tiny_pruned_run(tmp_path, name, resume=False, **values):
    return train_tiny_gpt2(tmp_path / name, resume=resume, **{
        "eval_interval": 6, "lr_schedule": "constant", "pruning_method": "movement", "target_sparsity": 0.6,
        "pruning_warmup": 2, "pruning_ramp": 8, "pruning_interval": 3, **values})


@pytest.mark.slow
@pytest.mark.parametrize("method", [{}, {"optimizer": "adamwprune", "pruning_method": "state",
                                         "adamwprune_variant": "bitter7"}], ids=["movement", "state"])
def test_a_resumed_pruned_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path, method):
    straight = tiny_pruned_run(tmp_path, "straight", max_iters=14, **method)
    tiny_pruned_run(tmp_path, "resumed", max_iters=6, **method)  # stops mid-ramp: masks and scores in ckpt_last
    resumed = tiny_pruned_run(tmp_path, "resumed", resume=True, max_iters=14, **method)

    def values(records):
        return {(r["step"], k): v for r in records for k, v in r["metrics"].items()
                if k in ("train_loss", "val_loss", "sparsity", "grad_norm")}

    assert values(straight) == values(resumed)
    last = {name: ckpt.load(tmp_path / name / ckpt.LAST_NAME) for name in ("straight", "resumed")}
    assert last["straight"]["pruner"].keys() == last["resumed"]["pruner"].keys()
    for key, saved in last["straight"]["pruner"].items():  # masks, and movement's scores and step count
        if isinstance(saved, list):
            assert all(torch.equal(a, b) for a, b in zip(saved, last["resumed"]["pruner"][key])), key
        else:
            assert saved == last["resumed"]["pruner"][key], key
    for key, weight in last["straight"]["model"].items():
        assert torch.equal(weight, last["resumed"]["model"][key]), key
    assert [r["metrics"]["sparsity"] for r in straight if r["step"] == 14] == [pytest.approx(0.6, abs=0.005)]


@pytest.mark.slow
def test_a_pruned_gpt2_run_logs_the_sparsity_of_its_checkpoint_to_trackio(tracking_env):
    run_dir = tracking_env / "runs" / "p-prune" / "r1"
    proc = subprocess.run(
        [sys.executable, str(REPO / "gpt2" / "train.py"), "--dataset", "pydocs", "--model-name", "gpt2-tiny",
         "--block-size", "32", "--batch-size", "4", "--eval-samples", "1", "--device", "cpu", "--max-iters", "12",
         "--log-interval", "4", "--eval-interval", "4", "--pruning-method", "magnitude", "--target-sparsity", "0.5",
         "--pruning-warmup", "2", "--pruning-ramp", "6", "--pruning-interval", "2", "--tracker", "trackio",
         "--tracker-project", "p-prune", "--tracker-run-name", "r1", "--output-dir", str(tracking_env / "runs")],
        cwd=tracking_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = trackio_rows("p-prune", "r1")
    logged = {row["step"]: row["sparsity"] for row in rows if "sparsity" in row}
    prunable = [t for name, t in ckpt.load(run_dir / ckpt.LAST_NAME)["model"].items()
                if ".h." in name and t.dim() == 2]
    assert logged[12] == pytest.approx(zero_fraction(prunable), abs=1e-9) and abs(logged[12] - 0.5) < 0.005
    assert logged[4] < 0.5  # on the ramp
    best = ckpt.load(run_dir / ckpt.BEST_NAME)  # the best eval's weights, masked
    assert zero_fraction([t for name, t in best["model"].items() if ".h." in name and t.dim() == 2]) > 0.2
    assert [row["step"] for row in rows if "pruning_state_bytes" in row] == [4]


@pytest.mark.parametrize("k", [1, 700, 35_000, 69_999])
def test_the_bracketed_selection_picks_exactly_the_k_smallest_like_topk(k):
    values = torch.rand(70_000, generator=torch.Generator().manual_seed(k)).div(7).round(decimals=3)  # many ties
    values[:20_000] = math.inf  # pruned already
    chosen = lowest(values, k, sample=1024)  # > 8 x sample: the sampled bracket, not plain topk
    reference = torch.topk(values, k, largest=False).indices
    assert chosen.unique().numel() == k
    assert torch.equal(values[chosen].sort().values, values[reference].sort().values)
