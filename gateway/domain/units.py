"""Units and shared devices (issue #19.4; docs/units.md). Pure: no I/O.

A unit is a tenant's residential unit (gruppbostad, boende) or ward (avdelning). A device
may be assigned to a unit instead of a person (verksamhetshjälpmedel): the lock of the
unit's door, a scale shared on a ward. What such a device says splits in two:

- Non-personal data (lock events at the unit's door, device health, battery, the unit's
  own alarms: a tamper, a door left unlocked, a button on the wall) is stored on the unit
  and its alarms go to the unit's tenant with the unit named.
- A personal reading (``RESIDENT_TYPES``: weight, blood pressure, position) needs the
  person identified per reading: the message's ``resident_tag`` (an RFID/NFC tag, or a
  code picked on the device's display), registered per tenant to a person over time
  (:class:`ResidentTags`). With a tag known at the reading's time it is that person's
  (consent, rules and alarms as for any of their readings); without one it is refused as
  ``no_resident_identified``, with a tag no one had then as ``unknown_resident_tag``
  (quarantine, reviewable and releasable to a person by a tenant admin).

A device alarm (``alarm``) from a unit's device with a known tag is that person's; with
no tag, or an unknown one, it is the unit's: a safety alarm is never held back for want
of a resident, the staff are sent to the unit.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple
from uuid import UUID


class UnitKind(StrEnum):
    RESIDENTIAL_UNIT = "residential_unit"  # gruppbostad, särskilt boende
    WARD = "ward"  # avdelning


#: Message types that are a resident's reading and so need a resident on a unit's device.
RESIDENT_TYPES = frozenset({"weight", "blood_pressure", "position"})

#: A tag as a device sends it and the API registers it (the contract's ``resident_tag``).
TAG_PATTERN = r"^[\x21-\x7e]{1,64}$"
_TAG = re.compile(TAG_PATTERN)


def valid_tag(tag: str) -> bool:
    return bool(_TAG.match(tag))


class Unit(NamedTuple):
    """A unit as the workers hold it (named in its alarms)."""

    unit_id: UUID
    tenant_id: str
    name: str
    kind: str

    def named(self) -> dict[str, str]:
        """The unit as an alarm names it (``detail.unit``; the alarm message's ``unit``)."""
        return {"id": str(self.unit_id), "name": self.name, "kind": self.kind}


@dataclass(frozen=True, slots=True)
class TagPeriod:
    person_id: UUID
    valid_from: datetime
    valid_to: datetime | None  # None: still the person's

    def covers(self, ts: datetime) -> bool:
        return self.valid_from <= ts and (self.valid_to is None or ts < self.valid_to)


class ResidentTags:
    """Whose each tag of each tenant was, when: ``(tenant, tag) -> periods`` oldest first.
    Periods of one tag never overlap (the database's trigger), so the one that began last
    at or before a moment is the only one that can cover it."""

    def __init__(self, periods: Iterable[tuple[str, str, TagPeriod]] = ()) -> None:
        grouped: dict[tuple[str, str], list[TagPeriod]] = {}
        for tenant_id, tag, period in periods:
            grouped.setdefault((tenant_id, tag), []).append(period)
        self._tags = {
            key: tuple(sorted(found, key=lambda p: p.valid_from)) for key, found in grouped.items()
        }
        self._starts = {key: [p.valid_from for p in found] for key, found in self._tags.items()}

    def __len__(self) -> int:
        return len(self._tags)

    def person_at(self, tenant_id: str, tag: str, ts: datetime) -> UUID | None:
        """The person whose ``tag`` was at ``ts`` in ``tenant_id``; None if no one's."""
        key = (tenant_id, tag)
        periods = self._tags.get(key)
        if not periods:
            return None
        i = bisect_right(self._starts[key], ts) - 1
        if i >= 0 and periods[i].covers(ts):
            return periods[i].person_id
        return None


class ResidentRefusal(StrEnum):
    """The quarantine reasons of a personal reading from a unit's device."""

    NO_RESIDENT_IDENTIFIED = "no_resident_identified"
    UNKNOWN_RESIDENT_TAG = "unknown_resident_tag"


@dataclass(frozen=True, slots=True)
class ResidentUnknown:
    reason: ResidentRefusal
    detail: str


def identify_resident(
    tags: ResidentTags, tenant_id: str, message_type: str, tag: str | None, ts: datetime | None
) -> UUID | ResidentUnknown | None:
    """Whose a message from a unit's device is: the person (a known tag at ``ts``), None
    (the unit's: not a resident's reading, and no known tag), or why a resident's reading
    cannot be stored on anyone."""
    person = tags.person_at(tenant_id, tag, ts) if tag is not None and ts is not None else None
    if person is not None or message_type not in RESIDENT_TYPES:
        return person
    if tag is None:
        return ResidentUnknown(
            ResidentRefusal.NO_RESIDENT_IDENTIFIED,
            f"{message_type} from a unit's shared device without resident_tag: "
            "no resident identified",
        )
    return ResidentUnknown(
        ResidentRefusal.UNKNOWN_RESIDENT_TAG,
        f"{message_type} from a unit's shared device with a resident_tag registered to no "
        "one at its time",
    )
