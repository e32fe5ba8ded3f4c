"""Ingest end to end: real Mosquitto, real PostgreSQL, the real gateway service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from gateway.worker.rows import Row
from tests.integration.harness import (
    now_iso,
    payload,
    publish,
    running_gateway,
    scalar,
    seed,
    settings_for,
    wait_count,
    wait_for,
)


async def test_every_type_is_stored_with_its_person(mosquitto, database_url) -> None:
    s = await seed(database_url)
    messages = [
        ("devices/scale-1/telemetry", payload("weight", "w1", kg=81.5)),
        ("devices/bp-1/telemetry", payload("blood_pressure", "b1", systolic_mmhg=128,
                                           diastolic_mmhg=82, pulse_bpm=66)),
        ("devices/gps-1/telemetry", payload("position", "p1", lat=59.61, lon=16.55,
                                            accuracy_m=8)),
        ("devices/gps-1/telemetry", payload("battery", "bt1", percent=77)),
        ("devices/gps-1/events", payload("alarm", "a1", kind="button", lat=59.61, lon=16.55)),
        ("devices/lock-1/events", payload("lock", "l1", action="unlocked", key_id="k-17",
                                          method="app")),
        ("devices/lock-1/events", payload("battery_low", "bl1", percent=9)),
        ("devices/gps-1/heartbeat", payload("heartbeat", "h1", battery_percent=76, rssi_dbm=-71)),
        ("devices/gps-1/status", payload("status", "s1", state="online", firmware="2.4.1")),
        ("devices/lock-1/replies", payload("reply", "r1", command_id="c-1", ok=True)),
    ]  # fmt: skip
    async with running_gateway(settings_for(mosquitto.url, database_url)):
        await publish(mosquitto.url, messages)
        await wait_count(database_url, "select count(*) from device_health", 4)
        await wait_count(database_url, "select count(*) from readings", 2)
        await wait_count(database_url, "select count(*) from command_replies", 1)
    assert await scalar(database_url, "select count(*) from quarantine") == 0
    assert (
        await scalar(database_url, "select person_id from readings where msg_id = 'w1'")
        == s.persons["scale-1"]
    )
    assert (
        await scalar(database_url, "select systolic_mmhg from readings where msg_id = 'b1'") == 128
    )
    assert await scalar(database_url, "select person_id from positions") == s.persons["gps-1"]
    assert await scalar(database_url, "select kind from device_alarms") == "button"
    assert await scalar(database_url, "select key_id from lock_events") == "k-17"
    # device state is kept current in memory and written with the batches
    assert (
        await scalar(database_url, "select firmware from device_state where device_id = 'gps-1'")
        == "2.4.1"
    )
    assert (
        await scalar(
            database_url, "select battery_percent from device_state where device_id = 'lock-1'"
        )
        == 9
    )


async def test_device_state_follows_each_batch_while_running(mosquitto, database_url) -> None:
    """A device's state goes with the batch that stored its message (copied into a stage
    table, then upserted): the last change of a device that then falls quiet is in the
    database while the gateway runs, not only at its stop. (An engine taking over seeds
    its silence deadlines from these last-seen times.)"""
    await seed(database_url)
    battery = "select battery_percent from device_state where device_id = 'gps-1'"
    async with running_gateway(settings_for(mosquitto.url, database_url)):
        for percent in (80, 79, 78):
            await publish(mosquitto.url, [("devices/gps-1/heartbeat",
                                           payload("heartbeat", f"h{percent}",
                                                   battery_percent=percent))])  # fmt: skip
            await wait_count(database_url, "select count(*) from device_health"
                             f" where msg_id = 'h{percent}'", 1)  # fmt: skip

        async def latest() -> bool:
            return bool(await scalar(database_url, battery) == 78)

        await wait_for(latest, 10, "the last battery level in device_state, while running")


async def test_each_refusal_goes_to_quarantine_with_reason(mosquitto, database_url) -> None:
    await seed(database_url, since=datetime.now(UTC) - timedelta(days=900))
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "insert into devices (id, tenant_id, model_id) values ('spare-1', 'kommun-a', 't-gps')"
        )
        # active but held by no one (only by hand in SQL: the API assigns when activating)
        await conn.execute("insert into devices (id, tenant_id, model_id, status)"
                           " values ('orphan-1', 'kommun-a', 't-scale', 'active')")  # fmt: skip
        await conn.commit()
    far_future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    long_ago = (datetime.now(UTC) - timedelta(days=40)).isoformat()  # positions keep 30
    cases = {
        "invalid_json": ("devices/scale-1/telemetry", b"{not json"),
        "not_an_object": ("devices/scale-1/telemetry", b"[1,2]"),
        "unsupported_version": ("devices/scale-1/telemetry",
                                orjson.dumps({"v": 2, "type": "weight", "id": "x", "kg": 1})),
        "unknown_type": ("devices/scale-1/telemetry", payload("temperature", "u1", c=20)),
        "wrong_channel": ("devices/scale-1/events", payload("weight", "wc1", kg=80)),
        "schema_violation": ("devices/bp-1/telemetry",
                             payload("blood_pressure", "sv1", systolic_mmhg=70,
                                     diastolic_mmhg=90)),
        "future_timestamp": ("devices/scale-1/telemetry", payload("weight", "f1", far_future,
                                                                  kg=80)),
        "implausible_timestamp": ("devices/scale-1/telemetry",
                                  payload("weight", "i1", "1970-01-01T00:00:10+00:00", kg=80)),
        "payload_too_large": ("devices/scale-1/telemetry", b"{" + b" " * 20000 + b"}"),
        "unknown_device": ("devices/nobody-1/telemetry", payload("weight", "n1", kg=80)),
        "inactive_device": ("devices/spare-1/heartbeat", payload("heartbeat", "ia1")),
        "wrong_device_type": ("devices/scale-1/events", payload("alarm", "wd1", kind="button")),
        "before_current_assignment": ("devices/scale-1/telemetry",
                                      payload("weight", "bc1", now_iso(-1000 * 86400), kg=80)),
        "no_assignment_at_ts": ("devices/orphan-1/telemetry", payload("weight", "na1", kg=80)),
        "older_than_retention": ("devices/gps-1/telemetry",
                                 payload("position", "o1", long_ago, lat=1, lon=1, accuracy_m=5)),
    }  # fmt: skip
    good = ("devices/scale-1/telemetry", payload("weight", "ok1", kg=80))
    async with running_gateway(settings_for(mosquitto.url, database_url)) as gw:
        await publish(mosquitto.url, [*cases.values(), good])
        await wait_count(database_url, "select count(*) from quarantine", len(cases))
        await wait_count(database_url, "select count(*) from readings", 1)
        metric = gw.metrics.quarantined.labels("schema_violation")._value.get()
        assert metric == 1
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        rows = await (await conn.execute("select reason, topic, detail from quarantine")).fetchall()
    reasons = {r[0]: (r[1], r[2]) for r in rows}
    assert set(reasons) == set(cases)
    for reason, (topic, _) in cases.items():
        assert reasons[reason][0] == topic
        assert reasons[reason][1], f"{reason} has no detail"
    # the oversize payload is kept, but capped
    size = await scalar(
        database_url, "select length(payload) from quarantine where reason='payload_too_large'"
    )
    assert size == 4096


async def test_duplicate_delivery_is_stored_once(mosquitto, database_url) -> None:
    await seed(database_url)
    msg = ("devices/scale-1/telemetry", payload("weight", "dup-1", kg=70.1))
    async with running_gateway(settings_for(mosquitto.url, database_url)) as gw:
        await publish(mosquitto.url, [msg, msg, msg])
        await publish(mosquitto.url, [("devices/scale-1/telemetry", payload("weight", "m2",
                                                                           kg=70))])  # fmt: skip
        await wait_count(database_url, "select count(*) from readings", 2)
        assert gw.metrics.duplicates._value.get() == 2
    # and across a restart of the gateway
    async with running_gateway(settings_for(mosquitto.url, database_url)):
        await publish(mosquitto.url, [msg, ("devices/scale-1/telemetry",
                                            payload("weight", "m3", kg=70))])  # fmt: skip
        await wait_count(database_url, "select count(*) from readings", 3)
    assert await scalar(database_url, "select count(*) from readings where msg_id = 'dup-1'") == 1


async def test_reassigned_device_stores_only_the_current_holders_data(
    mosquitto, database_url
) -> None:
    """A reading stamped before the hand-over is not stored on the earlier holder by the
    device's clock alone: it waits in quarantine for review (security review #17.2,
    tests/integration/test_review_assignment.py); the new holder's is theirs."""
    from gateway.adapters.postgres import registry_repo as repo

    s = await seed(database_url, since=datetime.now(UTC) - timedelta(days=10))
    handover = datetime.now(UTC) - timedelta(days=2)
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        await repo.return_device(conn, "scale-1", handover)
        new_holder = await repo.create_person(conn, s.tenant, "next-holder")
        await repo.assign_device(conn, "scale-1", new_holder, handover)
    before = (handover - timedelta(hours=5)).isoformat()
    after = (handover + timedelta(hours=5)).isoformat()
    async with running_gateway(settings_for(mosquitto.url, database_url)):
        await publish(
            mosquitto.url,
            [
                ("devices/scale-1/telemetry", payload("weight", "old", before, kg=90)),
                ("devices/scale-1/telemetry", payload("weight", "new", after, kg=60)),
            ],
        )
        await wait_count(database_url, "select count(*) from readings", 1)
        await wait_count(database_url, "select count(*) from quarantine", 1)
    assert (
        await scalar(database_url, "select reason from quarantine") == "before_current_assignment"
    )
    assert (
        await scalar(database_url, "select person_id from readings where msg_id='new'")
        == new_holder
    )


