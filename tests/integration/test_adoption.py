"""A departed worker's storage session, adopted by the engine's worker (MqttConsumer with
``adopt``): what it holds is delivered to this worker's storage path, and the session is
ended only once drained.

Review finding (issue #22): the adopting connection asked for a session expiry of 0, so
the broker discarded the departed session whenever that connection ended: drained or not
(the database down, ADOPT_MAX_S passed, the worker stopped, the connection dropped).
What it still held was lost. Also: a reconnect that finds the broker kept no session
says so (it was silent)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from gateway.adapters.mqtt.connection import BrokerAddress
from gateway.adapters.mqtt.session import SessionOptions, SubscriberSession
from gateway.support.metrics import IngestMetrics
from gateway.worker.adoption import AdoptionTimes, SessionAdoption
from gateway.worker.consumer import ConsumerConfig, Inbound, MqttConsumer, acknowledge
from tests.integration.harness import publish, wait_for
from tests.services import Mosquitto

DEPARTED = "wg-worker-departed"
GROUP = "wg-storage"


def _holds(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return condition()

    return check


def _config(url: str) -> ConsumerConfig:
    return ConsumerConfig(
        url=url, client_id=DEPARTED, shared_group=GROUP, protocol=5,
        session_expiry_s=3600, receive_maximum=100, keepalive_s=30, adopt=True,
        name="adopted storage",
    )  # fmt: skip


async def _departed_worker_holding(url: str, count: int) -> None:
    """The departed worker's storage session, with ``count`` messages queued for it."""
    options = SessionOptions(DEPARTED, 5, 30, session_expiry_s=3600, receive_maximum=100)
    session = await SubscriberSession.open(BrokerAddress.parse(url), options, lambda *_: None)
    await session.subscribe([f"$share/{GROUP}/devices/+/telemetry"])
    session.abort()  # killed: its session stays at the broker
    await publish(url, [(f"devices/d{i}/telemetry", b"%d" % i) for i in range(count)])


async def _adopt(
    url: str, handler: Callable[[Inbound], Awaitable[None]], until: Callable[[], bool]
) -> MqttConsumer:
    """Run an adopting consumer until ``until`` holds; then stop it, drained or not."""
    consumer = MqttConsumer(_config(url), handler, IngestMetrics())
    stop = asyncio.Event()

    async def nothing() -> None:
        return None

    running = asyncio.create_task(consumer.run(stop))
    try:
        await wait_for(_holds(until), 10, "the adoption to get that far")
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, 10)
    return consumer


async def test_an_adoption_stopped_before_the_session_is_drained_loses_nothing(
    mosquitto: Mosquitto,
) -> None:
    await _departed_worker_holding(mosquitto.url, 10)

    # the first adopter takes the messages but cannot store them (its database is down):
    # nothing is acknowledged when it stops
    held: list[bytes] = []

    async def cannot_store(msg: Inbound) -> None:
        held.append(msg.payload)

    await _adopt(mosquitto.url, cannot_store, lambda: len(held) == 10)

    # the next adoption still finds all ten, stores them, and ends the session drained
    stored: list[bytes] = []

    async def store(msg: Inbound) -> None:
        stored.append(msg.payload)
        acknowledge([msg.ack])

    adopter = await _adopt(mosquitto.url, store, lambda: len(stored) == 10)
    assert sorted(stored) == sorted(b"%d" % i for i in range(10))
    assert adopter.unacked == 0


