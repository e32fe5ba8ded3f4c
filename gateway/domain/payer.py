"""Who pays for a device, over time: housing form -> payer, and the payer changes. Pure.

A person's housing form is recorded from a date (:class:`HousingPeriod`); it holds from
local midnight of that date (Europe/Stockholm) until the person's next record. Before
the first record a person lives in their own home (:data:`UNRECORDED`): that is where
assistive devices are prescribed, so recording a move into residential care as the first
record is a change from the region to the municipality.

The payer of a device assignment on a date is its region's rule for the holder's form on
that date (:func:`payer_for`; a region without a rule for a form: :data:`DEFAULT_RULES`,
the region pays in the own home, the municipality in residential care and short-term
stay). A payer change (:class:`PayerChange`) is an assignment held at local midnight of a
date on which its holder's payer differs from the day before; it takes effect at that
midnight (:func:`local_midnight`, correct across daylight-saving changes). A rule edited
in the table changes nothing retroactively and emits nothing: only housing does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")


class HousingForm(StrEnum):
    OWN_HOME = "own_home"
    RESIDENTIAL_CARE = "residential_care"  # särskilt boende
    SHORT_TERM_STAY = "short_term_stay"  # korttidsboende


class Payer(StrEnum):
    REGION = "region"
    MUNICIPALITY = "municipality"


#: the payer per form when a region has no rule for it
DEFAULT_RULES: Mapping[HousingForm, Payer] = {
    HousingForm.OWN_HOME: Payer.REGION,
    HousingForm.RESIDENTIAL_CARE: Payer.MUNICIPALITY,
    HousingForm.SHORT_TERM_STAY: Payer.MUNICIPALITY,
}
#: a person's form before their first record
UNRECORDED = HousingForm.OWN_HOME


@dataclass(frozen=True)
class HousingPeriod:
    person_id: str
    form: HousingForm
    valid_from: date
    #: when it was recorded (a change recorded after it took effect is late)
    recorded_at: datetime


@dataclass(frozen=True)
class AssignmentPeriod:
    assignment_id: int
    device_id: str
    person_id: str
    valid_from: datetime  # aware
    valid_to: datetime | None = None

    def held_at(self, instant: datetime) -> bool:
        return self.valid_from <= instant and (self.valid_to is None or instant < self.valid_to)


@dataclass(frozen=True)
class PayerChange:
    effective_date: date
    effective_at: datetime  # local midnight of effective_date, in UTC
    assignment_id: int
    device_id: str
    person_id: str
    from_form: HousingForm
    to_form: HousingForm
    from_payer: Payer
    to_payer: Payer
    recorded_at: datetime

    @property
    def late(self) -> bool:
        """Recorded only after it had taken effect."""
        return self.recorded_at > self.effective_at

    def due(self, now: datetime) -> bool:
        return self.effective_at <= now


def local_midnight(day: date, tz: ZoneInfo = STOCKHOLM) -> datetime:
    """The instant (UTC) local ``day`` begins."""
    return datetime.combine(day, time(0), tz).astimezone(UTC)


def local_date(instant: datetime, tz: ZoneInfo = STOCKHOLM) -> date:
    return instant.astimezone(tz).date()


def payer_for(form: HousingForm, rules: Mapping[HousingForm, Payer] | None = None) -> Payer:
    """The region's rule for ``form``, else the default."""
    if rules is not None and form in rules:
        return rules[form]
    return DEFAULT_RULES[form]


def form_on(periods: Sequence[HousingPeriod], day: date) -> HousingForm:
    """The person's form on ``day`` (``periods`` of one person, in any order)."""
    current = UNRECORDED
    latest: date | None = None
    for period in periods:
        if period.valid_from <= day and (latest is None or period.valid_from > latest):
            current, latest = period.form, period.valid_from
    return current


def payer_timeline(
    periods: Sequence[HousingPeriod], rules: Mapping[HousingForm, Payer] | None = None
) -> list[tuple[date | None, HousingForm, Payer]]:
    """The person's payer over time: ``(from date, form, payer)`` steps, the first from
    ``None`` (before any record); consecutive records of the same payer are kept (the form
    differs), so the list mirrors the housing history."""
    steps: list[tuple[date | None, HousingForm, Payer]] = [
        (None, UNRECORDED, payer_for(UNRECORDED, rules))
    ]
    for period in sorted(periods, key=lambda p: p.valid_from):
        steps.append((period.valid_from, period.form, payer_for(period.form, rules)))
    return steps


def payer_changes(
    housing: Iterable[HousingPeriod],
    assignments: Iterable[AssignmentPeriod],
    rules: Mapping[HousingForm, Payer] | None = None,
    *,
    tz: ZoneInfo = STOCKHOLM,
) -> list[PayerChange]:
    """Every payer change of the given persons' assignments, by date then device.

    ``housing`` and ``assignments`` may hold several persons; ``rules`` is the region's
    (the persons' municipality's region). A change is reported for an assignment held at
    the local midnight its holder's new form takes effect, when the payer differs from the
    form before."""
    by_person: dict[str, list[HousingPeriod]] = {}
    for period in housing:
        by_person.setdefault(period.person_id, []).append(period)
    held: dict[str, list[AssignmentPeriod]] = {}
    for assignment in assignments:
        held.setdefault(assignment.person_id, []).append(assignment)
    changes: list[PayerChange] = []
    for person_id, periods in by_person.items():
        previous = UNRECORDED
        for period in sorted(periods, key=lambda p: p.valid_from):
            before, previous = previous, period.form
            old, new = payer_for(before, rules), payer_for(period.form, rules)
            if old == new:
                continue
            at = local_midnight(period.valid_from, tz)
            for assignment in held.get(person_id, ()):
                if assignment.held_at(at):
                    changes.append(PayerChange(
                        effective_date=period.valid_from, effective_at=at,
                        assignment_id=assignment.assignment_id,
                        device_id=assignment.device_id, person_id=person_id,
                        from_form=before, to_form=period.form, from_payer=old, to_payer=new,
                        recorded_at=period.recorded_at,
                    ))  # fmt: skip
    changes.sort(key=lambda c: (c.effective_date, c.device_id, c.assignment_id))
    return changes


def due_changes(
    changes: Iterable[PayerChange], now: datetime, *, since: date | None = None
) -> list[PayerChange]:
    """The changes in effect at ``now`` (and, with ``since``, from that date on)."""
    return [c for c in changes if c.due(now) and (since is None or c.effective_date >= since)]


def in_window(changes: Iterable[PayerChange], start: date, end: date) -> list[PayerChange]:
    """The changes effective from ``start`` to ``end``, both included."""
    return [c for c in changes if start <= c.effective_date <= end]


def window_days(start: date, end: date) -> int:
    return (end - start) // timedelta(days=1) + 1