async def test_a_flooding_device_is_limited_without_hurting_others(mosquitto, database_url) -> None:
    """Per-device limits: the flood beyond the burst is counted and refused (not decoded;
    the first refused message is kept in quarantine as evidence, the rest only counted),
    another device's traffic is all stored, and the flooding device's own alarm event
    still gets through on its separate allowance. Every message is acknowledged."""
    await seed(database_url)
    flood = [
        ("devices/gps-1/heartbeat", payload("heartbeat", f"f-{i}", battery_percent=50))
        for i in range(300)
    ]
    button = ("devices/gps-1/events", payload("alarm", "press-1", kind="button"))
    others = [("devices/scale-1/heartbeat", payload("heartbeat", f"s-{i}")) for i in range(15)]
    settings = settings_for(
        mosquitto.url, database_url, limits={"device_msgs_per_s": 1, "device_burst": 20}
    )
    async with running_gateway(settings) as gw:
        await publish(mosquitto.url, [*flood, button, *others])
        await wait_count(database_url, "select count(*) from device_alarms", 1)
        await wait_count(
            database_url, "select count(*) from device_health where device_id = 'scale-1'", 15
        )

        async def all_handled() -> bool:
            stored = "select count(*) from device_health where device_id = 'gps-1'"
            counted = gw.metrics.rate_limited._value.get()
            return bool(await scalar(database_url, stored) + counted >= 300)

        await wait_for(all_handled, 30, "every flood message handled")
        refused = gw.metrics.rate_limited._value.get()
        await gw.wait_idle()
    stored = await scalar(
        database_url, "select count(*) from device_health where device_id = 'gps-1'"
    )
    # the burst, plus at most one token per second the publish took
    assert 20 <= stored < 60
    assert refused == 300 - stored
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        kept = await (await conn.execute("select reason, device_id from quarantine")).fetchall()
    assert kept == [("rate_limited", "gps-1")]  # one kept as evidence, not 280
    # refused messages were acknowledged: the persistent session redelivers none of them
    async with running_gateway(settings) as again:
        await publish(mosquitto.url, [("devices/scale-1/heartbeat", payload("heartbeat", "p"))])
        await wait_count(
            database_url, "select count(*) from device_health where device_id = 'scale-1'", 16
        )
        await again.wait_idle()
        assert again._received_total() == 1


