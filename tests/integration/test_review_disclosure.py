"""Security review #17, finding 7: alarms disclosed across huvudmän without consent.

The report: blood-pressure and weight alarms were routed by default to the group
``regional_clinic``; a webhook on that group received the person reference (and, for an
alarm that has one, the position) with no consent check and no access-log row. The
gateway tests run the real path: a device's reading over Mosquitto -> a running gateway
(role wg_worker) -> the alarm engine -> a signed POST to a real HTTP receiver on loopback.
The first is the attack as reported; it failed before the fix (the receiver got both
alarms, ``person_ref`` included, and no access-log row was written).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest

from gateway.adapters.embedded import with_user
from gateway.adapters.postgres import registry_repo as repo
from gateway.config.settings import AlarmSettings, RouteSetting, WebhookSetting
from gateway.worker.webhooks import WebhookDispatcher, WebhookTarget
from tests.conftest import WORKER_PASSWORD
from tests.integration.harness import (
    operator,
    payload,
    publish,
    running_gateway,
    seed,
    settings_for,
    wait_for,
)
from tests.integration.test_webhook import Receiver, serve

SECRET = "review-17-7-webhook-secret"
REGION_ORG = "232100-0172"


def _bp_high(msg_id: str) -> tuple[str, bytes]:
    return ("devices/bp-1/telemetry",
            payload("blood_pressure", msg_id, systolic_mmhg=195, diastolic_mmhg=100))  # fmt: skip


def _weight_gain() -> list[tuple[str, bytes]]:
    old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    return [("devices/scale-1/telemetry", payload("weight", "w-old", old, kg=80.0)),
            ("devices/scale-1/telemetry", payload("weight", "w-new", kg=82.6))]  # fmt: skip


async def _access_rows(url: str, person: UUID) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "select actor, actor_org, actor_role, actor_tenant, owner_tenant, person_id,"
            " categories, purpose, outcome, reason, request from access_log"
            " where person_id = %s order by id",
            (person,),
        )
        names = [c.name for c in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]


async def _settled(gw: Any) -> None:
    """Every webhook event queued so far is delivered or withheld."""

    async def empty() -> bool:
        return gw.alarms.webhooks.pending() == 0

    await wait_for(empty, 15, "the webhook outboxes to empty")


def _bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [orjson.loads(r.body) for r in receiver.ok]


async def test_attack_limit_alarms_reach_the_regional_clinic_without_consent(
    mosquitto, database_url
) -> None:
    """The attack as configured before the fix: a webhook on ``regional_clinic``, the
    default routes, a resident with no consent at all. Neither the blood-pressure nor the
    weight alarm may leave the municipality, and nothing is logged as disclosed."""
    s = await seed(database_url)
    receiver = Receiver()
    async with serve(receiver) as base:
        hooks = [WebhookSetting(group="regional_clinic", url=f"{base}/hook/regional_clinic",
                                secret=SECRET)]  # fmt: skip
        settings = settings_for(mosquitto.url, database_url,
                                alarms=AlarmSettings(webhooks=hooks))  # fmt: skip
        async with operator(mosquitto.url, s.tenant) as op, running_gateway(settings) as gw:
            await publish(mosquitto.url, [_bp_high("bp-1"), *_weight_gain()])
            bp = await op.wait(lambda m: m["kind"] == "blood_pressure", "the BP alarm")
            weight = await op.wait(lambda m: m["kind"] == "weight_gain", "the weight alarm")
            await _settled(gw)
    # the region's receiver has nothing, and nothing was disclosed ...
    leaked = [b for b in _bodies(receiver) if b.get("person_ref") or b.get("position")]
    assert leaked == [], f"disclosed without consent: {leaked}"
    assert receiver.requests == []
    for device in ("bp-1", "scale-1"):
        assert await _access_rows(database_url, s.persons[device]) == []
    # ... while the municipality's own operators have both alarms, for its own groups
    assert bp["person_ref"] and weight["person_ref"]
    assert "regional_clinic" not in bp["recipients"] + weight["recipients"]


PURPOSE = "Egenmonitorering vid hjärtsvikt"
#: limit alarms to the region's clinic first, then the municipality's home care
TO_THE_REGION = {"*": [
    RouteSetting(kinds=["blood_pressure", "weight_gain"], chain=["regional_clinic", "home_care"]),
    RouteSetting(chain=["night_team"]),
]}  # fmt: skip
#: limit alarms to the region's clinic alone (nothing left without it: the fallback)
ONLY_THE_REGION = {"*": [
    RouteSetting(kinds=["blood_pressure", "weight_gain"], chain=["regional_clinic"]),
    RouteSetting(chain=["night_team"]),
]}  # fmt: skip


async def _region_and_consents(url: str, consents: list[dict[str, Any]]) -> None:
    """The region as a tenant of its own, and consents recorded by the municipality."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await repo.create_tenant(conn, "region-v", "Region V", "region", REGION_ORG)
        for c in consents:
            values = {"recipient_org": REGION_ORG, "purpose": PURPOSE, "categories": ["alarms"],
                      "valid_from": datetime.now(UTC) - timedelta(days=30), "valid_to": None,
                      "withdrawn_at": None, **c}  # fmt: skip
            await conn.execute(
                "insert into consents (tenant_id, person_id, recipient_org, purpose, categories,"
                " valid_from, valid_to, withdrawn_at, legal_basis, recorded_by)"
                " values ('kommun-a', %(person_id)s, %(recipient_org)s, %(purpose)s,"
                " %(categories)s, %(valid_from)s, %(valid_to)s, %(withdrawn_at)s, 'samtycke',"
                " 'admin-a')",
                values,
            )
        await conn.commit()


