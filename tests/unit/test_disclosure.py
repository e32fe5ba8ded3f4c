"""The pure rule of security review #17.7: an alarm goes to another organisation only
under the resident's consent for that organisation, purpose and alarms; routing skips a
receiver it may not reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from gateway.domain.alarms import AlarmBook, AlarmKind, Position
from gateway.domain.consent import Consent
from gateway.domain.disclosure import (
    INSIDE,
    acceptable_categories,
    decide,
    is_external,
    same_purpose,
)
from gateway.domain.routing import Route, RoutingPolicy

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
OWN = "212000-0001"
REGION = "232100-0172"
PURPOSE = "Egenmonitorering vid hjärtsvikt"
PERSON = uuid4()


def consent(**kw: Any) -> Consent:
    values: dict[str, Any] = {
        "id": uuid4(), "person_id": PERSON, "recipient_org": REGION,
        "categories": frozenset({"alarms"}), "valid_from": NOW - timedelta(days=30),
        "valid_to": None, "withdrawn_at": None, "purpose": PURPOSE,
    }  # fmt: skip
    values.update(kw)
    return Consent(**values)


def ask(consents: list[Consent], **kw: Any) -> Any:
    values: dict[str, Any] = {
        "receiver_org": REGION, "purpose": PURPOSE, "tenant_org": OWN, "person_id": PERSON,
        "kind": AlarmKind.BLOOD_PRESSURE, "has_position": False, "at": NOW, "now": NOW,
    }  # fmt: skip
    values.update(kw)
    return decide(consents, **values)


def test_who_is_another_organisation() -> None:
    assert not is_external(None, OWN)  # acts for the municipality
    assert not is_external(OWN, OWN)  # the municipality itself
    assert is_external(REGION, OWN)
    assert is_external(REGION, None)  # the tenant's own number unknown: fail closed


def test_inside_the_municipality_needs_no_consent() -> None:
    assert ask([], receiver_org=None) is INSIDE
    assert ask([], receiver_org=OWN) is INSIDE
    assert ask([], receiver_org=None, person_id=None).allowed
    assert not INSIDE.external


def test_a_consent_for_the_organisation_purpose_and_alarms_allows_it() -> None:
    c = consent()
    d = ask([c])
    assert d.allowed and d.external and d.category == "alarms" and d.consent == c
    assert d.purpose == PURPOSE
    # a GPS alarm's position is under "alarms" too (as on a consented read of alarms)
    fall = ask([c], kind=AlarmKind.FALL, has_position=True)
    assert fall.allowed and fall.category == "alarms"


def test_a_limit_alarm_is_covered_by_its_vital_sign_too() -> None:
    d = ask([consent(categories=frozenset({"blood_pressure"}))])
    assert d.allowed and d.category == "blood_pressure"
    d = ask([consent(categories=frozenset({"weight"}))], kind=AlarmKind.WEIGHT_GAIN)
    assert d.allowed and d.category == "weight"
    # but not by another vital sign, nor once it carries a position, nor a safety alarm
    assert not ask([consent(categories=frozenset({"weight"}))]).allowed
    assert not ask([consent(categories=frozenset({"blood_pressure"}))],
                   has_position=True).allowed  # fmt: skip
    assert not ask([consent(categories=frozenset({"position"}))], kind=AlarmKind.FALL,
                   has_position=True).allowed  # fmt: skip
    assert acceptable_categories(AlarmKind.FALL, False) == ("alarms",)
    assert acceptable_categories(AlarmKind.WEIGHT_GAIN, False) == ("alarms", "weight")
    # both held: "alarms" is named
    both = [consent(categories=frozenset({"blood_pressure"})), consent()]
    assert ask(both).category == "alarms"


def test_each_reason_to_withhold() -> None:
    assert ask([]).reason == "no consent for this organisation"
    assert ask([consent(recipient_org="232100-0000")]).reason == (
        "no consent for this organisation"
    )
    assert ask([consent(person_id=uuid4())]).reason == "no consent for this organisation"
    assert ask([consent(purpose="forskning")]).reason == "no consent for this purpose"
    assert ask([consent()], purpose=None).reason == "the receiver declares no purpose"
    assert ask([consent()], purpose="  ").reason == "the receiver declares no purpose"
    assert ask([consent()], person_id=None).reason == (
        "an alarm without a resident stays within the municipality"
    )
    assert ask([consent(categories=frozenset({"position"}))]).reason == (
        "no consent covers the category alarms"
    )
    assert ask([consent(withdrawn_at=NOW - timedelta(seconds=1))]).reason == "consent withdrawn"
    assert ask([consent(valid_to=NOW)]).reason == "consent not valid now"
    assert not ask([consent(valid_from=NOW + timedelta(days=1))]).allowed
    # valid now, but the event happened before it was given
    early = ask([consent(valid_from=NOW - timedelta(hours=1))], at=NOW - timedelta(hours=2))
    assert early.reason == "the event lies outside the consent's period"
    assert not any(
        d.allowed
        for d in (ask([consent(withdrawn_at=NOW)]), ask([consent(valid_to=NOW)]))
    )


def test_the_purpose_is_compared_without_case_or_extra_spaces() -> None:
    assert same_purpose(PURPOSE, "  egenmonitorering VID  hjärtsvikt ")
    assert not same_purpose(PURPOSE, "egenmonitorering")
    assert not same_purpose("", "")
    assert not same_purpose(None, PURPOSE)
    assert ask([consent()], purpose="egenmonitorering  vid HJÄRTSVIKT").allowed


def test_withdrawal_applies_to_the_next_event() -> None:
    c = consent()
    assert ask([c]).allowed
    assert not ask([consent(id=c.id, withdrawn_at=NOW)]).allowed


def _alarm(kind: AlarmKind, level: int = 0) -> Any:
    book = AlarmBook()
    [event] = book.signal(tenant_id="t", kind=kind, device_id="d", person_id=PERSON,
                          person_ref="ref", at=NOW, condition=True,
                          position=Position(59.0, 17.0, 10.0))  # fmt: skip
    event.alarm.escalation_level = level
    return event.alarm


def test_default_routes_keep_limit_alarms_inside_the_municipality() -> None:
    policy = RoutingPolicy()
    for kind in (AlarmKind.BLOOD_PRESSURE, AlarmKind.WEIGHT_GAIN):
        chain = policy.chain(_alarm(kind), NOW)
        assert "regional_clinic" not in chain and chain == ("home_care",)
    assert all("regional_clinic" not in r.chain for r in policy.routes)


def test_routing_skips_a_receiver_it_may_not_reach() -> None:
    policy = RoutingPolicy(routes=(Route(("regional_clinic", "home_care", "night_team")),))
    skip = frozenset({"regional_clinic"})
    assert policy.recipients(_alarm(AlarmKind.BLOOD_PRESSURE)) == ("regional_clinic",)
    assert policy.recipients(_alarm(AlarmKind.BLOOD_PRESSURE), skip) == ("home_care",)
    assert policy.recipients(_alarm(AlarmKind.BLOOD_PRESSURE, level=1), skip) == (
        "home_care", "night_team")  # fmt: skip
    assert policy.recipients(_alarm(AlarmKind.BLOOD_PRESSURE, level=5), skip) == (
        "home_care", "night_team")  # fmt: skip
    alone = RoutingPolicy(routes=(Route(("regional_clinic",)),))
    assert alone.recipients(_alarm(AlarmKind.WEIGHT_GAIN), skip) == ("night_team",)
    assert alone.recipients(_alarm(AlarmKind.WEIGHT_GAIN)) == ("regional_clinic",)


def test_a_webhook_of_another_organisation_must_say_why() -> None:
    import pytest

    from gateway.config.settings import SettingsError, load_settings

    base = {"group": "regional_clinic", "url": "https://region.example/hook",
            "secret": "s" * 16}  # fmt: skip
    with pytest.raises(SettingsError, match=r"alarms\.webhooks\.0\.purpose.*required with org"):
        load_settings(alarms={"webhooks": [{**base, "org": REGION}]})
    with pytest.raises(SettingsError, match=r"alarms\.webhooks\.0\.org"):
        load_settings(alarms={"webhooks": [{**base, "org": "region-v", "purpose": PURPOSE}]})
    hook = load_settings(mode="development",
                         alarms={"webhooks": [{**base, "org": REGION, "purpose": PURPOSE}]},
                         ).alarms.webhooks[0]  # fmt: skip
    assert (hook.org, hook.purpose) == (REGION, PURPOSE)
    inside = load_settings(mode="development", alarms={"webhooks": [base]}).alarms.webhooks[0]
    assert inside.org is None and inside.purpose is None


async def test_consents_no_longer_followed_disclose_nothing() -> None:
    """Review: if following consent changes fails for good, a withdrawal would go unseen:
    then nothing goes to another organisation (fail closed), on the alarm path and at the
    receiver's gate."""
    from gateway.worker.alarms.consent_cache import AlarmDisclosure
    from gateway.worker.webhooks import WebhookTarget

    region = WebhookTarget(name="region", url="https://region.example/in", secret=b"s" * 20,
                           org="232100-0172", purpose="care")  # fmt: skip
    disclosure = AlarmDisclosure("postgresql://unused/wg", [region])
    disclosure.cache.stale = True
    assert disclosure.withheld(_alarm(AlarmKind.BUTTON), NOW) == frozenset({"region"})
    assert await disclosure.gate(region, {"event_id": "e-1", "body": "{}"}) is False
