"""Token datasets on disk: raw little-endian uint16 shards plus a meta.json, the writer
that produces them from documents, and the reader that memory-maps them for training.

Layout of a prepared dataset directory (``data/<name>/``)::

    meta.json            what the shards are: encoding, vocab, and per split a list of
                         {"file": ..., "tokens": ...}; written last, so a directory
                         without it was never finished
    train_000000.bin     raw np.uint16 little-endian token ids, no header
    ...
    val_000000.bin

(single-file datasets use ``train.bin`` / ``val.bin``.)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np

from adamwprune.errors import UserError

if TYPE_CHECKING:
    import torch

FORMAT = "adamwprune-tokens"
FORMAT_VERSION = 1
TOKEN_DTYPE = np.dtype("<u2")  # uint16 little-endian: every GPT-2 token id (< 50257) fits
SPLITS = ("train", "val")
META_FILE = "meta.json"
# How many tokens of each shard the reader checks against the vocab size when opening.
_CHECK_TOKENS = 1 << 20


DEFAULT_DATA_DIR = "data"


def prepare_command(name: str, data_dir: Path | str | None = None) -> str:
    """The command a user runs to prepare ``name`` (into ``data_dir``)."""
    if data_dir is None or Path(data_dir) == Path(DEFAULT_DATA_DIR):
        return f"make prepare-data DATASET={name}"
    return f"python -m adamwprune.data prepare {name} --data-dir {data_dir}"


def padded_vocab_size(n_token_ids: int, multiple: int = 64) -> int:
    """Round the number of token ids up to a multiple of 64 (faster matmuls on GPUs)."""
    return -(-n_token_ids // multiple) * multiple


@dataclass(frozen=True)
class TextEncoder:
    """Turns documents into token ids. ``encode_batch`` takes a list of strings."""
    name: str
    n_token_ids: int
    eot_token: int
    encode_batch: Callable[[list[str]], list[list[int]]]


def byte_encoder() -> TextEncoder:
    """UTF-8 bytes as tokens (256 ids); the NUL byte, which text does not contain, ends a document."""
    return TextEncoder("bytes", 256, 0, lambda texts: [list(t.encode("utf-8")) for t in texts])


class TokenDataset:
    """Train/val token streams (each a list of 1-D uint16 arrays: memmaps or in memory)
    from which ``get_batch`` draws random windows."""

    def __init__(self, name: str, splits: dict[str, Sequence[np.ndarray]], *, encoding: str,
                 n_token_ids: int, eot_token: int | None = None, source: str = "") -> None:
        for split in SPLITS:
            if split not in splits:
                raise ValueError(f"{name}: no {split!r} split")
        self.name = name
        self.encoding = encoding
        self.n_token_ids = n_token_ids
        self.eot_token = eot_token
        self.source = source
        self._splits = {s: list(arrays) for s, arrays in splits.items()}
        # (split, block_size) -> (window starts per array, their cumulative sum), for get_batch
        self._starts: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def vocab_size(self) -> int:
        """Size of the model's embedding: the token ids, padded to a multiple of 64."""
        return padded_vocab_size(self.n_token_ids)

    def num_tokens(self, split: str) -> int:
        return sum(len(a) for a in self.shards(split))

    def shards(self, split: str) -> list[np.ndarray]:
        """The 1-D token arrays (memmaps of shard files, or in memory) of ``split``."""
        if split not in self._splits:
            raise ValueError(f"unknown split {split!r}; use one of {', '.join(self._splits)}")
        return self._splits[split]

    def get_batch(self, split: str, batch_size: int, block_size: int,
                  generator: "torch.Generator | None" = None, device: "str | torch.device" = "cpu"
                  ) -> tuple["torch.Tensor", "torch.Tensor"]:
        """``batch_size`` random windows of ``block_size + 1`` tokens from ``split``, as
        (x, y) int64 tensors of shape (batch_size, block_size) with y = x shifted by one.

        Windows never cross a shard boundary; every start position of every shard is
        equally likely. ``generator`` (a CPU torch.Generator) makes the draw reproducible.
        """
        import torch

        arrays = self.shards(split)
        window = block_size + 1
        starts_per_array, ends = self._window_starts(split, block_size)
        total_starts = self.check_block_size(block_size, split)
        picks = torch.randint(total_starts, (batch_size,), generator=generator).numpy()
        which = np.searchsorted(ends, picks, side="right")
        offsets = picks - (ends[which] - starts_per_array[which])
        rows = np.stack([arrays[i][o:o + window] for i, o in zip(which, offsets)]).astype(np.int64)
        data = torch.from_numpy(rows)
        device = torch.device(device)
        if device.type == "cuda":
            data = data.pin_memory().to(device, non_blocking=True)
        else:
            data = data.to(device)
        return data[:, :-1], data[:, 1:]

    def check_block_size(self, block_size: int, *splits: str) -> int:
        """Raise a UserError unless every split (default: all) has a window of ``block_size + 1``
        tokens; returns the number of windows in the last split checked."""
        total = 0
        for split in splits or tuple(self._splits):
            ends = self._window_starts(split, block_size)[1]
            total = int(ends[-1]) if len(ends) else 0
            if total == 0:
                raise UserError(f"dataset {self.name!r}: the {split} split ({self.num_tokens(split)} tokens) "
                                f"has no shard longer than block_size + 1 = {block_size + 1} tokens; "
                                f"use a smaller --block-size")
        return total

    def _window_starts(self, split: str, block_size: int) -> tuple[np.ndarray, np.ndarray]:
        """How many windows of ``block_size + 1`` tokens start in each array of ``split``,
        and the cumulative sum of that; computed once per (split, block_size)."""
        key = (split, block_size)
        if key not in self._starts:
            window = block_size + 1
            per_array = np.array([max(len(a) - window + 1, 0) for a in self.shards(split)], dtype=np.int64)
            self._starts[key] = (per_array, np.cumsum(per_array))
        return self._starts[key]

    def __repr__(self) -> str:
        return (f"TokenDataset({self.name!r}, encoding={self.encoding!r}, vocab_size={self.vocab_size}, "
                f"train={self.num_tokens('train')}, val={self.num_tokens('val')})")