def _region_hook(base: str) -> WebhookSetting:
    # the purpose as the operator wrote it: case and spaces do not matter
    return WebhookSetting(group="regional_clinic", url=f"{base}/hook/regional_clinic",
                          secret=SECRET, org=REGION_ORG,
                          purpose="  egenmonitorering vid  Hjärtsvikt ")  # fmt: skip


async def test_with_a_consent_covering_alarms_the_region_gets_them_and_each_is_logged(
    mosquitto, database_url
) -> None:
    """A consent for the region's organisation and purpose covering ``alarms`` (the BP
    resident) or the vital sign itself (``weight``, the scale's resident): the region's
    receiver gets each alarm, and an access-log row says who got whose data, under what
    category and purpose, before it left. A consent withdrawn while the gateway runs
    stops the next event of the same alarm, which goes on to the municipality's group."""
    s = await seed(database_url)
    bp_person, scale_person = s.persons["bp-1"], s.persons["scale-1"]
    await _region_and_consents(database_url, [
        {"person_id": bp_person},
        {"person_id": scale_person, "categories": ["weight"]},
    ])  # fmt: skip
    receiver = Receiver()
    async with serve(receiver) as base:
        settings = settings_for(mosquitto.url, database_url, alarms=AlarmSettings(
            webhooks=[_region_hook(base)], routes=TO_THE_REGION))  # fmt: skip
        async with operator(mosquitto.url, s.tenant) as op, running_gateway(settings) as gw:
            await publish(mosquitto.url, [_bp_high("bp-1"), *_weight_gain()])
            bp = await op.wait(lambda m: m["kind"] == "blood_pressure", "the BP alarm")
            weight = await op.wait(lambda m: m["kind"] == "weight_gain", "the weight alarm")
            assert bp["recipients"] == weight["recipients"] == ["regional_clinic"]

            async def both() -> bool:
                return {b["kind"] for b in _bodies(receiver)} == {"blood_pressure",
                                                                  "weight_gain"}  # fmt: skip

            await wait_for(both, 15, "both alarms at the region's receiver")
            sent = {b["kind"]: b for b in _bodies(receiver)}
            assert sent["blood_pressure"]["person_ref"] == bp["person_ref"]
            assert sent["weight_gain"]["person_id"] == str(scale_person)

            for person, category in ((bp_person, "alarms"), (scale_person, "weight")):
                [row] = await _access_rows(database_url, person)
                assert row["actor"] == "webhook:regional_clinic"
                assert row["actor_org"] == REGION_ORG and row["actor_tenant"] == "region-v"
                assert row["actor_role"] == "alarm_receiver" and row["outcome"] == "allowed"
                assert row["owner_tenant"] == s.tenant and row["person_id"] == person
                assert row["categories"] == [category] and row["purpose"] == PURPOSE
                assert "alarm raised" in row["request"] and "consent" in row["reason"]

            # the resident withdraws the consent; the cache follows (LISTEN wg_consents)
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                await conn.execute("update consents set withdrawn_at = now(),"
                                   " withdrawn_by = 'admin-a' where person_id = %s",
                                   (bp_person,))  # fmt: skip
                await conn.commit()

            async def followed() -> bool:
                return gw.alarms.disclosure.cache.consents(bp_person) == ()

            await wait_for(followed, 10, "the withdrawal in the worker's cache")
            gw.alarms.acknowledge(s.tenant, UUID(bp["alarm_id"]), "op-1")
            ack = await op.wait(
                lambda m: m["kind"] == "blood_pressure" and m["event"] == "acknowledged",
                "the acknowledgement",
            )
            assert ack["recipients"] == ["home_care"]  # the chain skips the region
            await _settled(gw)
    events = [(b["kind"], b["event"]) for b in _bodies(receiver)]
    assert ("blood_pressure", "acknowledged") not in events
    assert len(await _access_rows(database_url, bp_person)) == 1


