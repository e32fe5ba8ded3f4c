from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from gateway.domain.consent import Consent, decide

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
REGION = "232100-0172"
PERSON = uuid4()


def consent(**kw) -> Consent:  # type: ignore[no-untyped-def]
    values = {"id": uuid4(), "person_id": PERSON, "recipient_org": REGION,
              "categories": frozenset({"weight"}), "valid_from": NOW - timedelta(days=30),
              "valid_to": None, "withdrawn_at": None}  # fmt: skip
    values.update(kw)
    return Consent(**values)  # type: ignore[arg-type]


def test_valid_consent_allows_and_bounds_the_period() -> None:
    d = decide([consent()], org=REGION, category="weight", now=NOW)
    assert d.allowed and d.period == (NOW - timedelta(days=30), None)


def test_each_reason_to_deny() -> None:
    assert (
        decide([], org=REGION, category="weight", now=NOW).reason
        == "no consent for this organisation"
    )
    assert not decide([consent()], org=None, category="weight", now=NOW).allowed
    assert not decide([consent(recipient_org="212000-0001")], org=REGION, category="weight",
                      now=NOW).allowed  # fmt: skip
    d = decide([consent()], org=REGION, category="blood_pressure", now=NOW)
    assert d.reason == "no consent covers the category blood_pressure"
    d = decide([consent(withdrawn_at=NOW - timedelta(seconds=1))], org=REGION,
               category="weight", now=NOW)  # fmt: skip
    assert d.reason == "consent withdrawn"
    d = decide([consent(valid_to=NOW)], org=REGION, category="weight", now=NOW)
    assert d.reason == "consent not valid now"
    d = decide([consent(valid_from=NOW + timedelta(days=1))], org=REGION, category="weight",
               now=NOW)  # fmt: skip
    assert not d.allowed


def test_withdrawal_takes_effect_at_once() -> None:
    c = consent()
    assert decide([c], org=REGION, category="weight", now=NOW).allowed
    withdrawn = consent(id=c.id, withdrawn_at=NOW)
    assert not decide([withdrawn], org=REGION, category="weight", now=NOW).allowed
