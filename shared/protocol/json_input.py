"""JSON from outside the process (a peer's answer, a token's header): parsed so that hostile
input can only ever raise ValueError, which every caller already turns into its own error."""

from __future__ import annotations

import json
import math
from typing import Any


def loads(data: bytes | str) -> Any:
    """json.loads, with nesting too deep to parse reported as ValueError.

    json.loads recurses once per nesting level, so a few kilobytes of ``[[[[...`` raise
    RecursionError, which no caller expects from a parser and which would otherwise become a
    500 (or escape a library's documented errors).
    """
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def finite_number(value: Any) -> float | None:
    """``value`` as a float if it is a finite JSON number (not a bool), else None.

    json.loads turns ``1e999`` into infinity and accepts ``NaN``; an integer with hundreds of
    digits is valid JSON too and overflows float(). None of those is a usable time or duration.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
