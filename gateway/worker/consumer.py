"""The ingest MQTT session: persistent, QoS 1, shared subscription, ack after commit.

The session is a :class:`gateway.adapters.mqtt.session.SubscriberSession` (asyncio's own
transport: the worker's receive path, issue #22); it withholds each PUBACK until the caller
says the message is committed. The broker sends at most ``receive_maximum`` unacknowledged
messages, so a stalled database stops the flow at the broker, which keeps the rest queued
for this session.

Acknowledgements carry the connection generation they were received on (numbered across
all consumers of the process, so one ``acknowledge`` serves them all): after a reconnect
the broker redelivers whatever was not acknowledged, so acks for the old connection are
dropped (the redelivered copies are deduplicated and acked instead).

The same class carries the worker's storage session (shared subscription), the alarm
engine's sessions (one client id per deployment, :mod:`gateway.worker.alarms.engine_role`), and
the adoption of a departed worker's storage session (``adopt``: resume it, unsubscribe so
the broker sends it nothing new, deliver what it holds, and end it, once drained, with the
last DISCONNECT: :meth:`MqttConsumer.end_session_on_stop`; an adoption ending before that
leaves the session, and what it still holds, at the broker for the next one).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from firmware_contracts.topics import DEVICE_PUBLISHED, Channel
from gateway.adapters.mqtt.connection import BrokerAddress
from gateway.adapters.mqtt.session import SessionError, SessionOptions, SubscriberSession
from gateway.support.backoff import Backoff
from gateway.support.metrics import IngestMetrics

log = logging.getLogger(__name__)


# Named tuples, not frozen dataclasses: one of each is made per message per session, and
# a frozen dataclass sets each field through object.__setattr__ (2.3 against 1.0 µs for
# the pair, issue #22). Immutable all the same.
class AckToken(NamedTuple):
    generation: int
    mid: int
    qos: int


class Inbound(NamedTuple):
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
    channels: frozenset[Channel] = DEVICE_PUBLISHED
    name: str = "ingest"  # for log lines
    adopt: bool = False  # drain and end another (departed) worker's session
    #: storage's session reads every few milliseconds, not at each message: its messages
    #: wait for a batch (``batch_max_delay_ms``) anyway, and a read then takes several
    #: (one wake-up of the loop and one system call for them all). The alarm engine's
    #: telemetry session reads every 10 ms, its safety session at once (0).
    read_delay_s: float = 0.0


def subscription_filters(
    shared_group: str | None, channels: frozenset[Channel] = DEVICE_PUBLISHED
) -> list[str]:
    filters = [f"devices/+/{channel.value}" for channel in sorted(channels)]
    if shared_group:
        return [f"$share/{shared_group}/{f}" for f in filters]
    return filters


#: messages handled in a row before the loop lets other tasks run (the alarm engine's
#: safety session, in the same process, never waits behind a long run of telemetry: 8
#: messages are a fraction of a millisecond; 64 held a press up in bench.flood)
YIELD_EVERY = 8
_generations = itertools.count(1)
#: connection generation -> the consumer whose current connection it is
_LIVE: dict[int, MqttConsumer] = {}


def acknowledge(tokens: Sequence[AckToken]) -> None:
    """Release PUBACKs for messages that are done with, whichever consumer received them;
    a token of a connection that is gone is dropped (the broker redelivers)."""
    live = _LIVE
    for token in tokens:
        if token.qos:
            consumer = live.get(token.generation)
            if consumer is not None and consumer._session is not None:
                consumer._session.ack(token.mid)
                consumer.unacked -= 1


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
        self._session: SubscriberSession | None = None
        self.unacked = 0  # delivered on the current connection, not yet acknowledged
        # Bounded in practice by the MQTT receive maximum: the broker sends no more than
        # that many unacknowledged messages.
        self._inbox: deque[tuple[str, bytes, int, bool, int]] = deque()
        self._wake = asyncio.Event()
        self.connected = asyncio.Event()
        self._address = BrokerAddress.parse(config.url)
        self._end_session = False  # the last DISCONNECT ends the session (a drained adoption)
        self._had_session = False  # a connection of this consumer was subscribed

    def _options(self) -> SessionOptions:
        cfg = self._config
        return SessionOptions(
            client_id=cfg.client_id,
            protocol=cfg.protocol,
            keepalive_s=cfg.keepalive_s,
            clean_start=False,
            # adopting too: the session outlives this connection until it is drained
            session_expiry_s=cfg.session_expiry_s,
            receive_maximum=cfg.receive_maximum,
            read_delay_s=cfg.read_delay_s,
        )

    @property
    def holding(self) -> int:
        """Messages received and not yet handed to the handler."""
        return len(self._inbox)

    def end_session_on_stop(self) -> None:
        """When stopped, end the session with the connection (MQTT 5: the DISCONNECT
        sets its expiry to 0): an adopted session whose messages are all acknowledged."""
        self._end_session = True

    def _on_publish(self, topic: str, payload: bytes, qos: int, retain: bool, mid: int) -> None:
        self._inbox.append((topic, payload, qos, retain, mid))
        self._wake.set()

    async def run(
        self, stop: asyncio.Event, drain: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Consume until ``stop``; then call ``drain`` (flush + commit + ack) before
        disconnecting, so that a graceful stop acknowledges everything it committed. A
        session whose messages are acknowledged elsewhere or as they go (the engine's; an
        adopted one, by the storage path after commit) has nothing to drain."""
        backoff = Backoff(0.1, 5.0)
        drained = False
        while not stop.is_set():
            self._inbox = deque()  # what the last connection left is redelivered
            session: SubscriberSession | None = None
            try:
                session = await SubscriberSession.open(self._address, self._options(),
                                                       self._on_publish)  # fmt: skip
                self._generation = next(_generations)
                self._session = session
                self.unacked = 0
                _LIVE[self._generation] = self
                kept = self._config.protocol == 4 or self._config.session_expiry_s > 0
                if kept and self._had_session and not session.session_present:
                    log.warning(
                        f"{self._config.name} session: the broker kept no session; what it "
                        "held for this client while disconnected is gone",
                        extra={"client_id": self._config.client_id},
                    )  # fmt: skip
                await self._subscribe(session)
                self._had_session = True
                self.connected.set()
                self._connected_gauge(1)
                log.info(f"{self._config.name} session connected",
                         extra={"client_id": self._config.client_id})  # fmt: skip
                backoff.reset()
                await self._consume(session, stop)
                if drain is not None:
                    await drain()
                drained = True
            except (SessionError, OSError, TimeoutError) as exc:
                log.warning(
                    f"{self._config.name} session lost; reconnecting",
                    extra={"error": str(exc)[:200] or type(exc).__name__,
                           "retry_s": backoff.peek()},
                )  # fmt: skip
                if self._config.adopt:
                    return  # taken back by its worker (or the broker is away): not ours
            finally:
                _LIVE.pop(self._generation, None)
                self._session = None
                self.connected.clear()
                self._connected_gauge(0)
                if session is not None:
                    end = (
                        self._end_session and stop.is_set() and self._config.protocol == 5
                        and not self.unacked and not self._inbox
                    )  # fmt: skip
                    await session.close(session_expiry_s=0 if end else None)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff.next())
        if not drained and drain is not None:
            await drain()

    def _connected_gauge(self, value: int) -> None:
        if self._config.name == "ingest":
            self._metrics.mqtt_connected.set(value)

    async def _subscribe(self, session: SubscriberSession) -> None:
        filters = subscription_filters(self._config.shared_group, self._config.channels)
        if self._config.adopt:
            await session.unsubscribe(filters)  # the broker routes nothing new to it
            return
        await session.subscribe(filters, qos=1)

    async def _consume(self, session: SubscriberSession, stop: asyncio.Event) -> None:
        generation = self._generation
        inbox = self._inbox
        wake = self._wake
        closed = session.closed  # completed when the connection ends

        def poke(_: object) -> None:
            wake.set()

        closed.add_done_callback(poke)
        stop_task = asyncio.ensure_future(stop.wait())
        stop_task.add_done_callback(poke)
        try:
            while True:
                run = 0
                while inbox and not stop.is_set():
                    await self._deliver(inbox.popleft(), generation)
                    run += 1
                    if run == YIELD_EVERY:  # let the worker's other sessions have a turn
                        run = 0
                        await asyncio.sleep(0)
                if stop.is_set():
                    return
                if closed.done():
                    reason = None if closed.cancelled() else closed.exception()
                    raise SessionError(f"disconnected while consuming: {reason}")
                if not inbox:
                    wake.clear()
                    if not inbox and not stop.is_set() and not closed.done():
                        await wake.wait()
        finally:
            stop_task.cancel()
            closed.remove_done_callback(poke)

    async def _deliver(self, raw: tuple[str, bytes, int, bool, int], generation: int) -> None:
        topic, payload, qos, retain, mid = raw
        if qos:
            self.unacked += 1
        inbound = Inbound(
            topic=topic,
            payload=payload,
            qos=qos,
            retain=retain,
            received_at=datetime.now(UTC),
            ack=AckToken(generation, mid, qos),
        )
        await self._handler(inbound)
