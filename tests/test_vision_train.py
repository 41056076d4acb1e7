"""The classifiers on the shared loop: augmentation, normalization, the whole-test-split evaluation
(one rank and two gloo ranks), --epochs, pruning with every optimizer, a LeNet-5 run read back from
Trackio, ResNet-18 on CIFAR-format files, and the one-line errors of the command line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adamwprune.errors import UserError
from adamwprune.tracking import ExperimentTracker
from adamwprune.train import checkpoint as ckpt
from adamwprune.train import settings as S
from adamwprune.train.classifier import ClassifierAdapter, channel_stats, crop_and_flip, padded, split_chunk
from adamwprune.train.cli import main, parse_args, settings_from_args
from adamwprune.train.distributed import DistContext
from adamwprune.train.evaluation import eval_plan
from adamwprune.train.loop import train
from adamwprune.train.vision import LENET5, RESNET50, make_adapter
from helpers import REPO, run_gloo_ranks, trackio_rows
from test_vision_data import verified, write_cifar

DIGITS = {"dataset": "digits", "device": "cpu", "batch_size": 64, "learning_rate": 3e-3, "min_lr": 1e-4,
          "warmup_iters": 3, "log_interval": 5, "eval_samples": 6, "eval_batch_size": 64}


def settings_for(model: str = "lenet5", **values) -> S.TrainSettings:
    return S.TrainSettings(**{**S.defaults_for(model, values.get("optimizer")), **DIGITS, **values})


def run(adapter, settings: S.TrainSettings, run_dir: Path, ctx: DistContext | None = None):
    """The real loop, journal only; returns the result and the journal's metric records by step."""
    ctx = ctx or DistContext(device="cpu")
    tracker = (ExperimentTracker("none", project="p", run_name=run_dir.name, run_dir=run_dir)
               if ctx.is_main else None)
    result = train(adapter, settings, ctx=ctx, tracker=tracker, run_dir=run_dir,
                   run_info={"project": "p", "run_name": run_dir.name}, progress=lambda line: None)
    if not ctx.is_main:
        return result, {}
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return result, {r["step"]: r["metrics"] for r in records if "metrics" in r}


# --- batches -------------------------------------------------------------------------------------

