"""Stays in another municipality (issue #19.3): the pure rules and the host's copy of a
guest's alarm message."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import jsonschema
import orjson
import pytest

from firmware_contracts.alarm_message import alarm_message_schema
from gateway.domain.alarms import AlarmBook, AlarmKind, Position
from gateway.domain.stays import (
    AgreementState,
    Stay,
    StayError,
    StayIndex,
    agreement_state,
    check_window,
    cut_short,
    overlaps,
    parse_bound,
)
from gateway.worker.alarms.codec import encode, encode_guest, guest_view

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
PERSON = UUID(int=7)


def stay(start: datetime = T0, end: datetime = T0 + timedelta(days=3), **kw: object) -> Stay:
    values: dict[str, object] = {"id": uuid4(), "home_tenant": "kommun-a",
                                 "person_id": PERSON, "host_tenant": "kommun-b",
                                 "starts_at": start, "ends_at": end}  # fmt: skip
    values.update(kw)
    return Stay(**values)  # type: ignore[arg-type]


def test_an_alarm_goes_to_the_host_only_when_raised_inside_the_stay() -> None:
    s = stay()
    index = StayIndex([s])
    assert index.host_of("kommun-a", PERSON, T0 - timedelta(seconds=1)) is None  # before
    assert index.host_of("kommun-a", PERSON, T0) == s  # from its first instant
    assert index.host_of("kommun-a", PERSON, s.ends_at - timedelta(microseconds=1)) == s
    assert index.host_of("kommun-a", PERSON, s.ends_at) is None  # the end is exclusive
    assert index.host_of("kommun-c", PERSON, T0 + timedelta(hours=1)) is None  # not its home
    assert index.host_of("kommun-a", UUID(int=8), T0 + timedelta(hours=1)) is None
    assert index.host_of("kommun-a", None, T0 + timedelta(hours=1)) is None


def test_a_cancelled_stay_routes_nothing() -> None:
    index = StayIndex([stay(end=T0)])
    assert len(index) == 0 and index.host_of("kommun-a", PERSON, T0) is None


def test_local_dates_are_midnights_in_stockholm_across_summer_time() -> None:
    start = parse_bound("2026-03-28", end=False)
    end = parse_bound("2026-03-29", end=True)  # the last day; summer time begins on it
    assert start == datetime(2026, 3, 27, 23, 0, tzinfo=UTC)
    assert end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # midnight CEST after the 29th
    assert parse_bound("2026-06-01T12:00:00Z", end=True) == datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("value", ["2026-06-01T12:00:00", "1 juni 2026", "2026-13-01"])
def test_a_bound_without_an_offset_or_not_a_date_is_refused(value: str) -> None:
    with pytest.raises(StayError):
        parse_bound(value, end=False)


@pytest.mark.parametrize(
    ("start", "end", "why"),
    [
        (T0, T0, "after"),
        (T0, T0 + timedelta(days=400), "at most"),
        (T0 - timedelta(days=30), T0 + timedelta(days=1), "back"),
        (T0 - timedelta(days=3), T0 - timedelta(days=1), "ended"),
    ],
)
def test_a_window_that_cannot_be_a_stay_is_refused(
    start: datetime, end: datetime, why: str
) -> None:
    with pytest.raises(StayError, match=why):
        check_window(start, end, T0)


def test_cut_short_never_lengthens_nor_goes_before_the_start() -> None:
    s = stay()
    assert cut_short(s, T0 + timedelta(days=1)) == T0 + timedelta(days=1)
    assert cut_short(s, T0 + timedelta(days=9)) == s.ends_at
    assert cut_short(s, T0 - timedelta(days=1)) == T0  # an upcoming one: no window left
    assert stay(end=T0).status(T0) == "cancelled"
    assert s.status(T0 - timedelta(1)) == "upcoming" and s.status(T0) == "current"
    assert s.status(s.ends_at) == "ended"


def test_one_place_at_a_time() -> None:
    s = stay()
    assert overlaps([s], T0 + timedelta(days=1), T0 + timedelta(days=5)) == s
    assert overlaps([s], s.ends_at, s.ends_at + timedelta(days=1)) is None


def test_agreement_states() -> None:
    assert agreement_state(None, None) is AgreementState.PROPOSED
    assert agreement_state(T0, None) is AgreementState.ACTIVE
    assert agreement_state(T0, T0) is AgreementState.ENDED
    assert agreement_state(None, T0) is AgreementState.ENDED  # withdrawn


def test_the_hosts_copy_is_a_valid_alarm_message_marked_as_a_guests() -> None:
    book = AlarmBook()
    [event] = book.signal(
        tenant_id="kommun-a", kind=AlarmKind.BUTTON, device_id="gps-1", person_id=PERSON,
        person_ref="a-brukare-1", at=T0 + timedelta(hours=1), condition=False,
        position=Position(59.3, 18.1, 8.0),
    )  # fmt: skip
    s = stay()
    home = orjson.loads(encode(event, ("night_team",)))
    copy = orjson.loads(encode_guest(event, ("jour-b",), s))
    validator = jsonschema.Draft202012Validator(alarm_message_schema())
    assert list(validator.iter_errors(home)) == []
    assert list(validator.iter_errors(copy)) == []
    assert "guest" not in home  # the home's message is as before
    assert copy["tenant_id"] == "kommun-b" and copy["recipients"] == ["jour-b"]
    assert copy["guest"] == {"home_tenant_id": "kommun-a", "stay_id": str(s.id),
                             "stay_starts_at": T0.isoformat(),
                             "stay_ends_at": s.ends_at.isoformat()}  # fmt: skip
    same = {k: v for k, v in copy.items() if k not in ("tenant_id", "recipients", "guest")}
    assert same == {k: v for k, v in home.items() if k not in ("tenant_id", "recipients")}
    view = guest_view(event.alarm, ("jour-b",), s)
    assert view["guest"]["stay_id"] == str(s.id) and view["tenant_id"] == "kommun-b"
    assert date.fromisoformat(copy["guest"]["stay_ends_at"][:10]) == date(2026, 6, 4)
