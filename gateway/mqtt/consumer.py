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
from collections import deque
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
from gateway.mqtt import publish_decoder
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
        publish_decoder.install()  # a tenth of the hot path saved (see the module)
        self._config = config
        self._handler = handler
        self._metrics = metrics
        self._generation = 0
        self._paho: Any = None
        # Bounded in practice by the MQTT receive maximum: the broker sends no more than
        # that many unacknowledged messages.
        self._inbox: deque[tuple[str, bytes, int, bool, int]] = deque()
        self._wake = asyncio.Event()
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
        paho = client._client  # paho's manual ack, reached through aiomqtt by design
        paho.manual_ack_set(True)
        # Hot path: hand paho's messages straight to our inbox (aiomqtt would wrap each in
        # Message and Topic objects), and skip paho's per-packet debug logging.
        paho.on_message = self._on_paho_message
        paho.disable_logger()
        return client

    def _on_paho_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        self._inbox.append(
            (message.topic, message.payload, message.qos, message.retain, message.mid)
        )
        self._wake.set()

    async def run(self, stop: asyncio.Event, drain: Callable[[], Awaitable[None]]) -> None:
        """Consume until ``stop``; then call ``drain`` (flush + commit + ack) before
        disconnecting, so that a graceful stop acknowledges everything it committed."""
        backoff = 0.1
        drained = False
        while not stop.is_set():
            self._inbox = deque()  # what the last connection left is redelivered
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
        inbox = self._inbox
        wake = self._wake
        disconnected = client._disconnected  # set by aiomqtt on connection loss

        def poke(_: object) -> None:
            wake.set()

        disconnected.add_done_callback(poke)
        stop_task = asyncio.ensure_future(stop.wait())
        stop_task.add_done_callback(poke)
        try:
            while True:
                while inbox and not stop.is_set():
                    await self._deliver(inbox.popleft(), generation)
                if stop.is_set():
                    return
                if disconnected.done():
                    raise aiomqtt.MqttError("disconnected while consuming")
                # Let the socket reader run once before sleeping: messages then arrive in
                # runs, and the loop does not pay a wake-up per message.
                await asyncio.sleep(0)
                if not inbox:
                    wake.clear()
                    if not inbox and not stop.is_set() and not disconnected.done():
                        await wake.wait()
        finally:
            stop_task.cancel()
            disconnected.remove_done_callback(poke)

    async def _deliver(self, raw: tuple[str, bytes, int, bool, int], generation: int) -> None:
        topic, payload, qos, retain, mid = raw
        inbound = Inbound(
            topic=topic,
            payload=payload,
            qos=qos,
            retain=retain,
            received_at=datetime.now(UTC),
            ack=AckToken(generation, mid, qos),
        )
        await self._handler(inbound)
