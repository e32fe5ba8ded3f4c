"""Run a fleet of simulated devices against a broker: one MQTT connection per device.

:func:`run_fleet` builds a simulator and a connection for every :class:`DeviceSpec`,
all sharing one real start instant (each spec's ``[clock]`` maps it to simulated time,
see :mod:`device_sims.clock`), connects them through a ramp (bounded concurrency and
rate), and runs until ``duration_s`` has passed or ``stop`` is set. Then every device
publishes its retained ``offline`` status and disconnects cleanly, and the function
returns a :class:`FleetReport`.

With ``connect_deadline_s``, a run in which no device has connected by then ends at once
(``report.gave_up``; the report says why the attempts failed), instead of retrying forever
against a broker that will not take the fleet.

Scale: each device costs one TCP connection (one file descriptor) and an aiomqtt/paho
client; the soft open-files limit is raised towards the hard limit when the fleet needs
it. The broker needs as many descriptors as the fleet has devices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import resource
from datetime import UTC, datetime

from device_sims.catalog import build_simulator
from device_sims.clock import ClockSpec, SimClock
from device_sims.connection import ConnectionOptions, DeviceConnection
from device_sims.ramp import Ramp
from device_sims.report import FleetReport
from device_sims.scenario import DeviceSpec
from device_sims.session import DeviceSession

logger = logging.getLogger(__name__)

#: Descriptors kept free for everything that is not a device connection.
_SPARE_FDS = 256


async def run_fleet(
    specs: list[DeviceSpec],
    *,
    host: str,
    port: int,
    duration_s: float | None,
    stop: asyncio.Event | None = None,
    seed: int = 0,
    connect_concurrency: int = 64,
    connect_rate_per_s: float | None = 500.0,
    options: ConnectionOptions | None = None,
    connect_deadline_s: float | None = None,
    real_start: datetime | None = None,
) -> FleetReport:
    """Simulate ``specs`` until ``duration_s`` passes or ``stop`` is set (None: forever).

    ``connect_concurrency`` / ``connect_rate_per_s`` shape the start-up ramp and any
    reconnection storm. ``connect_deadline_s``: give up if no device has connected by then.
    Cancelling the call also ends the run (less gracefully). ``real_start``: the real
    instant the simulated clocks are anchored to (default now; a caller that planned
    something on the simulated timeline passes the instant it planned with).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    real_start = real_start or datetime.now(UTC)
    report = FleetReport(devices=len(specs))
    if not specs:
        return report
    ensure_fd_limit(len(specs) + _SPARE_FDS)
    stopping = asyncio.Event()
    ramp = Ramp(connect_concurrency, connect_rate_per_s)
    clocks: dict[ClockSpec, SimClock] = {}
    connections: list[DeviceConnection] = []
    first_connection = asyncio.Event()
    for spec in specs:
        clock = clocks.get(spec.clock)
        if clock is None:
            clock = clocks[spec.clock] = SimClock.from_spec(spec.clock, real_start)
        sim = build_simulator(spec, seed=seed, clock=clock)
        connections.append(
            DeviceConnection(
                DeviceSession(sim),
                clock,
                spec=spec,
                host=host,
                port=port,
                ramp=ramp,
                report=report,
                stopping=stopping,
                rng=random.Random(f"backoff:{seed}:{spec.device_id}"),
                options=options,
                connected=first_connection,
            )
        )
    logger.info("starting %d simulated devices against %s:%d", len(specs), host, port)

    async def stop_when_done() -> None:
        await _wait_for_end(stop, duration_s)
        logger.info("stopping %d simulated devices", len(connections))
        stopping.set()
        for connection in connections:
            connection.wake()

    tasks: list[asyncio.Task[None]] = []

    async def give_up_unless_connected(deadline_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first_connection.wait(), deadline_s)
        if not first_connection.is_set():
            logger.info("no device connected within %g s: giving up", deadline_s)
            report.gave_up = True
            stopping.set()
            for task in tasks:  # nothing is connected: nothing to end gracefully
                task.cancel()

    watchdog = None
    if connect_deadline_s is not None:
        watchdog = asyncio.create_task(give_up_unless_connected(connect_deadline_s))
    try:
        async with asyncio.TaskGroup() as group:
            tasks.append(group.create_task(stop_when_done()))
            tasks.extend(group.create_task(connection.run()) for connection in connections)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        report.elapsed_s = loop.time() - started
        report.dropped = sum(c.session.outbox.dropped for c in connections)
    logger.info("fleet run done: %s", report.summary())
    return report


async def _wait_for_end(stop: asyncio.Event | None, duration_s: float | None) -> None:
    if stop is None:
        if duration_s is None:
            await asyncio.Event().wait()  # until cancelled
        else:
            await asyncio.sleep(duration_s)  # the run's length, not synchronisation
        return
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([waiter], timeout=duration_s)
    finally:
        waiter.cancel()


def ensure_fd_limit(needed: int) -> int:
    """Raise the soft open-files limit towards ``needed`` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        if soft < needed:
            logger.warning("open-files limit %d is below the %d this fleet needs", soft, needed)
    return soft
