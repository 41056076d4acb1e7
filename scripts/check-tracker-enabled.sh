#!/usr/bin/env bash
# Usage: scripts/check-tracker-enabled.sh NAME VALUE
# Print y if tracker NAME (trackio|wandb) is among those VALUE selects (none|trackio|wandb|both|wandb,trackio), else n.
# Thin wrapper: the logic is in adamwprune/kconfig (python -m adamwprune.kconfig tracker-enabled).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$repo/.venv/bin/python"
[ -x "$python" ] || python=python3
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m adamwprune.kconfig tracker-enabled "$@"
