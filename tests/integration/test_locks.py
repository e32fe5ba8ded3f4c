"""Keyless-lock access end to end: real Mosquitto, PostgreSQL, HTTP and the simulator's
lock firmware. Remote unlocks are judged and logged before anything is sent; an expired
command is refused by the lock and reported; an unlock reported outside any visit raises
an alarm. No sleeps: every wait is for a condition, bounded by a timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import aiomqtt
import httpx
import orjson
import psycopg

from api.auth import Role, mint
from device_sims import parse_scenario
from device_sims.clock import SimClock
from device_sims.door_lock import DoorLockSim
from device_sims.envelope import Outgoing
from firmware_contracts.topics import Channel, device_topic
from gateway.adapters.postgres import registry_repo as repo
from gateway.config.settings import LockSettings
from gateway.worker.service import GatewayService
from tests.integration.harness import (
    gateway_with_api,
    operator,
    payload,
    publish,
    seed,
    settings_for,
    wait_count,
    wait_for,
)

SECRET = "lock-test-secret-lock-test-secret"
LOCK = "sim-lock-00001"
LOCK_2 = "sim-lock-00002"
SCENARIO = """
name = "lock-test"

[[devices]]
type = "door_lock"
heartbeat_interval_s = 60
staff_key_ids = ["key-anna"]
"""


def auth(tenant: str, role: Role = Role.OPERATOR, subject: str | None = None) -> dict[str, str]:
    token = mint(SECRET, tenant=tenant, role=role, subject=subject or f"{tenant}-{role.value}",
                 org=None, ttl_s=600)  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def api_with_gateway(
    mqtt_url: str, database_url: str, **locks: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, GatewayService]]:
    settings = settings_for(mqtt_url, database_url, jwt_secret=SECRET, locks=LockSettings(**locks))
    async with gateway_with_api(settings) as (base, gw):
        await asyncio.wait_for(gw.locks.commands.connected.wait(), 10)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            yield http, gw


class LockFirmware:
    """The simulator's door lock on the real broker: a persistent MQTT session that obeys
    commands with :class:`DoorLockSim` (which checks ``expires_at`` on its own clock) and
    publishes what the lock says (replies, lock events)."""

    def __init__(self, port: int, device_id: str = LOCK) -> None:
        (spec,) = parse_scenario(SCENARIO).device_specs()
        assert spec.device_id == device_id
        self.sim = DoorLockSim(spec, seed=1, clock=SimClock(real_start=datetime.now(UTC)))
        self.port = port
        self.device_id = device_id
        self.commands: list[dict[str, Any]] = []
        self.published: list[dict[str, Any]] = []

    @contextlib.asynccontextmanager
    async def online(self) -> AsyncIterator[None]:
        async with aiomqtt.Client(
            "127.0.0.1", self.port, identifier=f"fw-{self.device_id}", clean_session=False
        ) as client:
            await client.subscribe(device_topic(self.device_id, Channel.COMMANDS), qos=1)
            task = asyncio.create_task(self._obey(client))
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await task

    async def _obey(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            self.commands.append(orjson.loads(message.payload))
            for out in self.sim.handle_command_payload(message.payload, datetime.now(UTC)):
                if isinstance(out, Outgoing):
                    topic = device_topic(self.device_id, out.channel)
                    await client.publish(topic, out.payload, qos=1)
                    self.published.append(orjson.loads(out.payload))


async def add_staff(
    http: httpx.AsyncClient, tenant: str, subject: str, key_id: str, teams: list[str] | None = None
) -> str:
    admin = auth(tenant, Role.TENANT_ADMIN)
    r = await http.post("/api/v1/staff", headers=admin,
                        json={"subject": subject, "display_name": subject.title(),
                              "teams": teams or []})  # fmt: skip
    assert r.status_code == 201, r.text
    staff_id: str = r.json()["id"]
    r = await http.post(f"/api/v1/staff/{staff_id}/keys", headers=admin, json={"key_id": key_id})
    assert r.status_code == 201, r.text
    return staff_id


async def plan_visit(
    http: httpx.AsyncClient, tenant: str, person: UUID, staff_id: str, start: datetime,
    minutes: int = 30,
) -> str:  # fmt: skip
    r = await http.post(
        f"/api/v1/persons/{person}/visits", headers=auth(tenant, Role.TENANT_ADMIN),
        json={"staff_id": staff_id, "starts_at": start.isoformat(),
              "ends_at": (start + timedelta(minutes=minutes)).isoformat()},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    visit_id: str = r.json()["id"]
    return visit_id


async def known(gw: GatewayService, key_id: str, person: UUID, visits: int = 1) -> None:
    """Wait until the gateway's copy (NOTIFY wg_locks) has the key and the visits."""

    async def ready() -> bool:
        cache = gw.locks.cache
        return cache.key(key_id) is not None and len(cache.visits(person)) >= visits

    await wait_for(ready, 10, f"key {key_id} and visits in the gateway's memory")