def test_crop_and_flip_cuts_each_image_out_of_its_zero_padded_copy():
    images = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)  # no zero pixel of its own
    out = crop_and_flip(images, torch.Generator().manual_seed(0), padding=2)
    again = crop_and_flip(images, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == images.shape and out.dtype == torch.uint8 and torch.equal(out, again)
    source = torch.nn.functional.pad(images, (2, 2, 2, 2))
    seen = set()
    for image, original in zip(out, source):
        matches = [(dy, dx, flip) for dy in range(5) for dx in range(5) for flip in (False, True)
                   if torch.equal(image, (lambda c: c.flip(2) if flip else c)(original[:, dy:dy + 8, dx:dx + 8]))]
        assert matches, "not a crop of the padded image"
        seen |= set(matches)
    assert {flip for _, _, flip in seen} == {False, True} and len({(dy, dx) for dy, dx, _ in seen}) > 10


def test_padding_and_per_channel_normalization():
    images = np.random.default_rng(0).integers(0, 256, (50, 3, 28, 28), dtype=np.uint8)
    mean, std = channel_stats(torch.from_numpy(images))
    assert np.allclose(mean.numpy(), images.mean((0, 2, 3)) / 255, atol=1e-6)
    assert np.allclose(std.numpy(), images.std((0, 2, 3)) / 255, atol=1e-6)
    out = padded(images)
    assert out.shape == (50, 3, 32, 32) and torch.equal(out[:, :, 2:30, 2:30], torch.from_numpy(images))
    assert out[:, :, :2].sum() == out[:, :, 30:].sum() == out[..., :2].sum() == out[..., 30:].sum() == 0


def test_training_batches_are_normalized_and_resumable_from_the_generator():
    adapter = make_adapter(settings_for())
    x, y = adapter.get_batch("train", 1437, torch.Generator().manual_seed(1), "cpu")
    assert x.shape == (1437, 1, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1  # the training split's statistics
    first = adapter.get_batch("train", 8, torch.Generator().manual_seed(5), "cpu")
    assert torch.equal(first[0], adapter.get_batch("train", 8, torch.Generator().manual_seed(5), "cpu")[0])


def test_channels_last_model_and_batches_as_on_a_gpu():
    settings = settings_for("resnet50", model_name="resnet18")
    adapter = ClassifierAdapter(make_adapter(settings).dataset, "resnet18", settings, channels_last=True)
    model = adapter.build_model()
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    images, labels = adapter.get_batch("train", 4, torch.Generator().manual_seed(0), "cpu")
    assert images.is_contiguous(memory_format=torch.channels_last) and images.shape == (4, 1, 32, 32)
    adapter.loss(model, (images, labels)).backward()
    assert model.conv1.weight.grad is not None and adapter.train_count == 4


# --- the whole test split at every validation point -----------------------------------------------

@pytest.mark.parametrize("items, batches, batch_size, micro, world", [
    (360, 6, 64, 64, 1), (360, 10, 1000, 64, 1), (7, 3, 4, 2, 1), (360, 6, 64, 16, 2), (7, 3, 4, 1, 3)])
def test_a_validation_point_reads_the_test_split_once_in_order(items, batches, batch_size, micro, world):
    """The loop's plan (batch i of the point's E batches, cut into micro-batches, split over the
    ranks) over eval_batch_at's chunks covers every test image exactly once, in order."""
    covered = []
    for rank in range(world):
        for index, start, stop in eval_plan(batches, batch_size, micro, rank, world):
            lo, hi = split_chunk(index, items, batches)
            assert hi - lo <= batch_size
            covered += list(range(lo, hi))[start:stop]
    assert sorted(covered) == list(range(items)) and len(covered) == items


def test_eval_batches_are_the_test_split_in_order():
    settings = settings_for(eval_samples=6, eval_batch_size=64)
    adapter = make_adapter(settings)
    labels = torch.cat([adapter.eval_batch_at(i, 6, 64, "cpu")[1] for i in range(6)])
    assert torch.equal(labels, torch.from_numpy(adapter.dataset.test_labels))


def test_eval_too_small_for_the_test_split_is_one_line():
    with pytest.raises(UserError) as error:
        make_adapter(settings_for(eval_samples=5, eval_batch_size=64))
    assert str(error.value) == (
        "lenet5 evaluates the whole digits test split (360 images) at each validation point, and "
        "--eval-samples 5 x --eval-batch-size 64 = 320 images cannot hold it: use --eval-samples 6 "
        "(or a larger --eval-batch-size)")


def _step0(ctx: DistContext, run_dir: str) -> dict:
    """A LeNet-5 run of 2 steps on digits (evaluations at 0 and 2), in micro-batches of 16 split over the ranks."""
    torch.set_num_threads(1)
    settings = settings_for(max_iters=2, eval_interval=2, batch_size=16, eval_samples=6, eval_batch_size=64)
    return run(make_adapter(settings), settings, Path(run_dir), ctx)[1]


@pytest.mark.slow
def test_two_gloo_ranks_evaluate_the_same_split_as_one(tmp_path):
    single = _step0(DistContext(device="cpu"), str(tmp_path / "one"))
    ranks = run_gloo_ranks(2, _step0, str(tmp_path / "two"), workdir=tmp_path)
    assert ranks[1] == {} and set(ranks[0]) == set(single) == {0, 2}  # rank 0 logs
    # before training the weights are the same: so are the loss and accuracy over the whole split
    assert ranks[0][0]["val_loss"] == pytest.approx(single[0]["val_loss"], rel=1e-9)
    assert ranks[0][0]["val_accuracy"] == single[0]["val_accuracy"]
    assert round(single[0]["val_accuracy"] * 360 / 100, 6).is_integer()  # a count of the 360 images
    assert "train_accuracy" in ranks[0][2] and "train_accuracy" not in ranks[0][0]


# --- training ------------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer, method, extra", [
    ("adamw", "movement", {}), ("sgd", "movement", {"learning_rate": 0.05}), ("adamwprune", "state", {}),
    ("adam", "magnitude", {}), ("adamwspam", "magnitude", {"spam_warmup_steps": 10}), ("adamwadv", "magnitude", {})])