async def test_withdrawn_expired_or_other_purpose_consents_send_nothing(
    mosquitto, database_url
) -> None:
    """Consents that do not hold now (withdrawn, expired), or that name another purpose
    or only another category: nothing reaches the region, nothing is logged as
    disclosed, and the alarms go to the municipality's fallback group."""
    s = await seed(database_url)
    now = datetime.now(UTC)
    await _region_and_consents(database_url, [
        {"person_id": s.persons["bp-1"], "withdrawn_at": now - timedelta(days=1)},
        {"person_id": s.persons["bp-1"], "purpose": "forskning"},
        {"person_id": s.persons["bp-1"], "categories": ["weight", "position"]},
        {"person_id": s.persons["scale-1"], "categories": ["alarms", "weight"],
         "valid_from": now - timedelta(days=60), "valid_to": now - timedelta(days=1)},
    ])  # fmt: skip
    receiver = Receiver()
    async with serve(receiver) as base:
        settings = settings_for(mosquitto.url, database_url, alarms=AlarmSettings(
            webhooks=[_region_hook(base)], routes=ONLY_THE_REGION))  # fmt: skip
        async with operator(mosquitto.url, s.tenant) as op, running_gateway(settings) as gw:
            await publish(mosquitto.url, [_bp_high("bp-1"), *_weight_gain()])
            bp = await op.wait(lambda m: m["kind"] == "blood_pressure", "the BP alarm")
            weight = await op.wait(lambda m: m["kind"] == "weight_gain", "the weight alarm")
            await _settled(gw)
    assert receiver.requests == []
    assert bp["recipients"] == weight["recipients"] == ["night_team"]  # the fallback
    for device in ("bp-1", "scale-1"):
        assert await _access_rows(database_url, s.persons[device]) == []


async def test_a_receiver_inside_the_municipality_needs_no_consent(
    mosquitto, database_url
) -> None:
    """A webhook without ``org`` acts for the municipality (its home care, or an alarm
    centre under a data-processor agreement): the default routes send it the limit
    alarms, with no consent and no access-log row (nothing left the huvudman)."""
    s = await seed(database_url)
    receiver = Receiver()
    async with serve(receiver) as base:
        hooks = [WebhookSetting(group="home_care", url=f"{base}/hook/home_care", secret=SECRET)]
        settings = settings_for(mosquitto.url, database_url,
                                alarms=AlarmSettings(webhooks=hooks))  # fmt: skip
        async with running_gateway(settings):
            await publish(mosquitto.url, [_bp_high("bp-1"), *_weight_gain()])

            async def both() -> bool:
                return {b["kind"] for b in _bodies(receiver)} == {"blood_pressure",
                                                                  "weight_gain"}  # fmt: skip

            await wait_for(both, 15, "both alarms at home care's receiver")
    assert all(b["recipients"] == ["home_care"] and b["person_ref"] for b in _bodies(receiver))
    for device in ("bp-1", "scale-1"):
        assert await _access_rows(database_url, s.persons[device]) == []


