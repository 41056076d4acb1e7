#!/usr/bin/env python3
"""Train GPT-2 with the shared AdamWPrune loop; see ``.venv/bin/python gpt2/train.py --help``.

    .venv/bin/python gpt2/train.py --dataset pydocs --model-name gpt2-tiny --device cpu --max-iters 20
    .venv/bin/torchrun --nproc_per_node=4 gpt2/train.py ...

(``make venv`` sets up .venv; started by a Python without torch, it says so in one line.)
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adamwprune.train.cli import run_family  # noqa: E402  (no torch at import: --help works without it)
from adamwprune.train.gpt2 import FAMILY  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_family(FAMILY, sys.argv[1:]))
