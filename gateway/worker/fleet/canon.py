"""One object for a value that several caches read separately from the database.

A person's id is read by the registry (for every assignment) and again by the person
rules; each query hands over its own ``UUID`` (an object and its 128-bit int, about 100
bytes), so every person would be held twice. Passing both through one ``Canon`` makes
them share one object.

The table holds one reference to each value. ``sweep`` drops the values nothing else
refers to any more (a person removed, an assignment ended and reloaded), so the table
follows what the caches hold and does not grow with every value ever read. It counts
references (CPython's ``sys.getrefcount``), so it needs no bookkeeping from the caches.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import Generic, TypeVar
from uuid import UUID

T = TypeVar("T", bound=Hashable)


def _unreferenced(table: dict[T, T], only_here: int) -> list[T]:
    """The values of ``table`` whose reference count is at most ``only_here``."""
    return [value for value in table if sys.getrefcount(value) <= only_here]


def _only_here() -> int:
    """The count ``_unreferenced`` sees for a value that nothing but its table refers to
    (measured, not assumed: how many references the counting itself adds depends on the
    interpreter)."""
    table: dict[object, object] = {}
    value = object()
    table[value] = value
    del value
    for count in range(1, 16):
        if _unreferenced(table, count):
            return count
    raise RuntimeError("cannot measure reference counts here")


_ONLY_HERE = _only_here()


class Canon(Generic[T]):
    def __init__(self) -> None:
        self._held: dict[T, T] = {}

    def __call__(self, value: T) -> T:
        """The object held for values equal to ``value`` (``value`` itself the first time)."""
        return self._held.setdefault(value, value)

    def sweep(self) -> None:
        """Let go of the values that nothing but this table refers to. Makes nothing the
        size of the table (it runs after every full reload, usually to find nothing)."""
        for value in _unreferenced(self._held, _ONLY_HERE):
            del self._held[value]

    def __len__(self) -> int:
        return len(self._held)


#: Persons' ids, shared by the registry's assignments and the person rules.
PERSON_IDS: Canon[UUID] = Canon()
