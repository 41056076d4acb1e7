"""Datasets: pydocs, batches, the uint16 shard writer/reader, and offline failures.

Shards are written with real files in the real format; the GPT-2 BPE itself needs a
network download (tiktoken fetches it on first use), so the writer/reader tests inject
the byte-level encoder and the GPT-2 path is exercised for its offline error.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from adamwprune.data import DATASETS, get_dataset, pydocs, shakespeare
from adamwprune.data.net import check_reachable
from adamwprune.data.tokens import (TokenDataset, byte_encoder, load_token_dir, tokenize_documents,
                                    write_documents)
from adamwprune.errors import UserError

REPO = Path(__file__).resolve().parents[1]


# --- pydocs -----------------------------------------------------------------------------

def test_pydocs_split_is_deterministic_disjoint_and_complete():
    first, second = get_dataset("pydocs"), get_dataset("pydocs")
    assert first.vocab_size == 256 and first.encoding == "bytes"
    corpus = np.frombuffer(pydocs.corpus_bytes(), dtype=np.uint8)
    train, val = (np.concatenate(first.shards(s)) for s in ("train", "val"))
    # train is the head of the corpus and val the tail: disjoint, together everything
    assert np.array_equal(np.concatenate([train, val]), corpus)
    assert len(val) == len(corpus) - int(len(corpus) * 0.9)
    assert first.num_tokens("train") == len(train) > 300_000
    for split in ("train", "val"):
        assert np.array_equal(np.concatenate(first.shards(split)), np.concatenate(second.shards(split)))
    from pydoc_data.topics import topics
    assert bytes(train[:200].astype(np.uint8)).decode().startswith(topics[sorted(topics)[0]][:100])


def test_unknown_dataset_lists_the_names(tmp_path):
    with pytest.raises(UserError, match="finewebedu, shakespeare, pydocs"):
        get_dataset("imagenet", tmp_path)
    assert set(DATASETS) == {"finewebedu", "shakespeare", "pydocs"}


@pytest.mark.parametrize("name", ["finewebedu", "shakespeare"])
def test_unprepared_dataset_names_the_command(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=f"not prepared.*make prepare-data DATASET={name}$"):
        get_dataset(name, "data")
    with pytest.raises(UserError, match=f"python -m adamwprune.data prepare {name} --data-dir"):
        get_dataset(name, tmp_path / "elsewhere")


# --- batches ------------------------------------------------------------------------------

def counting_dataset(*shards: range) -> TokenDataset:
    """Shards holding consecutive integers, so every window is recognisable."""
    arrays = [np.arange(r.start, r.stop, dtype=np.uint16) for r in shards]
    return TokenDataset("counting", {"train": arrays, "val": arrays[:1]}, encoding="test", n_token_ids=65536)


def test_get_batch_returns_shifted_windows_within_shards():
    ds = counting_dataset(range(0, 100), range(1000, 1040), range(5000, 5010))
    x, y = ds.get_batch("train", 256, 16, torch.Generator().manual_seed(0), "cpu")
    assert x.shape == y.shape == (256, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1)  # y is x shifted by one token
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(256, 15, dtype=torch.int64))  # no shard crossing
    starts = set(x[:, 0].tolist())
    assert starts <= set(range(0, 84)) | set(range(1000, 1024))  # the 10-token shard is too short
    assert any(s >= 1000 for s in starts) and any(s < 84 for s in starts)


def test_get_batch_is_reproducible_with_a_generator():
    ds = get_dataset("pydocs")
    a = ds.get_batch("val", 4, 32, torch.Generator().manual_seed(7))
    b = ds.get_batch("val", 4, 32, torch.Generator().manual_seed(7))
    c = ds.get_batch("val", 4, 32, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_get_batch_draws_the_same_windows_for_the_same_generator_state():
    """Pinned start tokens of the windows drawn from one generator, across calls, block
    sizes and splits (the per-(split, block_size) cache must not change the draw)."""
    ds = counting_dataset(range(0, 100), range(1000, 1040), range(5000, 5010), range(7000, 7300))
    g = torch.Generator().manual_seed(3)
    assert [ds.get_batch("train", 6, 16, g)[0][:, 0].tolist() for _ in range(2)] == [
        [7030, 7140, 7077, 11, 56, 7108], [7188, 7113, 7009, 7151, 7038, 7087]]
    assert ds.get_batch("train", 4, 8, g)[0][:, 0].tolist() == [7007, 7087, 64, 7107]
    assert ds.get_batch("val", 3, 16, g)[0][:, 0].tolist() == [27, 54, 20]


def test_get_batch_too_long_a_block_is_a_user_error():
    with pytest.raises(UserError, match="block_size"):
        counting_dataset(range(0, 50)).get_batch("val", 2, 64)


# --- writing and reading shards ------------------------------------------------------------

def documents(n: int) -> list[str]:
    return [f"document {i}: " + "lorem ipsum " * (i % 7 + 1) for i in range(n)]


def test_tokenize_documents_splits_every_nth_and_appends_eot():
    out = list(tokenize_documents(documents(25), byte_encoder(), val_every=10, batch_docs=4))
    assert [s for s, _ in out].count("val") == 3  # documents 0, 10, 20
    split, tokens = out[10]
    assert split == "val" and bytes(tokens[:-1].tolist()).decode() == documents(25)[10] and tokens[-1] == 0
    capped = list(tokenize_documents(documents(25), byte_encoder(), val_every=10, max_docs=7))
    assert len(capped) == 7
    budget = sum(len(t) for _, t in out[:5]) + 3
    by_tokens = list(tokenize_documents(documents(25), byte_encoder(), val_every=10, max_tokens=budget))
    assert len(by_tokens) == 5


def test_shard_writer_round_trip(tmp_path):
    docs = documents(60)
    meta = write_documents(tmp_path / "finewebedu", dataset="finewebedu", documents=docs,
                           encoder=byte_encoder(), val_every=20, shard_tokens=500)
    directory = tmp_path / "finewebedu"
    train_files = meta["splits"]["train"]
    assert [f["file"] for f in train_files][:2] == ["train_000000.bin", "train_000001.bin"]
    assert all(f["tokens"] == 500 for f in train_files[:-1]) and 0 < train_files[-1]["tokens"] <= 500
    assert meta["documents"] == {"train": 57, "val": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finewebedu"]  # staging dir moved into place
    # the files are raw little-endian uint16: read them without our reader
    raw = np.concatenate([np.fromfile(directory / f["file"], dtype="<u2") for f in train_files])
    expected_train = b"".join(d.encode() + b"\0" for i, d in enumerate(docs) if i % 20)
    assert bytes(raw.astype(np.uint8)) == expected_train

    ds = get_dataset("finewebedu", tmp_path)
    assert ds.num_tokens("train") == len(expected_train) and ds.vocab_size == 256 and ds.eot_token == 0
    val = np.concatenate(ds.shards("val"))
    assert bytes(val.astype(np.uint8)).split(b"\0")[:3] == [docs[0].encode(), docs[20].encode(), docs[40].encode()]
    x, y = ds.get_batch("train", 8, 32, torch.Generator().manual_seed(0))
    assert all(bytes(row.tolist()) in expected_train for row in x)


def test_preparing_again_replaces_the_old_shards(tmp_path):
    write_documents(tmp_path / "finewebedu", dataset="finewebedu", documents=documents(60),
                    encoder=byte_encoder(), val_every=20, shard_tokens=200)
    write_documents(tmp_path / "finewebedu", dataset="finewebedu", documents=documents(10),
                    encoder=byte_encoder(), val_every=5, shard_tokens=None)
    assert sorted(p.name for p in (tmp_path / "finewebedu").iterdir()) == ["meta.json", "train.bin", "val.bin"]
    assert get_dataset("finewebedu", tmp_path).num_tokens("val") == len(documents(10)[0]) + len(documents(10)[5]) + 2


def test_a_failed_prepare_leaves_the_previous_data(tmp_path):
    write_documents(tmp_path / "finewebedu", dataset="finewebedu", documents=documents(30),
                    encoder=byte_encoder(), val_every=10, shard_tokens=None)

    def broken():
        yield from documents(15)
        raise UserError("network went away")

    with pytest.raises(UserError, match="network went away"):
        write_documents(tmp_path / "finewebedu", dataset="finewebedu", documents=broken(),
                        encoder=byte_encoder(), val_every=10, shard_tokens=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finewebedu"]
    assert json.loads((tmp_path / "finewebedu" / "meta.json").read_text())["documents"]["train"] == 27
    with pytest.raises(UserError, match="no documents went to the train split"):
        write_documents(tmp_path / "x", dataset="x", documents=documents(5), encoder=byte_encoder(),
                        val_every=10, shard_tokens=None, max_docs=1)  # document 0 is always val
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


@pytest.fixture
def prepared(tmp_path) -> Path:
    write_documents(tmp_path / "finewebedu", dataset="finewebedu", documents=documents(40),
                    encoder=byte_encoder(), val_every=10, shard_tokens=300)
    return tmp_path / "finewebedu"


def test_truncated_shard_is_named(prepared):
    shard = prepared / "train_000001.bin"
    shard.write_bytes(shard.read_bytes()[:-1])
    with pytest.raises(UserError, match=r"train_000001\.bin has 599 bytes but meta.json says 300"):
        load_token_dir(prepared, "finewebedu")


def test_missing_shard_and_out_of_vocab_tokens_are_named(prepared):
    (prepared / "val_000000.bin").unlink()
    with pytest.raises(UserError, match=r"val_000000\.bin .*missing"):
        load_token_dir(prepared, "finewebedu")
    val_tokens = json.loads((prepared / "meta.json").read_text())["splits"]["val"][0]["tokens"]
    np.full(val_tokens, 0xFFFF, dtype="<u2").tofile(prepared / "val_000000.bin")
    with pytest.raises(UserError, match=r"val_000000\.bin holds token id 65535, beyond the 256 ids"):
        load_token_dir(prepared, "finewebedu")


def test_corrupt_meta_is_named(prepared):
    meta = prepared / "meta.json"
    good = json.loads(meta.read_text())
    meta.write_text(meta.read_text()[:40])
    with pytest.raises(UserError, match=r"meta\.json is corrupt \(JSONDecodeError"):
        load_token_dir(prepared, "finewebedu")
    meta.write_text(json.dumps({**good, "dtype": "uint32"}))
    with pytest.raises(UserError, match="corrupt.*uint32"):
        load_token_dir(prepared, "finewebedu")
    good["splits"]["train"][0]["file"] = "../../etc/passwd"
    meta.write_text(json.dumps(good))
    with pytest.raises(UserError, match="bad shard file name"):
        load_token_dir(prepared, "finewebedu")


def test_corrupt_dataset_names_the_prepare_command_for_its_data_dir(prepared, tmp_path, monkeypatch):
    (prepared / "val_000000.bin").unlink()
    # a custom data directory: the command re-prepares into that directory
    with pytest.raises(UserError, match=r"missing; re-run: python -m adamwprune\.data prepare finewebedu "
                                        rf"--data-dir {tmp_path}$"):
        get_dataset("finewebedu", tmp_path)
    # the default data directory: the make target
    (tmp_path / "data").mkdir()
    prepared.rename(tmp_path / "data" / "finewebedu")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"missing; re-run: make prepare-data DATASET=finewebedu$"):
        get_dataset("finewebedu", "data")


def test_shakespeare_from_a_local_file(tmp_path):
    text_file = tmp_path / "input.txt"
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40
    text_file.write_text(text)
    shakespeare.prepare(tmp_path / "data", from_file=text_file, encoder=byte_encoder())
    ds = get_dataset("shakespeare", tmp_path / "data")
    cut = int(len(text) * 0.9)
    assert bytes(np.concatenate(ds.shards("train")).astype(np.uint8)).decode() == text[:cut]
    assert bytes(np.concatenate(ds.shards("val")).astype(np.uint8)).decode() == text[cut:]
    assert sorted(p.name for p in (tmp_path / "data" / "shakespeare").iterdir()) == ["meta.json", "train.bin", "val.bin"]


def test_shakespeare_download_from_a_local_server(tmp_path):
    text = "ROMEO:\nBut, soft! what light through yonder window breaks?\n" * 30
    (tmp_path / "input.txt").write_text(text)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):  # keep pytest output clean
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/input.txt"
        meta = shakespeare.prepare(tmp_path / "data", url=url, encoder=byte_encoder(), timeout_s=5)
    finally:
        server.shutdown()
    assert meta["source"]["text"] == url
    assert get_dataset("shakespeare", tmp_path / "data").num_tokens("train") == int(len(text) * 0.9)


# --- offline behaviour -------------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_env(tmp_path: Path) -> dict[str, str]:
    """No network for a child process: every URL and proxy points at a closed local port,
    and tiktoken's cache is an empty directory."""
    dead = f"http://127.0.0.1:{closed_port()}"
    env = dict(os.environ, HF_ENDPOINT=dead, ADAMWPRUNE_SHAKESPEARE_URL=f"{dead}/input.txt",
               TIKTOKEN_CACHE_DIR=str(tmp_path / "tiktoken-cache"), ADAMWPRUNE_DATA_DIR=str(tmp_path / "data"),
               NO_PROXY="", no_proxy="")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env[var] = dead
    return env


