"""Weekdays in request bodies (safe-zone windows, weekly visit slots)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field


def _weekdays(days: list[int]) -> list[int]:
    if any(d < 0 or d > 6 for d in days):
        raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
    return sorted(set(days))


#: 0 = Monday ... 6 = Sunday; duplicates dropped, sorted.
Weekdays = Annotated[
    list[int],
    Field(min_length=1, max_length=7, description="0 = Monday"),
    AfterValidator(_weekdays),
]
