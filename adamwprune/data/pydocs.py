"""``pydocs``: an offline byte-level corpus from the documentation shipped with Python.

Source: ``pydoc_data.topics.topics`` (the text behind ``help('if')`` etc.), about 0.47 MB.
Documents are the topics in sorted-name order, each as UTF-8 bytes followed by a NUL byte
(end of document). The stream is split by position: the first 90 % of bytes train, the
last 10 % validate, so the split is deterministic and disjoint for a given Python version.
Built in memory on each load (a few milliseconds), nothing cached on disk.
"""

from __future__ import annotations

import sys

import numpy as np

from adamwprune.data.tokens import TokenDataset, byte_encoder

VAL_FRACTION = 0.1


def corpus_bytes() -> bytes:
    from pydoc_data.topics import topics

    return b"".join(topics[name].encode("utf-8") + b"\0" for name in sorted(topics))


def load() -> TokenDataset:
    tokens = np.frombuffer(corpus_bytes(), dtype=np.uint8).astype(np.uint16)
    cut = int(len(tokens) * (1 - VAL_FRACTION))
    encoder = byte_encoder()
    return TokenDataset("pydocs", {"train": [tokens[:cut]], "val": [tokens[cut:]]},
                        encoding=encoder.name, n_token_ids=encoder.n_token_ids,
                        eot_token=encoder.eot_token,
                        source=f"pydoc_data.topics of Python {sys.version.split()[0]}")
