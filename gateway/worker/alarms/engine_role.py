"""One active alarm engine per deployment, handed over through the broker's sessions.

Every worker stores its share of device messages (the shared storage subscription). Rule
state (silence deadlines, geofence side, weight trend, door timers, open alarms) must have
one owner, and Mosquitto's shared subscriptions deal a device's messages round-robin, so
the rules run in one worker at a time: the oldest online worker
(:class:`gateway.control.roles.Membership`). The active engine reads every device's
messages on two persistent sessions whose client ids belong to the deployment, not to a
worker: ``{group}-engine-safety`` (events, status and last wills, command replies) and
``{group}-engine-telemetry`` (telemetry and heartbeats: the bulk of the traffic). Alarms
never queue behind telemetry, heartbeats or a storage commit: each session has its own
receive window (and its own queue at the broker), acknowledged as soon as the rules have
run and any alarm event is journalled and taken by the broker.

Hand-over: while no engine is connected the broker keeps those sessions' messages; the
worker that becomes active resumes the same sessions, so the messages published since
the old engine died (and those it had not acknowledged) reach the new one. The broker
admits one connection per client id, so two workers that briefly both think they lead
never both evaluate. A standby keeps its alarm book equal to the active one's by following
``tenants/+/alarms`` (:meth:`AlarmService.mirror`); it waits ``SETTLE_S`` after the
leader's last will so the dead engine's last published events are in before it takes
over. The active engine also adopts the storage session of every departed worker, whose
share of messages the broker would otherwise keep for it (Mosquitto deals shared
messages to offline members too): :mod:`gateway.worker.adoption`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from firmware_contracts.topics import Channel
from gateway.control.roles import Membership
from gateway.support.metrics import IngestMetrics
from gateway.worker.adoption import SessionAdoption, SessionFactory
from gateway.worker.alarms.intake import AlarmIntake
from gateway.worker.alarms.service import AlarmService
from gateway.worker.consumer import ConsumerConfig, Inbound
from gateway.worker.payload_decoder import PayloadDecoder

log = logging.getLogger(__name__)

#: the engine's telemetry session reads every 10 ms, not at each message (positions and
#: heartbeats come seconds apart per device; a geofence exit or a silence is then judged
#: at most 10 ms later; 2 ms cost 0.15 x the bare consumer's CPU more at the paced load,
#: issue #22); its safety session (buttons, falls) reads at once
TELEMETRY_READ_DELAY_S = 0.010

SAFETY_CHANNELS = frozenset({Channel.EVENTS, Channel.STATUS, Channel.REPLIES})
#: heartbeats are most of a fleet's messages (and all of a reconnect storm's): a press
#: must not queue behind them (measured: p99 3 s in a heartbeat flood when they shared)
TELEMETRY_CHANNELS = frozenset({Channel.TELEMETRY, Channel.HEARTBEAT})
#: after the leader changes to this worker, how long to let the old engine's last
#: published events arrive before taking over
SETTLE_S = 0.3
BACKLOG_SAMPLE_S = 1.0


def engine_client_ids(group: str | None) -> tuple[str, str]:
    prefix = f"{group or 'wg'}-engine"
    return f"{prefix}-safety", f"{prefix}-telemetry"


class EngineRole:
    def __init__(
        self,
        storage: ConsumerConfig,
        *,
        worker_id: str,
        alarms: AlarmService,
        intake: AlarmIntake,
        metrics: IngestMetrics,
        store: Callable[[Inbound], Awaitable[None]],
        session: SessionFactory,
        decodings: PayloadDecoder,
    ) -> None:
        """``session`` makes an MQTT session (:class:`MqttConsumer`) from its config and
        handler: the engine's two, and one per departed worker's storage session adopted.
        ``decodings`` is shared by storage and the engine's intake while the engine runs
        here (and only then: storage alone would leave decodings no one takes)."""
        self.membership = Membership(worker_id)
        self._storage = storage
        self._alarms = alarms
        self._metrics = metrics
        self._store = store
        self._session = session
        self.decodings = decodings
        safety_id, telemetry_id = engine_client_ids(storage.shared_group)
        engine = replace(storage, shared_group=None, adopt=False, read_delay_s=0.0)
        intake.latency = metrics.alarm_latency  # measured on the engine's sessions
        self.sessions = [
            session(replace(engine, client_id=safety_id, channels=SAFETY_CHANNELS,
                            name="engine safety"), intake.handle),
            session(replace(engine, client_id=telemetry_id, channels=TELEMETRY_CHANNELS,
                            name="engine telemetry", read_delay_s=TELEMETRY_READ_DELAY_S),
                    intake.handle),
        ]  # fmt: skip
        self._changed = asyncio.Event()
        self._departed: set[str] = set()
        self._adoption = SessionAdoption(storage, session, store)
        self._adopting: dict[str, asyncio.Task[None]] = {}
        #: set once this worker knows who runs the engine (itself, connected; or another)
        self.settled = asyncio.Event()

    # --- what the control connection hears ------------------------------------------------
    def on_presence(self, worker: str, since_us: int | None) -> None:
        self.membership.update(worker, since_us)
        self._metrics.workers_online.set(len(self.membership.since))
        if worker != self.membership.me:
            if since_us is None:
                self._departed.add(worker)
            else:
                self._departed.discard(worker)
                task = self._adopting.pop(worker, None)
                if task is not None:
                    task.cancel()  # back again: its session is its own
        self._changed.set()

    def on_connection(self, up: bool) -> None:
        if not up:
            self.membership.clear()
            self._metrics.workers_online.set(0)
            self._changed.set()

    # --- running ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        engine_stop: asyncio.Event | None = None
        running: list[asyncio.Task[None]] = []
        try:
            while not stop.is_set():
                self._changed.clear()
                leads = self.membership.leads()
                if leads and engine_stop is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), SETTLE_S)
                    if stop.is_set() or not self.membership.leads():
                        continue
                    try:
                        await self._alarms.activate()
                    except Exception:  # a bug must not leave the deployment without rules
                        log.exception("alarm engine activation failed; trying again")
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 1.0)
                        continue
                    engine_stop = asyncio.Event()
                    self.decodings.sharing = True
                    running = [asyncio.create_task(s.run(engine_stop))
                               for s in self.sessions]  # fmt: skip
                    running.append(asyncio.create_task(self._watch_backlog(engine_stop)))
                    self._metrics.engine_active.set(1)
                    await self._connected(stop)
                elif not leads and engine_stop is not None:
                    await self._stand_down(engine_stop, running)
                    engine_stop, running = None, []
                if self.membership.knows_me() and leads == (engine_stop is not None):
                    self.settled.set()  # its own seniority known, and acted on
                if leads:
                    self._adopt_departed()
                wait = asyncio.ensure_future(self._changed.wait())
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({wait, stopping}, return_when=asyncio.FIRST_COMPLETED)
                wait.cancel()
                stopping.cancel()
        finally:
            if engine_stop is not None:
                await self._stand_down(engine_stop, running)
            for task in self._adopting.values():
                task.cancel()
            await asyncio.gather(*self._adopting.values(), return_exceptions=True)

    async def _connected(self, stop: asyncio.Event) -> None:
        """Wait (bounded) until both engine sessions are subscribed."""

        async def both() -> None:
            for session in self.sessions:
                await session.connected.wait()

        connected = asyncio.ensure_future(both())
        stopping = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({connected, stopping}, timeout=10,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if not done:
            log.warning("alarm engine sessions not connected yet; retrying in the background")
        connected.cancel()
        stopping.cancel()

    async def _stand_down(
        self, engine_stop: asyncio.Event, running: list[asyncio.Task[None]]
    ) -> None:
        engine_stop.set()
        await asyncio.gather(*running, return_exceptions=True)
        self.decodings.sharing = False
        self._alarms.deactivate()
        self._metrics.engine_active.set(0)

    async def _watch_backlog(self, stop: asyncio.Event) -> None:
        """The engine's sessions have their own receive windows; when telemetry arrives
        faster than the rules run, the window fills and the broker holds the rest (never
        lost, and the safety session is not held up). Say so: a metric, and a log line
        when the backlog passes half a window and when it is worked off."""
        window = self._storage.receive_maximum
        behind = False
        while not stop.is_set():
            backlog = sum(s.unacked + s.holding for s in self.sessions)
            self._metrics.engine_backlog.set(backlog)
            if not behind and backlog > window // 2:
                behind = True
                log.warning("alarm engine falling behind its telemetry",
                            extra={"backlog": backlog, "window": window})  # fmt: skip
            elif behind and backlog <= window // 4:
                behind = False
                log.info("alarm engine caught up", extra={"backlog": backlog})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), BACKLOG_SAMPLE_S)
        self._metrics.engine_backlog.set(0)

    def _adopt_departed(self) -> None:
        if not self._storage.shared_group or self._storage.protocol != 5:
            return  # no shared subscription: nothing is dealt to a departed worker
        for worker in sorted(self._departed):
            if worker not in self._adopting:
                self._adopting[worker] = asyncio.create_task(self._adopt(worker))

    async def _adopt(self, worker: str) -> None:
        if await self._adoption.drain(worker, away=lambda: worker in self._departed):
            self._departed.discard(worker)

