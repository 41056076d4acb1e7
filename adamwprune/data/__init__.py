"""Datasets for GPT-2 training: ``get_dataset(name)`` returns a TokenDataset.

- ``pydocs``: byte-level, built in memory from Python's own docs; always available offline.
- ``shakespeare``: tiny-shakespeare, GPT-2 BPE; ``python -m adamwprune.data prepare shakespeare``.
- ``finewebedu``: FineWeb-Edu sample-10BT, GPT-2 BPE shards; ``make prepare-data DATASET=finewebedu``.

See docs/datasets.md for formats and commands. The image classifiers' datasets (MNIST, CIFAR-10/100,
the offline digits) are in ``adamwprune.data.images`` (docs/vision.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from adamwprune.data.tokens import DEFAULT_DATA_DIR, TokenDataset, is_prepared, load_token_dir, prepare_command
from adamwprune.errors import UserError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str


DATASETS: dict[str, DatasetInfo] = {
    "finewebedu": DatasetInfo("finewebedu", "FineWeb-Edu sample-10BT (HF datasets), GPT-2 BPE, uint16 shards"),
    "shakespeare": DatasetInfo("shakespeare", "tiny-shakespeare (1.1 MB), GPT-2 BPE, 90/10 split"),
    "pydocs": DatasetInfo("pydocs", "Python's bundled docs (pydoc_data), byte-level, offline, 90/10 split"),
}


def default_data_dir() -> Path:
    return Path(os.environ.get("ADAMWPRUNE_DATA_DIR", DEFAULT_DATA_DIR))


def get_dataset(name: str, data_dir: str | Path | None = None) -> TokenDataset:
    """Open dataset ``name``; prepared datasets are read from ``data_dir/name/``
    (default ``$ADAMWPRUNE_DATA_DIR`` or ``data``)."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if name == "pydocs":
        from adamwprune.data import pydocs

        return pydocs.load()
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    directory = data_dir / name
    if not is_prepared(directory):
        raise UserError(f"dataset {name!r} is not prepared (no {directory}/meta.json); "
                        f"run: {prepare_command(name, data_dir)}")
    return load_token_dir(directory, name)


__all__ = ["DATASETS", "DEFAULT_DATA_DIR", "DatasetInfo", "TokenDataset", "get_dataset", "prepare_command", "default_data_dir"]
