"""Validation points: eval batches of their own size, micro-batched, split over DDP ranks with the
same batches at any world size; the warning when evaluation eats the budget; the progress line
that names the limit that ends the run."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

from helpers import REPO, TINY_GPT2, read_assignments, run_gloo_ranks, train_tiny_gpt2

from adamwprune.data import get_dataset
from adamwprune.tracking import NullTracker
from adamwprune.train import checkpoint as ckpt
from adamwprune.train.distributed import DistContext
from adamwprune.train.gpt2 import GPT2Adapter
from adamwprune.train.evaluation import eval_budget_warning, eval_plan, eval_points, plan_session, slice_batch
from adamwprune.train.loop import StopReason, Trainer, train
from adamwprune.train.settings import TrainSettings


class CountingAdapter(GPT2Adapter):
    """GPT-2 on pydocs that records the size of every batch it evaluates."""

    def __init__(self, block_size: int = 32):
        super().__init__(get_dataset("pydocs"), model_name="gpt2-tiny", block_size=block_size)
        self.eval_sizes: list[int] = []

    def eval_batch(self, model, batch):
        self.eval_sizes.append(int(batch[0].shape[0]))
        return super().eval_batch(model, batch)


def tiny_settings(**values) -> TrainSettings:
    return TrainSettings(**{**TINY_GPT2, "save_checkpoint": False, **values})


def trainer_for(tmp_path, adapter=None, ctx: DistContext | None = None, **values) -> Trainer:
    trainer = Trainer(adapter or CountingAdapter(), tiny_settings(**values), ctx=ctx or DistContext(device="cpu"),
                      tracker=NullTracker(), run_dir=tmp_path, run_info={}, progress=lambda line: None)
    trainer.setup(None)
    return trainer


# --- which micro-batches, on which rank ---------------------------------------------------------

@pytest.mark.parametrize("batches,batch_size,micro", [(3, 8, 4), (5, 10, 4), (1, 4, 4), (2, 3, 8), (7, 64, 12)])
def test_the_ranks_cover_every_micro_batch_once_at_any_world_size(batches, batch_size, micro):
    everything = list(eval_plan(batches, batch_size, min(micro, batch_size)))
    assert [(i, a, b) for i, a, b in everything] == sorted(everything)
    for index in range(batches):  # each batch: consecutive rows 0..batch_size, no part bigger than micro
        parts = [(a, b) for i, a, b in everything if i == index]
        assert parts[0][0] == 0 and parts[-1][1] == batch_size
        assert all(b1 == a2 for (_, b1), (a2, _) in zip(parts, parts[1:]))
        assert all(0 < b - a <= micro for a, b in parts)
    for world_size in (1, 2, 3, 5, 8):
        shares = [list(eval_plan(batches, batch_size, min(micro, batch_size), rank, world_size))
                  for rank in range(world_size)]
        assert [unit for share in shares for unit in share] == everything
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_slice_batch_cuts_tensors_along_the_first_dimension():
    x, y = torch.arange(12).reshape(6, 2), torch.arange(6)
    assert [t.tolist() for t in slice_batch((x, y), 2, 4)] == [[[4, 5], [6, 7]], [2, 3]]
    cut = slice_batch({"x": x, "n": 6, "pair": [y, y]}, 0, 1)
    assert cut["x"].tolist() == [[0, 1]] and cut["n"] == 6 and [t.tolist() for t in cut["pair"]] == [[0], [0]]


# --- micro-batching and the eval stream ---------------------------------------------------------

def test_micro_batches_give_the_loss_of_one_big_batch(tmp_path):
    whole = trainer_for(tmp_path, batch_size=16, eval_batch_size=16, eval_samples=3)
    micro = trainer_for(tmp_path, batch_size=4, eval_batch_size=16, eval_samples=3)
    uneven = trainer_for(tmp_path, batch_size=6, eval_batch_size=16, eval_samples=3)
    losses = {name: trainer._evaluate()["val_loss"] for name, trainer in
              (("whole", whole), ("micro", micro), ("uneven", uneven))}
    assert whole.adapter.eval_sizes == [16] * 3  # the eval batch, not the training batch, sets the size
    assert micro.adapter.eval_sizes == [4] * 12  # never more than the training micro-batch
    assert uneven.adapter.eval_sizes == [6, 6, 4] * 3
    assert losses["micro"] == pytest.approx(losses["whole"], rel=1e-6)
    assert losses["uneven"] == pytest.approx(losses["whole"], rel=1e-6)
    # the eval stream moves by one draw per validation point, whatever the batch sizes or their number
    fewer = trainer_for(tmp_path, batch_size=4, eval_batch_size=8, eval_samples=1)
    fewer._evaluate()
    states = [t.eval_generator.get_state() for t in (whole, micro, uneven, fewer)]
    assert all(torch.equal(state, states[0]) for state in states)


def test_an_eval_batch_smaller_than_the_training_batch_is_one_forward_pass(tmp_path):
    trainer = trainer_for(tmp_path, batch_size=16, eval_batch_size=5, eval_samples=2)
    metrics = trainer._evaluate()
    assert trainer.adapter.eval_sizes == [5, 5] and math.isfinite(metrics["val_loss"])


def test_a_long_evaluation_says_how_long_it_will_take_while_it_runs(tmp_path, monkeypatch):
    from adamwprune.train import loop

    monkeypatch.setattr(loop, "EVAL_NOTE_SECONDS", 0.0)  # every evaluation counts as long here
    lines = []
    trainer = trainer_for(tmp_path, batch_size=4, eval_batch_size=8, eval_samples=3)
    trainer.progress = lines.append
    trainer._evaluate()
    trainer._evaluate()
    assert len(lines) == 1, lines  # once per session
    assert re.fullmatch(r"eval       0 \| about \d+:\d\d for 3 batches x 8 \(768 tok\); "
                        r"--eval-samples and --eval-batch-size set its size", lines[0]), lines[0]


def test_the_cli_default_is_the_specs_64_and_the_flag_sets_it(tmp_path, monkeypatch):
    from adamwprune.train.cli import parse_args, settings_from_args
    from adamwprune.train.gpt2 import FAMILY

    monkeypatch.chdir(tmp_path)  # no .config
    assert settings_from_args(parse_args(FAMILY, [])).eval_batch_size == 64
    assert settings_from_args(parse_args(FAMILY, ["--eval-batch-size", "16"])).eval_batch_size == 16
    from adamwprune.errors import UserError

    with pytest.raises(UserError, match="eval-batch-size must be at least 1"):
        settings_from_args(parse_args(FAMILY, ["--eval-batch-size", "0"]))


def test_docs_state_the_tokens_of_a_validation_point_for_every_defconfig():
    from adamwprune.kconfig.tree import list_defconfigs
    from adamwprune.train.settings import DEFAULTS, MODEL_DEFAULTS

    text = (REPO / "docs" / "training.md").read_text()
    rows = dict(re.findall(r"^\| `?([^|`]+?)`? \| (\d+ x \d+(?: x \d+)? = [\d,]+)", text, flags=re.MULTILINE))
    builtin = DEFAULTS["eval_samples"], DEFAULTS["eval_batch_size"], DEFAULTS["block_size"]
    assert rows["(built-in defaults, the spec's)"] == "200 x 64 x 1024 = 13,107,200" == \
        f"{builtin[0]} x {builtin[1]} x {builtin[2]} = {math.prod(builtin):,}"
    names = list_defconfigs(REPO)
    assert set(names) <= set(rows), set(names) - set(rows)
    for name in names:
        path = next(p for p in REPO.glob(f"**/defconfigs/{name}") if ".venv" not in p.parts)
        values = read_assignments(path)
        model = next(sym[len("MODEL_"):].lower() for sym, v in values.items() if sym.startswith("MODEL_") and v == "y")
        defaults = {**DEFAULTS, **MODEL_DEFAULTS.get(model, {})}
        samples = int(values.get("EVAL_SAMPLES", defaults["eval_samples"]))
        size = int(values.get("EVAL_BATCH_SIZE", defaults["eval_batch_size"]))
        if model == "gpt2":
            block = int(values.get("BLOCK_SIZE", defaults["block_size"]))
            assert rows[name] == f"{samples} x {size} x {block} = {samples * size * block:,}", name
        else:
            assert rows[name] == f"{samples} x {size} = {samples * size:,}", name


# --- DDP: every rank evaluates its share, and the loss does not depend on the world size -----------

def _eval_run(ctx: DistContext, run_dir: str) -> dict:
    """The real loop with learning rate 0 (the weights stay put): 3 validation points of 3 batches of
    8 sequences, micro-batches of 4 (6 per point, split 3 + 3 over 2 ranks, across a batch boundary)."""
    from pathlib import Path

    torch.set_num_threads(1)

    class Recording(NullTracker):
        def __init__(self):
            super().__init__()
            self.logged = {}

        def log(self, metrics, step):
            self.logged.setdefault(step, {}).update(metrics)

    adapter, tracker = CountingAdapter(), Recording()
    settings = tiny_settings(learning_rate=0.0, min_lr=0.0, max_iters=4, eval_interval=2, log_interval=2,
                             eval_samples=3, eval_batch_size=8, save_checkpoint=True)
    train(adapter, settings, ctx=ctx, tracker=tracker if ctx.is_main else None, run_dir=Path(run_dir),
          run_info={"project": "p", "run_name": "r"}, progress=lambda line: None)
    return {"val_loss": {step: m["val_loss"] for step, m in tracker.logged.items() if "val_loss" in m},
            "eval_sizes": adapter.eval_sizes}


@pytest.mark.slow
def test_val_loss_is_the_same_for_one_and_two_gloo_ranks(tmp_path):
    single = _eval_run(DistContext(device="cpu"), str(tmp_path / "one"))
    ranks = run_gloo_ranks(2, _eval_run, str(tmp_path / "two"), workdir=tmp_path)
    assert sorted(single["val_loss"]) == [0, 2, 4]
    assert single["eval_sizes"] == [4] * 18  # 3 points x 3 batches x 2 micro-batches
    # both ranks evaluate, half each (rank 0 alone logs)
    assert [r["eval_sizes"] for r in ranks] == [[4] * 9, [4] * 9]
    assert ranks[1]["val_loss"] == {}
    assert ranks[0]["val_loss"].keys() == single["val_loss"].keys()
    for step, loss in single["val_loss"].items():
        assert ranks[0]["val_loss"][step] == pytest.approx(loss, rel=1e-6, abs=0), step
    # the same eval stream: the saved eval generator state does not depend on the world size
    saved = [torch.load(tmp_path / name / ckpt.LAST_NAME, weights_only=False) for name in ("one", "two")]
    assert torch.equal(saved[0]["rng"]["eval"], saved[1]["rng"]["eval"])
    assert saved[1]["best_val_loss"] == pytest.approx(saved[0]["best_val_loss"], rel=1e-6)


# --- the eval budget warning ----------------------------------------------------------------------

def test_eval_points_count_step_zero_the_intervals_and_the_last_step():
    assert eval_points(0, 1000, 100) == 11
    assert eval_points(0, 1050, 100) == 12
    assert eval_points(500, 1000, 100) == 5  # a resumed session: no step 0
    assert eval_points(0, 10, 1000) == 2


def test_the_warning_names_values_that_fit_when_max_iters_binds():
    s = TrainSettings(max_iters=1000, eval_interval=100, eval_samples=200)
    # 100 s of steps, 11 evaluations x 10 s = 110 s: evaluation is 52 % of the run
    warning = eval_budget_warning(s, start=0, time_left=None, sec_per_iter=0.1, eval_seconds=10.0)
    assert warning.startswith("warning: evaluation will take about 52% of this run (11 evaluations x 10.0s of "
                              "about 3:30 for 1000 iterations)")
    # 11 x 10 s x k/200 <= 100 s / 3 -> k <= 60; 10 s x (1 + ceil(1000 / I)) <= 33 s -> I >= 500
    assert warning.endswith("; --eval-samples 60 or --eval-interval 500 keeps it under 25%")
    for fixed in ({"eval_samples": 60}, {"eval_interval": 500}):
        assert eval_budget_warning(dataclasses.replace(s, **fixed), start=0, time_left=None, sec_per_iter=0.1,
                                   eval_seconds=10.0 * fixed.get("eval_samples", 200) / 200) is None
    assert eval_budget_warning(s, start=0, time_left=None, sec_per_iter=0.1, eval_seconds=2.0) is None


def test_a_whole_split_evaluation_is_advised_only_a_longer_interval():
    """An adapter with eval_batch_at (the classifiers) evaluates its whole test split whatever
    --eval-samples: fewer batches would not make it cheaper."""
    s = TrainSettings(max_iters=1000, eval_interval=100, eval_samples=200)
    warning = eval_budget_warning(s, start=0, time_left=None, sec_per_iter=0.1, eval_seconds=10.0, whole_split=True)
    assert warning.endswith("; --eval-interval 500 keeps it under 25%") and "--eval-samples" not in warning
    hopeless = eval_budget_warning(s, start=0, time_left=None, sec_per_iter=0.1, eval_seconds=500.0,
                                   whole_split=True)
    assert hopeless.endswith("even one evaluation takes more than 25%: raise the budget")


def test_the_warning_counts_the_time_limit_when_it_binds():
    s = TrainSettings(max_iters=1500, max_time=120, eval_interval=50, eval_samples=20, eval_batch_size=16)
    plan = plan_session(0, 1500, 120.0, sec_per_iter=0.05, eval_seconds=3.0, eval_interval=50)
    assert plan.time_binds and plan.total_seconds <= 120 and plan.end < 1500
    warning = eval_budget_warning(s, start=0, time_left=120.0, sec_per_iter=0.05, eval_seconds=3.0)
    assert "of the 2:00 that --max-time 120 allows" in warning
    samples = int(re.search(r"--eval-samples (\d+)", warning).group(1))
    interval = int(re.search(r"--eval-interval (\d+)", warning).group(1))
    for fixed in ({"eval_samples": samples}, {"eval_interval": interval}):
        assert eval_budget_warning(dataclasses.replace(s, **fixed), start=0, time_left=120.0, sec_per_iter=0.05,
                                   eval_seconds=3.0 * fixed.get("eval_samples", 20) / 20) is None
    # an evaluation longer than the whole budget: no --eval-interval helps, fewer batches do
    hopeless = eval_budget_warning(s, start=0, time_left=120.0, sec_per_iter=0.05, eval_seconds=200.0)
    assert "--eval-interval" not in hopeless and "--eval-samples 1 keeps" not in hopeless


@pytest.mark.slow
def test_a_run_whose_evaluation_is_expensive_warns_once_on_stderr(tmp_path, capsys):
    # 100 batches every 10 steps, where a step is a batch: evaluation is most of the run, fewer batches fit
    train_tiny_gpt2(tmp_path / "costly", max_iters=40, log_interval=10, eval_interval=10, eval_samples=100,
                    save_checkpoint=False)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: evaluation")]
    assert len(warnings) == 1, err
    assert re.search(r"about \d+% of this run \(5 evaluations x [0-9.]+s of about .* for 40 iterations\)",
                     warnings[0]), warnings[0]
    fits = re.search(r"; --eval-samples (\d+)(?: or --eval-interval \d+)? keeps it under 25%$", warnings[0])
    assert fits and 1 <= int(fits.group(1)) < 100, warnings[0]
    # a cheap evaluation: step 0 and the last step, one small batch each
    train_tiny_gpt2(tmp_path / "cheap", max_iters=40, log_interval=10, eval_interval=1000, save_checkpoint=False)
    assert "warning: evaluation" not in capsys.readouterr().err


# --- the progress line names the limit that ends the run ------------------------------------------

def progress_trainer(tmp_path, **values) -> Trainer:
    trainer = Trainer(CountingAdapter(), tiny_settings(**values), ctx=DistContext(device="cpu"),
                      tracker=NullTracker(), run_dir=tmp_path, run_info={}, progress=lambda line: None)
    trainer.items_per_iter = 128
    return trainer


def test_progress_shows_time_used_of_the_limit_when_the_time_limit_binds(tmp_path):
    trainer = progress_trainer(tmp_path, max_iters=1500, max_time=120, eval_interval=50)
    assert trainer._banner().startswith("training: max-time 120s or max-iters 1500, whichever ends first, ")
    trainer.iteration, trainer.elapsed_before, trainer.sec_per_iter = 95, 45.0, 0.45
    line = trainer._progress_line({"train_loss": 2.5, "tokens_per_sec": 1000.0}, StopReason.CONTINUE)
    assert line.startswith("iter     95 | loss 2.5000 |") and "/1500" not in line
    assert "| time 0:45/2:00 | ETA 1:15" in line
    trainer.iteration, trainer.elapsed_before = 180, 120.5
    stop = trainer._progress_line({"train_loss": 2.0}, StopReason.MAX_TIME)
    assert stop.startswith("iter    180 |") and stop.endswith("| time 2:00/2:00 | stop: max-time")


def test_progress_counts_iterations_when_they_end_the_run_first(tmp_path):
    trainer = progress_trainer(tmp_path, max_iters=100, max_time=3600, eval_interval=50)
    trainer.iteration, trainer.elapsed_before, trainer.sec_per_iter, trainer.eval_seconds = 95, 45.0, 0.5, 1.0
    line = trainer._progress_line({"train_loss": 2.5}, StopReason.CONTINUE)
    # 5 steps x 0.5 s + the last evaluation (1 s) end it long before the hour is over
    assert line.startswith("iter     95/100 |") and line.endswith("| time 0:45 | ETA 0:03")
    no_limit = progress_trainer(tmp_path, max_iters=100)
    assert no_limit._banner().startswith("training: max-iters 100, ")
    no_limit.iteration, no_limit.sec_per_iter = 10, 1.0
    assert "iter     10/100 |" in no_limit._progress_line({"train_loss": 2.5}, StopReason.CONTINUE)


def test_a_resumed_banner_says_how_much_time_is_left(tmp_path):
    trainer = progress_trainer(tmp_path, max_iters=1500, max_time=120)
    trainer.iteration, trainer.elapsed_before = 200, 80.0
    assert trainer._banner().startswith(
        "resuming after iteration 200: max-time 120s (40s left) or max-iters 1500, whichever ends first")
