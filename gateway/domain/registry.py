"""Binding a device message to the registry: which tenant, which person, if any.

Pure: the registry snapshot of one device comes in, a decision goes out. A reading is
attributed to the person who held the device at the reading's own time ``ts``, so a
re-issued device never shows the previous holder's data under the new holder, and
buffered readings replayed late still land on the right person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


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


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    tenant_id: str
    status: DeviceStatus
    device_type: str
    heartbeat_interval_s: int
    assignments: tuple[Assignment, ...] = ()

    def holder_at(self, ts: datetime) -> UUID | None:
        for assignment in self.assignments:
            if assignment.covers(ts):
                return assignment.person_id
        return None


class Refusal(StrEnum):
    UNKNOWN_DEVICE = "unknown_device"
    INACTIVE_DEVICE = "inactive_device"
    NO_ASSIGNMENT_AT_TS = "no_assignment_at_ts"


@dataclass(frozen=True, slots=True)
class Binding:
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
    person = device.holder_at(ts) if ts is not None else _current_holder(device)
    if needs_person and person is None:
        return Refused(
            Refusal.NO_ASSIGNMENT_AT_TS,
            "no person held the device at the message time",
            device.tenant_id,
        )
    return Binding(device.tenant_id, person)


def _current_holder(device: DeviceRecord) -> UUID | None:
    for assignment in device.assignments:
        if assignment.valid_to is None:
            return assignment.person_id
    return None
