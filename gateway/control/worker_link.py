"""The API's link to the gateway workers, over the broker (:mod:`gateway.control.protocol`).

One MQTT connection per API process (clean session). It follows which workers are online,
sends requests and collects their replies, and feeds every alarm event the workers
publish into this process's :class:`AlarmHub` for the SSE streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from gateway.adapters.mqtt.connection import BrokerAddress, keep_connected, messages_until
from gateway.control import protocol as p
from gateway.control.alarm_hub import AlarmHub

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
#: after connecting, how long the retained presence messages may take to arrive; after
#: that, no worker online means none: a request fails at once instead of waiting
PRESENCE_SETTLE_S = 1.0


class NoWorker(Exception):
    """No gateway worker answered (none online, the broker unreachable, or too slow)."""


@dataclass
class _Pending:
    expected: set[str] | None  # workers whose answers complete it (None: the first answer)
    gather: bool
    replies: list[p.Reply] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, reply: p.Reply) -> None:
        self.replies.append(reply)
        if self.expected is None or (reply.held and not self.gather):
            self.done.set()
            return
        self.expected.discard(reply.worker)
        if not self.expected:
            self.done.set()


class WorkerLink:
    def __init__(self, url: str, name: str, hub: AlarmHub | None = None) -> None:
        self._address = BrokerAddress.parse(url)
        self.link_id = f"{name}-api-{secrets.token_hex(4)}"
        self.hub = hub or AlarmHub()
        self.workers: set[str] = set()
        self._client: aiomqtt.Client | None = None
        self._pending: dict[str, _Pending] = {}
        self._changed = asyncio.Event()  # workers or the connection changed
        self._connected_at = 0.0
        self._was_connected = False
        self.connected = asyncio.Event()
        self.worker_online = asyncio.Event()  # set while at least one worker is heard

    # --- requests ---------------------------------------------------------------------------
    async def call(
        self, op: str, tenant: str, args: dict[str, Any] | None = None, *, to: str | None = None,
        gather: bool = False, timeout: float = DEFAULT_TIMEOUT_S,  # noqa: ASYNC109
    ) -> list[p.Reply]:  # fmt: skip
        """Ask the workers (or worker ``to``). Returns when one that holds the subject
        answers, or (``gather``, or nobody holds it) when every worker online has answered;
        raises :class:`NoWorker` when no worker is online or an answer is overdue."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._client is None or not (self.workers or to):
            self._changed.clear()
            until = deadline
            if self._client is not None:  # connected: wait only for presences to arrive
                until = min(deadline, self._connected_at + PRESENCE_SETTLE_S)
            if loop.time() >= until:
                raise NoWorker("no gateway worker is online")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), until - loop.time())
        request = p.Request(secrets.token_hex(8), p.replies_topic(self.link_id), op, tenant,
                            args or {}, to)  # fmt: skip
        pending = _Pending(None if to else set(self.workers), gather)
        self._pending[request.id] = pending
        try:
            await self._client.publish(p.REQUESTS_TOPIC, p.encode_request(request), qos=1)
            await asyncio.wait_for(pending.done.wait(), max(0.0, deadline - loop.time()))
        except (aiomqtt.MqttError, TimeoutError) as exc:
            raise NoWorker(f"a gateway worker did not answer ({type(exc).__name__})") from None
        finally:
            self._pending.pop(request.id, None)
        return pending.replies

    async def ask(
        self, op: str, tenant: str, args: dict[str, Any] | None = None, **kw: Any
    ) -> p.Reply | None:
        """The answer of the worker that holds the subject; None when no worker does."""
        return next((r for r in await self.call(op, tenant, args, **kw) if r.held), None)

    # --- the connection ---------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        async def session(client: aiomqtt.Client) -> None:
            try:
                await client.subscribe(p.replies_topic(self.link_id), qos=1)
                await client.subscribe(p.WORKERS_FILTER, qos=1)
                await client.subscribe(p.ALARMS_FILTER, qos=1)
                if self._was_connected:  # alarm events published meanwhile never came
                    self.hub.gap()
                self._was_connected = True
                self._client = client
                self._connected_at = asyncio.get_running_loop().time()
                self.connected.set()
                self._changed.set()
                await self._receive(client, stop)
            finally:
                self._client = None
                self.connected.clear()
                self.workers.clear()
                self.worker_online.clear()

        await keep_connected(self._address, self.link_id, stop, session, what="worker link")

    async def _receive(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        async for topic, payload in messages_until(client, stop):
            self._on_message(topic, payload)

    def _on_message(self, topic: str, payload: bytes) -> None:
        tenant = p.tenant_of_alarms_topic(topic)
        if tenant is not None:
            self.hub.publish(tenant, payload)
            return
        try:
            if topic.startswith(p.WORKERS_PREFIX):
                worker = topic.removeprefix(p.WORKERS_PREFIX)
                if p.decode_presence(payload):
                    self.workers.add(worker)
                else:
                    self.workers.discard(worker)
                    for waiting in self._pending.values():  # do not wait for the departed
                        if waiting.expected is not None and worker in waiting.expected:
                            waiting.expected.discard(worker)
                            if not waiting.expected:
                                waiting.done.set()
                self._changed.set()
                if self.workers:
                    self.worker_online.set()
                else:
                    self.worker_online.clear()
                return
            reply = p.decode_reply(payload)
        except p.ProtocolError as exc:
            log.warning("control message rejected", extra={"reason": str(exc)})
            return
        pending = self._pending.get(reply.id)
        if pending is not None:
            pending.add(reply)
