"""``finewebedu``: FineWeb-Edu (sample-10BT) streamed from the Hugging Face Hub with the
optional ``datasets`` package (``pip install 'adamwprune[data]'``), tokenized with GPT-2 BPE
into uint16 shards of ``shard_tokens`` tokens. Every 100th document (0, 100, ...) is held
out for validation (1 %).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

from adamwprune.data.net import DEFAULT_TIMEOUT_S, _one_line, check_reachable
from adamwprune.data.tokens import TextEncoder, write_documents
from adamwprune.errors import UserError

HF_DATASET = "HuggingFaceFW/fineweb-edu"
HF_CONFIG = "sample-10BT"
VAL_EVERY = 100
SHARD_TOKENS = 100_000_000  # 200 MB per shard


def hub_endpoint() -> str:
    """The Hub URL, honouring ``HF_ENDPOINT`` as huggingface_hub itself does."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def stream_documents(timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[str]:
    """The ``text`` of each FineWeb-Edu document, streamed. Checks (before anything slow)
    that the Hub answers and that ``datasets`` is installed."""
    endpoint = hub_endpoint()
    check_reachable(f"{endpoint}/api/datasets/{HF_DATASET}", timeout_s, "the Hugging Face Hub, for FineWeb-Edu")
    # Keep the hub client's own timeouts short too, so a network drop later fails instead of hanging.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(timeout_s)))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(3 * timeout_s)))
    try:
        import datasets
    except ImportError:
        raise UserError("finewebedu needs the optional 'datasets' package: "
                        "pip install 'adamwprune[data]' (or pip install datasets)") from None
    try:
        rows = iter(datasets.load_dataset(HF_DATASET, name=HF_CONFIG, split="train", streaming=True))
    except Exception as err:  # any failure opening a remote dataset becomes one line for the user
        raise UserError(f"cannot open {HF_DATASET} ({HF_CONFIG}) at {endpoint}: {_one_line(err)}") from None
    count = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as err:  # a network drop mid-stream: say where it stopped
            raise UserError(f"streaming {HF_DATASET} failed after {count} documents: {_one_line(err)}") from None
        count += 1
        yield row["text"]


def prepare(data_dir: str | Path, *, max_tokens: int | None = None, max_docs: int | None = None,
            shard_tokens: int = SHARD_TOKENS, timeout_s: float = DEFAULT_TIMEOUT_S,
            encoder: TextEncoder | None = None) -> dict:
    documents = stream_documents(timeout_s)
    first = next(documents, None)  # connects (and fails) before the tokenizer is loaded
    if encoder is None:
        from adamwprune.data.encoding import gpt2_encoder

        encoder = gpt2_encoder()

    def all_documents() -> Iterator[str]:
        if first is not None:
            yield first
        yield from documents

    def progress(tokens: int, docs: int) -> None:
        print(f"finewebedu: {tokens:,} tokens from {docs:,} documents", file=sys.stderr, flush=True)

    return write_documents(
        Path(data_dir) / "finewebedu", dataset="finewebedu", documents=all_documents(), encoder=encoder,
        val_every=VAL_EVERY, shard_tokens=shard_tokens, max_tokens=max_tokens, max_docs=max_docs,
        source={"hub": hub_endpoint(), "dataset": HF_DATASET, "config": HF_CONFIG, "split": "train",
                "max_tokens": max_tokens, "max_docs": max_docs},
        progress=progress)
