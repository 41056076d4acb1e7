"""``shakespeare``: tiny-shakespeare (karpathy/char-rnn, 1.1 MB of text), GPT-2 BPE.
The text's first 90 % of characters train, the last 10 % validate (``train.bin`` / ``val.bin``)."""

from __future__ import annotations

import os
from pathlib import Path

from adamwprune.data.net import DEFAULT_TIMEOUT_S, fetch_text
from adamwprune.data.tokens import ShardWriter, TextEncoder
from adamwprune.errors import UserError

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
URL_ENV = "ADAMWPRUNE_SHAKESPEARE_URL"
VAL_FRACTION = 0.1


def source_url() -> str:
    return os.environ.get(URL_ENV, URL)


def read_text(from_file: str | Path | None = None, url: str | None = None,
              timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[str, str]:
    """(text, where it came from): a local file, or a download from ``url``."""
    if from_file is not None:
        try:
            return Path(from_file).read_text(encoding="utf-8"), str(from_file)
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"cannot read {from_file}: {err.strerror if isinstance(err, OSError) else err}") from None
    url = url or source_url()
    return fetch_text(url, timeout_s), url


def write_split_text(out_dir: str | Path, text: str, encoder: TextEncoder, source: str) -> dict:
    """Tokenize the two parts of ``text`` into ``train.bin`` / ``val.bin``."""
    if not text.strip():
        raise UserError(f"{source} is empty")
    cut = int(len(text) * (1 - VAL_FRACTION))
    train_ids, val_ids = encoder.encode_batch([text[:cut], text[cut:]])
    with ShardWriter(out_dir, dataset="shakespeare", encoder=encoder, shard_tokens=None,
                     source={"text": source, "characters": len(text)}) as writer:
        writer.add("train", train_ids)
        writer.add("val", val_ids)
        return writer.finish()


def prepare(data_dir: str | Path, *, from_file: str | Path | None = None, url: str | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S, encoder: TextEncoder | None = None) -> dict:
    text, source = read_text(from_file, url, timeout_s)
    if encoder is None:
        from adamwprune.data.encoding import gpt2_encoder

        encoder = gpt2_encoder()
    return write_split_text(Path(data_dir) / "shakespeare", text, encoder, source)
