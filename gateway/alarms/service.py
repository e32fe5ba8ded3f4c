"""The alarm service: the safety path's composition.

``observe`` is called by ingest for every accepted message, before the message is queued
for storage; rules run in memory (:class:`AlarmEngine`) and every resulting event is, in
this order and without touching the database: appended to the fsynced local journal,
handed to the MQTT publisher (``tenants/{tenant}/alarms``, QoS 1), to the live API
streams and to the webhook dispatcher. A timer loop raises what is due by time (silent
devices, doors left unlocked, escalations). The journal is shipped into PostgreSQL in the
background and replayed after an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from firmware_contracts.messages import Lock, Reply
from firmware_contracts.topics import tenant_alarms_topic
from gateway.alarms.codec import encode
from gateway.alarms.engine import AlarmEngine, RuleConfig
from gateway.alarms.journal import AlarmJournal
from gateway.alarms.persist import JournalShipper, load_open_alarms
from gateway.alarms.person_rules import PersonRulesCache
from gateway.device_state import DeviceStates
from gateway.dispatch.webhook import WebhookDispatcher, WebhookTarget
from gateway.domain.alarms import (
    DEFAULT_SEVERITY,
    Alarm,
    AlarmBook,
    AlarmError,
    AlarmEvent,
    AlarmKind,
    EscalationPolicy,
    Severity,
)
from gateway.domain.geofence import GeofencePolicy
from gateway.domain.registry import Binding, DeviceRecord
from gateway.domain.routing import Route, RoutingPolicy
from gateway.domain.silence import SilencePolicy
from gateway.locks.service import LockService
from gateway.mqtt.publisher import AlarmPublisher
from gateway.registry_cache import RegistryCache
from gateway.settings import AlarmSettings, RouteSetting

log = logging.getLogger(__name__)


def rule_config(s: AlarmSettings) -> RuleConfig:
    return RuleConfig(
        silence=SilencePolicy(s.silence_factor, s.silence_grace_s),
        geofence=GeofencePolicy(s.geofence_hysteresis_m, s.geofence_max_accuracy_m),
        escalation=EscalationPolicy({Severity(k): tuple(v) for k, v in s.escalation_s.items()}),
        battery_low_percent=s.battery_low_percent,
        battery_ok_percent=s.battery_ok_percent,
        door_unlocked_after=timedelta(seconds=s.door_unlocked_after_s),
    )


def severity_function(s: AlarmSettings) -> Any:
    overrides = {
        tenant: {AlarmKind(kind): Severity(sev) for kind, sev in kinds.items()}
        for tenant, kinds in s.severity.items()
    }

    def severity_for(tenant_id: str, kind: AlarmKind) -> Severity:
        for key in (tenant_id, "*"):
            found = overrides.get(key, {}).get(kind)
            if found is not None:
                return found
        return DEFAULT_SEVERITY[kind]

    return severity_for


def routing_policies(s: AlarmSettings) -> dict[str, RoutingPolicy]:
    """Routing per tenant from settings; "*" is every tenant without routes of its own."""
    policies = {
        tenant: RoutingPolicy(tuple(_route(r) for r in rules), timezone=s.timezone)
        for tenant, rules in s.routes.items()
    }
    policies.setdefault("*", RoutingPolicy(timezone=s.timezone))
    return policies


def _route(r: RouteSetting) -> Route:
    hours = None
    if r.hours:
        start, end = r.hours.split("-")
        hours = (time.fromisoformat(start), time.fromisoformat(end))
    return Route(
        chain=tuple(r.chain),
        kinds=frozenset(AlarmKind(k) for k in r.kinds) if r.kinds is not None else None,
        severities=frozenset(Severity(x) for x in r.severities) if r.severities else None,
        hours=hours,
    )


def _never_seen(_: str) -> None:
    return None


class AlarmService:
    def __init__(
        self,
        settings: AlarmSettings,
        *,
        database_url: str,
        mqtt_url: str,
        client_id: str,
        registry: RegistryCache,
        states: DeviceStates,
        journal_dir: Path,
    ) -> None:
        self.settings = settings
        self.book = AlarmBook(severity_function(settings))
        self.persons = PersonRulesCache(database_url)
        self.engine = AlarmEngine(
            self.book, rule_config(settings), person=self.persons.get, device=registry.get,
            index=registry.index,
        )  # fmt: skip
        self.routing = routing_policies(settings)
        self.journal = AlarmJournal(journal_dir)
        self.shipper = JournalShipper(self.journal, database_url)
        self.publisher = AlarmPublisher(mqtt_url, f"{client_id}-alarms")
        self.webhooks = WebhookDispatcher(
            [
                WebhookTarget(w.group, w.url, w.secret.get_secret_value().encode())
                for w in settings.webhooks
            ]
        )
        self._registry = registry
        self._states = states
        self._database_url = database_url
        self.dispatched = 0
        self.locks: LockService | None = None  # keyless-lock access, attached by the app

    # --- the fast path ----------------------------------------------------------------------
    def observe(self, device: DeviceRecord, binding: Binding, message: Any, at: datetime) -> None:
        events = self.engine.observe(device, binding, message, at)
        if self.locks is not None and isinstance(message, Lock | Reply):
            decision = self.locks.observe(device, binding, message, at)
            if decision is not None and isinstance(message, Lock):
                events += self.engine.unauthorised_unlock(device, binding, message, decision)
        if events:
            self._dispatch(events)

    def _dispatch(self, events: list[AlarmEvent]) -> None:
        self.journal.append(events)
        for event in events:
            recipients = self.routing_for(event.alarm.tenant_id).recipients(event.alarm)
            payload = encode(event, recipients)
            self.publisher.submit(tenant_alarms_topic(event.alarm.tenant_id), payload)
            if self.settings.webhooks:
                self.webhooks.submit(recipients, str(event.id), payload)
            log.info(
                "alarm event",
                extra={"alarm_id": str(event.alarm_id), "event": event.type,
                       "kind": event.alarm.kind.value, "tenant_id": event.alarm.tenant_id},
            )  # fmt: skip
        self.dispatched += len(events)
        self.shipper.wake()

    def routing_for(self, tenant_id: str) -> RoutingPolicy:
        return self.routing.get(tenant_id) or self.routing["*"]

    # --- people ----------------------------------------------------------------------------
    def _owned(self, tenant_id: str, alarm_id: UUID) -> Alarm:
        alarm = self.book.get(alarm_id)
        if alarm is None or alarm.tenant_id != tenant_id:
            raise AlarmError("alarm not found or already resolved", 404)
        return alarm

    def acknowledge(self, tenant_id: str, alarm_id: UUID, actor: str) -> Alarm:
        self._owned(tenant_id, alarm_id)
        events = self.book.acknowledge(alarm_id, actor, datetime.now(UTC))
        self._dispatch(events)
        return events[-1].alarm

    def resolve(self, tenant_id: str, alarm_id: UUID, actor: str, outcome: str) -> Alarm:
        self._owned(tenant_id, alarm_id)
        events = self.book.resolve(alarm_id, actor, datetime.now(UTC), outcome)
        self._dispatch(events)
        return events[-1].alarm

    def open_alarms(self, tenant_id: str) -> list[Alarm]:
        return self.book.open_alarms(tenant_id)

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Ship what the journal holds from last time, then restore open alarms, persons'
        rules and the silence deadlines (from the devices' last-seen times)."""
        import psycopg

        async with await psycopg.AsyncConnection.connect(self._database_url) as conn:
            while await self.shipper.ship_once(conn):
                pass
        self.book.restore(await load_open_alarms(self._database_url))
        await self.persons.load()
        if self.locks is not None:
            await self.locks.start()
        now = datetime.now(UTC)
        self.engine.watch(self._registry.devices(), self._states.last_seen, now)

    async def run(self, stop: asyncio.Event) -> None:
        """Timers, shipper, publisher, webhooks, and following rule changes until ``stop``;
        then deliver what is pending (bounded)."""
        inner = asyncio.Event()
        tasks = [
            asyncio.create_task(self._timers(inner), name="alarm-timers"),
            asyncio.create_task(self.shipper.run(inner), name="alarm-shipper"),
            asyncio.create_task(self.publisher.run(inner), name="alarm-publisher"),
            asyncio.create_task(self.webhooks.run(inner), name="alarm-webhooks"),
            asyncio.create_task(self.persons.follow(inner), name="person-rules"),
        ]
        if self.locks is not None:
            tasks.append(asyncio.create_task(self.locks.run(inner), name="lock-access"))
        await stop.wait()
        inner.set()
        _, pending = await asyncio.wait(tasks, timeout=10)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.journal.close()

    async def _timers(self, stop: asyncio.Event) -> None:
        period = self.settings.tick_ms / 1000
        rescan = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            now = datetime.now(UTC)
            if loop.time() >= rescan:  # start watching devices registered since
                unwatched = [
                    d for d in self._registry.device_ids() if d not in self.engine.silence
                ]
                self.engine.watch(
                    (r for r in map(self._registry.get, unwatched) if r is not None),
                    _never_seen,
                    now,
                )
                rescan = loop.time() + 5.0
            try:
                events = self.engine.tick(now)
                if events:
                    self._dispatch(events)
            except Exception:
                log.exception("alarm timer tick failed; continuing")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)
