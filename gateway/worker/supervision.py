"""Digital supervision in the worker (issue #20, docs/supervision.md).

* :class:`SupervisionCache`: every worker holds the supervision decisions (with consent),
  plans and passive-alarm rules in memory, loaded at start and reloaded whole on every
  change (``LISTEN wg_supervision``, migration 0023): a withdrawal reaches every worker
  within the notification's delay (well under 5 s).
* :class:`SupervisionGate`: the consent check at ingest, on the storage path and the alarm
  engine's intake alike (``gateway.worker.ingest.admit``): a memory look-up, no query.
* :class:`SupervisionRules`: on the active alarm engine's worker, the sensors' states per
  person, the planned checks at their times (retry, ``supervision_not_ok``,
  ``supervision_failed``) and the passive-alarm rules; alarms through the same book,
  routing, escalation and console as every other alarm. Every check is stored
  (``supervision_checks``) off the alarm path, by :meth:`SupervisionRules.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from firmware_contracts.device_types import SENSOR_DEVICE_TYPES
from firmware_contracts.messages import Bed, DeviceMessage, Door, FloorMat, Motion, Status
from gateway.adapters.postgres import listen
from gateway.adapters.postgres import supervision_queries as q
from gateway.domain.alarms import AlarmBook, AlarmEvent, AlarmKind
from gateway.domain.passive_alarms import PassiveRule, PassiveWatch, Signal
from gateway.domain.registry import Binding, DeviceRecord, Refusal, Refused
from gateway.domain.supervision import (
    SEEN_SENSOR,
    CheckRecord,
    Due,
    Evaluation,
    Plan,
    Result,
    Schedule,
    SensorState,
    evaluate,
    outcome,
)
from gateway.domain.supervision_consent import (
    SENSOR_MESSAGE_TYPES,
    Decisions,
    Service,
    refusal,
)

log = logging.getLogger(__name__)

CHANNEL = "wg_supervision"
#: checks missed while no engine was active are made on activation, back to this far
CATCH_UP = timedelta(hours=1)
WRITE_RETRY_S = 2.0
TICK = timedelta(seconds=1)


class SupervisionCache:
    def __init__(self, url: str) -> None:
        self._url = url
        self._decisions = Decisions()
        self._plans: tuple[Plan, ...] = ()
        self._rules: dict[UUID, tuple[PassiveRule, ...]] = {}
        self._changes = listen.Subscription(url, CHANNEL, self._reload, full_reload_s=300.0)

    def decisions(self) -> Decisions:
        return self._decisions

    def plans(self) -> tuple[Plan, ...]:
        return self._plans

    def rules(self, person_id: UUID) -> tuple[PassiveRule, ...]:
        return self._rules.get(person_id, ())

    def all_rules(self) -> list[PassiveRule]:
        return [r for rules in self._rules.values() for r in rules]

    async def _reload(self, conn: psycopg.AsyncConnection[Any]) -> None:
        decisions = Decisions(await q.load_decisions(conn))
        plans = tuple(await q.load_plans(conn))
        rules: dict[UUID, list[PassiveRule]] = defaultdict(list)
        for rule in await q.load_rules(conn):
            rules[rule.person_id].append(rule)
        self._decisions, self._plans = decisions, plans
        self._rules = {person: tuple(found) for person, found in rules.items()}

    async def load(self) -> None:
        await self._changes.load()

    async def follow(self, stop: asyncio.Event) -> None:
        async def changed(_table: str) -> None:
            async with await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=5
            ) as conn:
                await self._reload(conn)

        await self._changes.follow(changed, stop)

    async def close(self) -> None:
        await self._changes.close()


class SupervisionGate:
    """``admit`` 's consent check: None (go on), or the refusal ``no_supervision_consent``."""

    def __init__(self, cache: SupervisionCache, *, gate_positions: bool) -> None:
        self._cache = cache
        self.gate_positions = gate_positions
        self._gated = SENSOR_MESSAGE_TYPES | ({"position"} if gate_positions else set())

    def __call__(
        self, binding: Binding, message: DeviceMessage, ts: datetime | None
    ) -> Refused | None:
        msg_type = message.type
        if msg_type not in self._gated or binding.person_id is None:
            return None
        detail = refusal(self._cache.decisions(), binding.person_id, msg_type,
                         ts or datetime.now(UTC), gate_positions=self.gate_positions)  # fmt: skip
        if detail is None:
            return None
        return Refused(Refusal.NO_SUPERVISION_CONSENT, detail, binding.tenant_id)