def test_pruning_lenet5_to_half_with_every_optimizer(tmp_path, optimizer, method, extra):
    settings = settings_for(optimizer=optimizer, pruning_method=method, target_sparsity=0.5, max_iters=60,
                            pruning_warmup=5, pruning_ramp=30, pruning_interval=5, eval_interval=30, **extra)
    result, steps = run(make_adapter(settings), settings, tmp_path / "r")
    assert steps[60]["sparsity"] == pytest.approx(0.5, abs=0.005)  # measured from the weights
    assert steps[60]["val_accuracy"] > 50 > steps[0]["val_accuracy"]  # it learns (10 classes)
    weights = torch.load(tmp_path / "r" / ckpt.LAST_NAME, weights_only=False)["model"]
    assert (weights["conv1.weight"] != 0).all() and (weights["fc3.weight"] != 0).all()  # never pruned
    zeros = sum(int((weights[name] == 0).sum()) for name in ("conv2.weight", "fc1.weight", "fc2.weight"))
    assert zeros / (2400 + 48000 + 10080) == pytest.approx(0.5, abs=0.005)


def test_epochs_become_steps_before_the_schedules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .config
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    settings = settings_from_args(parse_args(LENET5, ["--epochs", "3", "--batch-size", "50"]))
    assert settings.epochs == 3 and S.steps_for_epochs(settings, 1437, 1).max_iters == 87  # ceil(4311 / 50)
    assert S.steps_for_epochs(settings, 1437, 4).max_iters == 22
    assert S.steps_for_epochs(settings_for(max_iters=9), 1437, 1).max_iters == 9  # no --epochs: unchanged
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun's, as the trainer reads it before the process group
    main(LENET5, ["--dataset", "digits", "--epochs", "3", "--batch-size", "50", "--pruning-method", "magnitude",
                  "--pruning-warmup", "40", "--pruning-ramp", "10", "--check-only"])  # 44 steps: ramp ends at 50


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "2", "--max-iters", "10"], "--epochs and --max-iters both say how long to train: give one of them"),
    (["--epochs", "0"], r"--epochs must be at least 1 \(got 0\); 0 is the default: leave the flag out"),
])
def test_epochs_errors_are_one_line(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=f"^{message}"):
        settings_from_args(parse_args(LENET5, argv))


@pytest.mark.parametrize("argv, message", [
    (["--model-name", "resnet50", "--dataset", "mnist"],
     "unknown dataset 'mnist' for resnet50; choose one of: cifar100, cifar10, digits"),
    (["--model-name", "resnet34"], "unknown model-name 'resnet34' for resnet50; choose one of: resnet18, resnet50"),
    (["--model-name", "gpt2-tiny"], "unknown model-name 'gpt2-tiny' for resnet50; choose one of: resnet18, resnet50"),
])
def test_a_model_and_dataset_that_do_not_fit_are_one_line(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=f"^{message}$"):
        settings_from_args(parse_args(RESNET50, argv))


