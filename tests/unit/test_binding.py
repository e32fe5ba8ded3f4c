"""Binding a message to tenant and person: pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.registry import (
    Assignment,
    Binding,
    DeviceRecord,
    DeviceStatus,
    Refusal,
    Refused,
    bind,
    device_record,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ALICE, BOB = uuid4(), uuid4()


def device(status: DeviceStatus = DeviceStatus.ACTIVE, *assignments: Assignment) -> DeviceRecord:
    return device_record("d-1", "kommun-a", status, "scale", 300, assignments)


HANDED_OVER = T0 + timedelta(days=10)
REISSUED = device(
    DeviceStatus.ACTIVE,
    Assignment(ALICE, T0, HANDED_OVER),
    Assignment(BOB, HANDED_OVER, None),
)


def test_unknown_and_inactive_are_refused() -> None:
    assert isinstance(r := bind(None, T0, needs_person=True), Refused)
    assert r.reason is Refusal.UNKNOWN_DEVICE
    for status in (DeviceStatus.IN_STOCK, DeviceStatus.RETURNED, DeviceStatus.RETIRED):
        r = bind(device(status), T0, needs_person=False)
        assert isinstance(r, Refused) and r.reason is Refusal.INACTIVE_DEVICE
        assert r.tenant_id == "kommun-a"


def test_personal_data_goes_to_the_current_holder_only() -> None:
    """Review #17.2: a device's own clock never attributes personal data to an earlier
    holder. Stamped before the current assignment began, it is refused (quarantined as
    before_current_assignment, releasable by a tenant admin), naming who held it then."""
    assert bind(REISSUED, HANDED_OVER, needs_person=True) == Binding("kommun-a", BOB)
    for ts in (HANDED_OVER - timedelta(microseconds=1), T0 + timedelta(days=1), T0):
        r = bind(REISSUED, ts, needs_person=True)
        assert isinstance(r, Refused) and r.reason is Refusal.BEFORE_CURRENT_ASSIGNMENT
        assert r.tenant_id == "kommun-a" and f"person {ALICE} held the device then" in r.detail
        # device health stamped then is kept, attributed to no one
        assert bind(REISSUED, ts, needs_person=False) == Binding("kommun-a", None)


def test_personal_data_before_any_assignment_is_refused_health_is_not() -> None:
    before = T0 - timedelta(days=1)
    r = bind(REISSUED, before, needs_person=True)
    assert isinstance(r, Refused) and r.reason is Refusal.BEFORE_CURRENT_ASSIGNMENT
    assert "no one held the device then" in r.detail
    assert bind(REISSUED, before, needs_person=False) == Binding("kommun-a", None)


def test_a_returned_device_releases_nothing_to_its_last_holder() -> None:
    """Returned, held by no one: personal data stamped while someone held it is
    before_current_assignment (reviewable), anything else inactive_device."""
    returned = device(DeviceStatus.RETURNED, Assignment(ALICE, T0, HANDED_OVER))
    r = bind(returned, T0 + timedelta(days=1), needs_person=True)
    assert isinstance(r, Refused) and r.reason is Refusal.BEFORE_CURRENT_ASSIGNMENT
    assert str(ALICE) in r.detail
    for ts, needs_person in ((HANDED_OVER, True), (T0 + timedelta(days=1), False)):
        r = bind(returned, ts, needs_person=needs_person)
        assert isinstance(r, Refused) and r.reason is Refusal.INACTIVE_DEVICE


def test_an_active_device_held_by_no_one_binds_no_personal_data() -> None:
    unheld = device(DeviceStatus.ACTIVE, Assignment(ALICE, T0, HANDED_OVER))
    r = bind(unheld, T0 + timedelta(days=1), needs_person=True)
    assert isinstance(r, Refused) and r.reason is Refusal.NO_ASSIGNMENT_AT_TS
    assert bind(unheld, T0 + timedelta(days=1), needs_person=False) == Binding("kommun-a", None)


def test_status_without_ts_binds_to_current_holder() -> None:
    assert bind(REISSUED, None, needs_person=False) == Binding("kommun-a", BOB)


@given(st.integers(min_value=-86400, max_value=40 * 86400))
def test_never_attributed_to_someone_who_does_not_hold_it_now(offset_s: int) -> None:
    ts = T0 + timedelta(seconds=offset_s)
    result = bind(REISSUED, ts, needs_person=True)
    if ts < HANDED_OVER:
        assert isinstance(result, Refused)
        assert result.reason is Refusal.BEFORE_CURRENT_ASSIGNMENT
    else:
        assert result == Binding("kommun-a", BOB)


HELD = device(DeviceStatus.ACTIVE, Assignment(ALICE, T0, None))


def test_one_open_assignment_is_held_without_an_object_and_reads_the_same() -> None:
    assert HELD.holder is ALICE and HELD.history == ()
    assert HELD.assignments == (Assignment(ALICE, T0, None),)
    as_history = DeviceRecord(*HELD[:5], history=(Assignment(ALICE, T0, None),))
    for at in (T0 - timedelta(microseconds=1), T0, T0 + timedelta(days=400)):
        assert HELD.holder_at(at) == as_history.holder_at(at)
    assert HELD.current_holder() == as_history.current_holder() == ALICE
    # any other history keeps its assignments, oldest first whatever order they came in
    late_first = device(DeviceStatus.ACTIVE, *reversed(REISSUED.history))
    assert late_first == REISSUED and REISSUED.holder is None
    assert [a.person_id for a in REISSUED.assignments] == [ALICE, BOB]
    assert device(DeviceStatus.ACTIVE).assignments == ()


@given(st.integers(min_value=-86400, max_value=40 * 86400))
def test_the_held_shape_binds_like_the_assignment_it_stands_for(offset_s: int) -> None:
    ts = T0 + timedelta(seconds=offset_s)
    result = bind(HELD, ts, needs_person=True)
    if ts < T0:
        assert isinstance(result, Refused)
        assert result.reason is Refusal.BEFORE_CURRENT_ASSIGNMENT
    else:
        assert result == Binding("kommun-a", ALICE)


def test_a_lagging_clock_at_the_first_hand_over_binds_to_the_holder() -> None:
    """A device whose clock lags (or stamps whole seconds) sends its first press a moment
    'before' its assignment began: with no one holding it then, it is the current holder's
    within the clock tolerance (max_clock_skew_s), so the night team gets it. Stamped
    while someone else held the device, it is never theirs (review #17.2 holds)."""
    grace = timedelta(seconds=300)
    first = device(DeviceStatus.ACTIVE, Assignment(BOB, HANDED_OVER, None))
    for lag in (timedelta(milliseconds=45), timedelta(seconds=299)):
        assert bind(first, HANDED_OVER - lag, needs_person=True, grace=grace) == Binding(
            "kommun-a", BOB)  # fmt: skip
    r = bind(first, HANDED_OVER - timedelta(seconds=301), needs_person=True, grace=grace)
    assert isinstance(r, Refused) and r.reason is Refusal.BEFORE_CURRENT_ASSIGNMENT
    # Alice returned it 10 s before Bob got it: her last seconds stay hers (refused)
    gap = device(DeviceStatus.ACTIVE, Assignment(ALICE, T0, HANDED_OVER - timedelta(seconds=10)),
                 Assignment(BOB, HANDED_OVER, None))  # fmt: skip
    r = bind(gap, HANDED_OVER - timedelta(seconds=20), needs_person=True, grace=grace)
    assert isinstance(r, Refused) and r.reason is Refusal.BEFORE_CURRENT_ASSIGNMENT
    assert bind(gap, HANDED_OVER - timedelta(seconds=5), needs_person=True,
                grace=grace) == Binding("kommun-a", BOB)  # fmt: skip
    r = bind(REISSUED, HANDED_OVER - timedelta(seconds=1), needs_person=True, grace=grace)
    assert isinstance(r, Refused) and r.reason is Refusal.BEFORE_CURRENT_ASSIGNMENT
