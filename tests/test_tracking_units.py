"""Tracker selection, project naming, value conversion and the journal format."""

from __future__ import annotations

import hashlib
import math
import os

import numpy as np
import pytest
import torch

from adamwprune.errors import UserError
from adamwprune.tracking import ExperimentTracker
from adamwprune.tracking.journal import JournalReader, JournalWriter, last_step, read_journal
from adamwprune.tracking.naming import default_run_name, project_checksum, project_name
from adamwprune.tracking.selection import format_trackers, parse_trackers
from adamwprune.tracking.values import join_metrics, split_metrics


@pytest.mark.parametrize("text, expected", [
    (None, ()), ("", ()), ("none", ()), ("NONE", ()),
    ("trackio", ("trackio",)), ("wandb", ("wandb",)),
    ("both", ("trackio", "wandb")), ("wandb,trackio", ("trackio", "wandb")),
    ("trackio,wandb", ("trackio", "wandb")), (" WandB , Trackio ", ("trackio", "wandb")),
    ("wandb,wandb", ("wandb",)), ("both,wandb", ("trackio", "wandb")),
])
def test_parse_trackers_accepts_the_spec_forms(text, expected):
    assert parse_trackers(text) == expected


@pytest.mark.parametrize("text, bad", [
    ("wandbb", "'wandbb'"), ("trakio", "'trakio'"), ("both,none", "'none'"),
    ("wandb,,trackio", "empty item"), ("nowandb", "'nowandb'"), ("wandb,", "empty item"),
])
def test_parse_trackers_rejects_with_the_bad_word_and_choices(text, bad):
    with pytest.raises(UserError) as err:
        parse_trackers(text)
    message = str(err.value)
    assert bad in message and "\n" not in message
    if "empty" not in bad and "none" not in bad:
        assert "none, trackio, wandb, both" in message


def test_format_trackers_round_trips():
    for text in ("none", "trackio", "wandb", "both"):
        assert format_trackers(parse_trackers(text)) == text


def test_project_checksum_is_md5_of_host_ip_directory():
    expected = hashlib.md5(b"gpu-box-10.0.0.7-AdamWPrune").hexdigest()[:5]
    assert project_checksum("gpu-box", "10.0.0.7", "AdamWPrune") == expected
    assert project_name("gpt2", hostname="gpu-box", ip="10.0.0.7",
                        directory="AdamWPrune") == f"gpt2-{expected}"
    # a known value, so a change of formula cannot pass unnoticed
    assert project_checksum("vm", "192.0.2.2", "main") == "ce56a"


def test_project_name_differs_per_machine_and_directory():
    names = {project_name("gpt2", hostname=h, ip=i, directory=d)
             for h, i, d in [("a", "10.0.0.1", "x"), ("b", "10.0.0.1", "x"),
                             ("a", "10.0.0.2", "x"), ("a", "10.0.0.1", "y")]}
    assert len(names) == 4
    assert all(len(name) == len("gpt2-") + 5 for name in names)


def test_project_name_defaults_to_this_machine_and_rejects_bad_models():
    assert project_name("resnet50").startswith("resnet50-")
    assert project_name("gpt2") == project_name("gpt2")
    with pytest.raises(UserError):
        project_name("gpt 2/../x")


def test_default_run_name_has_model_optimizer_timestamp():
    name = default_run_name("gpt2", "adamwspam", when=0)
    model, optimizer, stamp = name.split("_")
    assert (model, optimizer) == ("gpt2", "adamwspam") and len(stamp) == len("19700101-000000")


def test_split_metrics_converts_scalars_and_separates_nonfinite():
    finite, nonfinite = split_metrics({
        "loss": torch.tensor(2.5), "lr": np.float32(6e-4), "iters": np.int64(7), "plain": 1.5,
        "quality": "Good", "nan": float("nan"), "inf": torch.tensor(float("inf")),
        "neg": np.float64(-np.inf), "flag": True,
    })
    assert finite == {"loss": 2.5, "lr": pytest.approx(6e-4), "iters": 7, "plain": 1.5,
                      "quality": "Good", "flag": True}
    assert type(finite["loss"]) is float and type(finite["iters"]) is int
    assert nonfinite == {"nan": "nan", "inf": "inf", "neg": "-inf"}
    restored = join_metrics(finite, nonfinite)
    assert math.isnan(restored["nan"]) and restored["inf"] == math.inf and restored["neg"] == -math.inf


def test_split_metrics_rejects_non_scalars_by_name():
    with pytest.raises(ValueError, match="'weights' holds 3 values"):
        split_metrics({"weights": torch.ones(3)})
    with pytest.raises(TypeError, match="'cfg'"):
        split_metrics({"cfg": {"a": 1}})


def test_journal_reader_waits_for_the_newline_of_a_partial_record(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = JournalWriter(path)
    writer.write_metrics(0, {"a": 1.0}, None)
    reader = JournalReader(path)
    assert [r["step"] for r in reader.read_available()] == [0]
    with open(path, "ab") as raw:  # a record cut in the middle of its write
        raw.write(b'{"step": 1, "time": 1.0, "metri')
    assert list(reader.read_available()) == []
    with open(path, "ab") as raw:
        raw.write(b'cs": {"a": 2.0}}\n')
    assert [r["metrics"] for r in reader.read_available()] == [{"a": 2.0}]
    writer.write_metrics(2, {}, {"b": "nan"})
    writer.write_event("end", status="finished")
    assert [r.get("event") for r in read_journal(path)] == [None, None, None, "end"]
    assert reader.offset < os.path.getsize(path)
    reader.close()
    writer.close()


def test_last_step_reads_only_the_tail(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = JournalWriter(path)
    assert last_step(path) == -1
    for step in range(3000):
        writer.write_metrics(step, {"loss": 1.0}, None)
    writer.write_event("end", status="finished")
    writer.close()
    assert os.path.getsize(path) > 1 << 16
    assert last_step(path) == 2999
    with open(path, "ab") as raw:
        raw.write(b'{"step": 5000, "ti')  # an unfinished write does not count
    assert last_step(path) == 2999


def test_record_gpus_keeps_the_mapping_in_run_json_and_a_refusing_disk_is_one_warning(tmp_path, monkeypatch, caplog):
    from adamwprune.tracking import tracker as tracker_module
    from adamwprune.tracking.runinfo import read_run_info

    mapping = {"source": "nvml", "devices": [{"index": 0, "nvml_index": 3, "uuid": "GPU-abc", "name": "A10G"}]}
    with ExperimentTracker("none", project="p", run_name="r", run_dir=tmp_path / "r") as tracker:
        tracker.record_gpus(mapping)
        assert read_run_info(tmp_path / "r").gpus == mapping

        def refuse(info):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(tracker_module, "write_run_info", refuse)
        tracker.record_gpus({"source": "simulated"})
    warnings = [r.getMessage() for r in caplog.records if "cannot record the GPUs" in r.getMessage()]
    assert len(warnings) == 1 and "No space left on device" in warnings[0]
    assert read_run_info(tmp_path / "r").gpus == mapping