def test_the_warning_of_a_short_ramp_counts_the_epochs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    main(LENET5, ["--dataset", "digits", "--epochs", "1", "--batch-size", "100", "--pruning-method", "magnitude",
                  "--pruning-warmup", "10", "--pruning-ramp", "10", "--check-only"])
    assert "the pruning ramp ends at step 20, after --max-iters 15" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_resnet18_trains_a_few_steps_on_cifar_format_files(tmp_path, name):
    write_cifar(tmp_path / "data", name, per_batch=6, test=10)
    dataset = verified(name, tmp_path / "data").open(tmp_path / "data", download=False)
    settings = settings_for("resnet50", model_name="resnet18", dataset=name, max_iters=3, batch_size=4,
                            eval_samples=3, eval_batch_size=4, eval_interval=3, log_interval=1,
                            optimizer="sgd", learning_rate=0.01)
    adapter = ClassifierAdapter(dataset, "resnet18", settings)
    adapter.check()
    result, steps = run(adapter, settings, tmp_path / "r")
    assert result.iteration == 3 and sorted(steps) == [0, 1, 2, 3]
    top5 = {"val_top5_accuracy"} if name == "cifar100" else set()
    assert set(steps[0]) == {"val_loss", "val_accuracy"} | top5
    assert {"train_loss", "images_per_sec", "sparsity", "val_loss", "val_accuracy", "train_accuracy"} | top5 <= set(steps[3])
    assert all(math.isfinite(steps[s]["train_loss"]) for s in (1, 2, 3))
    for metric in ("val_accuracy", *top5):
        assert (steps[3][metric] * 10 / 100) == pytest.approx(round(steps[3][metric] / 10))  # k of 10 images
    assert steps[3]["train_accuracy"] * 12 / 100 == pytest.approx(round(steps[3]["train_accuracy"] * 0.12))
    assert adapter.describe() == {"model_name": "resnet18", "dataset": name, "num_classes": 10 if name == "cifar10"
                                  else 100, "input_shape": [3, 32, 32]}


# --- the trainer, tracked ------------------------------------------------------------------------

