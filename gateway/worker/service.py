"""A gateway worker's lifecycle: start-up checks, the tasks it runs, and the order it
stops in (flush, commit, acknowledge). Its parts are wired by :mod:`gateway.bootstrap`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable

import psycopg

from gateway.adapters.mqtt import internals
from gateway.adapters.postgres import advisory, partitions, queries, report_queries
from gateway.adapters.postgres.access_log_seal import AccessLogSealer
from gateway.adapters.postgres.migrate import MigrationError, pending
from gateway.config.settings import Settings
from gateway.control.responder import ControlResponder
from gateway.support.metrics import IngestMetrics
from gateway.worker.alarms.engine_role import EngineRole
from gateway.worker.alarms.service import AlarmService
from gateway.worker.batch_writer import BatchWriter
from gateway.worker.consumer import MqttConsumer
from gateway.worker.fleet.device_state import DeviceState, DeviceStates
from gateway.worker.fleet.registry_cache import RegistryCache
from gateway.worker.ingest import Ingest
from gateway.worker.locks.service import LockService
from gateway.worker.moves import MoveApplier
from gateway.worker.payer import PayerEmitter

log = logging.getLogger(__name__)

PARTITION_MAINTENANCE_S = 3600.0
DRAIN_TIMEOUT_S = 20.0
SETTLE_WARNING_S = 30.0


class GatewayService:
    """The ingest side of the gateway. ``run`` until ``stop`` is set; stopping flushes,
    commits and acknowledges what was received before disconnecting."""

    def __init__(
        self,
        settings: Settings,
        *,
        database_url: str,
        metrics: IngestMetrics,
        states: DeviceStates,
        registry: RegistryCache,
        alarms: AlarmService,
        locks: LockService,
        writer: BatchWriter,
        ingest: Ingest,
        consumer: MqttConsumer,
        role: EngineRole,
        control: ControlResponder,
        sealer: AccessLogSealer | None,
        payer: PayerEmitter | None = None,
        moves: MoveApplier | None = None,
    ) -> None:
        """Built by :func:`gateway.bootstrap.worker`, which wires the parts."""
        self.settings = settings
        self.database_url = database_url
        self.metrics = metrics
        self.states = states
        self.registry = registry
        self.alarms = alarms
        self.locks = locks
        self.writer = writer
        self.ingest = ingest
        self.consumer = consumer
        self.role = role
        self.control = control
        self.sealer = sealer
        self.payer = payer
        self.moves = moves

    async def _check_schema(self) -> None:
        """The schema is ``migrate``'s job (the worker's role has no DDL rights): refuse
        to start on a database it has not brought up to this version."""

        def work() -> list[int]:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                return pending(conn)

        missing = await asyncio.to_thread(work)
        if missing:
            raise MigrationError(
                f"the database schema is behind this version (migrations {missing} not "
                "applied): run `welfare-gateway migrate` (as the owner role) first"
            )

    async def _maintain_partitions(self) -> None:
        def work() -> None:
            with psycopg.connect(self.database_url, autocommit=True) as conn, \
                    advisory.exclusive(conn, advisory.SCHEMA_UPKEEP):  # fmt: skip
                partitions.maintain(conn)
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                report_queries.roll_up_recent(conn)  # the report's daily rollup (#21.1)

        await asyncio.to_thread(work)

    async def _partition_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PARTITION_MAINTENANCE_S)
            if stop.is_set():
                return
            try:
                await self._maintain_partitions()
            except (psycopg.Error, OSError) as exc:
                log.warning("partition maintenance failed", extra={"error": type(exc).__name__})

    async def _restore_device_states(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            async for row in queries.stream(conn, queries.LOAD_DEVICE_STATE):
                device_id, last_seen, last_ts, battery, rssi, firmware, online = row
                device = self.registry.get(device_id)
                if device is not None:  # the registry's strings, shared rather than copied
                    self.states.restore(device.device_id, DeviceState(
                        device.tenant_id, last_seen, last_ts, battery, rssi,
                        sys.intern(firmware) if firmware else None, online,
                    ))  # fmt: skip

    async def _until_settled(self, stop: asyncio.Event) -> None:
        waited = 0.0
        while not (self.role.settled.is_set() or stop.is_set()):
            settled = asyncio.ensure_future(self.role.settled.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({settled, stopping}, timeout=SETTLE_WARNING_S,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            settled.cancel()
            stopping.cancel()
            waited += SETTLE_WARNING_S
            if not (self.role.settled.is_set() or stop.is_set()):
                log.warning(
                    "not storing yet: no worker is known to run the alarm engine (is the "
                    "broker reachable, and may this identity use gateway/workers/#?)",
                    extra={"waited_s": waited},
                )  # fmt: skip

    async def ready(self) -> None:
        """Taking messages for storage, answering API processes, and knowing who runs the
        alarm engine (this worker, with its sessions subscribed, or another)."""
        await self.consumer.connected.wait()
        await self.control.online.wait()
        await self.role.settled.wait()

    async def wait_idle(self, quiet_s: float = 0.5, timeout_s: float = 15.0) -> bool:
        """Wait until nothing has been received for ``quiet_s`` and nothing is queued for
        the writer (e.g. before a demo stops). False if still busy after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        last = (-1.0, -1)
        quiet_since = loop.time()
        while loop.time() < deadline:
            now = (self._received_total(), self.writer.pending())
            if now != last:
                last, quiet_since = now, loop.time()
            elif now[1] == 0 and loop.time() - quiet_since >= quiet_s:
                return True
            await asyncio.sleep(0.05)
        return False

    def _received_total(self) -> float:
        return sum(
            sample.value
            for metric in self.metrics.received.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )

    async def start(self) -> None:
        """What must succeed before the gateway takes traffic (database reachable)."""
        await self._check_schema()
        await self._maintain_partitions()
        await self.registry.load()
        await self._restore_device_states()
        await self.alarms.start()
        await self.locks.start()

    async def run(self, stop: asyncio.Event, started: Callable[[], None] | None = None) -> None:
        """Start, then serve until ``stop``; ``started`` is called once start-up is done
        and before any message is taken. paho and aiomqtt must be tested versions (their
        private API is used); the PUBLISH fast path is installed for the run (setting
        ``mqtt_publish_fast_path``) and undone when it ends."""
        internals.check_versions()
        with internals.publish_fast_path(self.settings.mqtt_publish_fast_path):
            await self._serve(stop, started)

    async def _serve(self, stop: asyncio.Event, started: Callable[[], None] | None) -> None:
        await self.start()
        if started is not None:
            started()
        writer_task = asyncio.create_task(self.writer.run(), name="batch-writer")
        alarms_stop = asyncio.Event()
        alarms_task = asyncio.create_task(self.alarms.run(alarms_stop), name="alarms")
        locks_task = asyncio.create_task(self.locks.run(alarms_stop), name="lock-access")
        control_task = asyncio.create_task(self.control.run(stop), name="control")
        role_stop = asyncio.Event()
        role_task = asyncio.create_task(self.role.run(role_stop), name="engine-role")
        tasks = [
            asyncio.create_task(self.registry.follow(stop), name="registry-follow"),
            asyncio.create_task(self._partition_loop(stop), name="partitions"),
        ]
        if self.sealer is not None:
            tasks.append(asyncio.create_task(self.sealer.run(stop), name="access-log-seal"))
        if self.payer is not None:  # payer changes on their date (#19.1)
            tasks.append(asyncio.create_task(self.payer.run(stop), name="payer-changes"))
        if self.moves is not None:  # moves to another municipality on their date (#19.2)
            tasks.append(asyncio.create_task(self.moves.run(stop), name="moves"))

        async def drain() -> None:
            # Hand the alarm engine over first (its sessions released, offline said), so
            # the next engine runs while this worker flushes storage (up to 20 s when the
            # database is unreachable).
            role_stop.set()
            await role_task
            await control_task
            await self.writer.close()
            try:
                await asyncio.wait_for(asyncio.shield(writer_task), DRAIN_TIMEOUT_S)
            except TimeoutError:
                # Database unreachable: what is not committed is not acknowledged either,
                # so the broker redelivers it to the next session. Nothing is lost.
                log.warning("shutdown without flushing: database unreachable")

        try:
            # Take device messages once it is known who runs the alarm engine: the first
            # worker of a deployment creates the engine's sessions before anything is
            # stored, so no message is stored that the rules have not seen.
            await self._until_settled(stop)
            await self.consumer.run(stop, drain)
        finally:
            stop.set()
            role_stop.set()
            await role_task  # the engine's sessions stop: the next engine resumes them
            await control_task  # says offline; unlocks in flight get their replies
            alarms_stop.set()  # after ingest has drained: deliver what it raised
            await alarms_task
            await locks_task
            if not writer_task.done():
                writer_task.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(writer_task, *tasks, return_exceptions=True)
            await self.registry.close()
