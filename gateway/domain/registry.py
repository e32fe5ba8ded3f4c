"""Binding a device message to the registry: which tenant, which person, if any.

Pure: the registry snapshot of one device comes in, a decision goes out. A reading is
attributed to the person who held the device at the reading's own time ``ts``, so a
re-issued device never shows the previous holder's data under the new holder, and
buffered readings replayed late still land on the right person.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple
from uuid import UUID

from gateway.domain.instants import from_us, to_us


class DeviceStatus(StrEnum):
    IN_STOCK = "in_stock"
    ACTIVE = "active"
    RETURNED = "returned"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class Assignment:
    person_id: UUID
    valid_from: datetime
    valid_to: datetime | None  # None: still held

    def covers(self, ts: datetime) -> bool:
        return self.valid_from <= ts and (self.valid_to is None or ts < self.valid_to)


class DeviceRecord(NamedTuple):
    """A registered device as the registry holds it: tenant, status, model, and who held it
    when.

    Its assignment history has one of two shapes, whichever is smaller: the common case,
    a device handed to one person and still held, as ``holder`` and ``held_since_us``
    (microseconds since the epoch; no object for the assignment); anything else (never
    assigned, returned, handed over) as ``history``, every assignment oldest first. Make
    records with ``device_record`` so that a history always takes the same shape;
    ``assignments`` gives it as assignments whichever shape holds it.

    A named tuple, not a frozen dataclass: the registry keeps its devices in columns and
    makes a record each time one is asked for (once per message), and a tuple is made in
    a quarter of the time.
    """

    device_id: str
    tenant_id: str
    status: DeviceStatus
    device_type: str
    heartbeat_interval_s: int
    holder: UUID | None = None
    held_since_us: int = 0
    history: tuple[Assignment, ...] = ()

    @property
    def assignments(self) -> tuple[Assignment, ...]:
        if self.holder is None:
            return self.history
        return (Assignment(self.holder, from_us(self.held_since_us), None),)

    def holder_at(self, ts: datetime) -> UUID | None:
        if self.holder is not None:
            return self.holder if to_us(ts) >= self.held_since_us else None
        for assignment in self.history:
            if assignment.covers(ts):
                return assignment.person_id
        return None

    def current_holder(self) -> UUID | None:
        if self.holder is not None:
            return self.holder
        for assignment in self.history:
            if assignment.valid_to is None:
                return assignment.person_id
        return None


def device_record(
    device_id: str,
    tenant_id: str,
    status: DeviceStatus,
    device_type: str,
    heartbeat_interval_s: int,
    assignments: Iterable[Assignment] = (),
) -> DeviceRecord:
    """A record with its assignments in the record's shape (see ``DeviceRecord``)."""
    history = tuple(sorted(assignments, key=lambda a: a.valid_from))
    if len(history) == 1 and history[0].valid_to is None:
        only = history[0]
        return DeviceRecord(device_id, tenant_id, status, device_type, heartbeat_interval_s,
                            only.person_id, to_us(only.valid_from))  # fmt: skip
    return DeviceRecord(
        device_id, tenant_id, status, device_type, heartbeat_interval_s, history=history
    )


class Refusal(StrEnum):
    UNKNOWN_DEVICE = "unknown_device"
    INACTIVE_DEVICE = "inactive_device"
    NO_ASSIGNMENT_AT_TS = "no_assignment_at_ts"


class Binding(NamedTuple):
    """Whose a message is: made once per message (a named tuple is quick to make)."""

    tenant_id: str
    person_id: UUID | None


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal
    detail: str
    tenant_id: str | None = None


def bind(
    device: DeviceRecord | None, ts: datetime | None, *, needs_person: bool
) -> Binding | Refused:
    """Decide whether a message from ``device`` stamped ``ts`` is accepted, and for whom.

    ``needs_person``: personal data (readings, positions, lock and alarm events) must be
    attributable to a person; device health (heartbeat, status, battery) need not be.
    """
    if device is None:
        return Refused(Refusal.UNKNOWN_DEVICE, "device is not registered")
    if device.status is not DeviceStatus.ACTIVE:
        return Refused(
            Refusal.INACTIVE_DEVICE, f"device status is {device.status.value}", device.tenant_id
        )
    person = device.holder_at(ts) if ts is not None else device.current_holder()
    if needs_person and person is None:
        return Refused(
            Refusal.NO_ASSIGNMENT_AT_TS,
            "no person held the device at the message time",
            device.tenant_id,
        )
    return Binding(device.tenant_id, person)