async def test_a_drained_adoption_ends_the_departed_session(mosquitto: Mosquitto) -> None:
    await _departed_worker_holding(mosquitto.url, 3)
    stored: list[bytes] = []

    async def store(msg: Inbound) -> None:
        stored.append(msg.payload)
        acknowledge([msg.ack])

    consumer = MqttConsumer(_config(mosquitto.url), store, IngestMetrics())
    stop = asyncio.Event()

    async def nothing() -> None:
        return None

    running = asyncio.create_task(consumer.run(stop))
    await wait_for(_holds(lambda: len(stored) == 3), 10, "the three held")
    consumer.end_session_on_stop()  # drained: the broker may discard the session
    stop.set()
    await asyncio.wait_for(running, 10)
    options = SessionOptions(DEPARTED, 5, 30, session_expiry_s=3600)
    again = await SubscriberSession.open(
        BrokerAddress.parse(mosquitto.url), options, lambda *_: None
    )
    try:
        assert not again.session_present
    finally:
        await again.close(session_expiry_s=0)


#: short attempts (an attempt not drained in 0.5 s ends), quick retries
FAST = AdoptionTimes(quiet_s=0.2, attempt_s=0.5, retry_s=0.05, retry_max_s=0.1, sample_s=0.02)


def _adoption(url: str, store: Callable[[Inbound], Awaitable[None]]) -> SessionAdoption:
    storage = _config(url)
    return SessionAdoption(
        storage, lambda config, handler: MqttConsumer(config, handler, IngestMetrics()),
        store, FAST,
    )  # fmt: skip


async def _session_present(url: str) -> bool:
    options = SessionOptions(DEPARTED, 5, 30, session_expiry_s=3600)
    again = await SubscriberSession.open(BrokerAddress.parse(url), options, lambda *_: None)
    present = again.session_present
    await again.close(session_expiry_s=0)
    return present


async def test_an_adoption_is_tried_again_until_drained_and_then_ends_the_session(
    mosquitto: Mosquitto,
) -> None:
    """The database down through the first attempts: each ends with nothing acknowledged
    and the session kept; once the database is back, an attempt stores all and the
    session is ended."""
    await _departed_worker_holding(mosquitto.url, 5)
    database_up = asyncio.Event()
    attempts_without_database: list[bytes] = []
    stored: list[bytes] = []

    async def store(msg: Inbound) -> None:
        if not database_up.is_set():
            attempts_without_database.append(msg.payload)
            if len(attempts_without_database) == 10:  # two attempts saw all five
                database_up.set()
            return
        stored.append(msg.payload)
        acknowledge([msg.ack])

    async with asyncio.timeout(20):
        assert await _adoption(mosquitto.url, store).drain(DEPARTED, away=lambda: True)
    assert sorted(stored) == sorted(b"%d" % i for i in range(5))
    assert not await _session_present(mosquitto.url)


async def test_an_adoption_stops_when_the_worker_is_back(mosquitto: Mosquitto) -> None:
    await _departed_worker_holding(mosquitto.url, 2)

    async def cannot_store(msg: Inbound) -> None:
        return None

    async with asyncio.timeout(20):
        assert not await _adoption(mosquitto.url, cannot_store).drain(
            DEPARTED, away=lambda: False
        )
    assert await _session_present(mosquitto.url)  # its own, with what it holds


async def test_a_reconnect_to_a_broker_that_forgot_the_session_says_so(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker restarted without persistence (or a session expired) has lost what it
    held for this client meanwhile: the worker cannot get it back, but says so."""
    storage = replace(_config(mosquitto.url), client_id="wg-worker-a", adopt=False)
    consumer = MqttConsumer(storage, _nothing_handled, IngestMetrics())
    stop = asyncio.Event()

    async def nothing() -> None:
        return None

    running = asyncio.create_task(consumer.run(stop))
    try:
        await wait_for(_holds(consumer.connected.is_set), 10, "the first connection")
        assert not _forgot(caplog)  # a new client id: no session expected
        await asyncio.to_thread(mosquitto.restart)  # same port; the broker forgot everything
        await wait_for(_holds(lambda: _forgot(caplog)), 20, "the reconnect to say so")
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)


async def _nothing_handled(msg: Inbound) -> None:
    return None


def _forgot(caplog: pytest.LogCaptureFixture) -> bool:
    return any("the broker kept no session" in r.getMessage() for r in caplog.records)
