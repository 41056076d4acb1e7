#!/usr/bin/env python3
"""Train LeNet-5 with the shared AdamWPrune loop; see ``.venv/bin/python lenet5/train.py --help``.

    .venv/bin/python lenet5/train.py --dataset digits --device cpu --epochs 10 --warmup-iters 10   # offline
    .venv/bin/python lenet5/train.py --dataset mnist --epochs 10                                   # downloads MNIST once
    .venv/bin/torchrun --nproc_per_node=2 lenet5/train.py ...

(``make venv`` sets up .venv; started by a Python without torch, it says so in one line.)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adamwprune.train.cli import run_family  # noqa: E402  (no torch at import: --help works without it)
from adamwprune.train.vision import LENET5  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_family(LENET5, sys.argv[1:]))