async def test_a_row_the_database_refuses_is_isolated_and_ingest_goes_on(
    mosquitto, database_url
) -> None:
    """The backstop behind the contract: a row PostgreSQL cannot store (a NUL byte in a
    text column) is found by halving its batch, dropped, counted and acknowledged; the
    rows batched with it, and everything after, are stored."""
    seeded = await seed(database_url)
    person = seeded.persons["scale-1"]
    async with running_gateway(settings_for(mosquitto.url, database_url,
                                            batch_max_delay_ms=200)) as gw:  # fmt: skip
        now = datetime.now(UTC)
        good = [
            Row("readings", ("kommun-a", person, "scale-1", f"ok-{i}", now - timedelta(
                seconds=i), now, "weight", 70.0 + i, None, None, None, None))
            for i in range(7)
        ]  # fmt: skip
        poison = Row("readings", ("kommun-a", person, "scale-1", "bad\x00id", now, now,
                                  "weight", 71.0, None, None, None, None))  # fmt: skip
        for row in (*good[:3], poison, *good[3:]):
            await gw.writer.put(row, None)
        await wait_count(database_url, "select count(*) from readings", 7)
        assert gw.metrics.unstorable.labels("readings")._value.get() == 1
        # the writer still runs: a message through MQTT is stored after it
        await publish(mosquitto.url, [("devices/scale-1/telemetry",
                                       payload("weight", "after", kg=72))])  # fmt: skip
        await wait_count(database_url, "select count(*) from readings", 8)