# --- the delivery loop's gate: what changed while an event waited in the outbox --------


def _dispatcher(tmp_path: Any, targets: list[WebhookTarget], **kw: Any) -> WebhookDispatcher:
    return WebhookDispatcher(targets, outbox_dir=tmp_path / "outbox", base_backoff_s=0.01,
                             max_backoff_s=0.05, **kw)  # fmt: skip


def _target(base: str, name: str, org: str | None) -> WebhookTarget:
    return WebhookTarget(name, f"{base}/hook/{name}", SECRET.encode(), org=org,
                         purpose=PURPOSE if org else None)  # fmt: skip


async def _until(condition: Any, what: str) -> None:
    async def check() -> bool:
        return bool(condition())

    await wait_for(check, 10, what)


async def test_the_gate_is_asked_before_each_attempt_to_another_organisation(tmp_path) -> None:
    """Another organisation's receiver: an event the gate refuses (a consent withdrawn
    since it was queued) is withheld, never sent, and the standbys are told to skip it; an
    event whose access-log row cannot be written yet waits (the receiver is not counted
    as failing) and goes once it is written; a target with ``org`` and no gate gets
    nothing; the municipality's own receiver is never gated."""
    receiver = Receiver()
    asked: list[tuple[str, str]] = []
    answers: dict[str, list[Any]] = {"evt-refused": [False],
                                     "evt-held": [OSError(), OSError(), True]}
    done: list[tuple[str, str]] = []
    unreachable: list[Any] = []

    async def gate(target: WebhookTarget, record: dict[str, Any]) -> bool:
        asked.append((target.name, record["event_id"]))
        answer = answers[record["event_id"]].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)

    async with serve(receiver) as base:
        region, own = _target(base, "region", REGION_ORG), _target(base, "own", None)
        dispatcher = _dispatcher(
            tmp_path, [region, own], gate=gate, unreachable_after_s=0.01,
            on_delivered=lambda t, e: done.append((t.name, e)),
            on_unreachable=lambda *a: unreachable.append(a),
        )  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        try:
            for event_id in ("evt-refused", "evt-held"):
                dispatcher.submit(["region", "own"], event_id, b'{"kind":"blood_pressure"}')
            await _until(lambda: dispatcher.pending() == 0, "both outboxes empty")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert asked == [("region", "evt-refused"), *[("region", "evt-held")] * 3]
    assert dispatcher.stats.withheld == 1
    assert [(r.target, r.headers["x-wg-event-id"]) for r in receiver.ok if r.target == "region"
            ] == [("region", "evt-held")]  # fmt: skip
    assert sorted(r.headers["x-wg-event-id"] for r in receiver.ok if r.target == "own") == [
        "evt-held", "evt-refused"]  # fmt: skip
    assert ("region", "evt-refused") in done and ("region", "evt-held") in done
    assert not [a for a in unreachable if a[2]]  # held for the log, not a failing receiver

    receiver = Receiver()
    async with serve(receiver) as base:
        dispatcher = _dispatcher(tmp_path / "ungated", [_target(base, "region", REGION_ORG)])
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        try:
            dispatcher.submit(["region"], "evt-1", b"{}")
            await _until(lambda: dispatcher.stats.withheld == 1, "withheld without a gate")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert receiver.requests == []


def test_the_worker_reads_only_what_the_decision_needs(database_url) -> None:
    """Migration 0014: the workers (wg_worker) read the consents' decision columns, not
    who recorded them nor the legal basis, and change none of them."""
    with psycopg.connect(with_user(database_url, "wg_worker", WORKER_PASSWORD),
                         autocommit=True) as conn:  # fmt: skip
        conn.execute("select id, tenant_id, person_id, recipient_org, purpose, categories,"
                     " valid_from, valid_to, withdrawn_at from consents").fetchall()  # fmt: skip
        for stmt in (
            "select legal_basis from consents",
            "select recorded_by from consents",
            "update consents set withdrawn_at = now()",
            "insert into consents (tenant_id) values ('kommun-a')",
            "delete from consents",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt)