_PASSIVE_KIND = {
    "door_opened_at_night": AlarmKind.DOOR_OPENED_AT_NIGHT,
    "out_of_bed": AlarmKind.OUT_OF_BED,
    "no_movement": AlarmKind.NO_MOVEMENT,
    "floor_mat": AlarmKind.FLOOR_MAT,
}


def _value(message: Door | Motion | Bed | FloorMat) -> str | bool:
    match message:
        case Door():
            return message.state
        case Motion():
            return message.detected
        case Bed():
            return message.occupied
        case FloorMat():
            return message.stepped_on


class SupervisionRules:
    """The active engine's supervision: sensor states, planned checks, passive alarms."""

    def __init__(
        self,
        cache: SupervisionCache,
        book: AlarmBook,
        *,
        database_url: str,
        person_ref: Callable[[UUID], str | None],
        silence_bound: Callable[[int], timedelta],
    ) -> None:
        self.cache = cache
        self.book = book
        self._url = database_url
        self._person_ref = person_ref
        self._bound = silence_bound
        self.states: dict[UUID, dict[str, SensorState]] = {}
        self.schedule = Schedule()
        self.watch = PassiveWatch()
        self._resume: dict[UUID, datetime] = {}
        self.pending: deque[CheckRecord] = deque()
        self.checks_made = 0
        self._wake = asyncio.Event()
        self._ticked: datetime | None = None

    # --- messages (the alarm path, memory only) ---------------------------------------
    def observe(
        self, device: DeviceRecord, binding: Binding, message: DeviceMessage, at: datetime
    ) -> list[AlarmEvent]:
        if device.device_type not in SENSOR_DEVICE_TYPES or binding.person_id is None:
            return []  # not a sensor, or a unit's own sensor: no person's plan or rule
        person = binding.person_id
        held = self.states.setdefault(person, {})
        state = held.get(device.device_id)
        kind = _SENSOR_KIND[device.device_type]
        if state is None:
            state = held[device.device_id] = SensorState(device.device_id, kind)
        state.bound = self._bound(device.heartbeat_interval_s)
        state.heard_at = at
        if isinstance(message, Status):
            state.offline = message.state == "offline"
            state.offline_at = at if state.offline else None
            return []
        if state.offline and (message.ts is None or state.offline_at is None
                              or message.ts <= state.offline_at):  # fmt: skip
            # Heartbeats (and telemetry) come on the engine's other session and may lag
            # behind the last will (safety session, read at once): one stamped before
            # the sensor went offline does not say it is back (as the engine's silence
            # watch judges); its states and status come in order on the safety session
            return []
        state.offline, state.offline_at = False, None
        if not isinstance(message, Door | Motion | Bed | FloorMat):
            return []
        value = _value(message)
        state.value, state.at = value, message.ts
        if kind == "motion" and value is True:
            state.last_true_at = message.ts
        rules = self.cache.rules(person)
        if not rules or not self.cache.decisions().allows(
            person, Service.PASSIVE_ALARMS, message.ts
        ):
            return []
        return self._signals(self.watch.on_state(rules, kind, value, device.device_id,
                                                 message.ts))  # fmt: skip

    def _signals(self, signals: list[Signal]) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        for s in signals:
            kind = _PASSIVE_KIND[s.rule.kind.value]
            if s.clear:
                events += self.book.clear(
                    tenant_id=s.rule.tenant_id, kind=kind, device_id=s.device_id,
                    person_id=s.rule.person_id, at=s.at, detail=s.detail or None,
                )  # fmt: skip
                continue
            events += self.book.signal(
                tenant_id=s.rule.tenant_id, kind=kind, device_id=s.device_id,
                person_id=s.rule.person_id, person_ref=self._person_ref(s.rule.person_id),
                at=s.at, condition=s.condition,
                detail={**s.detail, "rule_id": str(s.rule.id)},
            )  # fmt: skip
        return events

    # --- time -------------------------------------------------------------------------
    def tick(self, now: datetime) -> list[AlarmEvent]:
        """What is due by ``now`` (at most once a second: the engine ticks faster)."""
        if self._ticked is not None and now - self._ticked < TICK:
            return []
        self._ticked = now
        events: list[AlarmEvent] = []
        plans = {p.id: p for p in self.cache.plans()}
        for due in list(self.schedule.due(plans.values(), now, self._start_at(now))):
            plan = plans.get(due.plan_id)
            if plan is not None:
                events += self._check(plan, due, now)
        decisions = self.cache.decisions()
        rules = [r for r in self.cache.all_rules()
                 if decisions.allows(r.person_id, Service.PASSIVE_ALARMS, now)]  # fmt: skip
        if rules:
            events += self._signals(self.watch.due(rules, now))
        return events

    def _start_at(self, now: datetime) -> Callable[[UUID], datetime]:
        def start(plan_id: UUID) -> datetime:
            # a plan seen first now: from its last stored check (within CATCH_UP), or now
            resumed = self._resume.pop(plan_id, None)
            return max(resumed, now - CATCH_UP) if resumed is not None else now

        return start

    def _check(self, plan: Plan, due: Due, now: datetime) -> list[AlarmEvent]:
        sensors = self.states.get(plan.person_id, {}).values()
        if not self.cache.decisions().allows(plan.person_id, Service.NIGHT_SUPERVISION, now):
            evaluation = Evaluation(Result.FAILED, {"sensors": [], "rule": plan.seen.value},
                                    "no decision in force with consent for "
                                    "night_supervision")  # fmt: skip
        else:
            evaluation = evaluate(plan, sensors, now)
        result = outcome(due, evaluation)
        events: list[AlarmEvent] = []
        if result is Result.RETRIED:
            self.schedule.retry(plan, due, now)
        elif result in (Result.NOT_OK, Result.FAILED):
            kind = (AlarmKind.SUPERVISION_NOT_OK if result is Result.NOT_OK
                    else AlarmKind.SUPERVISION_FAILED)  # fmt: skip
            events = self.book.signal(
                tenant_id=plan.tenant_id, kind=kind, device_id=self._device_of(plan, sensors),
                person_id=plan.person_id, person_ref=self._person_ref(plan.person_id), at=now,
                condition=False,
                detail={"plan_id": str(plan.id), "planned_at": due.planned_at.isoformat(),
                        "local_time": due.local_time, "attempt": due.attempt,
                        "team": plan.team, "seen": evaluation.seen,
                        "reason": evaluation.reason},
            )  # fmt: skip
        record = CheckRecord(
            plan.tenant_id, plan.person_id, plan.id, due.planned_at, due.local_time,
            due.attempt, result, now, evaluation.seen, evaluation.reason,
            events[-1].alarm.id if events else None,
        )  # fmt: skip
        self.pending.append(record)
        self.checks_made += 1
        self._wake.set()
        log.info("supervision check",
                 extra={"plan_id": str(plan.id), "tenant_id": plan.tenant_id,
                        "attempt": due.attempt, "result": result.value})  # fmt: skip
        return events

    @staticmethod
    def _device_of(plan: Plan, sensors: Any) -> str:
        needed = SEEN_SENSOR[plan.seen]
        for state in sensors:
            if state.kind == needed:
                return str(state.device_id)
        return f"plan-{plan.id}"

    # --- activation (the engine's role taken) ------------------------------------------
    async def activate(self, conn: psycopg.AsyncConnection[Any], now: datetime) -> None:
        """Start from what storage holds: the sensors' last states, each plan's last
        stored check (the missed checks since then, within CATCH_UP, are made), and the
        retries not yet made (within the hour). In a savepoint of its own: should this
        fail, the engine still restores its open alarms (supervision starts empty)."""
        try:
            async with conn.transaction():
                await self._activate(conn, now)
        except psycopg.Error as exc:
            self.states, self.schedule, self._resume = {}, Schedule(), {}
            log.warning("supervision started without the sensors' stored states",
                        extra={"error": type(exc).__name__})  # fmt: skip

    async def _activate(self, conn: psycopg.AsyncConnection[Any], now: datetime) -> None:
        self.states = {}
        self.schedule = Schedule()
        self.watch = PassiveWatch()
        self._resume = {}
        async for plan_id, last in _stream(conn, q.LAST_CHECKS):
            self._resume[plan_id] = last
        plans = {p.id: p for p in self.cache.plans()}
        async for plan_id, planned_at, local_time, evaluated_at in _stream(
            conn, q.PENDING_RETRIES
        ):  # a retry the engine before this one did not live to make: made by this one
            plan = plans.get(plan_id)
            if plan is not None:
                self.schedule.retry(plan, Due(plan_id, planned_at, local_time, 1), evaluated_at)
        motion: dict[str, datetime] = {}
        async for device_id, seen in _stream(conn, q.LAST_MOTION):
            motion[device_id] = seen
        async for device_id, _tenant, person, kind, value, ts, received in _stream(
            conn, q.LAST_SENSOR_STATES
        ):
            if person is None:
                continue
            state = SensorState(device_id, kind, _stored(kind, value), ts, received)
            state.last_true_at = motion.get(device_id)
            self.states.setdefault(person, {})[device_id] = state

    def heard(self, device: DeviceRecord, binding: Binding, at: datetime) -> None:
        """A device's heartbeat lately (at activation), so a sensor is not silent at once."""
        person = binding.person_id
        if person is None or device.device_type not in SENSOR_DEVICE_TYPES:
            return
        state = self.states.setdefault(person, {}).get(device.device_id)
        if state is not None:
            state.bound = self._bound(device.heartbeat_interval_s)
            state.heard_at = max(state.heard_at or at, at)

    # --- storage of the checks (off the alarm path) ------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            while not stop.is_set():
                if self.pending:
                    try:
                        if conn is None or conn.closed:
                            conn = await psycopg.AsyncConnection.connect(
                                self._url, autocommit=True, connect_timeout=5
                            )
                        await self._write(conn)
                    except (psycopg.Error, OSError) as exc:
                        log.warning("supervision checks not stored yet; retrying",
                                    extra={"error": type(exc).__name__,
                                           "pending": len(self.pending)})  # fmt: skip
                        if conn is not None:
                            with contextlib.suppress(psycopg.Error, OSError):
                                await conn.close()
                        conn = None
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), WRITE_RETRY_S)
                        continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
            if self.pending and conn is not None and not conn.closed:
                with contextlib.suppress(psycopg.Error, OSError):
                    await self._write(conn)
        finally:
            if conn is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await conn.close()

    async def _write(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while self.pending:
            record = self.pending[0]
            await conn.execute(q.INSERT_CHECK, q.check_params(record))
            self.pending.popleft()


_SENSOR_KIND = {"door_sensor": "door", "motion_sensor": "motion", "bed_sensor": "bed",
                "floor_mat": "floor_mat"}  # fmt: skip


def _stored(kind: str, value: str) -> str | bool:
    return value if kind == "door" else value == "true"


async def _stream(conn: psycopg.AsyncConnection[Any], query: str) -> Any:
    cur = await conn.execute(query)
    for row in await cur.fetchall():
        yield row
