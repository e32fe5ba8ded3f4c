"""A person's decisions for digital supervision, with consent (issue #20; pure, no I/O).

Under the Social Services Act's rule on digital supervision technology, a municipality may
supervise a person digitally (positions, planned night checks by sensor, passive alarms)
only with the person's documented consent, and a cohabitant's where the person lives with
someone; each service is decided for the person, for a period. So every supervision
service has its :class:`Decision` s: valid from, valid to (open-ended when None), when the
person consented, whether a cohabitant lives there and when they consented, and whether it
was withdrawn. A decision is *in force* at an instant when that instant is in its period,
the person's consent is documented, a cohabitant's too where there is one, and it was not
withdrawn.

:func:`refusal` is the gate at ingest (both the storage path and the alarm engine's
intake): the states of a person's passive sensors need a decision in force for night
supervision or passive alarms; positions need one for GPS positioning (when the gateway
gates positions, ``supervision.gate_positions``). A button or fall alarm is never gated:
nothing here looks at ``alarm`` messages. A unit's sensor without a resident tag is the
unit's (no person): not gated (docs/supervision.md, "Units' sensors").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


class Service(StrEnum):
    GPS_POSITIONING = "gps_positioning"
    NIGHT_SUPERVISION = "night_supervision"
    PASSIVE_ALARMS = "passive_alarms"


#: The message types that need a decision in force, and the services any one of which
#: allows them (a sensor's state is kept when either service uses it).
SENSOR_SERVICES: tuple[Service, ...] = (Service.NIGHT_SUPERVISION, Service.PASSIVE_ALARMS)
SENSOR_MESSAGE_TYPES = frozenset({"door", "motion", "bed", "floor_mat"})
POSITION_SERVICES: tuple[Service, ...] = (Service.GPS_POSITIONING,)


@dataclass(frozen=True, slots=True)
class Decision:
    id: UUID
    tenant_id: str
    person_id: UUID
    service: Service
    valid_from: datetime
    valid_to: datetime | None
    person_consent_at: datetime | None
    has_cohabitant: bool = False
    cohabitant_consent_at: datetime | None = None
    withdrawn_at: datetime | None = None

    def consented(self) -> bool:
        """The person's consent, and a cohabitant's where there is one, documented."""
        if self.person_consent_at is None:
            return False
        return not self.has_cohabitant or self.cohabitant_consent_at is not None

    def in_force(self, at: datetime) -> bool:
        if self.withdrawn_at is not None and self.withdrawn_at <= at:
            return False
        if at < self.valid_from or (self.valid_to is not None and at >= self.valid_to):
            return False
        return self.consented()

    def status(self, now: datetime) -> str:
        """For the API: ``in_force``, ``withdrawn``, ``awaiting_cohabitant_consent``,
        ``not_yet_valid``, ``expired``."""
        if self.withdrawn_at is not None:
            return "withdrawn"
        if not self.consented():
            return "awaiting_cohabitant_consent"
        if now < self.valid_from:
            return "not_yet_valid"
        if self.valid_to is not None and now >= self.valid_to:
            return "expired"
        return "in_force"


class Decisions:
    """Decisions not withdrawn, by person and service (an immutable snapshot: the cache
    builds a new one on every change)."""

    __slots__ = ("_by",)

    def __init__(self, decisions: Iterable[Decision] = ()) -> None:
        by: dict[tuple[UUID, Service], list[Decision]] = defaultdict(list)
        for d in decisions:
            if d.withdrawn_at is None:
                by[(d.person_id, d.service)].append(d)
        self._by = {key: tuple(found) for key, found in by.items()}

    def allows(self, person_id: UUID, service: Service, at: datetime) -> bool:
        return any(d.in_force(at) for d in self._by.get((person_id, service), ()))

    def allows_any(self, person_id: UUID, services: Iterable[Service], at: datetime) -> bool:
        return any(self.allows(person_id, s, at) for s in services)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by.values())


def refusal(
    decisions: Decisions,
    person_id: UUID | None,
    message_type: str,
    at: datetime,
    *,
    gate_positions: bool,
) -> str | None:
    """Why a message of ``message_type`` of ``person_id`` stamped ``at`` may not be stored
    nor used by any rule (the quarantine detail), or None when it may. Two set look-ups
    for any other message."""
    if person_id is None:
        return None  # a unit's own sensor: non-personal unit data
    if message_type in SENSOR_MESSAGE_TYPES:
        if decisions.allows_any(person_id, SENSOR_SERVICES, at):
            return None
        return (
            f"{message_type}: no decision in force with consent for night_supervision or "
            "passive_alarms at its ts"
        )
    if gate_positions and message_type == "position":
        if decisions.allows_any(person_id, POSITION_SERVICES, at):
            return None
        return "position: no decision in force with consent for gps_positioning at its ts"
    return None
