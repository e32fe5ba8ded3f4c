"""Moving a resident to another municipality (issue #19.2; docs/moves.md). Pure.

The sending municipality proposes the move of a resident and the devices that go with
them, on a date; the receiving municipality accepts it before the date. What is decided
here: whether a proposal can be made, which devices move, and who may see a move.

- The date is ahead: a move is not backdated. Data is bound by its own time stamp when it
  arrives, to the tenant that held the device then; stored data is never re-homed, so a
  move dated in the past would leave readings stamped after the date with the sending
  municipality. A move that already happened is recorded from now.
- A door lock stays on the door of the home it was fitted to: it is returned, not moved.
- By default every device the resident holds moves, except door locks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

#: how far ahead a move may be proposed
MAX_AHEAD = timedelta(days=365)
#: devices that stay where they are fitted
STAYS_IN_THE_HOME = frozenset({"door_lock"})


class MoveStatus(StrEnum):
    PROPOSED = "proposed"  # by the sending municipality
    ACCEPTED = "accepted"  # by the receiving one: assignments made, takes effect on the date
    APPLIED = "applied"  # the date came: the devices belong to the receiving municipality
    CANCELLED = "cancelled"  # by either, before the date


class Side(StrEnum):
    OUTGOING = "outgoing"  # the caller's municipality sends the resident
    INCOMING = "incoming"  # the caller's municipality receives them


@dataclass(frozen=True, slots=True)
class HeldDevice:
    device_id: str
    device_type: str


class MoveRefused(ValueError):
    """A proposal that cannot be made; the message says why (for a 4xx answer)."""


def devices_to_move(held: Iterable[HeldDevice], chosen: Sequence[str] | None) -> list[str]:
    """The devices that go with the resident: ``chosen`` (each held by the resident and
    not fitted in the home), or every held device but door locks."""
    by_id = {d.device_id: d for d in held}
    if chosen is None:
        return sorted(d.device_id for d in by_id.values()
                      if d.device_type not in STAYS_IN_THE_HOME)  # fmt: skip
    if len(set(chosen)) != len(chosen):
        raise MoveRefused("device_ids names a device twice")
    for device_id in chosen:
        device = by_id.get(device_id)
        if device is None:
            raise MoveRefused(f"device {device_id} is not held by the resident")
        if device.device_type in STAYS_IN_THE_HOME:
            raise MoveRefused(f"device {device_id} is a {device.device_type}: it stays on the "
                              "door of the home; return it instead of moving it")  # fmt: skip
    return sorted(chosen)


def check_proposal(
    *, from_tenant: str, to_tenant: str, to_kind: str | None, effective_at: datetime,
    now: datetime,
) -> None:  # fmt: skip
    """Raise ``MoveRefused`` unless a move from ``from_tenant`` to ``to_tenant`` (of kind
    ``to_kind``, None: no such tenant) on ``effective_at`` can be proposed at ``now``."""
    if to_tenant == from_tenant:
        raise MoveRefused("a move goes to another municipality")
    if to_kind is None:
        raise MoveRefused(f"no municipality {to_tenant!r}")
    if to_kind != "municipality":
        raise MoveRefused(f"{to_tenant!r} is a {to_kind}: a resident moves to a municipality")
    if effective_at <= now:
        raise MoveRefused("the date of a move must be ahead: stored data is not moved, so a "
                          "move that already happened is recorded from now")  # fmt: skip
    if effective_at > now + MAX_AHEAD:
        raise MoveRefused(f"the date of a move must be within {MAX_AHEAD.days} days")


def side(tenant: str, from_tenant: str, to_tenant: str) -> Side | None:
    """Which side of a move ``tenant`` is on (None: neither, it sees nothing of it)."""
    if tenant == from_tenant:
        return Side.OUTGOING
    if tenant == to_tenant:
        return Side.INCOMING
    return None


def next_wake(now: datetime, next_due: datetime | None, interval_s: float) -> float:
    """Seconds a worker waits before looking for due moves again: the interval, or less
    when an accepted move's date comes sooner."""
    if next_due is None:
        return interval_s
    return max(0.0, min(interval_s, (next_due - now).total_seconds()))