# --- writing ------------------------------------------------------------------------

class ShardWriter:
    """Appends token arrays to per-split shard files in a staging directory and, on
    ``finish()``, writes meta.json and moves the staging directory into place (replacing
    an older prepare). If the writer is left by an exception, nothing replaces the old data.

    ``shard_tokens=None`` writes one file per split (``train.bin``); otherwise files of
    ``shard_tokens`` tokens each (``train_000000.bin``, ...).
    """

    _BUFFER_TOKENS = 1 << 20

    def __init__(self, out_dir: str | Path, *, dataset: str, encoder: TextEncoder,
                 shard_tokens: int | None = None, source: dict | None = None) -> None:
        if encoder.n_token_ids > np.iinfo(TOKEN_DTYPE).max + 1:
            raise ValueError(f"{encoder.name}: {encoder.n_token_ids} token ids do not fit in uint16")
        if shard_tokens is not None and shard_tokens < 1:
            raise UserError(f"shard size must be positive, got {shard_tokens}")
        self.out_dir = Path(out_dir)
        self.staging = self.out_dir.with_name(self.out_dir.name + ".partial")
        self.dataset = dataset
        self.encoder = encoder
        self.shard_tokens = shard_tokens
        self.source = source or {}
        self._files: dict[str, list[dict]] = {s: [] for s in SPLITS}
        self._buffers: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
        self._buffered: dict[str, int] = {s: 0 for s in SPLITS}
        self.documents: dict[str, int] = {s: 0 for s in SPLITS}
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.staging.exists():
            shutil.rmtree(self.staging)

    def tokens_written(self, split: str | None = None) -> int:
        splits = SPLITS if split is None else (split,)
        return sum(f["tokens"] for s in splits for f in self._files[s]) + sum(
            self._buffered[s] for s in splits)

    def add(self, split: str, tokens: Sequence[int] | np.ndarray, documents: int = 1) -> None:
        """Append ``tokens`` (ids < the encoder's n_token_ids) to ``split``."""
        arr = np.asarray(tokens)
        if arr.size and (arr.min() < 0 or arr.max() >= self.encoder.n_token_ids):
            raise ValueError(f"token id out of range [0, {self.encoder.n_token_ids}) for {self.encoder.name}")
        self._buffers[split].append(arr.astype(TOKEN_DTYPE))
        self._buffered[split] += arr.size
        self.documents[split] += documents
        if self._buffered[split] >= self._BUFFER_TOKENS:
            self._flush(split)

    def _flush(self, split: str) -> None:
        if not self._buffers[split]:
            return
        pending = np.concatenate(self._buffers[split])
        self._buffers[split], self._buffered[split] = [], 0
        files = self._files[split]
        while pending.size:
            if not files or (self.shard_tokens is not None and files[-1]["tokens"] >= self.shard_tokens):
                name = f"{split}.bin" if self.shard_tokens is None else f"{split}_{len(files):06d}.bin"
                files.append({"file": name, "tokens": 0})
            current = files[-1]
            room = pending.size if self.shard_tokens is None else self.shard_tokens - current["tokens"]
            chunk, pending = pending[:room], pending[room:]
            with open(self.staging / current["file"], "ab") as fh:
                fh.write(chunk.tobytes())
            current["tokens"] += int(chunk.size)

    def finish(self) -> dict:
        """Flush, write meta.json, move the dataset into ``out_dir``; returns the meta."""
        for split in SPLITS:
            self._flush(split)
            if not self._files[split]:
                raise UserError(f"{self.dataset}: no documents went to the {split} split; "
                                f"prepare more data (raise --max-docs / --max-tokens)")
        meta = {
            "format": FORMAT, "version": FORMAT_VERSION, "dataset": self.dataset,
            "dtype": "uint16", "byteorder": "little",
            "encoding": self.encoder.name, "n_token_ids": self.encoder.n_token_ids,
            "eot_token": self.encoder.eot_token,
            "splits": self._files, "documents": self.documents, "source": self.source,
        }
        (self.staging / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        old = self.out_dir.with_name(self.out_dir.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if self.out_dir.exists():
            self.out_dir.rename(old)
        self.staging.rename(self.out_dir)
        if old.exists():
            shutil.rmtree(old)
        return meta


def tokenize_documents(documents: Iterable[str], encoder: TextEncoder, *, val_every: int,
                       max_tokens: int | None = None, max_docs: int | None = None,
                       batch_docs: int = 256) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (split, tokens) per document: its token ids followed by the end-of-text token.

    Document ``i`` (counting from 0) goes to "val" when ``i % val_every == 0``, else to
    "train", so the split is deterministic and the first document is always held out.
    Stops before the document that would pass ``max_tokens`` or after ``max_docs``.
    """
    if val_every < 2:
        raise ValueError("val_every must be >= 2")
    total = index = 0
    batch: list[str] = []

    def encoded(texts: list[str]) -> Iterator[np.ndarray]:
        for ids in encoder.encode_batch(texts):
            doc = np.empty(len(ids) + 1, dtype=np.int64)
            doc[:-1] = ids
            doc[-1] = encoder.eot_token
            yield doc

    docs_iter = iter(documents)
    while True:
        batch = []
        for text in docs_iter:
            batch.append(text)
            if len(batch) >= batch_docs or (max_docs is not None and index + len(batch) >= max_docs):
                break
        if not batch:
            return
        for doc in encoded(batch):
            if max_docs is not None and index >= max_docs:
                return
            if max_tokens is not None and total + doc.size > max_tokens:
                return
            yield ("val" if index % val_every == 0 else "train"), doc
            total += doc.size
            index += 1


# --- reading ------------------------------------------------------------------------

def is_prepared(directory: str | Path) -> bool:
    return (Path(directory) / META_FILE).is_file()


def load_token_dir(directory: str | Path, name: str) -> TokenDataset:
    """Open a prepared dataset directory, checking meta.json against the shard files;
    any mismatch is a one-line UserError naming the file."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    redo = f"re-run: {prepare_command(name, directory.parent)}"
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"format {meta.get('format')!r} version {meta.get('version')!r}, "
                             f"expected {FORMAT!r} version {FORMAT_VERSION}")
        if meta.get("dtype") != "uint16" or meta.get("byteorder") != "little":
            raise ValueError(f"dtype {meta.get('dtype')!r} {meta.get('byteorder')!r}, expected little-endian uint16")
        n_token_ids = int(meta["n_token_ids"])
        listing = {s: [(str(f["file"]), int(f["tokens"])) for f in meta["splits"][s]] for s in SPLITS}
    except FileNotFoundError:
        raise UserError(f"{meta_path} is missing; {redo}") from None
    except (ValueError, KeyError, TypeError) as err:  # json.JSONDecodeError is a ValueError
        raise UserError(f"{meta_path} is corrupt ({type(err).__name__}: {err}); {redo}") from None

    splits: dict[str, list[np.ndarray]] = {}
    for split, files in listing.items():
        if not files or sum(tokens for _, tokens in files) == 0:
            raise UserError(f"{meta_path}: the {split} split is empty; {redo}")
        splits[split] = [_open_shard(directory, file, tokens, n_token_ids, redo) for file, tokens in files]
    return TokenDataset(name, splits, encoding=str(meta.get("encoding")), n_token_ids=n_token_ids,
                        eot_token=meta.get("eot_token"), source=json.dumps(meta.get("source", {})))


def _open_shard(directory: Path, file: str, tokens: int, n_token_ids: int, redo: str) -> np.ndarray:
    if Path(file).name != file or file.startswith("."):
        raise UserError(f"{directory / META_FILE}: bad shard file name {file!r}; {redo}")
    path = directory / file
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UserError(f"shard {path} (listed in meta.json) is missing; {redo}") from None
    if size != tokens * TOKEN_DTYPE.itemsize:
        raise UserError(f"shard {path} has {size} bytes but meta.json says {tokens} uint16 tokens "
                        f"({tokens * TOKEN_DTYPE.itemsize} bytes): corrupt or from another prepare; {redo}")
    if tokens == 0:
        return np.empty(0, dtype=TOKEN_DTYPE)
    array = np.memmap(path, dtype=TOKEN_DTYPE, mode="r")
    top = int(array[:_CHECK_TOKENS].max())
    if top >= n_token_ids:
        raise UserError(f"shard {path} holds token id {top}, beyond the {n_token_ids} ids of its encoding: "
                        f"corrupt or from another prepare; {redo}")
    return array


def write_documents(out_dir: str | Path, *, dataset: str, documents: Iterable[str], encoder: TextEncoder,
                    val_every: int, shard_tokens: int | None, max_tokens: int | None = None,
                    max_docs: int | None = None, source: dict | None = None,
                    progress: Callable[[int, int], None] | None = None, progress_every: int = 10_000_000
                    ) -> dict:
    """Tokenize ``documents`` (see ``tokenize_documents``) into shards under ``out_dir``;
    returns the written meta. ``progress(tokens, documents)`` is called every
    ``progress_every`` tokens."""
    next_report = progress_every
    with ShardWriter(out_dir, dataset=dataset, encoder=encoder, shard_tokens=shard_tokens,
                     source=source) as writer:
        for split, tokens in tokenize_documents(documents, encoder, val_every=val_every,
                                                max_tokens=max_tokens, max_docs=max_docs):
            writer.add(split, tokens)
            if progress is not None and writer.tokens_written() >= next_report:
                progress(writer.tokens_written(), sum(writer.documents.values()))
                next_report += progress_every
        return writer.finish()
