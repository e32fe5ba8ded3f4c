"""A temporary stay in another municipality (issue #19.3; docs/stays.md). Pure.

Two municipalities agree, as data, that residents of one (the *home*) may stay in the
other (the *host*) and have their alarms routed to the host's team on duty meanwhile: the
home proposes an :class:`Agreement`, the host's tenant admin accepts it, either ends it.
A :class:`Stay` is one resident of the home in the host from ``starts_at`` to
``ends_at`` (instants; a stay given in local dates runs from local midnight of its first
day to local midnight after its last, Europe/Stockholm), recorded by the home under an
accepted agreement; it can be cut short.

An alarm is a *guest's alarm* of a host when it was raised inside a stay of its person
(:meth:`StayIndex.host_of`): its every event then goes to the host as well as to the
home, until it is resolved. An alarm raised before the stay began, or after it ended,
does not. The decision takes the alarm's own ``raised_at``, so every worker (an engine
that takes over, a restart) decides the same from the same stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from uuid import UUID
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")
#: how long a single stay may last (a move is a move, not a stay: issue #19.2)
MAX_STAY = timedelta(days=366)
#: how far back a stay may start when recorded (a stay already begun may be recorded late)
MAX_BACK = timedelta(days=7)


class AgreementState(StrEnum):
    PROPOSED = "proposed"  # by the home; the host has not accepted
    ACTIVE = "active"  # accepted by the host's tenant admin
    ENDED = "ended"  # ended by either side (or withdrawn before acceptance)


class StayError(ValueError):
    """A stay or an agreement that cannot be recorded; ``status`` for the API."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def agreement_state(accepted_at: datetime | None, ended_at: datetime | None) -> AgreementState:
    if ended_at is not None:
        return AgreementState.ENDED
    return AgreementState.PROPOSED if accepted_at is None else AgreementState.ACTIVE


@dataclass(frozen=True, slots=True)
class Stay:
    id: UUID
    home_tenant: str
    person_id: UUID
    host_tenant: str
    starts_at: datetime
    ends_at: datetime  # exclusive; equal to starts_at: cut before it began (no window)

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at

    def status(self, now: datetime) -> str:
        if self.ends_at <= self.starts_at:
            return "cancelled"
        if now < self.starts_at:
            return "upcoming"
        return "current" if now < self.ends_at else "ended"


def local_midnight(day: date) -> datetime:
    """The instant local midnight of ``day`` begins in Europe/Stockholm."""
    return datetime.combine(day, time(0), STOCKHOLM)


def parse_bound(value: str, *, end: bool) -> datetime:
    """A stay's ``from`` or ``to``: an instant with an offset, or a local date. A date as
    ``from`` is local midnight of that day; as ``to`` it is the last day of the stay, so
    the stay ends at local midnight after it."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return local_midnight(day + timedelta(days=1) if end else day)
        at = datetime.fromisoformat(text)
    except ValueError:
        raise StayError(f"{'to' if end else 'from'}: not a date (YYYY-MM-DD) or a date-time "
                        f"with an offset: {value[:40]!r}") from None  # fmt: skip
    if at.tzinfo is None:
        raise StayError(f"{'to' if end else 'from'}: a date-time needs an offset (e.g. Z)")
    return at


def check_window(starts_at: datetime, ends_at: datetime, now: datetime) -> None:
    """Refuses a window that is empty, too long, or begins too far back."""
    if ends_at <= starts_at:
        raise StayError("to must be after from")
    if ends_at - starts_at > MAX_STAY:
        raise StayError(f"a stay lasts at most {MAX_STAY.days} days")
    if ends_at <= now:
        raise StayError("the stay has already ended")
    if starts_at < now - MAX_BACK:
        raise StayError(f"from may be at most {MAX_BACK.days} days back")


def cut_short(stay: Stay, at: datetime) -> datetime:
    """The stay's new end when it is ended at ``at``: never later than it was, never
    before it began (a stay cut before it begins is left without a window)."""
    return max(stay.starts_at, min(stay.ends_at, at))


def overlaps(stays: Iterable[Stay], starts_at: datetime, ends_at: datetime) -> Stay | None:
    """A stay of ``stays`` whose window overlaps ``[starts_at, ends_at)`` (a person is in
    one place at a time)."""
    for stay in stays:
        if stay.starts_at < ends_at and starts_at < stay.ends_at:
            return stay
    return None


class StayIndex:
    """The stays in force by person, for the alarm path (built from what the database
    holds; rebuilt whole on every change)."""

    def __init__(self, stays: Iterable[Stay] = ()) -> None:
        by_person: dict[UUID, list[Stay]] = {}
        for stay in stays:
            if stay.ends_at > stay.starts_at:
                by_person.setdefault(stay.person_id, []).append(stay)
        self._by_person = {p: tuple(sorted(s, key=lambda x: x.starts_at))
                           for p, s in by_person.items()}  # fmt: skip

    def __len__(self) -> int:
        return sum(map(len, self._by_person.values()))

    def stays(self, person_id: UUID) -> tuple[Stay, ...]:
        return self._by_person.get(person_id, ())

    def host_of(self, tenant_id: str, person_id: UUID | None, raised_at: datetime) -> Stay | None:
        """The stay inside which an alarm of ``person_id`` (of ``tenant_id``) raised at
        ``raised_at`` fell; None: the alarm is the home's alone."""
        if person_id is None:
            return None
        for stay in self._by_person.get(person_id, ()):
            if stay.home_tenant == tenant_id and stay.covers(raised_at):
                return stay
        return None