async def access_rows(url: str, person: UUID) -> list[tuple[str, str, str, str]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "select actor, outcome, reason, request from access_log"
            " where person_id = %s and categories = '{home_entry}' order by id",
            (person,),
        )
        return [tuple(r) for r in await cur.fetchall()]  # type: ignore[misc]


def unlock_body(key_id: str, reason: str = "planned visit") -> dict[str, str]:
    return {"key_id": key_id, "reason": reason}


async def test_unlock_during_a_planned_visit_is_done_and_logged(mosquitto, database_url) -> None:
    s = await seed(database_url, devices={LOCK: "t-lock"})
    person = s.persons[LOCK]
    fw = LockFirmware(mosquitto.port)
    async with api_with_gateway(mosquitto.url, database_url) as (http, gw), fw.online():
        anna = await add_staff(http, s.tenant, "anna", "key-anna")
        visit = await plan_visit(http, s.tenant, person, anna, datetime.now(UTC) - timedelta(
            minutes=5))  # fmt: skip
        await known(gw, "key-anna", person)

        r = await http.post(f"/api/v1/devices/{LOCK}/unlock", headers=auth(s.tenant),
                            json=unlock_body("key-anna"))  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["outcome"], body["reason"], body["visit_id"]) == ("done", "visit", visit)
        assert fw.sim.locked is False
        (command,) = fw.commands
        assert command["id"] == body["command_id"] and command["args"] == {"key_id": "key-anna"}
        expires = datetime.fromisoformat(command["expires_at"])
        assert timedelta(0) < expires - datetime.fromisoformat(command["ts"]) <= timedelta(
            seconds=30)  # fmt: skip

        # decision, result, and the lock's own report of the remote unlock (judged again)
        await wait_count(database_url, "select count(*) from access_log", 3)
        rows = await access_rows(database_url, person)
        op = f"{s.tenant}-operator"
        # the decision is first; the result and the lock's report race each other
        assert rows[0][:3] == (op, "allowed", f"visit {visit}")
        assert sorted((a, o, r_) for a, o, r_, _ in rows[1:]) == [
            ("anna", "allowed", f"visit {visit}"),
            (op, "allowed", "result done: unlocked"),
        ]
        assert body["command_id"] in rows[0][3]
        assert any("reported unlocked (remote)" in row[3] for row in rows)
        kinds = {a.kind.value for a in gw.alarms.book.open_alarms(s.tenant)}
        assert "unauthorised_unlock" not in kinds

        # shown afterwards: the municipality's auditor reads it through the API
        r = await http.get("/api/v1/access-log", params={"person_id": str(person)},
                           headers=auth(s.tenant, Role.AUDITOR))  # fmt: skip
        assert r.status_code == 200
        assert [e["reason"] for e in r.json()][::-1] == [x[2] for x in rows]


