"""A worker killed mid-stream (SIGKILL, never restarted): the safety path goes on.

Two ``welfare-gateway worker`` processes and an API (as ``welfare-gateway api`` builds
it) share one real Mosquitto and PostgreSQL. Telemetry and heartbeats flow; three alarms
are open when the older worker (the one running the alarm engine) is killed. Then:
(a) every new button press is delivered within 5 s of its publication; (b) no alarm event
is delivered twice; (c) every open alarm stays on the board, is acknowledged through the
API, and an escalation due after the kill is still sent; (d) no heartbeating device is
reported silent; (e) every message is stored, including those the broker had dealt to
the dead worker's storage session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from api.auth import Role, mint
from gateway.adapters.postgres import registry_repo as repo
from tests.conftest import API_PASSWORD, WORKER_PASSWORD
from tests.integration.harness import (
    api_replica,
    operator,
    payload,
    publish,
    scalar,
    seed,
    wait_count,
    wait_for,
)
from tests.services import free_port

SECRET = "failover-test-secret-failover-test"
FAST = repo.DeviceModel("f-fast", "Failover", "Fast", "gps_alarm", 5)  # silent after 2.5 s
SLOW = repo.DeviceModel("f-gps", "Failover", "GPS", "gps_alarm", 3600)
SCALE = repo.DeviceModel("f-scale", "Failover", "Scale", "scale", 3600)
LOCK = repo.DeviceModel("f-lock", "Failover", "Lock", "door_lock", 3600)
RULES = {
    "WG_ALARMS__DOOR_UNLOCKED_AFTER_S": "5",
    "WG_ALARMS__SILENCE_FACTOR": "0.3",
    "WG_ALARMS__SILENCE_GRACE_S": "1.0",
    "WG_ALARMS__TICK_MS": "50",
    "WG_ALARMS__ESCALATION_S": '{"critical": [6, 600]}',
}


def worker_env(mqtt_url: str, database_url: str, worker: str, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WG_")}
    return env | RULES | {
        "WG_DATABASE_URL": database_url,
        "WG_MQTT_URL": mqtt_url,
        "WG_MQTT_CLIENT_ID": worker,
        "WG_DATA_DIR": str(data / worker),
        "WG_METRICS_PORT": str(free_port()),
        "WG_API_DB_PASSWORD": API_PASSWORD,
        "WG_WORKER_DB_PASSWORD": WORKER_PASSWORD,
        "WG_MODE": "development",  # test passwords on private loopback services
        "WG_BATCH_MAX_DELAY_MS": "10",
        "WG_MQTT_KEEPALIVE_S": "5",
    }


@contextlib.contextmanager
def worker(mqtt_url: str, database_url: str, name: str, data: Path) -> Iterator[Any]:
    env = worker_env(mqtt_url, database_url, name, data)
    log = (data / f"{name}.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "worker"], env=env,
                            stdout=log, stderr=log)  # fmt: skip
    proc.metrics = f"http://127.0.0.1:{env['WG_METRICS_PORT']}/metrics"  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


async def gauge(proc: Any, name: str) -> float | None:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            text = (await http.get(proc.metrics)).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def auth(tenant: str) -> dict[str, str]:
    token = mint(SECRET, tenant=tenant, role=Role.OPERATOR, subject="op-1", org=None, ttl_s=600)
    return {"Authorization": f"Bearer {token}"}


async def test_killed_engine_worker_is_replaced_without_loss(
    mosquitto, database_url, tmp_path: Path
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        for model in (FAST, SLOW, SCALE, LOCK):
            await repo.ensure_device_model(conn, model)
    devices = {f"gps-{i}": SLOW.id for i in range(1, 7)} | {f"hb-{i}": FAST.id for i in range(1, 5)}
    devices |= {"scale-1": SCALE.id, "lock-1": LOCK.id}
    s = await seed(database_url, devices=devices)
    sent = 0
    with worker(mosquitto.url, database_url, "wg-a", tmp_path) as a:
        async def active(proc: Any) -> bool:
            return await gauge(proc, "wg_alarm_engine_active") == 1.0

        await wait_for(lambda: active(a), 60, "worker A running the alarm engine")
        with worker(mosquitto.url, database_url, "wg-b", tmp_path) as b:
            async def standing_by() -> bool:
                return await gauge(b, "wg_mqtt_connected") == 1.0

            await wait_for(standing_by, 60, "worker B taking its share")
            assert await gauge(b, "wg_alarm_engine_active") == 0.0
            async with api_replica(mosquitto.url, database_url, SECRET) as http, \
                    operator(mosquitto.url, s.tenant) as op:  # fmt: skip
                stop_beats = asyncio.Event()

                async def traffic() -> None:
                    """Heartbeats every 0.5 s (bound 2.5 s) and positions, throughout."""
                    nonlocal sent
                    n = 0
                    while not stop_beats.is_set():
                        batch = [(f"devices/hb-{d}/heartbeat", payload("heartbeat", f"h{d}-{n}"))
                                 for d in range(1, 5)]  # fmt: skip
                        batch += [(f"devices/gps-{d}/telemetry", payload(
                            "position", f"p{d}-{n}", lat=59.0, lon=17.0, accuracy_m=10))
                            for d in range(1, 7)]  # fmt: skip
                        await publish(mosquitto.url, batch, client_id="test-traffic")
                        sent += len(batch)
                        n += 1
                        with contextlib.suppress(TimeoutError):  # the devices' pace
                            await asyncio.wait_for(stop_beats.wait(), 0.5)

                beating = asyncio.create_task(traffic())
                await publish(mosquitto.url, [
                    (f"devices/gps-{d}/events", payload("alarm", f"before-{d}", kind="button"))
                    for d in (1, 2, 3)])  # fmt: skip
                # rule state the dead engine held: a weight two days ago, a door left open
                two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
                await publish(mosquitto.url, [
                    ("devices/scale-1/telemetry", payload("weight", "w1", two_days_ago, kg=80)),
                    ("devices/lock-1/events", payload("lock", "u1", action="unlocked",
                                                      key_id="k1", method="app")),
                ])  # fmt: skip
                sent += 5
                await wait_for(_async(lambda: len(op.of("button")) == 3), 15, "three alarms")
                await wait_count(database_url, "select count(*) from readings", 1)
                await wait_count(database_url, "select count(*) from lock_events", 1)
                before = {m["alarm_id"] for m in op.of("button")}
                os.kill(a.pid, signal.SIGKILL)  # never restarted
                a.wait()
                presses: dict[str, float] = {}
                for d in (4, 5, 6):
                    presses[f"gps-{d}"] = time.monotonic()
                    await publish(mosquitto.url, [(f"devices/gps-{d}/events",
                                                   payload("alarm", f"after-{d}", kind="button"))])
                    sent += 1
                await publish(mosquitto.url, [("devices/scale-1/telemetry",
                                               payload("weight", "w2", kg=82.1))])  # fmt: skip
                sent += 1

                # (a) each press delivered within 5 s of its publication
                for device in presses:
                    await wait_for(_async(lambda d=device: any(
                        m["device_id"] == d and m["event"] == "raised" for m in op.messages)),
                        10, f"the press of {device}")  # fmt: skip
                arrived = {m["device_id"]: op.arrival[m["event_id"]] for m in op.messages
                           if m["event"] == "raised"}  # fmt: skip
                gaps = {d: arrived[d] - at for d, at in presses.items()}
                assert max(gaps.values()) <= 5.0, gaps
                assert await active(b)

                # (c) the board has all six; one from before the kill is acknowledged
                r = await http.get("/api/v1/console/alarms", headers=auth(s.tenant))
                assert r.status_code == 200, r.text
                board = {x["alarm_id"] for x in r.json()["alarms"] if x["kind"] == "button"}
                assert before <= board and len(board) == 6
                first = sorted(before)[0]
                r = await http.post(f"/api/v1/alarms/{first}/acknowledge", headers=auth(s.tenant))
                assert (r.status_code, r.json()["state"]) == (200, "acknowledged"), r.text
                # ... and the other two from before the kill escalate (due 6 s after raised)
                await wait_for(_async(lambda: {m["alarm_id"] for m in op.messages
                                               if m["event"] == "escalated"} >= before - {first}),
                               15, "escalations after the kill")  # fmt: skip
                stop_beats.set()
                await beating

                # the new engine rebuilt the dead one's rule state from storage
                await op.wait(lambda m: m["kind"] == "weight_gain", "the weight gain")
                await op.wait(lambda m: m["kind"] == "door_unlocked", "the door left open")

                # (b) nothing delivered twice
                ids = [m["event_id"] for m in op.messages]
                assert len(ids) == len(set(ids))
                raised = sorted((m["device_id"], m["kind"]) for m in op.messages
                                if m["event"] == "raised")  # fmt: skip
                assert raised == sorted([(f"gps-{d}", "button") for d in range(1, 7)] + [
                    ("lock-1", "door_unlocked"), ("lock-1", "unauthorised_unlock"),
                    ("scale-1", "weight_gain")])  # fmt: skip
                # (d) no heartbeating device reported silent
                assert not op.of("device_silent")
                # (e) everything stored once, the dead worker's share included
                await wait_count(database_url, "select (select count(*) from device_health)"
                                 " + (select count(*) from positions)"
                                 " + (select count(*) from readings)"
                                 " + (select count(*) from lock_events)"
                                 " + (select count(*) from device_alarms)", sent, timeout=60)
                assert await scalar(database_url, "select count(*) from quarantine") == 0

                # A worker that comes back stands by and takes only its own share
                with worker(mosquitto.url, database_url, "wg-a", tmp_path) as again:
                    async def back() -> bool:
                        return await gauge(again, "wg_mqtt_connected") == 1.0

                    await wait_for(back, 60, "worker A back")
                    assert await gauge(again, "wg_alarm_engine_active") == 0.0
                    await publish(mosquitto.url, [("devices/gps-4/events", payload(
                        "alarm", "again-4", kind="button"))])  # fmt: skip
                    await op.wait(lambda m: m["event"] == "occurred", "the press, once")
                    await wait_count(database_url, "select count(*) from device_alarms", 7)
                    assert len([m for m in op.messages if m["event"] == "occurred"]) == 1
                    assert await active(b)


def _async(fn: Any) -> Any:
    async def check() -> bool:
        return bool(fn())

    return check
