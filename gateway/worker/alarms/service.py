"""The alarm service: the safety path's composition.

``observe`` is called by ingest for every accepted message, before the message is queued
for storage; rules run in memory (:class:`AlarmEngine`) and every resulting event is, in
this order and without touching the database: appended to the fsynced local journal,
handed to the MQTT publisher (``tenants/{tenant}/alarms``, QoS 1), to the live API
streams and to the webhook dispatcher. A timer loop raises what is due by time (silent
devices, doors left unlocked, escalations). The journal is shipped into PostgreSQL in the
background and replayed after an outage.

MQTT and the API's streams serve the tenant's own operators. A webhook receiver that is
another organisation (``org`` other than the tenant's) gets an event only under the
resident's consent (:mod:`gateway.worker.alarms.consent_cache`, review #17.7): the routing leaves
it out when the consents in memory do not allow it, and its delivery loop decides again
and access-logs the disclosure before sending.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol
from uuid import UUID

import orjson
import psycopg

from firmware_contracts.messages import DeviceMessage, Lock, Reply
from firmware_contracts.topics import tenant_alarms_topic
from gateway.adapters.mqtt.publisher import AlarmPublisher
from gateway.adapters.postgres import queries
from gateway.adapters.postgres.access_log import AccessEntry
from gateway.config.settings import AlarmSettings, RouteSetting
from gateway.domain.alarms import (
    DEFAULT_SEVERITY,
    Alarm,
    AlarmBook,
    AlarmError,
    AlarmEvent,
    AlarmKind,
    AlarmState,
    EscalationPolicy,
    Severity,
)
from gateway.domain.geofence import GeofencePolicy
from gateway.domain.registry import Binding, DeviceRecord
from gateway.domain.routing import Route, RoutingPolicy
from gateway.domain.silence import SilencePolicy
from gateway.domain.stays import Stay
from gateway.support.metrics import IngestMetrics
from gateway.worker.alarms.codec import (
    alarm_to_dict,
    encode,
    encode_guest,
    event_from_dict,
    guest_view,
)
from gateway.worker.alarms.consent_cache import AlarmDisclosure
from gateway.worker.alarms.engine import AlarmEngine, RuleConfig
from gateway.worker.alarms.journal import AlarmJournal
from gateway.worker.alarms.persist import JournalShipper, load_open_alarms
from gateway.worker.alarms.person_rules import PersonRulesCache
from gateway.worker.alarms.stays_cache import StayCache
from gateway.worker.fleet.registry_cache import RegistryCache
from gateway.worker.locks.audit import AccessLogWriter
from gateway.worker.locks.service import LockService
from gateway.worker.supervision import SupervisionRules
from gateway.worker.webhooks import WebhookDispatcher, WebhookTarget

log = logging.getLogger(__name__)


def rule_config(s: AlarmSettings) -> RuleConfig:
    return RuleConfig(
        silence=SilencePolicy(s.silence_factor, s.silence_grace_s),
        geofence=GeofencePolicy(s.geofence_hysteresis_m, s.geofence_max_accuracy_m),
        escalation=EscalationPolicy({Severity(k): tuple(v) for k, v in s.escalation_s.items()}),
        battery_low_percent=s.battery_low_percent,
        battery_ok_percent=s.battery_ok_percent,
        door_unlocked_after=timedelta(seconds=s.door_unlocked_after_s),
        max_alarm_age=timedelta(seconds=s.max_alarm_age_s),
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


ACTIVATION_DB_TIMEOUT_S = 5.0
#: how often the open alarms are counted into the metrics
OPEN_ALARMS_SAMPLE_S = 1.0
#: retained, per webhook receiver: the last event the active engine delivered to it
WEBHOOK_PROGRESS_PREFIX = "gateway/webhooks/"


def _never_seen(_: str) -> None:
    return None


#: actor_role of the access-log row of a guest's copy sent to the host municipality
STAY_HOST_ROLE = "stay_host"


def guest_copy_entry(event: AlarmEvent, stay: Stay) -> AccessEntry:
    """The home's access-log row of the guest's copy of an alarm event sent to the host
    municipality during a stay (issue #21.3): a disclosure to another huvudman, on the
    stay agreement (docs/stays.md), to its topic, console and webhook receivers."""
    alarm = event.alarm
    categories = ["alarms", "position"] if alarm.position is not None else ["alarms"]
    return AccessEntry(
        actor=f"host:{stay.host_tenant}", actor_org=None, actor_role=STAY_HOST_ROLE,
        actor_tenant=stay.host_tenant, owner_tenant=alarm.tenant_id, person_id=alarm.person_id,
        categories=categories, purpose="guest alarm handling", outcome="allowed",
        reason=f"stay {stay.id}: the guest's copy of alarm {alarm.id} ({event.type}) to the "
               "host municipality",
        request=f"alarm {event.type} {alarm.id} to tenants/{stay.host_tenant}/alarms "
                f"(event {event.id})",
    )  # fmt: skip


class WebhookEvents(Protocol):
    """What the webhook dispatcher tells the alarm service (built around each other by
    :mod:`gateway.bootstrap`)."""

    def is_open(self, alarm_id: str) -> bool: ...

    def receiver(
        self, target: WebhookTarget, tenant_id: str, unreachable: bool, since: datetime
    ) -> None: ...

    def delivered(self, target: WebhookTarget, event_id: str) -> None: ...


class AlarmService:
    """The alarm path of a worker: the engine's rules on every device message while this
    worker is the active engine, the book, and each event journalled, published to
    operators and delivered to webhook receivers. Its parts are built and handed over by
    :mod:`gateway.bootstrap`; ``webhooks`` makes the dispatcher that reports back to it."""

    def __init__(
        self,
        settings: AlarmSettings,
        *,
        database_url: str,
        book: AlarmBook,
        registry: RegistryCache,
        persons: PersonRulesCache,
        journal: AlarmJournal,
        shipper: JournalShipper,
        publisher: AlarmPublisher,
        disclosure: AlarmDisclosure,
        webhooks: Callable[[WebhookEvents], WebhookDispatcher],
        locks: LockService | None = None,
        metrics: IngestMetrics | None = None,
        stays: StayCache | None = None,
        supervision: SupervisionRules | None = None,
        access_log: AccessLogWriter | None = None,
    ) -> None:
        self.settings = settings
        #: the home's access log of the guest's copies sent to a host (#21.3), written in
        #: the background: the alarm path does not wait for the database
        self.access_log = access_log
        # residents staying in another municipality: their alarms go to the host too
        self.stays = stays
        # digital supervision: planned checks and passive alarms (#20, docs/supervision.md)
        self.supervision = supervision
        self.book = book
        self.persons = persons
        self.engine = self._new_engine(registry)
        self.routing = routing_policies(settings)
        self.journal = journal
        self.shipper = shipper
        self.publisher = publisher
        self.disclosure = disclosure
        self.webhooks = webhooks(self)
        self.locks = locks  # keyless-lock access: reported unlocks and replies
        self._registry = registry
        self._database_url = database_url
        self._metrics = metrics
        self._open_labels: set[tuple[str, str, str]] = set()  # ever reported, to zero them
        self.dispatched = 0
        # Only the active engine evaluates, dispatches and answers; a standby follows the
        # active one's published events in its book (gateway.worker.alarms.engine_role).
        self.active = False

    def _new_engine(self, registry: RegistryCache) -> AlarmEngine:
        return AlarmEngine(
            self.book, rule_config(self.settings), person=self.persons.get,
            device=registry.get, index=registry.index, unit=registry.units.unit,
        )  # fmt: skip

    # --- the fast path ----------------------------------------------------------------------
    def observe(
        self, device: DeviceRecord, binding: Binding, message: DeviceMessage, at: datetime
    ) -> None:
        events = self.engine.observe(device, binding, message, at)
        if self.supervision is not None:
            events += self.supervision.observe(device, binding, message, at)
        if self.locks is not None and isinstance(message, Lock | Reply):
            decision = self.locks.observe(device, binding, message, at)
            if decision is not None and isinstance(message, Lock):
                events += self.engine.unauthorised_unlock(device, binding, message, decision)
        if events:
            self._dispatch(events)

    def _dispatch(self, events: list[AlarmEvent]) -> None:
        self.journal.append(events)
        for event in events:
            # another organisation's receiver only under consent (from memory)
            withheld = self.disclosure.withheld(event.alarm, event.at)
            recipients = self.routing_for(event.alarm.tenant_id).recipients(event.alarm, withheld)
            payload = encode(event, recipients)
            self.publisher.submit(tenant_alarms_topic(event.alarm.tenant_id), payload)
            if self.settings.webhooks:
                self.webhooks.submit(recipients, str(event.id), payload)
            stay = self.stays.host_of(event.alarm) if self.stays is not None else None
            if stay is not None:  # raised during a stay: the host's team on duty too
                guest = self.routing_for(stay.host_tenant).recipients(event.alarm, withheld)
                copy = encode_guest(event, guest, stay)
                self.publisher.submit(tenant_alarms_topic(stay.host_tenant), copy)
                if self.settings.webhooks:
                    self.webhooks.submit(guest, str(event.id), copy)
                if self.access_log is not None:
                    self.access_log.submit(guest_copy_entry(event, stay))
            log.info(
                "alarm event",
                extra={"alarm_id": str(event.alarm_id), "event": event.type,
                       "kind": event.alarm.kind.value, "tenant_id": event.alarm.tenant_id},
            )  # fmt: skip
        self.dispatched += len(events)
        self.shipper.wake()

    # --- webhook receivers --------------------------------------------------------------
    def is_open(self, alarm_id: str) -> bool:
        try:
            return self.book.get(UUID(alarm_id)) is not None
        except ValueError:
            return False

    def receiver(
        self, target: WebhookTarget, tenant_id: str, unreachable: bool, since: datetime
    ) -> None:
        """A webhook receiver has failed for too long (or takes events again): a
        technical alarm for the technicians of the tenant whose event waits."""
        if not self.active:
            return
        device_id, now = f"webhook:{target.name}", datetime.now(UTC)
        if unreachable:
            events = self.book.signal(
                tenant_id=tenant_id, kind=AlarmKind.RECEIVER_UNREACHABLE, device_id=device_id,
                person_id=None, person_ref=None, at=now, condition=True,
                detail={"receiver": target.name, "failing_since": since.isoformat()},
            )  # fmt: skip
        else:  # whichever tenants it was reported in (perhaps before a restart)
            events = []
            for alarm in self.book.open_alarms():
                if alarm.kind is AlarmKind.RECEIVER_UNREACHABLE and alarm.device_id == device_id:
                    events += self.book.clear(
                        tenant_id=alarm.tenant_id, kind=AlarmKind.RECEIVER_UNREACHABLE,
                        device_id=device_id, person_id=None, at=now,
                    )  # fmt: skip
        if events:
            self._dispatch(events)

    def delivered(self, target: WebhookTarget, event_id: str) -> None:
        """Tell the standbys how far this receiver got (retained, one per receiver)."""
        body = orjson.dumps({"v": 1, "event_id": event_id})
        self.publisher.submit(WEBHOOK_PROGRESS_PREFIX + target.name, body, retain=True)

    def after_sent(self, callback: Callable[[], None]) -> None:
        """``callback`` once the broker has taken every alarm event dispatched so far."""
        self.publisher.after_sent(callback)

    def delivered_elsewhere(self, topic: str, payload: bytes) -> None:
        """The active engine's progress with a webhook receiver (a standby skips it)."""
        try:
            event_id = orjson.loads(payload)["event_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if isinstance(event_id, str):
            self.webhooks.delivered_elsewhere(topic.removeprefix(WEBHOOK_PROGRESS_PREFIX),
                                              event_id)  # fmt: skip

    def mirror(self, payload: bytes) -> None:
        """An alarm event the active engine published (``tenants/+/alarms``): a standby
        keeps its book equal to the active one's, and journals the event too, so that it
        reaches the database even if the active worker's disk never comes back."""
        if self.active:
            return
        try:
            record = orjson.loads(payload)
            event = event_from_dict(record)
            recipients = [str(r) for r in record.get("recipients") or ()]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("alarm event not understood; not mirrored",
                        extra={"error": type(exc).__name__})  # fmt: skip
            return
        if record.get("guest") is not None:  # the host's copy: the book follows the home's
            if self.settings.webhooks:
                self.webhooks.submit(recipients, str(event.id), payload)
            return
        if self.book.apply(event.alarm):
            self.journal.append([event])
            self.shipper.wake()
            if self.settings.webhooks:  # the same outbox as the engine's, for a take-over
                self.webhooks.submit(recipients, str(event.id), payload)

    def _report_open(self, now: datetime) -> None:
        """The book in the metrics: every worker's (the engine's, or a standby's mirror,
        so the figures stay across a hand-over; a dashboard takes the max over workers)."""
        if self._metrics is None:
            return
        counts: Counter[tuple[str, str, str]] = Counter()
        oldest: dict[Severity, datetime] = {}
        silent = 0
        for alarm in self.book.open_alarms():
            counts[(alarm.kind.value, alarm.severity.value, alarm.state.value)] += 1
            if alarm.state is AlarmState.RAISED:
                first = oldest.get(alarm.severity)
                oldest[alarm.severity] = min(first, alarm.raised_at) if first else alarm.raised_at
            if alarm.kind is AlarmKind.DEVICE_SILENT and alarm.condition:
                silent += 1
        for labels in self._open_labels - counts.keys():
            self._metrics.alarms_open.labels(*labels).set(0)
        for labels, n in counts.items():
            self._metrics.alarms_open.labels(*labels).set(n)
        self._open_labels |= counts.keys()
        for severity in Severity:
            raised = oldest.get(severity)
            age = max(0.0, (now - raised).total_seconds()) if raised else 0.0
            self._metrics.oldest_unacknowledged.labels(severity.value).set(age)
        self._metrics.devices_silent.set(silent)

    def routing_for(self, tenant_id: str) -> RoutingPolicy:
        return self.routing.get(tenant_id) or self.routing["*"]

    # --- people ----------------------------------------------------------------------------
    def holds(self, tenant_id: str, alarm: Alarm | None) -> bool:
        """May ``tenant_id``'s staff see and act on ``alarm``: its own, or a guest's alarm
        raised during a stay in ``tenant_id`` (docs/stays.md)."""
        if alarm is None:
            return False
        if alarm.tenant_id == tenant_id:
            return True
        stay = self.stays.host_of(alarm) if self.stays is not None else None
        return stay is not None and stay.host_tenant == tenant_id

    def _owned(self, tenant_id: str, alarm_id: UUID) -> Alarm:
        alarm = self.book.get(alarm_id)
        if alarm is None or not self.holds(tenant_id, alarm):
            raise AlarmError("alarm not found or already resolved", 404)
        return alarm

    @staticmethod
    def _actor(tenant_id: str, alarm: Alarm, actor: str) -> str:
        """The host's staff act on a guest's alarm as ``{host}/{subject}``: the home team
        sees who it was and where they work."""
        return actor if alarm.tenant_id == tenant_id else f"{tenant_id}/{actor}"

    def acknowledge(self, tenant_id: str, alarm_id: UUID, actor: str) -> Alarm:
        alarm = self._owned(tenant_id, alarm_id)
        events = self.book.acknowledge(alarm_id, self._actor(tenant_id, alarm, actor),
                                       datetime.now(UTC))  # fmt: skip
        self._dispatch(events)
        return events[-1].alarm

    def resolve(self, tenant_id: str, alarm_id: UUID, actor: str, outcome: str) -> Alarm:
        alarm = self._owned(tenant_id, alarm_id)
        events = self.book.resolve(alarm_id, self._actor(tenant_id, alarm, actor),
                                   datetime.now(UTC), outcome)  # fmt: skip
        self._dispatch(events)
        return events[-1].alarm

    def open_alarms(self, tenant_id: str) -> list[Alarm]:
        """The tenant's open alarms and its guests' (raised during a stay in it)."""
        if self.stays is None:
            return self.book.open_alarms(tenant_id)
        return [a for a in self.book.open_alarms() if self.holds(tenant_id, a)]

    def view(self, tenant_id: str, alarm: Alarm) -> dict[str, Any]:
        """``alarm`` as ``tenant_id``'s staff see it, with the recipients now: the home's
        alarm, or the host's copy of a guest's alarm (marked ``guest``)."""
        if alarm.tenant_id != tenant_id and self.stays is not None:
            stay = self.stays.host_of(alarm)
            if stay is not None and stay.host_tenant == tenant_id:
                recipients = self.routing_for(tenant_id).recipients(alarm)
                return guest_view(alarm, recipients, stay)
        recipients = self.routing_for(alarm.tenant_id).recipients(alarm)
        return {**alarm_to_dict(alarm), "recipients": list(recipients)}

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Ship what the journal holds from last time, then restore open alarms and
        persons' rules. The rules run once this worker's engine is activated."""
        async with await psycopg.AsyncConnection.connect(self._database_url) as conn:
            while await self.shipper.ship_once(conn):
                pass
        self.book.restore(await load_open_alarms(self._database_url))
        await self.persons.load()
        await self.disclosure.load()
        if self.stays is not None:
            await self.stays.load()
        if self.supervision is not None:
            await self.supervision.cache.load()

    async def activate(self) -> None:
        """Become the active engine. The book: the database's open alarms once this
        worker's journal is shipped, merged with what was mirrored (newer version wins);
        the mirror alone while the database is down. The rules start afresh from what
        storage holds (every worker's storage commits it): silence deadlines from the
        devices' last-seen times, weight trends from the last two weeks' weights, door
        timers from unlocks not yet followed by a lock or an alarm. When the database
        cannot be asked, every silence deadline is a full bound from now (a silent device
        is then reported one bound late, never falsely) and trends and door timers start
        empty (logged)."""
        now = datetime.now(UTC)
        last_seen: dict[str, datetime] = {}
        engine = self._new_engine(self._registry)
        try:
            async with asyncio.timeout(ACTIVATION_DB_TIMEOUT_S):
                async with await psycopg.AsyncConnection.connect(
                    self._database_url, connect_timeout=2
                ) as conn:
                    while await self.shipper.ship_once(conn):
                        pass
                    async for device_id, seen in queries.stream(conn, queries.LOAD_LAST_SEEN):
                        last_seen[device_id] = seen
                    async for person_id, ts, kg in queries.stream(
                        conn, queries.LOAD_RECENT_WEIGHTS
                    ):
                        engine.seed_weight(person_id, ts, kg)
                    async for device_id, unlocked_at, received_at in queries.stream(
                        conn, queries.LOAD_OPEN_DOORS
                    ):
                        if (device := self._registry.get(device_id)) is not None:
                            engine.seed_door(device, unlocked_at, received_at)
                    if self.supervision is not None:  # sensors' states, checks (#20)
                        await self.supervision.activate(conn, now)
                stored = await load_open_alarms(self._database_url)
            mirrored = {a.id: a for a in self.book.open_alarms()}
            self.book.replace_all(
                a if a.id not in mirrored or mirrored[a.id].version <= a.version
                else mirrored[a.id]
                for a in stored
            )  # fmt: skip
        except (psycopg.Error, OSError, TimeoutError) as exc:
            log.warning(
                "alarm engine activated without the database: open alarms as mirrored, "
                "silence deadlines a full bound from now", extra={"error": type(exc).__name__},
            )  # fmt: skip
        self.engine = engine
        self.engine.recognise(self.book.open_alarms())
        self.engine.watch(self._registry.devices(), lambda d: last_seen.get(d, now), now)
        if self.supervision is not None:
            for device in self._registry.devices():
                if (seen := last_seen.get(device.device_id)) is not None:
                    self.supervision.heard(device, device.binding_at(now), seen)
        self.webhooks.deliver(True)
        silent = (a for a in self.book.open_alarms() if a.kind is AlarmKind.DEVICE_SILENT)
        for alarm in silent:
            if alarm.condition:
                self.engine.silence.mark_silent(alarm.device_id)
                if alarm.detail.get("reason") == "offline":
                    self.engine.went_offline(alarm.device_id, alarm.last_at)
        self.active = True
        log.info("alarm engine active", extra={"open_alarms": len(self.book.open_alarms())})

    def deactivate(self) -> None:
        self.webhooks.deliver(False)
        if self.active:
            self.active = False
            log.info("alarm engine standing by")

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
            asyncio.create_task(self.disclosure.run(inner), name="consents"),
        ]
        if self.stays is not None:
            tasks.append(asyncio.create_task(self.stays.follow(inner), name="stays"))
        if self.supervision is not None:
            tasks.append(asyncio.create_task(
                self.supervision.cache.follow(inner), name="supervision-cache"))
            tasks.append(asyncio.create_task(self.supervision.run(inner), name="supervision"))
        await stop.wait()
        inner.set()
        _, pending = await asyncio.wait(tasks, timeout=10)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.journal.close()

    async def _timers(self, stop: asyncio.Event) -> None:
        period = self.settings.tick_ms / 1000
        rescan = report = 0.0
        loop = asyncio.get_running_loop()
        # waited on at every tick (ten times a second): made once, not a task per tick
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                now = datetime.now(UTC)
                # start watching devices registered since
                if self.active and loop.time() >= rescan:
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
                    events = self.engine.tick(now) if self.active else []
                    if self.active and self.supervision is not None:
                        events += self.supervision.tick(now)
                    if events:
                        self._dispatch(events)
                    if loop.time() >= report:
                        report = loop.time() + OPEN_ALARMS_SAMPLE_S
                        self._report_open(now)
                except Exception:
                    log.exception("alarm timer tick failed; continuing")
                await asyncio.wait((stopped,), timeout=period)
        finally:
            stopped.cancel()
