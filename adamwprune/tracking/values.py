"""Turning what trainers log into journal-ready values.

Accepted: int, float, bool, str, numpy scalars and one-element torch tensors /
numpy arrays (as floats or ints). NaN and ±inf are kept and counted: they go to
the journal in a separate ``nonfinite`` map because JSON has no literal for them.
"""

from __future__ import annotations

import math

_PLAIN = (int, str, bool)
_NONFINITE_NAMES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def split_metrics(metrics: dict) -> tuple[dict, dict[str, str] | None]:
    """Return ``(finite, nonfinite)`` where nonfinite maps name -> "nan"/"inf"/"-inf".

    Raises TypeError/ValueError for a value that is not a scalar (a programming
    error in the caller, reported with the metric's name).
    """
    finite = {}
    nonfinite = None
    for name, value in metrics.items():
        if type(name) is not str:
            raise TypeError(f"metric names must be strings, got {name!r}")
        kind = type(value)
        if kind is not float and kind not in _PLAIN:
            value = _scalar(name, value)
            kind = type(value)
        if kind is float and (value != value or value in (math.inf, -math.inf)):
            if nonfinite is None:
                nonfinite = {}
            nonfinite[name] = "nan" if value != value else ("inf" if value > 0 else "-inf")
            continue
        finite[name] = value
    return finite, nonfinite


def join_metrics(finite: dict, nonfinite: dict[str, str] | None) -> dict:
    """Inverse of :func:`split_metrics`: the metrics with NaN/inf restored as floats."""
    if not nonfinite:
        return finite
    merged = dict(finite)
    for name, text in nonfinite.items():
        merged[name] = _NONFINITE_NAMES[text]
    return merged


def _scalar(name: str, value):
    """A tensor / numpy value as a Python number (without importing torch or numpy)."""
    item = getattr(value, "item", None)
    if item is None:
        if isinstance(value, float):  # float subclasses
            return float(value)
        raise TypeError(f"metric {name!r} has unsupported type {type(value).__name__}; "
                        "log numbers or strings")
    size = getattr(value, "numel", None) or getattr(value, "size", 1)
    if callable(size):
        size = size()
    if size != 1:
        raise ValueError(f"metric {name!r} holds {size} values; log a scalar "
                         "(e.g. tensor.mean().item())")
    number = item()
    return float(number) if isinstance(number, float) else number
