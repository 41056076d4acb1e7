#!/usr/bin/env bash
# Usage: scripts/generate-project-name.sh MODEL [tracking]
# Print the auto project name {model}-{checksum} (md5 of short hostname, first IPv4, current directory name).
# Thin wrapper: the logic is in adamwprune/kconfig (python -m adamwprune.kconfig project-name).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$repo/.venv/bin/python"
[ -x "$python" ] || python=python3
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m adamwprune.kconfig project-name "$@"
