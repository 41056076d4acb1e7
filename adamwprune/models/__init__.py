"""Models trained by the harness (GPT-2 for now)."""

from __future__ import annotations
