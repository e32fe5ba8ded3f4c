"""The ingest MQTT session: persistent, QoS 1, shared subscription, ack after commit.

aiomqtt carries the session; paho's manual acknowledgement (reached through aiomqtt's
paho client) withholds each PUBACK until the caller says the message is committed. The
broker sends at most ``receive_maximum`` unacknowledged messages, so a stalled database
stops the flow at the broker, which keeps the rest queued for this session.

Acknowledgements carry the connection generation they were received on: after a
reconnect the broker redelivers whatever was not acknowledged, so acks for the old
connection are dropped (the redelivered copies are deduplicated and acked instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from firmware_contracts.topics import DEVICE_PUBLISHED
from gateway.metrics import IngestMetrics
from gateway.mqtt.connection import BrokerAddress

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AckToken:
    generation: int
    mid: int
    qos: int


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: datetime
    ack: AckToken


@dataclass(frozen=True)
class ConsumerConfig:
    url: str
    client_id: str
    shared_group: str | None
    protocol: int  # 4 = 3.1.1, 5 = v5
    session_expiry_s: int
    receive_maximum: int
    keepalive_s: int


def subscription_filters(shared_group: str | None) -> list[str]:
    filters = [f"devices/+/{channel.value}" for channel in sorted(DEVICE_PUBLISHED)]
    if shared_group:
        return [f"$share/{shared_group}/{f}" for f in filters]
    return filters


class MqttConsumer:
    def __init__(
        self,
        config: ConsumerConfig,
        handler: Callable[[Inbound], Awaitable[None]],
        metrics: IngestMetrics,
    ) -> None:
        self._config = config
        self._handler = handler
        self._metrics = metrics
        self._generation = 0
        self._paho: Any = None
        self.connected = asyncio.Event()

    def ack(self, tokens: Sequence[AckToken]) -> None:
        """Release PUBACKs for committed messages of the current connection."""
        paho = self._paho
        if paho is None:
            return
        generation = self._generation
        for token in tokens:
            if token.qos and token.generation == generation:
                paho.ack(token.mid, token.qos)

    def _client(self) -> aiomqtt.Client:
        cfg = self._config
        address = BrokerAddress.parse(cfg.url)
        kwargs = address.client_kwargs()
        if cfg.protocol == 5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = cfg.session_expiry_s
            props.ReceiveMaximum = cfg.receive_maximum
            client = aiomqtt.Client(
                **kwargs,
                identifier=cfg.client_id,
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=False,
                properties=props,
                keepalive=cfg.keepalive_s,
                max_inflight_messages=cfg.receive_maximum,
            )
        else:
            client = aiomqtt.Client(
                **kwargs,
                identifier=cfg.client_id,
                protocol=aiomqtt.ProtocolVersion.V311,
                clean_session=False,
                keepalive=cfg.keepalive_s,
            )
        client._client.manual_ack_set(True)
        return client

    async def run(self, stop: asyncio.Event, drain: Callable[[], Awaitable[None]]) -> None:
        """Consume until ``stop``; then call ``drain`` (flush + commit + ack) before
        disconnecting, so that a graceful stop acknowledges everything it committed."""
        backoff = 0.1
        drained = False
        while not stop.is_set():
            client = self._client()
            try:
                async with client:
                    self._generation += 1
                    self._paho = client._client
                    await self._subscribe(client)
                    self.connected.set()
                    self._metrics.mqtt_connected.set(1)
                    log.info(
                        "ingest session connected", extra={"client_id": self._config.client_id}
                    )
                    backoff = 0.1
                    await self._consume(client, stop)
                    await drain()
                    drained = True
            except aiomqtt.MqttError as exc:
                log.warning(
                    "ingest session lost; reconnecting",
                    extra={"error": str(exc)[:200], "retry_s": backoff},
                )
            finally:
                self._paho = None
                self.connected.clear()
                self._metrics.mqtt_connected.set(0)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 5.0)
        if not drained:
            await drain()

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        filters = subscription_filters(self._config.shared_group)
        if self._config.protocol == 5:
            await client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
        else:
            await client.subscribe([(f, 1) for f in filters])

    async def _consume(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        generation = self._generation
        stop_task = asyncio.ensure_future(stop.wait())
        messages = client.messages.__aiter__()
        try:
            while True:
                next_task = asyncio.ensure_future(messages.__anext__())
                done, _ = await asyncio.wait(
                    {next_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
                )
                if next_task not in done:
                    next_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await next_task
                    return
                message = next_task.result()
                await self._deliver(message, generation)
                # Drain what is already queued without a task per message.
                queue = client._queue
                while not queue.empty() and not stop.is_set():
                    await self._deliver(queue.get_nowait(), generation)
        finally:
            stop_task.cancel()

    async def _deliver(self, message: aiomqtt.Message, generation: int) -> None:
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode()
        inbound = Inbound(
            topic=message.topic.value,
            payload=bytes(payload),
            qos=message.qos,
            retain=message.retain,
            received_at=datetime.now(UTC),
            ack=AckToken(generation, message.mid, message.qos),
        )
        await self._handler(inbound)