async def test_refusals_are_403_logged_and_never_sent(mosquitto, database_url) -> None:
    s = await seed(database_url, devices={LOCK: "t-lock"})
    b = await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-gps": "t-gps"})
    person = s.persons[LOCK]
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        await repo.register_device(conn, s.tenant, "gps-9", "t-gps")  # the same person's alarm
        await repo.assign_device(conn, "gps-9", person, datetime.now(UTC) - timedelta(days=1))
    fw = LockFirmware(mosquitto.port)
    async with api_with_gateway(mosquitto.url, database_url) as (http, gw), fw.online(), \
            operator(mosquitto.url, s.tenant) as op:  # fmt: skip
        anna = await add_staff(http, s.tenant, "anna", "key-anna")
        await add_staff(http, s.tenant, "bo", "key-bo")
        await add_staff(http, b.tenant, "kerstin", "key-b")
        # Anna's visit was this morning, long over
        await plan_visit(http, s.tenant, person, anna, datetime.now(UTC) - timedelta(hours=3))
        await known(gw, "key-anna", person)
        await wait_for(_has_keys(gw, "key-bo", "key-b"), 10, "keys in memory")
        url = f"/api/v1/devices/{LOCK}/unlock"

        cases = [("key-anna", "outside_window"), ("key-bo", "no_visit"),
                 ("key-b", "key_unknown"), ("key-nobody", "key_unknown")]  # fmt: skip
        for key_id, reason in cases:
            r = await http.post(url, headers=auth(s.tenant), json=unlock_body(key_id))
            assert r.status_code == 403, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["reason"] == reason
        r = await http.post(url, headers=auth(b.tenant), json=unlock_body("key-b"))
        assert r.status_code == 404  # another municipality's lock: not found
        r = await http.post(url, headers=auth(s.tenant, Role.AUDITOR), json=unlock_body("key-bo"))
        assert r.status_code == 403  # role may not open doors
        r = await http.post(url, headers=auth(s.tenant), json={"reason": "x"})
        assert r.status_code == 422

        # an open button alarm from that home lets Bo in, by staff subject
        press = payload("alarm", "p1", kind="button")
        await publish(mosquitto.url, [("devices/gps-9/events", press)])
        await op.wait(lambda m: m["kind"] == "button" and m["event"] == "raised", "button")
        r = await http.post(url, headers=auth(s.tenant),
                            json={"staff_subject": "bo", "reason": "button alarm"})  # fmt: skip
        assert r.status_code == 200, r.text
        assert (r.json()["outcome"], r.json()["reason"]) == ("done", "alarm_open")
        # only the allowed command ever reached the lock
        assert [c["id"] for c in fw.commands] == [r.json()["command_id"]]

        # a revoked key is refused at once (the gateway's copy follows NOTIFY)
        r = await http.post("/api/v1/staff-keys/key-bo/revoke",
                            headers=auth(s.tenant, Role.TENANT_ADMIN))  # fmt: skip
        assert r.status_code == 204
        await wait_for(_revoked(gw, "key-bo"), 10, "revocation in memory")
        r = await http.post(url, headers=auth(s.tenant), json=unlock_body("key-bo"))
        assert (r.status_code, r.json()["reason"]) == (403, "key_revoked")

        rows = await access_rows(database_url, person)
        decisions = [(o, reason.split(" ")[0]) for _, o, reason, _ in rows
                     if not reason.startswith("result")]  # fmt: skip
        assert decisions[:4] == [("denied", r_) for _, r_ in cases]
        assert ("allowed", "alarm_open") in decisions and decisions[-1] == ("denied", "key_revoked")


def _has_keys(gw: GatewayService, *keys: str) -> Any:
    async def check() -> bool:
        return all(gw.locks.cache.key(k) is not None for k in keys)

    return check


def _revoked(gw: GatewayService, key_id: str) -> Any:
    async def check() -> bool:
        key = gw.locks.cache.key(key_id)
        return key is not None and key.revoked_at is not None

    return check


async def test_command_expired_before_the_lock_acts_is_not_executed(
    mosquitto, database_url
) -> None:
    s = await seed(database_url, devices={LOCK: "t-lock", LOCK_2: "t-lock"})
    person, person_2 = s.persons[LOCK], s.persons[LOCK_2]
    fw = LockFirmware(mosquitto.port)
    async with fw.online():
        pass  # the lock's persistent session exists; now the lock is offline
    gateway = api_with_gateway(mosquitto.url, database_url, command_ttl_s=1, reply_grace_s=15)
    observing = aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="observer")
    async with gateway as (http, gw), observing as observer:
        await observer.subscribe("devices/+/commands", qos=1)
        anna = await add_staff(http, s.tenant, "anna", "key-anna")
        await plan_visit(http, s.tenant, person, anna, datetime.now(UTC) - timedelta(minutes=5))
        await plan_visit(http, s.tenant, person_2, anna, datetime.now(UTC) - timedelta(minutes=5))
        await known(gw, "key-anna", person)
        await known(gw, "key-anna", person_2)

        url = f"/api/v1/devices/{LOCK}/unlock"
        call = asyncio.create_task(
            http.post(url, headers=auth(s.tenant), json=unlock_body("key-anna"))
        )
        sent = await asyncio.wait_for(anext(aiter(observer.messages)), 10)
        assert isinstance(sent.payload, bytes)
        expires_at = datetime.fromisoformat(orjson.loads(sent.payload)["expires_at"])

        async def expired() -> bool:
            return datetime.now(UTC) > expires_at

        await wait_for(expired, 5, "the command's expiry to pass")
        async with fw.online():  # the lock comes back; the broker hands it the command
            r = await asyncio.wait_for(call, 20)
        assert r.status_code == 504, r.text
        assert (r.json()["outcome"], r.json()["device_detail"]) == ("expired", "expired")
        assert len(fw.commands) == 1 and fw.sim.locked is True
        assert not [m for m in fw.published if m["type"] == "lock"]  # never unlocked

        # a lock that never answers: timed out, reported as such
        t0 = asyncio.get_running_loop().time()
        gw.locks.reply_grace = timedelta(seconds=0.5)
        r = await http.post(f"/api/v1/devices/{LOCK_2}/unlock", headers=auth(s.tenant),
                            json=unlock_body("key-anna"))  # fmt: skip
        assert (r.status_code, r.json()["outcome"]) == (504, "timed_out")
        assert asyncio.get_running_loop().time() - t0 < 5

        reasons = [x[2] for x in await access_rows(database_url, person)]
        assert reasons[-1] == "result expired: expired"
        reasons_2 = [x[2] for x in await access_rows(database_url, person_2)]
        assert reasons_2[-1] == "result timed_out"


