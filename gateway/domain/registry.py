"""Binding a device message to the registry: which tenant, which person, if any.

Pure: the registry snapshot of one device comes in, a decision goes out. Personal data
is attributed to the device's current holder, and only when it was stamped (``ts``, the
device's own clock) at or after the current assignment began. Anything stamped earlier
is refused as ``before_current_assignment`` (kept in quarantine for a tenant admin to
review and release, see docs/contract.md): the device's clock alone never attributes
data to an earlier holder (security review #17.2: a re-issued scale replaying two-day-old
readings and a button alarm stored them on the previous resident and sent the night
team to the wrong home). A re-issued device never shows the previous holder's data
under the new holder either. Device health (heartbeat, status, battery) is kept whatever
its ``ts``; stamped before the current assignment it is attributed to no person.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
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
    """A device held by a person for a period.

    ``tenant_id``: the tenant the assignment belongs to when it is not the device's own
    (None: the device's). They differ only around a move to another municipality (#19.2,
    docs/moves.md): the old municipality's assignment ends on the date and the new one's
    begins then, while the device row changes tenant when the date has come.
    ``continues``: this assignment continues the one before it in the device's history,
    held by the same resident under the earlier tenant (made by a move, never otherwise).
    ``unit_id``: a unit's assignment (#19.4, docs/units.md): the device is the unit's
    (a residential unit's door lock, a ward's scale) and ``person_id`` is None.
    """

    person_id: UUID | None  # None: a unit's (unit_id)
    valid_from: datetime
    valid_to: datetime | None  # None: still held
    tenant_id: str | None = None
    continues: bool = False
    unit_id: UUID | None = None

    def covers(self, ts: datetime) -> bool:
        return self.valid_from <= ts and (self.valid_to is None or ts < self.valid_to)


class Binding(NamedTuple):
    """Whose a message is: made once per message (a named tuple is quick to make)."""

    tenant_id: str
    person_id: UUID | None
    unit_id: UUID | None = None  # a unit's shared device (#19.4)


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

    def binding_at(self, ts: datetime) -> Binding:
        """Whose the device was at ``ts`` (for what the engine raises on its own: a
        silence, a door left open): the holder then, under the tenant of that assignment
        (another municipality's before or after a move, #19.2), else the device's."""
        if self.holder is not None:
            return Binding(self.tenant_id, self.holder if to_us(ts) >= self.held_since_us
                           else None)  # fmt: skip
        for assignment in self.history:
            if assignment.covers(ts):
                return Binding(assignment.tenant_id or self.tenant_id, assignment.person_id,
                               assignment.unit_id)  # fmt: skip
        return Binding(self.tenant_id, None)

    def unit_at(self, ts: datetime) -> UUID | None:
        """The unit the device was assigned to at ``ts`` (#19.4); None if it was no
        unit's (the common shape, a person's device, is never a unit's)."""
        if self.holder is not None:
            return None
        for assignment in self.history:
            if assignment.covers(ts):
                return assignment.unit_id
        return None

    def current_holder(self) -> UUID | None:
        if self.holder is not None:
            return self.holder
        current = self.current_assignment()
        return current.person_id if current is not None else None

    def same_resident_since(self) -> int:
        """Index into ``history`` of the first assignment of the current holder's chain of
        moves: the assignments from there to the last are one resident, moved between
        tenants (``Assignment.continues``). The last index when there was no move."""
        first = len(self.history) - 1
        while first > 0 and self.history[first].continues:
            first -= 1
        return first

    def current_assignment(self) -> Assignment | None:
        """The assignment still held, if any. Assignments of a device never overlap (the
        database's exclusion constraint), so an open one is the latest: one look."""
        if self.holder is not None:
            return Assignment(self.holder, from_us(self.held_since_us), None)
        if self.history and self.history[-1].valid_to is None:
            return self.history[-1]
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
    if len(history) == 1 and history[0].valid_to is None and history[0].unit_id is None:
        only = history[0]
        return DeviceRecord(device_id, tenant_id, status, device_type, heartbeat_interval_s,
                            only.person_id, to_us(only.valid_from))  # fmt: skip
    return DeviceRecord(
        device_id, tenant_id, status, device_type, heartbeat_interval_s, history=history
    )


class Refusal(StrEnum):
    """The gateway's own quarantine reasons (the decoder's are
    ``firmware_contracts.decode.Reason``); docs/contract.md lists them all."""

    UNKNOWN_DEVICE = "unknown_device"
    INACTIVE_DEVICE = "inactive_device"
    WRONG_DEVICE_TYPE = "wrong_device_type"
    NO_ASSIGNMENT_AT_TS = "no_assignment_at_ts"
    BEFORE_CURRENT_ASSIGNMENT = "before_current_assignment"
    # a resident's reading from a unit's shared device (#19.4, gateway.domain.units)
    NO_RESIDENT_IDENTIFIED = "no_resident_identified"
    UNKNOWN_RESIDENT_TAG = "unknown_resident_tag"
    # a sensor state (or a position, when gated) without a supervision decision in force
    # with consent (#20, gateway.domain.supervision_consent)
    NO_SUPERVISION_CONSENT = "no_supervision_consent"


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal
    detail: str
    tenant_id: str | None = None


def bind(
    device: DeviceRecord | None,
    ts: datetime | None,
    *,
    needs_person: bool,
    grace: timedelta = timedelta(0),
) -> Binding | Refused:
    """Decide whether a message from ``device`` stamped ``ts`` is accepted, and for whom.

    ``needs_person``: personal data (readings, positions, lock and alarm events) must be
    attributable to a person: the current holder, and only if ``ts`` is not before the
    current assignment began. Personal data stamped earlier, by a device held now by
    someone else or by no one (returned), is refused as ``before_current_assignment``,
    whoever held the device at ``ts``. Device health (heartbeat, status, battery) need
    not be attributable: it binds to the current holder, or to no person when stamped
    before the current assignment. O(1) for a device held by one person since it was
    registered (the common shape); a re-issued device's history is looked at only on a
    refusal, to say in the detail who held it then.

    ``grace`` (the clock tolerance, ``max_clock_skew_s``): personal data stamped less than
    this before the current assignment began, when no one held the device at ``ts``, is
    the current holder's: a device clock that lags, or stamps whole seconds, must not turn
    a new resident's first button press into quarantine. Stamped while someone else held
    the device, it is never the current holder's.

    A device assigned to a unit (#19.4, docs/units.md) binds to the unit with no person,
    by the same rule of time; whose a personal reading of it is, is said by the message's
    resident tag (``gateway.worker.ingest.admit``, ``gateway.domain.units``).
    """
    if device is None:
        return Refused(Refusal.UNKNOWN_DEVICE, "device is not registered")
    if device.status is not DeviceStatus.ACTIVE:
        if needs_person and ts is not None and device.status is DeviceStatus.RETURNED:
            earlier = device.holder_at(ts)
            if earlier is not None:
                return Refused(
                    Refusal.BEFORE_CURRENT_ASSIGNMENT,
                    f"stamped {ts.isoformat()}, while person {earlier} held the device; "
                    "it has been returned since and no one holds it now",
                    device.tenant_id,
                )
        return Refused(
            Refusal.INACTIVE_DEVICE, f"device is {device.status.value}", device.tenant_id
        )
    holder = device.holder
    since_us = device.held_since_us
    tenant = device.tenant_id
    if holder is None:
        current = device.current_assignment()
        if current is None:
            if needs_person:
                return Refused(Refusal.NO_ASSIGNMENT_AT_TS,
                               "the device is active but no person holds it",
                               device.tenant_id)  # fmt: skip
            return Binding(device.tenant_id, None)
        if current.unit_id is not None:  # a unit's shared device (#19.4)
            return _bind_unit(device, current, ts, needs_person, grace)
        holder, since_us = current.person_id, to_us(current.valid_from)
        if current.continues:  # a moved resident (#19.2): the earlier tenant's until the date
            moved = _moved(device, ts)
            if moved is not None:
                return moved
        tenant = current.tenant_id or device.tenant_id
    if ts is None or to_us(ts) >= since_us:
        return Binding(tenant, holder)
    if not needs_person:
        return Binding(tenant, None)
    earlier = device.holder_at(ts)
    if earlier is None and to_us(ts) >= since_us - grace // timedelta(microseconds=1):
        return Binding(tenant, holder)
    then = f"person {earlier} held the device then" if earlier else "no one held the device then"
    return Refused(
        Refusal.BEFORE_CURRENT_ASSIGNMENT,
        f"stamped {ts.isoformat()}, before the current assignment began "
        f"({from_us(since_us).isoformat()}); {then}",
        device.tenant_id,
    )


def _moved(device: DeviceRecord, ts: datetime | None) -> Binding | None:
    """A message of a resident who moved to another tenant (#19.2): stamped while an
    earlier assignment of the same resident held the device, it is that assignment's (its
    tenant and its person record), whenever it arrives, so a reading stamped before the
    date lands with the old municipality and one stamped after with the new. Without a
    stamp (a last will), the assignment of the tenant that holds the device row now. None
    when ``ts`` falls outside the chain (the rules for the current assignment apply)."""
    chain = device.history[device.same_resident_since():]
    if ts is None:
        for a in reversed(chain):
            if (a.tenant_id or device.tenant_id) == device.tenant_id:
                return Binding(device.tenant_id, a.person_id)
        return None
    for a in chain[:-1]:
        if a.covers(ts):
            return Binding(a.tenant_id or device.tenant_id, a.person_id)
    return None


def _bind_unit(
    device: DeviceRecord, current: Assignment, ts: datetime | None, needs_person: bool,
    grace: timedelta,
) -> Binding | Refused:  # fmt: skip
    """A message of a device held by a unit now: the unit's, if stamped at or after the
    unit's assignment began (less ``grace`` when no one held the device then). Device
    health stamped earlier binds to no one; personal data stamped earlier is refused as
    ``before_current_assignment``, as for a person's device."""
    tenant = current.tenant_id or device.tenant_id
    since_us = to_us(current.valid_from)
    if ts is None or to_us(ts) >= since_us:
        return Binding(tenant, None, current.unit_id)
    if not needs_person:
        return Binding(tenant, None)
    earlier = device.holder_at(ts)
    unit_then = device.unit_at(ts)
    if (earlier is None and unit_then is None
            and to_us(ts) >= since_us - grace // timedelta(microseconds=1)):  # fmt: skip
        return Binding(tenant, None, current.unit_id)
    then = (
        f"person {earlier} held the device then" if earlier
        else f"unit {unit_then} held the device then" if unit_then
        else "no one held the device then"
    )  # fmt: skip
    return Refused(
        Refusal.BEFORE_CURRENT_ASSIGNMENT,
        f"stamped {ts.isoformat()}, before the unit's assignment began "
        f"({current.valid_from.isoformat()}); {then}",
        device.tenant_id,
    )
