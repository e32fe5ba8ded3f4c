"""Durations in scenario files: ``90``, ``"90s"``, ``"15m"``, ``"2h"``, ``"3d"``, ``"1h30m"``.

A bare number means seconds. Parsing is pure and raises :class:`ValueError` with the
offending text, which pydantic turns into an error that names the scenario key.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> timedelta:
    """Parse a duration; a number is seconds. Negative durations are refused."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '15m'")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise ValueError("a duration must be a number of seconds or a string like '15m'")
    if seconds < 0 or seconds != seconds:  # NaN check without importing math
        raise ValueError(f"duration must not be negative: {value!r}")
    return timedelta(seconds=seconds)


def _parse_text(text: str) -> float:
    compact = text.strip().replace(" ", "")
    if not compact:
        raise ValueError("empty duration")
    try:
        return float(compact)
    except ValueError:
        pass
    total = 0.0
    position = 0
    for match in _PART.finditer(compact):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(compact):
        raise ValueError(
            f"invalid duration {text!r}: use seconds or e.g. '90s', '15m', '2h', '3d', '1h30m'"
        )
    return total


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A pydantic field type accepting the forms above."""


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("duration must be greater than zero")
    return value


PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]
"""Like :data:`Duration` but strictly positive (intervals)."""
