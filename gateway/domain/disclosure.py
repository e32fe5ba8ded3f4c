"""May an alarm event go to this receiver? Pure, no I/O (security review #17.7).

An alarm carries a resident's data (the pseudonymous reference, the position of a GPS
alarm, what a limit alarm found). Inside the municipality that owns it (the tenant) it
goes wherever the routes send it: the tenant's operators, its own staff, an alarm centre
acting for it. A receiver is *another organisation* when its webhook names an
organisation number (``org``) that is not the tenant's own; handing it an alarm is a
disclosure to another huvudman, which needs the resident's consent:

* a consent of that person for that recipient organisation,
* recorded for the receiver's purpose (compared without case and extra spaces),
* covering the category ``alarms`` (the category under which a region may read the
  person's device alarms, positions included) or, for a limit alarm that carries no
  position, the vital sign it was raised on (``blood_pressure``, ``weight``): the alarm
  says no more than the readings that category already covers,
* valid now and not withdrawn (:func:`gateway.domain.consent.decide`), and covering the
  event's own time (data from outside a consent's period is never disclosed, as on reads).

An alarm without a resident (a technical alarm of an unassigned device, a receiver that
is unreachable) stays within the municipality. A receiver that declares no purpose gets
nothing. The caller logs an allowed disclosure (actor = the receiver, its organisation,
the owner tenant, the person, ``category``, the consent's ``purpose``) before it is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from gateway.domain.alarms import AlarmKind
from gateway.domain.consent import Consent, DataCategory
from gateway.domain.consent import decide as decide_read

#: The consent category of alarms.
ALARMS = DataCategory.ALARMS
#: Limit alarms and the vital sign each is raised on.
DATA_CATEGORY = {
    AlarmKind.BLOOD_PRESSURE: DataCategory.BLOOD_PRESSURE,
    AlarmKind.WEIGHT_GAIN: DataCategory.WEIGHT,
}


@dataclass(frozen=True, slots=True)
class Disclosure:
    allowed: bool
    reason: str
    #: True when the receiver is another organisation (a consent decided it; log it)
    external: bool = True
    #: the consent category the disclosure is made under (when allowed and external)
    category: str | None = None
    consent: Consent | None = None

    @property
    def purpose(self) -> str | None:
        return self.consent.purpose if self.consent is not None else None


INSIDE = Disclosure(True, "receiver inside the municipality", external=False)


def is_external(receiver_org: str | None, tenant_org: str | None) -> bool:
    """A receiver without an organisation acts for the municipality; one whose
    organisation is the tenant's own is the municipality; any other is another
    organisation (also when the tenant's own number is not known: fail closed)."""
    return receiver_org is not None and receiver_org != tenant_org


def same_purpose(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold() != ""


def _covers(consent: Consent, at: datetime, now: datetime) -> bool:
    """Valid now, and ``at`` lies inside the consent's period."""
    return (
        consent.valid_at(now)
        and consent.valid_from <= at
        and (consent.valid_to is None or at < consent.valid_to)
    )


def acceptable_categories(kind: AlarmKind, has_position: bool) -> tuple[str, ...]:
    """The consent categories, any one of which covers an alarm of ``kind``."""
    data = DATA_CATEGORY.get(kind)
    return (ALARMS, data) if data is not None and not has_position else (ALARMS,)


def decide(
    consents: Iterable[Consent],
    *,
    receiver_org: str | None,
    purpose: str | None,
    tenant_org: str | None,
    person_id: UUID | None,
    kind: AlarmKind,
    has_position: bool,
    at: datetime,
    now: datetime,
) -> Disclosure:
    """May an event (of an alarm of ``kind`` about ``person_id``, happening ``at``) go to
    a receiver of ``receiver_org`` for ``purpose`` now?"""
    if not is_external(receiver_org, tenant_org):
        return INSIDE
    if person_id is None:
        return Disclosure(False, "an alarm without a resident stays within the municipality")
    if not purpose or not purpose.strip():
        return Disclosure(False, "the receiver declares no purpose")
    mine = [c for c in consents if c.person_id == person_id and c.recipient_org == receiver_org]
    if not mine:
        return Disclosure(False, "no consent for this organisation")
    scoped = [c for c in mine if same_purpose(c.purpose, purpose)]
    if not scoped:
        return Disclosure(False, "no consent for this purpose")
    first: Disclosure | None = None
    for category in acceptable_categories(kind, has_position):
        read = decide_read(scoped, org=receiver_org, category=category, now=now)
        if read.allowed:
            covering = [c for c in scoped if category in c.categories and _covers(c, at, now)]
            if covering:
                return Disclosure(True, "consent valid", category=category,
                                  consent=min(covering, key=lambda c: c.valid_from))
            found = Disclosure(False, "the event lies outside the consent's period")
        else:
            found = Disclosure(False, read.reason)
        first = first or found
    assert first is not None  # at least ALARMS was tried
    return first
