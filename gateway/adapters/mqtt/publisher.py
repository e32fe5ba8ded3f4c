"""Publishes alarm state changes on ``tenants/{tenant_id}/alarms`` (QoS 1).

Its own MQTT connection, so a backpressured ingest session never delays an alarm.
``submit`` never blocks the alarm path; a bounded queue holds messages while the broker
is away and they are sent, in order, when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

import aiomqtt

from gateway.adapters.mqtt import internals
from gateway.adapters.mqtt.connection import BrokerAddress
from gateway.support.backoff import Backoff

log = logging.getLogger(__name__)


class AlarmPublisher:
    def __init__(self, url: str, client_id: str, max_queue: int = 100_000) -> None:
        self._address = BrokerAddress.parse(url)
        self._client_id = client_id
        self._queue: deque[tuple[str, bytes, bool]] = deque()
        self._max_queue = max_queue
        self._wake = asyncio.Event()
        self.published = 0
        self.dropped = 0
        self.connected = asyncio.Event()
        self._submitted = 0  # messages submitted (sent, dropped or queued)
        self._settled = 0  # of those, sent or dropped
        self._waiting: deque[tuple[int, Callable[[], None]]] = deque()

    def submit(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self._submitted += 1
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            self._settle()
            log.error("alarm publish queue full; message not sent on MQTT", extra={"topic": topic})
            return
        self._queue.append((topic, payload, retain))
        self._wake.set()

    def after_sent(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once everything submitted so far has been taken by the broker
        (or dropped): the engine acknowledges a device's message only then."""
        if self._settled >= self._submitted:
            callback()
        else:
            self._waiting.append((self._submitted, callback))

    def _settle(self) -> None:
        self._settled += 1
        while self._waiting and self._waiting[0][0] <= self._settled:
            self._waiting.popleft()[1]()

    def pending(self) -> int:
        return len(self._queue)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(0.1, 5.0)
        while not (stop.is_set() and not self._queue):
            try:
                async with internals.Client(
                    **self._address.client_kwargs(), identifier=self._client_id, timeout=10
                ) as client:
                    internals.disable_paho_logger(client)
                    self.connected.set()
                    backoff.reset()
                    await self._send_loop(client, stop)
                    return
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                log.warning(
                    "alarm publisher disconnected; holding messages",
                    extra={"error": str(exc)[:200], "pending": len(self._queue)},
                )
                if stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff.next())

    async def _send_loop(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        while True:
            while self._queue:
                topic, payload, retain = self._queue[0]
                await client.publish(topic, payload, qos=1, retain=retain)
                self._queue.popleft()  # only once the broker has it
                self.published += 1
                self._settle()
            if stop.is_set():
                return
            self._wake.clear()
            if self._queue:
                continue
            stop_wait = asyncio.ensure_future(stop.wait())
            wake_wait = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({stop_wait, wake_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            wake_wait.cancel()
