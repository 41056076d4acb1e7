#!/usr/bin/env python3
"""Train GPT-2 with the shared AdamWPrune loop; see ``python gpt2/train.py --help``.

    python gpt2/train.py --dataset finewebedu --optimizer adamw --tracker trackio
    torchrun --nproc_per_node=4 gpt2/train.py ...
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adamwprune.train.cli import run_family  # noqa: E402
from adamwprune.train.gpt2 import FAMILY  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_family(FAMILY, sys.argv[1:]))
