"""The worker's side of the control channel: answers API processes' requests about the
alarms in this worker's book and the lock commands it sends (protocol in
:mod:`gateway.control.protocol`).

Its own MQTT connection (clean session; a retained presence message with the worker's
start time, and a last will that marks the worker offline). The same connection hears the
other workers' presences (who runs the alarm engine: :mod:`gateway.worker.alarms.engine_role`)
and the alarm events the active engine publishes (a standby's mirror). Only the active
engine's worker answers as holder; the others say they hold nothing. A request is handled
on the event loop without I/O, except an unlock, which waits for the lock's reply in a
task of its own so other requests are not held up. A request that cannot be decoded is
logged (without content) and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import aiomqtt

from gateway.adapters.mqtt.connection import BrokerAddress, keep_connected, messages_until
from gateway.adapters.postgres.access_log import entry_from_dict
from gateway.control import protocol as p
from gateway.domain.alarms import Alarm, AlarmError
from gateway.worker.alarms.engine_role import EngineRole
from gateway.worker.alarms.service import WEBHOOK_PROGRESS_PREFIX, AlarmService
from gateway.worker.locks.service import LockService, UnlockRefused, describe

log = logging.getLogger(__name__)

#: ``reply(held, status=200, body=None, error=None)``: the answer to the request at hand.
Reply = Callable[..., p.Reply]


class ControlResponder:
    def __init__(
        self, url: str, worker_id: str, alarms: AlarmService, locks: LockService,
        role: EngineRole, *, keepalive_s: int = 60,
    ) -> None:  # fmt: skip
        self._address = BrokerAddress.parse(url)
        self.worker_id = worker_id
        self._alarms = alarms
        self._locks = locks
        self._role = role
        self._keepalive_s = keepalive_s
        self.since_us = time.time_ns() // 1000  # this worker's start: its seniority
        self._tasks: set[asyncio.Task[None]] = set()
        self.online = asyncio.Event()
        self.answered = 0
        self.rejected = 0
        # what each operation of the protocol does (p.OPS); any other op is answered 400
        self._handlers: dict[str, Callable[[p.Request, Reply], Awaitable[p.Reply]]] = {
            p.ACKNOWLEDGE: self._acknowledge,
            p.RESOLVE: self._resolve,
            p.ALARM: self._alarm,
            p.OPEN_ALARMS: self._open_alarms,
            p.UNLOCK_PREPARE: self._prepare,
            p.UNLOCK_SEND: self._unlock_send,
            p.ACCESS_LOG: self._access_log,
        }

    async def run(self, stop: asyncio.Event) -> None:
        async def session(client: aiomqtt.Client) -> None:
            try:
                await client.subscribe(p.REQUESTS_TOPIC, qos=1)
                await self._announce(client, online=True)
                await client.subscribe(p.WORKERS_FILTER, qos=1)
                await client.subscribe(p.ALARMS_FILTER, qos=1)
                await client.subscribe(WEBHOOK_PROGRESS_PREFIX + "+", qos=1)
                self.online.set()
                await self._serve(client, stop)
            finally:
                self.online.clear()
                self._role.on_connection(False)
                # Whichever way this ends (a stop, an error, a cancellation), say offline
                # while the connection may still be up: a clean disconnect sends no will,
                # and a presence left "online" would keep the next engine waiting.
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    await asyncio.wait_for(self._announce(client, online=False), 2)
                await self._drain()

        will = aiomqtt.Will(p.worker_topic(self.worker_id), p.presence(self.worker_id, False),
                            qos=1, retain=True)  # fmt: skip
        await keep_connected(self._address, f"{self.worker_id}-control", stop, session,
                             what="control channel", will=will,
                             keepalive=self._keepalive_s)  # fmt: skip

    async def _announce(self, client: aiomqtt.Client, *, online: bool) -> None:
        topic = p.worker_topic(self.worker_id)
        body = p.presence(self.worker_id, online, self.since_us if online else None)
        await client.publish(topic, body, qos=1, retain=True)

    async def _serve(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        async for topic, payload in messages_until(client, stop):
            if p.tenant_of_alarms_topic(topic) is not None:
                self._alarms.mirror(payload)
                continue
            if topic.startswith(WEBHOOK_PROGRESS_PREFIX):
                self._alarms.delivered_elsewhere(topic, payload)
                continue
            try:
                if topic.startswith(p.WORKERS_PREFIX):
                    since = p.presence_since(payload)
                    self._role.on_presence(topic.removeprefix(p.WORKERS_PREFIX), since)
                    continue
                request = p.decode_request(payload)
            except p.ProtocolError as exc:
                self.rejected += 1
                log.warning("control request rejected", extra={"reason": str(exc)})
                continue
            if request.to is None or request.to == self.worker_id:
                self._spawn(self._answer(client, request))

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        """Unlocks in flight get their reply time; then they are cancelled."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=15)
            for task in pending:
                task.cancel()

    async def _answer(self, client: aiomqtt.Client, request: p.Request) -> None:
        try:
            reply = await self.handle(request)
        except Exception:  # a bug must not end the channel; the API times out and says so
            log.exception("control request failed", extra={"op": request.op})
            reply = p.Reply(request.id, self.worker_id, True, 500, None, "worker error")
        try:
            await client.publish(request.reply_to, p.encode_reply(reply), qos=1)
            self.answered += 1
        except aiomqtt.MqttError as exc:
            log.warning("control reply not sent", extra={"error": type(exc).__name__})

    # --- the requests ---------------------------------------------------------------------
    async def handle(self, r: p.Request) -> p.Reply:
        def reply(held: bool, status: int = 200, body: Any = None, error: str | None = None
                  ) -> p.Reply:  # fmt: skip
            return p.Reply(r.id, self.worker_id, held, status, body, error)

        if not self._alarms.active:  # a standby holds nothing: the active engine answers
            return reply(False, 404, None, "not the active alarm engine")

        handler = self._handlers.get(r.op)
        if handler is None:
            return reply(False, 400, None, f"unknown op {r.op}")
        return await handler(r, reply)

    async def _acknowledge(self, r: p.Request, reply: Reply) -> p.Reply:
        return self._on_alarm(
            r, reply, lambda alarm_id, actor: self._alarms.acknowledge(r.tenant, alarm_id, actor)
        )

    async def _resolve(self, r: p.Request, reply: Reply) -> p.Reply:
        def resolve(alarm_id: UUID, actor: str) -> Alarm:
            outcome = str(r.args.get("outcome") or "")
            return self._alarms.resolve(r.tenant, alarm_id, actor, outcome)

        return self._on_alarm(r, reply, resolve)

    async def _alarm(self, r: p.Request, reply: Reply) -> p.Reply:
        return self._on_alarm(r, reply, lambda alarm_id, _actor: self._held(alarm_id))

    def _on_alarm(
        self, r: p.Request, reply: Reply, act: Callable[[UUID, str], Alarm]
    ) -> p.Reply:
        """An operation on one alarm of this worker's book (the request's ``alarm_id``)."""
        alarm_id = _uuid(r.args.get("alarm_id"))
        held = alarm_id is not None and self._holds(r.tenant, alarm_id)
        if alarm_id is None or not held:
            return reply(False, 404, None, "alarm not found or already resolved")
        actor = str(r.args.get("actor") or "")
        try:
            alarm = act(alarm_id, actor)
        except AlarmError as exc:
            return reply(True, exc.status, None, str(exc))
        return reply(True, 200, self._alarms.view(r.tenant, alarm))

    async def _open_alarms(self, r: p.Request, reply: Reply) -> p.Reply:
        alarms = self._alarms.open_alarms(r.tenant)  # with its guests' (docs/stays.md)
        return reply(True, 200, [self._alarms.view(r.tenant, a) for a in alarms])

    async def _unlock_send(self, r: p.Request, reply: Reply) -> p.Reply:
        sent = await self._locks.send(str(r.args.get("command_id") or ""))
        if sent is None:
            return reply(True, 409, None, "no such prepared command on this worker")
        return reply(True, 200, {"status": sent.status, "command_id": sent.command_id,
                                 "expires_at": sent.expires_at.isoformat(),
                                 "detail": sent.detail})  # fmt: skip

    async def _access_log(self, r: p.Request, reply: Reply) -> p.Reply:
        try:
            entry = entry_from_dict(r.args)
        except (TypeError, ValueError):
            return reply(True, 422, None, "not an access-log entry")
        self._locks.audit.submit(entry)
        return reply(True, 202)

    async def _prepare(self, r: p.Request, reply: Reply) -> p.Reply:
        try:
            prepared = await self._locks.prepare(
                r.tenant, str(r.args.get("device_id") or ""),
                r.args.get("key_id"), r.args.get("staff_subject"),
            )  # fmt: skip
        except UnlockRefused as exc:
            return reply(True, exc.status, None, str(exc))
        d = prepared.decision
        assert prepared.command.expires_at is not None
        return reply(True, 200, {
            "tenant_id": prepared.tenant_id,
            "person_id": str(prepared.person_id) if prepared.person_id else None,
            "key_id": prepared.key_id,
            "allowed": d.allowed, "reason": d.reason.value, "visit_id": d.visit_id,
            "alarm_id": d.alarm_id, "described": describe(d),
            "command_id": prepared.command.id,
            "expires_at": prepared.command.expires_at.isoformat(),
        })  # fmt: skip

    def _holds(self, tenant_id: str, alarm_id: UUID) -> bool:
        return self._alarms.holds(tenant_id, self._alarms.book.get(alarm_id))

    def _held(self, alarm_id: UUID) -> Alarm:
        alarm = self._alarms.book.get(alarm_id)
        assert alarm is not None
        return alarm


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None
