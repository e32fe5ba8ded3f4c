"""May this organisation read this category of this person's data now? Pure, no I/O.

A read by someone outside the owning municipality is allowed only under a consent that
names the reader's organisation (organisation number) and the data category, is valid
now (valid_from <= now < valid_to), and has not been withdrawn. Withdrawal takes effect
on the next request. The decision also says which period of data the consent covers:
data from outside its validity is never returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


class DataCategory(StrEnum):
    """The categories of a person's data a consent names and a reader asks for: the one
    list (the API's consents and readings, the alarm disclosure, and the ``consents``
    table's CHECK constraint, held to it by tests/unit/test_vocabularies.py)."""

    WEIGHT = "weight"
    BLOOD_PRESSURE = "blood_pressure"
    POSITION = "position"
    LOCK_EVENTS = "lock_events"
    ALARMS = "alarms"


CATEGORIES: tuple[str, ...] = tuple(category.value for category in DataCategory)


@dataclass(frozen=True, slots=True)
class Consent:
    id: UUID
    person_id: UUID
    recipient_org: str
    categories: frozenset[str]
    valid_from: datetime
    valid_to: datetime | None
    withdrawn_at: datetime | None = None
    purpose: str = ""

    def valid_at(self, now: datetime) -> bool:
        return (
            self.withdrawn_at is None
            and self.valid_from <= now
            and (self.valid_to is None or now < self.valid_to)
        )


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    consent: Consent | None = None

    @property
    def period(self) -> tuple[datetime, datetime | None] | None:
        """The period of data the consent covers (None when denied)."""
        if self.consent is None:
            return None
        return self.consent.valid_from, self.consent.valid_to


def decide(consents: list[Consent], *, org: str | None, category: str, now: datetime) -> Decision:
    if org is None:
        return Decision(False, "the reader's organisation is unknown (no org in the token)")
    if category not in CATEGORIES:
        return Decision(False, f"unknown data category {category!r}")
    mine = [c for c in consents if c.recipient_org == org]
    if not mine:
        return Decision(False, "no consent for this organisation")
    covering = [c for c in mine if category in c.categories]
    if not covering:
        return Decision(False, f"no consent covers the category {category}")
    valid = [c for c in covering if c.valid_at(now)]
    if not valid:
        if any(c.withdrawn_at is not None and c.withdrawn_at <= now for c in covering):
            return Decision(False, "consent withdrawn")
        return Decision(False, "consent not valid now")
    # the consent covering the longest period wins (earliest start)
    best = min(valid, key=lambda c: c.valid_from)
    return Decision(True, "consent valid", best)
