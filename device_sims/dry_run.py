"""Run a fleet without a broker: what would be published, and when (pure).

Useful for tests and for previewing a scenario. The link behaves ideally (the broker
never goes away), scripted faults and flat batteries act as in a real run, and an abrupt
disconnect yields the last will the broker would publish. Real time is simulated too:
each device's events are emitted at ``clock.real_at(due)``, exactly when the MQTT adapter
would wake up for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from device_sims.catalog import build_simulator
from device_sims.clock import SimClock
from device_sims.envelope import Outgoing, last_will
from device_sims.scenario import DeviceSpec
from device_sims.session import DeviceSession
from firmware_contracts.topics import device_topic


@dataclass(frozen=True, slots=True)
class Published:
    real: datetime
    device_id: str
    topic: str
    out: Outgoing


def dry_run(
    specs: list[DeviceSpec], *, real_start: datetime, duration_s: float, seed: int = 0
) -> list[Published]:
    """Everything the fleet publishes from ``real_start`` for ``duration_s`` real seconds."""
    end = real_start + timedelta(seconds=duration_s)
    published: list[Published] = []
    for spec in specs:
        clock = SimClock.from_spec(spec.clock, real_start)
        session = DeviceSession(build_simulator(spec, seed=seed, clock=clock))
        published.extend(_run_device(session, clock, end))
    published.sort(key=lambda item: item.real)  # stable: per-device order is kept
    return published


def _run_device(session: DeviceSession, clock: SimClock, end: datetime) -> list[Published]:
    out: list[Published] = []

    def flush(real: datetime) -> None:
        while (item := session.outbox.peek()) is not None:
            session.outbox.pop()
            topic = device_topic(session.device_id, item.channel)
            out.append(Published(real, session.device_id, topic, item))

    session.on_connected(clock.real_start)
    flush(clock.real_start)
    while (due := session.next_due()) is not None:
        real = clock.real_at(due)
        if real > end:
            break
        session.tick(clock.sim_at(real))
        if session.connected:
            flush(real)
        if session.connected and not session.want_online:
            if session.down_mode == "abrupt":
                will = last_will()
                out.append(
                    Published(
                        real, session.device_id, device_topic(session.device_id, will.channel), will
                    )
                )
            session.on_disconnected()
        elif not session.connected and session.want_online:
            session.on_connected(real)
            flush(real)
    return out
