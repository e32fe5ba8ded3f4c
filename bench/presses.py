"""Shared by ``bench.outage``, ``bench.flood`` and ``bench.soak``: an operator's client
on ``tenants/bench/alarms``, button presses from new devices at a pace, and bounded waits
for what the workers store.

Each press comes from a device that never pressed before, so every press is a new alarm
(one ``raised`` event); a second ``raised`` for one device, any other ``raised`` (a
heartbeating device reported silent, an alarm for a device that never pressed) and any
event id received twice are counted, not hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import orjson
import psycopg

from bench.failover import _body
from bench.ingest import _percentile, _stored
from bench.mosquitto import free_port
from gateway.adapters.mqtt.connection import NODELAY
from gateway.adapters.postgres import registry_repo as repo

ALARMS_TOPIC = "tenants/bench/alarms"

#: The background load is 100 simulated devices at 10 msgs/s or more each, which stand for
#: a fleet of thousands: the per-device allowance (10 msgs/s, burst 1,000; counted when a
#: worker *receives*, so a backlog delivered after an outage or a restart counts as a
#: burst) would refuse most of it. Lifted for every device, as bench.ingest raises it.
FLEET_LIMITS = {"WG_LIMITS__DEVICE_MSGS_PER_S": "1000000"}


@dataclass
class Operator:
    """What the operator's client received."""

    arrivals: dict[str, float] = field(default_factory=dict)  # device -> first button raised
    button_raised: dict[str, set[str]] = field(default_factory=dict)  # device -> event ids
    other_raised: Counter[tuple[str, str]] = field(default_factory=Counter)  # (device, kind)
    raised_ids: set[str] = field(default_factory=set)
    event_ids: Counter[str] = field(default_factory=Counter)

    def take(self, payload: bytes, at: float) -> None:
        event = orjson.loads(payload)
        self.event_ids[event["event_id"]] += 1
        if event["event"] != "raised":
            return
        self.raised_ids.add(event["event_id"])
        device = event["device_id"]
        if event["kind"] == "button":
            self.arrivals.setdefault(device, at)
            self.button_raised.setdefault(device, set()).add(event["event_id"])
        else:
            self.other_raised[(device, event["kind"])] += 1

    async def follow(self, client: aiomqtt.Client) -> None:
        """Until cancelled: every alarm event the client receives."""
        async for message in client.messages:
            at = time.time()
            assert isinstance(message.payload, bytes)
            self.take(message.payload, at)

    async def delivered(self, devices: Iterable[str], within_s: float) -> bool:
        """Whether each device's press arrived within ``within_s`` from now (polled)."""
        wanted = set(devices)
        deadline = time.monotonic() + within_s
        while not wanted <= self.arrivals.keys():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)  # polling
        return True

    def latencies(self, published: dict[str, float]) -> list[float]:
        """Publish -> ``raised`` in seconds, for each press that arrived."""
        return [self.arrivals[d] - at for d, at in published.items() if d in self.arrivals]

    def duplicate_event_ids(self) -> int:
        return sum(1 for n in self.event_ids.values() if n > 1)

    def raised_twice(self) -> int:
        """Devices with more than one button alarm raised (one press each)."""
        return sum(1 for ids in self.button_raised.values() if len(ids) > 1)


async def press(
    client: aiomqtt.Client,
    devices: list[str],
    every_s: float,
    published: dict[str, float],
) -> None:
    """One press every ``every_s``, each from its own device; ``published`` gets the time
    of each as it is sent (the caller may read it while this runs)."""
    start = time.monotonic()
    for i, device_id in enumerate(devices):
        await asyncio.sleep(max(0.0, start + i * every_s - time.monotonic()))  # pacing
        published[device_id] = time.time()
        await client.publish(f"devices/{device_id}/events",
                             _body("alarm", "press", kind="button"), qos=1)  # fmt: skip


