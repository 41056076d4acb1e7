#!/usr/bin/env python3
"""Train ResNet-50 (or ResNet-18) with the shared AdamWPrune loop; see ``.venv/bin/python resnet50/train.py --help``.

    .venv/bin/python resnet50/train.py --dataset cifar100 --epochs 200             # downloads CIFAR-100 once
    .venv/bin/python resnet50/train.py --model-name resnet18 --dataset cifar10 --epochs 100
    .venv/bin/python resnet50/train.py --model-name resnet18 --dataset digits --device cpu --max-iters 50
    .venv/bin/torchrun --nproc_per_node=4 resnet50/train.py ...

(``make venv`` sets up .venv; started by a Python without torch, it says so in one line.)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adamwprune.train.cli import run_family  # noqa: E402  (no torch at import: --help works without it)
from adamwprune.train.vision import RESNET50  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_family(RESNET50, sys.argv[1:]))