def run_cli(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "adamwprune.data", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    return proc, time.monotonic() - start


@pytest.mark.parametrize("args, message", [
    (["prepare", "finewebedu"], "cannot reach http://127.0.0.1:.*/api/datasets/HuggingFaceFW/fineweb-edu"),
    (["prepare", "shakespeare"], "cannot download http://127.0.0.1:.*/input.txt: ConnectionRefusedError"),
    (["prepare", "shakespeare", "--from-file", "{tmp}/input.txt"], "cannot load tiktoken's GPT-2 BPE"),
    (["prepare", "shakespeare", "--from-file", "no/such/file.txt"], "cannot read no/such/file.txt"),
    (["prepare", "pydocs", "--max-docs", "5"], "--max-docs does not apply to pydocs"),
    (["info", "finewebedu"], "not prepared .*run: python -m adamwprune.data prepare finewebedu --data-dir"),
    (["prepare", "wikitext"], "unknown dataset 'wikitext'; choose one of: finewebedu, shakespeare, pydocs"),
])
def test_cli_errors_are_one_line_and_quick(tmp_path, args, message):
    (tmp_path / "input.txt").write_text("To be, or not to be, that is the question.\n" * 10)
    proc, seconds = run_cli([a.format(tmp=tmp_path) for a in args], offline_env(tmp_path))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m adamwprune.data: error: "), proc.stderr
    assert __import__("re").search(message, lines[0]), lines[0]
    assert seconds < 15
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_cli_info_reads_back_a_prepared_dataset(tmp_path):
    write_documents(tmp_path / "data" / "finewebedu", dataset="finewebedu", documents=documents(20),
                    encoder=byte_encoder(), val_every=10, shard_tokens=None)
    proc, _ = run_cli(["info", "finewebedu"], offline_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    train = sum(len(d) + 1 for i, d in enumerate(documents(20)) if i % 10)
    assert f"finewebedu: train {train:,} tokens, val" in proc.stdout
    (tmp_path / "data" / "finewebedu" / "train.bin").write_bytes(b"\0")
    proc, _ = run_cli(["info", "finewebedu"], offline_env(tmp_path))
    assert proc.returncode == 2 and "train.bin has 1 bytes" in proc.stderr and "Traceback" not in proc.stderr


def test_a_silent_server_times_out_quickly():
    """A server that accepts connections but never answers: the deadline ends the wait."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        start = time.monotonic()
        with pytest.raises(UserError, match=r"cannot reach .*(timed out|no answer within)"):
            check_reachable(f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout_s=1)
        assert time.monotonic() - start < 5


def gpt2_bpe_is_cached() -> bool:
    """Whether tiktoken can load GPT-2 BPE without a download (it caches by URL hash)."""
    import hashlib
    import tempfile

    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), "data-gym-cache")
    base = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
    return all(os.path.exists(os.path.join(cache, hashlib.sha1((base + f).encode()).hexdigest()))
               for f in ("vocab.bpe", "encoder.json"))


@pytest.mark.skipif(not gpt2_bpe_is_cached(), reason="tiktoken's GPT-2 BPE is not cached here; "
                    "the tests do not download it (the offline error is tested above)")
def test_shakespeare_with_real_gpt2_bpe(tmp_path):
    import tiktoken

    from adamwprune.data.encoding import gpt2_encoder

    text = "KING RICHARD III:\nNow is the winter of our discontent\n" * 50
    (tmp_path / "input.txt").write_text(text)
    shakespeare.prepare(tmp_path / "data", from_file=tmp_path / "input.txt", encoder=gpt2_encoder())
    ds = get_dataset("shakespeare", tmp_path / "data")
    assert ds.vocab_size == 50304 and ds.n_token_ids == 50257 and ds.eot_token == 50256
    enc = tiktoken.get_encoding("gpt2")
    cut = int(len(text) * 0.9)
    assert enc.decode(np.concatenate(ds.shards("train")).tolist()) == text[:cut]
    assert enc.decode(np.concatenate(ds.shards("val")).tolist()) == text[cut:]