async def test_reported_unlock_outside_a_visit_raises_an_alarm(mosquitto, database_url) -> None:
    s = await seed(database_url, devices={LOCK: "t-lock"})
    person = s.persons[LOCK]
    async with api_with_gateway(mosquitto.url, database_url) as (http, gw), \
            operator(mosquitto.url, s.tenant) as op:  # fmt: skip
        await add_staff(http, s.tenant, "anna", "key-anna")
        bo = await add_staff(http, s.tenant, "bo", "key-bo")
        visit = await plan_visit(http, s.tenant, person, bo, datetime.now(UTC) - timedelta(
            minutes=10))  # fmt: skip
        await known(gw, "key-bo", person)
        await wait_for(_has_keys(gw, "key-anna"), 10, "key-anna in memory")
        events = f"devices/{LOCK}/events"
        lock = "lock"
        await publish(mosquitto.url, [
            (events, payload(lock, "u1", action="unlocked", method="app", key_id="key-bo")),
            (events, payload(lock, "l1", action="locked", method="app", key_id="key-bo")),
            (events, payload(lock, "u2", action="unlocked", method="manual")),
            (events, payload(lock, "u3", action="unlocked", method="app", key_id="key-anna")),
            (events, payload(lock, "u3", action="unlocked", method="app", key_id="key-anna")),
        ])  # fmt: skip
        alarm = await op.wait(
            lambda m: m["kind"] == "unauthorised_unlock" and m["event"] == "raised",
            "unauthorised_unlock alarm",
        )
        assert alarm["severity"] == "high"
        assert alarm["detail"] == {"reason": "no_visit", "key_id": "key-anna", "method": "app"}
        assert alarm["person_id"] == str(person) and alarm["recipients"]

        await wait_count(database_url, "select count(*) from access_log", 3)
        rows = await access_rows(database_url, person)
        assert [(a, o, r_) for a, o, r_, _ in rows] == [
            ("bo", "allowed", f"visit {visit}"),
            ("lock-reported", "allowed", "manual"),
            ("anna", "denied", "no_visit"),
        ]
        # Bo's unlock inside the visit and the redelivered u3 raised nothing more
        unauthorised = op.of("unauthorised_unlock")
        assert [m["event"] for m in unauthorised] == ["raised"]
        assert [a.occurrences for a in gw.alarms.book.open_alarms(s.tenant)
                if a.kind.value == "unauthorised_unlock"] == [1]  # fmt: skip


async def test_remote_unlock_with_two_workers(mosquitto, database_url) -> None:
    """The lock's replies reach the worker that sent the command, however many workers
    share the storage subscription (the old build: run one worker if remote unlock is
    used, since Mosquitto deals the reply to any of them)."""
    from tests.integration.harness import running_gateway

    s = await seed(database_url, devices={LOCK: "t-lock"})
    person = s.persons[LOCK]
    fw = LockFirmware(mosquitto.port)
    second = settings_for(mosquitto.url, database_url, jwt_secret=SECRET,
                          mqtt_client_id="wg-test-gateway-2")  # fmt: skip
    async with api_with_gateway(mosquitto.url, database_url) as (http, gw), \
            running_gateway(second) as standby, fw.online():  # fmt: skip
        assert gw.alarms.active and not standby.alarms.active
        anna = await add_staff(http, s.tenant, "anna", "key-anna")
        await plan_visit(http, s.tenant, person, anna, datetime.now(UTC) - timedelta(minutes=5))
        await known(gw, "key-anna", person)
        for n in range(1, 5):  # round-robin would have dealt half the replies elsewhere
            r = await http.post(f"/api/v1/devices/{LOCK}/unlock", headers=auth(s.tenant),
                                json=unlock_body("key-anna"))  # fmt: skip
            assert (r.status_code, r.json()["outcome"]) == (200, "done"), r.text
            assert len(fw.commands) == n
        kinds = {a.kind.value for a in gw.alarms.book.open_alarms(s.tenant)}
        assert "unauthorised_unlock" not in kinds
