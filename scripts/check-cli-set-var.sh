#!/usr/bin/env bash
# Usage: scripts/check-cli-set-var.sh VAR
# Print y if VAR is set in the environment (make exports command-line variables), else n.
# Thin wrapper: the logic is in adamwprune/kconfig (python -m adamwprune.kconfig cli-set-var).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$repo/.venv/bin/python"
[ -x "$python" ] || python=python3
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m adamwprune.kconfig cli-set-var "$@"
