"""GPT-2 BPE via tiktoken, loaded with a deadline and a clear error when it cannot be.

tiktoken does not ship the GPT-2 vocabulary: on first use it downloads ``vocab.bpe`` and
``encoder.json`` from openaipublic.blob.core.windows.net and caches them (in
``$TIKTOKEN_CACHE_DIR``, default ``$TMPDIR/data-gym-cache``). An offline machine needs
that cache copied from a machine that has used it.
"""

from __future__ import annotations

from adamwprune.data.net import DEFAULT_TIMEOUT_S, call_with_deadline
from adamwprune.data.tokens import TextEncoder
from adamwprune.errors import UserError

GPT2_N_TOKEN_IDS = 50257
GPT2_EOT = 50256


def gpt2_encoder(timeout_s: float = 3 * DEFAULT_TIMEOUT_S, threads: int | None = None) -> TextEncoder:
    import os

    try:
        import tiktoken
    except ImportError:
        raise UserError("tiktoken is not installed: pip install tiktoken") from None
    enc = call_with_deadline(
        lambda: tiktoken.get_encoding("gpt2"), timeout_s,
        "cannot load tiktoken's GPT-2 BPE (downloaded on first use from openaipublic.blob.core.windows.net, "
        "then cached in $TIKTOKEN_CACHE_DIR)")
    assert enc.n_vocab == GPT2_N_TOKEN_IDS and enc.eot_token == GPT2_EOT, "unexpected tiktoken gpt2 vocabulary"
    n_threads = threads or os.cpu_count() or 1
    return TextEncoder("gpt2", enc.n_vocab, enc.eot_token,
                       lambda texts: enc.encode_ordinary_batch(texts, num_threads=n_threads))