def latency_ms(latencies_s: list[float]) -> dict[str, float | None]:
    if not latencies_s:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(_percentile(latencies_s, 0.50) * 1000, 2),
        "p99": round(_percentile(latencies_s, 0.99) * 1000, 2),
        "max": round(max(latencies_s) * 1000, 2),
    }


def until(condition: Callable[[], bool], timeout: float, every_s: float) -> float | None:
    """Seconds until ``condition`` holds, checked every ``every_s`` (a query each time, so
    not every 10 ms as bench.mosquitto.wait_until); None if not within ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            return None
        time.sleep(every_s)  # polling
    return time.monotonic() - start


def stored(database_url: str) -> int:
    """Rows of the background load stored (bench.ingest._stored)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return _stored(conn)


def presses_stored(database_url: str, prefix: str = "press-") -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("select count(distinct device_id) from device_alarms"
                           " where device_id like %s", (prefix + "%",)).fetchone()  # fmt: skip
        return int(row[0]) if row else 0


def alarm_events_check(database_url: str, operator: Operator, timeout: float) -> dict[str, Any]:
    """Waits (bounded) until every alarm event the operator received is in
    ``alarm_events``, then: each there once (its id is the event id), as many ``raised``
    rows as ``raised`` events received, and no (alarm_id, seq) twice."""
    received = list(operator.event_ids)

    def missing() -> int:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute("select count(*) from alarm_events where id::text = any(%s)",
                               (received,)).fetchone()  # fmt: skip
            return len(received) - (int(row[0]) if row else 0)

    waited = until(lambda: missing() == 0, timeout, 0.25)
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "select (select count(*) from alarm_events where type = 'raised'),"
            " (select count(*) from (select 1 from alarm_events group by alarm_id, seq"
            "  having count(*) > 1) twice),"
            " (select count(*) - count(distinct id) from alarm_events)"
        ).fetchone()
    assert row is not None
    raised_rows, seq_twice, id_twice = (int(x) for x in row)
    not_stored = missing()
    return {
        "received": len(received),
        "not_stored": not_stored,
        "raised_received": len(operator.raised_ids),
        "raised_stored": raised_rows,
        "stored_once": waited is not None
        and not_stored == 0
        and raised_rows == len(operator.raised_ids)
        and seq_twice == 0
        and id_twice == 0,
    }


@contextlib.asynccontextmanager
async def watching(port: int) -> AsyncIterator[tuple[Operator, aiomqtt.Client]]:
    """An operator client following ``tenants/bench/alarms`` into an :class:`Operator`,
    and one client the pressing devices publish through."""
    op = Operator()
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-operator",
                              socket_options=NODELAY) as operator, \
            aiomqtt.Client("127.0.0.1", port, identifier="bench-devices",
                           socket_options=NODELAY) as devices:  # fmt: skip
        await operator.subscribe(ALARMS_TOPIC, qos=1)
        follower = asyncio.create_task(op.follow(operator))
        try:
            yield op, devices
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


@contextlib.contextmanager
def pressing_gateway(
    st: Any, load_devices: int, presses: int
) -> Iterator[tuple[list[str], str]]:
    """Seed ``load_devices`` background devices and ``presses`` devices that press once
    each, start one ``welfare-gateway run`` (per-device limits lifted), and yield the
    press devices and the gateway's /metrics URL; the gateway is stopped afterwards."""
    st.seed("bench-", load_devices,
            repo.DeviceModel("bench-gps", "Bench", "GPS", "gps_alarm", 3600))  # fmt: skip
    pressing = st.seed("press-", max(1, presses),
                       repo.DeviceModel("bench-btn", "Bench", "Button", "gps_alarm", 3600))
    api_port = free_port()  # `run` serves /metrics on the API's port
    gw = st.start_gateway(WG_API_PORT=str(api_port), **FLEET_LIMITS)
    try:
        yield pressing, f"http://127.0.0.1:{api_port}/metrics"
    finally:
        gw.terminate()
        gw.wait(60)

