"""Housing form -> payer, and the payer changes of device assignments (issue #19.1)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from gateway.domain.payer import (
    DEFAULT_RULES,
    AssignmentPeriod,
    HousingForm,
    HousingPeriod,
    Payer,
    due_changes,
    form_on,
    in_window,
    local_midnight,
    payer_changes,
    payer_for,
    payer_timeline,
)

OWN, CARE, SHORT = HousingForm.OWN_HOME, HousingForm.RESIDENTIAL_CARE, HousingForm.SHORT_TERM_STAY
REGION, KOMMUN = Payer.REGION, Payer.MUNICIPALITY
EARLY = datetime(2026, 1, 1, tzinfo=UTC)


def h(form: HousingForm, day: str, person: str = "p1", recorded: datetime = EARLY) -> HousingPeriod:
    return HousingPeriod(person, form, date.fromisoformat(day), recorded)


def a(aid: int, device: str, person: str = "p1", start: str = "2026-01-01T00:00:00+00:00",
      end: str | None = None) -> AssignmentPeriod:  # fmt: skip
    return AssignmentPeriod(aid, device, person, datetime.fromisoformat(start),
                            datetime.fromisoformat(end) if end else None)  # fmt: skip


@pytest.mark.parametrize(
    ("form", "rules", "payer"),
    [
        (OWN, None, REGION),
        (CARE, None, KOMMUN),
        (SHORT, None, KOMMUN),
        (OWN, {}, REGION),
        (SHORT, {SHORT: REGION}, REGION),  # the region's rule wins
        (CARE, {SHORT: REGION}, KOMMUN),  # no rule for the form: the default
        (OWN, {OWN: KOMMUN}, KOMMUN),
    ],
)
def test_payer_for(form, rules, payer) -> None:
    assert payer_for(form, rules) == payer


def test_defaults_cover_every_form() -> None:
    assert set(DEFAULT_RULES) == set(HousingForm)


@pytest.mark.parametrize(
    ("day", "form"),
    [("2026-03-01", OWN), ("2026-03-10", CARE), ("2026-03-11", CARE), ("2026-04-01", SHORT)],
)
def test_form_on(day, form) -> None:
    periods = [h(SHORT, "2026-04-01"), h(CARE, "2026-03-10")]
    assert form_on(periods, date.fromisoformat(day)) == form


@pytest.mark.parametrize(
    ("day", "utc"),
    [
        ("2026-01-15", "2026-01-14T23:00:00+00:00"),  # winter: UTC+1
        ("2026-07-15", "2026-07-14T22:00:00+00:00"),  # summer: UTC+2
        ("2026-03-29", "2026-03-28T23:00:00+00:00"),  # the day clocks go forward
        ("2026-03-30", "2026-03-29T22:00:00+00:00"),  # the first summer-time midnight
        ("2026-10-25", "2026-10-24T22:00:00+00:00"),  # the day clocks go back
        ("2026-10-26", "2026-10-25T23:00:00+00:00"),
    ],
)
def test_a_change_takes_effect_at_local_midnight(day, utc) -> None:
    assert local_midnight(date.fromisoformat(day)) == datetime.fromisoformat(utc)


CASES = [
    # (name, housing, assignments, rules, expected [(date, assignment, from, to)])
    ("move into care", [h(CARE, "2026-03-10")], [a(1, "scale")], None,
     [("2026-03-10", 1, REGION, KOMMUN)]),
    ("own home first: no change", [h(OWN, "2026-03-10")], [a(1, "scale")], None, []),
    ("home, care, home", [h(OWN, "2026-02-01"), h(CARE, "2026-03-10"), h(OWN, "2026-05-01")],
     [a(1, "scale")], None,
     [("2026-03-10", 1, REGION, KOMMUN), ("2026-05-01", 1, KOMMUN, REGION)]),
    ("care to short stay: same payer", [h(CARE, "2026-03-10"), h(SHORT, "2026-04-01")],
     [a(1, "scale")], None, [("2026-03-10", 1, REGION, KOMMUN)]),
    ("the rule table overrides the default", [h(SHORT, "2026-04-01")], [a(1, "scale")],
     {SHORT: REGION}, []),
    ("a rule making the own home the municipality's", [h(CARE, "2026-03-10")], [a(1, "scale")],
     {OWN: KOMMUN}, []),
    ("every device the person holds", [h(CARE, "2026-03-10")],
     [a(2, "scale"), a(1, "bp"), a(3, "other", person="p2")], None,
     [("2026-03-10", 1, REGION, KOMMUN), ("2026-03-10", 2, REGION, KOMMUN)]),
    ("returned before the change", [h(CARE, "2026-03-10")],
     [a(1, "scale", end="2026-03-09T12:00:00+00:00")], None, []),
    ("returned at local midnight exactly", [h(CARE, "2026-03-10")],
     [a(1, "scale", end="2026-03-09T23:00:00+00:00")], None, []),
    ("held through local midnight", [h(CARE, "2026-03-10")],
     [a(1, "scale", end="2026-03-09T23:00:01+00:00")], None, [("2026-03-10", 1, REGION, KOMMUN)]),
    ("assigned after the change: no change", [h(CARE, "2026-03-10")],
     [a(1, "scale", start="2026-03-10T08:00:00+00:00")], None, []),
    ("assigned just before local midnight", [h(CARE, "2026-03-10")],
     [a(1, "scale", start="2026-03-09T22:59:00+00:00")], None, [("2026-03-10", 1, REGION, KOMMUN)]),
    ("the previous holder's move does not reach the next", [h(CARE, "2026-03-10")],
     [a(1, "scale", end="2026-03-05T00:00:00+00:00"),
      a(2, "scale", person="p2", start="2026-03-05T00:00:00+00:00")], None, []),
]  # fmt: skip


@pytest.mark.parametrize(("name", "housing", "assignments", "rules", "expected"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_payer_changes(name, housing, assignments, rules, expected) -> None:
    changes = payer_changes(housing, assignments, rules)
    got = [(c.effective_date.isoformat(), c.assignment_id, c.from_payer, c.to_payer)
           for c in changes]  # fmt: skip
    assert got == expected, name


def test_a_change_names_the_device_person_forms_and_its_instant() -> None:
    (change,) = payer_changes([h(CARE, "2026-07-01")], [a(7, "vas-scale-0042")])
    assert (change.device_id, change.person_id, change.from_form, change.to_form) == (
        "vas-scale-0042", "p1", OWN, CARE)  # fmt: skip
    assert change.effective_at == datetime(2026, 6, 30, 22, tzinfo=UTC)


@pytest.mark.parametrize(
    ("recorded", "late"),
    [
        ("2026-06-20T10:00:00+00:00", False),  # in good time
        ("2026-06-30T22:00:00+00:00", False),  # at the very instant
        ("2026-06-30T22:00:01+00:00", True),  # a second into the day it took effect
        ("2026-07-03T09:00:00+00:00", True),  # backdated
    ],
)
def test_late_means_recorded_after_it_took_effect(recorded, late) -> None:
    (change,) = payer_changes(
        [h(CARE, "2026-07-01", recorded=datetime.fromisoformat(recorded))], [a(1, "scale")]
    )
    assert change.late is late


def test_due_and_window() -> None:
    changes = payer_changes([h(CARE, "2026-03-10"), h(OWN, "2026-05-01")], [a(1, "scale")])
    midnight = local_midnight(date(2026, 3, 10))
    assert due_changes(changes, midnight - timedelta(seconds=1)) == []
    assert [c.effective_date for c in due_changes(changes, midnight)] == [date(2026, 3, 10)]
    assert due_changes(changes, midnight, since=date(2026, 3, 11)) == []
    assert [c.effective_date for c in in_window(changes, date(2026, 4, 1), date(2026, 5, 1))] == [
        date(2026, 5, 1)
    ]


def test_payer_timeline() -> None:
    steps = payer_timeline([h(OWN, "2026-05-01"), h(CARE, "2026-03-10")], {OWN: REGION})
    assert steps == [(None, OWN, REGION), (date(2026, 3, 10), CARE, KOMMUN),
                     (date(2026, 5, 1), OWN, REGION)]  # fmt: skip
