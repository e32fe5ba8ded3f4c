"""N workers behave exactly as one: the same scripted fleet against 1, 2 and 3 gateway
workers sharing one real Mosquitto (shared storage subscription) and one PostgreSQL.

Each scenario of the outside report is here: repeated presses (and a redelivered one),
leaving and re-entering a safe zone, a weight gain, blood pressure high/normal/high/normal,
devices heartbeating faster than their silence bound, a door unlocked and locked again
before its timer and another left open, repeated falls, a low battery, an offline last
will, unauthorised unlocks; every recipient group has a webhook. With two
workers the old build gave separate alarms, missed the weight gain, left blood pressure
active, raised false device_silent and door_unlocked, and delivered duplicates. The test
compares the whole sequence of alarm events the operator receives, per device and kind,
with what one worker gives, checks that each event reaches MQTT and the webhooks once,
and that every message is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.types.json import Jsonb

from gateway.adapters.postgres import registry_repo as repo
from gateway.config.settings import AlarmSettings, WebhookSetting
from gateway.worker.service import GatewayService
from tests.conftest import API_PASSWORD
from tests.integration.harness import (
    Operator,
    now_iso,
    operator,
    payload,
    publish,
    running_gateway,
    scalar,
    seed,
    settings_for,
    wait_count,
    wait_for,
)
from tests.integration.test_webhook import Receiver, serve

MODELS = [
    repo.DeviceModel("m-gps", "Multi", "GPS", "gps_alarm", 3600),
    repo.DeviceModel("m-scale", "Multi", "Scale", "scale", 3600),
    repo.DeviceModel("m-bp", "Multi", "BP", "blood_pressure_monitor", 3600),
    repo.DeviceModel("m-lock", "Multi", "Lock", "door_lock", 3600),
    repo.DeviceModel("m-fast", "Multi", "Fast", "gps_alarm", 5),  # silent after 2.5 s
]
DEVICES = {
    "gps-1": "m-gps", "gps-2": "m-gps", "gps-3": "m-gps", "scale-1": "m-scale",
    "bp-1": "m-bp", "lock-1": "m-lock", "gps-4": "m-gps", "lock-2": "m-lock",
    "hb-1": "m-fast", "hb-2": "m-fast", "hb-3": "m-fast", "hb-4": "m-fast",
}  # fmt: skip
HOME = {"lat": 59.8586, "lon": 17.6389}
AWAY = {"lat": 59.8686, "lon": 17.6389}
RULES = AlarmSettings(
    silence_factor=0.3, silence_grace_s=1.0,  # m-fast: 2.5 s; the others: about 18 min
    door_unlocked_after_s=2.5, tick_ms=50,
)  # fmt: skip

#: what one worker gives: (device, kind) -> the events the operator receives, in order
EXPECTED = {
    ("gps-1", "button"): ["raised", "occurred"],
    ("gps-2", "geofence_exit"): ["raised", "cleared"],
    ("gps-3", "battery_low"): ["raised"],
    ("gps-3", "device_silent"): ["raised"],
    ("scale-1", "weight_gain"): ["raised"],
    ("bp-1", "blood_pressure"): ["raised", "cleared", "occurred", "cleared"],
    ("lock-1", "unauthorised_unlock"): ["raised"],
    ("gps-4", "fall"): ["raised", "occurred"],
    ("lock-2", "unauthorised_unlock"): ["raised"],
    ("lock-2", "door_unlocked"): ["raised"],  # never locked again: past its 2.5 s
}


async def prepare(url: str) -> Any:
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        for model in MODELS:
            await repo.ensure_device_model(conn, model)
    s = await seed(url, devices=DEVICES)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute(
            "insert into safe_zones (tenant_id, person_id, name, shape) values (%s, %s, %s, %s)",
            (s.tenant, s.persons["gps-2"], "home",
             Jsonb({"type": "circle", **HOME, "radius_m": 200})),
        )  # fmt: skip
        await conn.commit()
    return s


GROUPS = ("night_team", "home_care", "regional_clinic", "technicians")


@contextlib.asynccontextmanager
async def workers(
    mqtt_url: str, url: str, n: int, hooks: str
) -> AsyncIterator[list[GatewayService]]:
    """``n`` workers in one shared group, started one after another (the first is the
    oldest, so it runs the alarm engine); every recipient group has a webhook."""
    rules = RULES.model_copy(update={"webhooks": [
        WebhookSetting(group=g, url=f"{hooks}/hook/{g}", secret="multi-worker-hook-secret")
        for g in GROUPS]})  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        started = []
        for i in range(1, n + 1):
            settings = settings_for(mqtt_url, url, alarms=rules, mqtt_client_id=f"wg-w{i}")
            started.append(await stack.enter_async_context(running_gateway(settings)))
        yield started


def outcome(op: Operator) -> dict[tuple[str, str], list[str]]:
    seen: dict[tuple[str, str], list[str]] = {}
    for m in op.messages:
        seen.setdefault((m["device_id"], m["kind"]), []).append(m["event"])
    return seen


def script() -> list[tuple[str, bytes]]:
    old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    press = payload("alarm", "press-1", kind="button")
    return [
        ("devices/gps-1/events", press),
        ("devices/gps-1/events", payload("alarm", "press-2", kind="button")),
        ("devices/gps-1/events", press),  # redelivered: not a new press
        ("devices/gps-2/telemetry", payload("position", "p1", now_iso(-30), **HOME,
                                            accuracy_m=10)),
        ("devices/gps-2/telemetry", payload("position", "p2", now_iso(-20), **AWAY,
                                            accuracy_m=10)),
        ("devices/gps-2/telemetry", payload("position", "p3", now_iso(-10), **HOME,
                                            accuracy_m=10)),
        ("devices/scale-1/telemetry", payload("weight", "w1", old, kg=80.0)),
        ("devices/scale-1/telemetry", payload("weight", "w2", kg=82.1)),
        *[("devices/bp-1/telemetry",
           payload("blood_pressure", f"bp{i}", now_iso(i - 10), systolic_mmhg=sys,
                   diastolic_mmhg=dia))
          for i, (sys, dia) in enumerate([(195, 100), (125, 80), (196, 101), (124, 79)])],
        ("devices/gps-3/heartbeat", payload("heartbeat", "g3-hb", battery_percent=10)),
        ("devices/gps-3/status", b'{"v":1,"type":"status","state":"offline"}'),
        ("devices/lock-1/events", payload("lock", "u1", action="unlocked", key_id="k1",
                                          method="app")),
        ("devices/gps-4/events", payload("alarm", "fall-1", kind="fall")),
        ("devices/gps-4/events", payload("alarm", "fall-2", kind="fall")),
        ("devices/lock-2/events", payload("lock", "u2", action="unlocked", key_id="k2",
                                          method="app")),
    ]  # fmt: skip


async def heartbeats(mqtt_url: str, seconds: float) -> int:
    """The four fast devices heartbeat every 0.5 s (bound 2.5 s): never silent."""
    sent = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        batch = [(f"devices/hb-{d}/heartbeat", payload("heartbeat", f"hb{d}-{sent}"))
                 for d in range(1, 5)]  # fmt: skip
        await publish(mqtt_url, batch, client_id="test-heartbeats")
        sent += 1
        await asyncio.sleep(0.5)  # the devices' own pace, not a synchronisation
    return sent * 4


@pytest.mark.parametrize("n", [1, 2, 3])
async def test_n_workers_give_the_alarms_of_one(mosquitto, database_url, n: int) -> None:
    s = await prepare(database_url)
    receiver = Receiver()
    async with serve(receiver) as hooks, workers(mosquitto.url, database_url, n, hooks) as ws, \
            operator(mosquitto.url, s.tenant) as op:  # fmt: skip
        assert [w.alarms.active for w in ws] == [True] + [False] * (n - 1)

        async def zones_loaded() -> bool:
            return all((r := w.alarms.persons.get(s.persons["gps-2"])) is not None and r.zones
                       for w in ws)  # fmt: skip

        await wait_for(zones_loaded, 10, "the safe zone in every worker")
        beating = asyncio.create_task(heartbeats(mosquitto.url, 6.0))
        await publish(mosquitto.url, script())
        await publish(mosquitto.url, [("devices/lock-1/events", payload(
            "lock", "l1", action="locked", key_id="k1", method="app"))])  # fmt: skip
        beats = await beating  # 6 s: past the door timer and the fast devices' bound

        async def all_expected() -> bool:
            got = outcome(op)
            return all(len(got.get(key, [])) >= len(events) for key, events in EXPECTED.items())

        await wait_for(all_expected, 15, "the expected alarm events")
        assert outcome(op) == EXPECTED
        # storage and the engine share one decoding per message where the engine runs;
        # a standby's storage is the only path there, and keeps none (issue #22)
        assert [w.role.decodings.sharing for w in ws] == [True] + [False] * (n - 1)
        assert [len(w.role.decodings) for w in ws[1:]] == [0] * (n - 1)
        assert all(w.role.decodings.decoded > 0 for w in ws)
        # exactly once on the operator topic and to the webhooks: no event id twice
        ids = [m["event_id"] for m in op.messages]
        assert len(ids) == len(set(ids))

        async def hooked() -> bool:
            return len(receiver.ok) >= len(ids)

        await wait_for(hooked, 10, "every event on a webhook")
        hooked_ids = [r.headers["x-wg-event-id"] for r in receiver.ok]
        assert sorted(hooked_ids) == sorted(ids)
        # storage: every message once, whichever worker took it
        sent = len(script()) + 1 + beats
        await wait_count(database_url, "select (select count(*) from readings)"
                         " + (select count(*) from positions)"
                         " + (select count(*) from device_health)"
                         " + (select count(*) from device_alarms)"
                         " + (select count(*) from lock_events)", sent - 1)  # fmt: skip
        # every alarm event stored once
        await wait_count(database_url, "select count(*) from alarm_events", len(ids))
        # every worker's book holds the same open alarms (the standbys mirror the engine)
        open_ids = {a.id for a in ws[0].alarms.book.open_alarms()}
        for w in ws[1:]:
            async def same(w: GatewayService = w) -> bool:
                return {a.id for a in w.alarms.book.open_alarms()} == open_ids

            await wait_for(same, 5, "the standby's mirrored book")
    assert await scalar(database_url, "select count(*) from quarantine") == 0


async def test_workers_started_together_on_a_fresh_database(mosquitto, postgres) -> None:
    """Migrations, partitions and the TimescaleDB check run in every worker at start;
    started at once on an empty database, none of them crashes (the old build died with
    DuplicateTable in partition maintenance)."""
    from gateway.adapters.postgres.migrate import migrate

    url = postgres.create_database()  # empty: not cloned from the migrated template
    await asyncio.gather(
        *(asyncio.to_thread(migrate, url, api_password=API_PASSWORD) for _ in range(3))
    )
    async with contextlib.AsyncExitStack() as stack:
        ws = await asyncio.gather(*(
            stack.enter_async_context(running_gateway(
                settings_for(mosquitto.url, url, mqtt_client_id=f"wg-fresh-{i}")))
            for i in range(3)))  # fmt: skip
        async def one_engine() -> bool:  # a younger one may have led for a moment
            return sum(w.alarms.active for w in ws) == 1

        await wait_for(one_engine, 10, "exactly one alarm engine")
    assert await scalar(url, "select count(*) from schema_migrations") >= 8


async def test_engine_handed_over_while_the_database_is_down(mosquitto, private_postgres) -> None:
    """Coordination does not depend on the database: with PostgreSQL down, the engine's
    worker stops and the standby takes over from its mirrored book. The open alarm is
    acknowledged on the new engine, a new press is delivered, and once the database is
    back every alarm event is stored once."""
    url = private_postgres.url_for_test
    s = await seed(url, devices={"gps-1": "t-gps", "gps-2": "t-gps"})
    first = contextlib.AsyncExitStack()
    one = await first.enter_async_context(running_gateway(
        settings_for(mosquitto.url, url, mqtt_client_id="wg-db-1")))  # fmt: skip
    try:
        async with running_gateway(settings_for(mosquitto.url, url,
                                                mqtt_client_id="wg-db-2")) as two, \
                operator(mosquitto.url, s.tenant) as op:  # fmt: skip
            assert one.alarms.active and not two.alarms.active
            await publish(mosquitto.url, [("devices/gps-1/events",
                                           payload("alarm", "b1", kind="button"))])  # fmt: skip
            raised = await op.wait(lambda m: m["event"] == "raised", "the first alarm")
            alarm_id = UUID(raised["alarm_id"])

            async def mirrored() -> bool:
                return two.alarms.book.get(alarm_id) is not None

            await wait_for(mirrored, 10, "the alarm in the standby's book")
            await asyncio.to_thread(private_postgres.halt)
            # the engine's worker stops; its storage cannot flush (up to 20 s), but it
            # hands the engine over first
            closing = asyncio.create_task(first.aclose())

            async def took_over() -> bool:
                return two.alarms.active

            await wait_for(took_over, 10, "the standby running the engine")
            two.alarms.acknowledge(s.tenant, alarm_id, "nattpatrull-1")
            await op.wait(lambda m: m["event"] == "acknowledged", "acknowledged on the new engine")
            await publish(mosquitto.url, [("devices/gps-2/events",
                                           payload("alarm", "b2", kind="button"))])  # fmt: skip
            await op.wait(lambda m: m["event"] == "raised" and m["device_id"] == "gps-2",
                          "a press after the hand-over")  # fmt: skip
            await asyncio.to_thread(private_postgres.resume)
            await closing
            await wait_count(url, "select count(*) from alarm_events", len(op.messages), 30)
            assert await scalar(url, "select count(*) from alarm_events"
                                " group by alarm_id, seq order by 1 desc limit 1") == 1  # fmt: skip
    finally:
        await first.aclose()