def trainer(tmp: Path, script: str, *args: str, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "ADAMWPRUNE_DATA_DIR")}
    proc = subprocess.run([*(launcher or [sys.executable]), str(REPO / script), "--dataset", "digits", "--device",
                           "cpu", "--eval-samples", "6", "--eval-batch-size", "64", "--output-dir", str(tmp / "runs"),
                           *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


@pytest.mark.slow
def test_lenet5_on_digits_logs_accuracy_into_trackio(tracking_env):
    tmp = tracking_env
    common = ("--batch-size", "64", "--learning-rate", "3e-3", "--warmup-iters", "3", "--log-interval", "5",
              "--eval-interval", "15", "--tracker", "trackio", "--tracker-project", "v", "--tracker-run-name", "lenet")
    trainer(tmp, "lenet5/train.py", "--epochs", "2", *common)
    rows = trackio_rows("v", "lenet")
    assert math.ceil(2 * 1437 / 64) == 45  # --epochs 2
    evals = {row["step"]: row for row in rows if "val_loss" in row}
    assert sorted(evals) == [0, 15, 30, 45]
    assert [row["step"] for row in rows if "train_loss" in row] == list(range(5, 46, 5))
    assert all(row["images_per_sec"] > 0 and 0 <= row["sparsity"] for row in rows if "train_loss" in row)
    assert all({"val_accuracy", "train_accuracy"} <= set(evals[s]) for s in (15, 30, 45))
    assert all(0 <= row["val_accuracy"] <= 100 for row in evals.values())
    assert not any("perplexity" in name for row in rows for name in row)  # a language-model metric
    assert evals[45]["val_accuracy"] > 85 and evals[45]["train_accuracy"] > 70
    final = next(row for row in rows if "final/best_val_accuracy" in row)
    best = max(evals.values(), key=lambda row: (row["val_accuracy"], -row["step"]))
    assert final["final/best_val_accuracy"] == best["val_accuracy"]
    assert final["final/best_val_loss"] == min(row["val_loss"] for row in evals.values())
    saved = torch.load(tmp / "runs/v/lenet" / ckpt.BEST_NAME, weights_only=False)
    assert saved["iteration"] == best["step"]  # the most accurate evaluation, not the lowest loss
    assert saved["model_description"]["input_shape"] == [1, 32, 32]

    trainer(tmp, "lenet5/train.py", "--epochs", "3", "--resume", *common)  # one epoch more: 68 steps
    more = [row for row in trackio_rows("v", "lenet") if row["step"] > 45]
    assert [row["step"] for row in more if "val_loss" in row] == [60, 68]
    assert [row["step"] for row in more if "train_loss" in row] == [50, 55, 60, 65, 68]


@pytest.mark.slow
def test_torchrun_counts_the_epochs_of_both_processes(tmp_path):
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    proc = trainer(tmp_path, "lenet5/train.py", "--epochs", "2", "--batch-size", "120", "--learning-rate", "5e-3",
                   "--warmup-iters", "2", "--eval-interval", "6", "--tracker-run-name", "ddp", launcher=launcher)
    assert "done: 12 iterations" in proc.stdout  # ceil(2 x 1437 / (120 x 2))
    result, = (tmp_path / "runs").glob("lenet5-*/ddp/result.json")
    assert json.loads(result.read_text())["best_metrics"]["val_accuracy"] > 50


# --- Kconfig and make ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, model, script, values", [
    ("lenet5", "lenet5", "lenet5/train.py", {"dataset": "mnist", "epochs": 10, "eval_samples": 10}),
    ("resnet50", "resnet50", "resnet50/train.py", {"model_name": "resnet50", "dataset": "cifar100", "epochs": 100,
                                                   "optimizer": "sgd", "eval_batch_size": 1000}),
    ("resnet18-digits-cpu", "resnet18", "resnet50/train.py", {"model_name": "resnet18", "dataset": "digits",
                                                              "epochs": 4, "device": "cpu"}),
])
def test_each_vision_defconfig_picks_its_trainer_and_settings(tmp_path, monkeypatch, name, model, script, values):
    from adamwprune.kconfig import load_config
    from adamwprune.kconfig.runner import trainer_command
    from helpers import defconfig

    defconfig(tmp_path, name)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(tmp_path)
    assert cfg.MODEL == model and trainer_command(cfg, tmp_path)[-1] == str(REPO / script)
    family = LENET5 if script.startswith("lenet5") else RESNET50
    settings = settings_from_args(parse_args(family, []))
    assert {key: getattr(settings, key) for key in values} == values
    assert S.named_model(settings) == model  # project and run names: resnet18-<checksum>, as Kconfig names it


@pytest.mark.slow
def test_make_trains_the_lenet5_cpu_defconfig(tmp_path, tracking_env):
    from helpers import defconfig, kconfig

    defconfig(tmp_path, "lenet5-digits-cpu", "TRACKER=trackio")
    proc = kconfig(tmp_path, "run", timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    from adamwprune.kconfig import load_config

    project = load_config(tmp_path).TRACKER_PROJECT
    assert project.startswith("lenet5-")
    run_dir, = (tmp_path / "runs" / project).iterdir()
    rows = trackio_rows(project, run_dir.name)
    final = next(row for row in rows if "final/best_val_accuracy" in row)
    assert max(row["step"] for row in rows) == 450 and final["final/best_val_accuracy"] > 90


def test_set_up_for_make_adds_scikit_learn_to_a_digits_configuration(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("setup_venv", REPO / "scripts" / "setup_venv.py")
    sv = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "setup_venv", sv)  # dataclasses look their module up
    spec.loader.exec_module(sv)
    args = sv.parser().parse_args(["--configured-trackers", str(tmp_path / ".config")])
    assert sv.request_from(args, env={}).extras == set()  # no configuration yet
    from helpers import defconfig

    for name, extras in (("lenet5-digits-cpu", {"digits"}), ("lenet5", set()), ("resnet18-digits-cpu", {"digits"})):
        defconfig(tmp_path, name, "TRACKER=trackio")
        assert sv.request_from(args, env={}).extras == {"trackio"} | extras, name
