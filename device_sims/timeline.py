"""What a scenario's scripted incidents will do, and when in real time (pure).

The demo prints it so that whoever watches the console knows what to expect; the demo's
seed plans the scripted lock visits from it. Only what the scenario scripts is listed
(incidents, a battery that runs flat); random processes are not predictable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from device_sims.battery import Battery
from device_sims.clock import SimClock
from device_sims.params import (
    BloodPressureGroup,
    DoorLockGroup,
    GpsAlarmGroup,
    ScaleGroup,
)
from device_sims.scenario import DeviceSpec


@dataclass(frozen=True, slots=True)
class Happening:
    """One scripted event: its simulated instant, when that is in real time, and what."""

    sim_at: datetime
    real_at: datetime
    device_id: str
    what: str


@dataclass(frozen=True, slots=True)
class ScriptedVisit:
    """A scripted visit at a lock: who opens it, from when to when (simulated time)."""

    device_id: str
    key_id: str
    starts_at: datetime
    ends_at: datetime


def happenings(specs: list[DeviceSpec], clock: SimClock) -> list[Happening]:
    """Every scripted happening of ``specs``, in real-time order."""
    found: list[tuple[datetime, str, str]] = []
    for spec in specs:
        params = spec.params
        if isinstance(params, GpsAlarmGroup):
            for gps in params.incidents:
                what = {
                    "button": "the alarm button is pressed",
                    "fall": "a fall is detected",
                    "wander": "the wearer starts to wander out of the safe zone",
                }[gps.kind]
                found.append((clock.start + gps.at, spec.device_id, what))
        elif isinstance(params, ScaleGroup):
            for weigh_in in params.incidents:
                what = f"a weigh-in of {weigh_in.kg:.1f} kg"
                if params.memory_kg:
                    what += f" (the last days: {', '.join(f'{kg:.1f}' for kg in params.memory_kg)})"
                found.append((clock.start + weigh_in.at, spec.device_id, what))
        elif isinstance(params, BloodPressureGroup):
            for bp in params.incidents:
                what = (
                    f"a blood-pressure reading of {bp.systolic_mmhg}/{bp.diastolic_mmhg} mmHg, "
                    f"pulse {bp.pulse_bpm}"
                )
                found.append((clock.start + bp.at, spec.device_id, what))
        elif isinstance(params, DoorLockGroup):
            for visit in scripted_visits([spec], clock):
                what = f"a planned visit opens the door with key {visit.key_id}"
                what += (
                    " and leaves it unlocked"
                    if _left_unlocked(params, visit, clock)
                    else f", locked again after {_minutes(visit.ends_at - visit.starts_at)}"
                )
                found.append((visit.starts_at, spec.device_id, what))
        flat = Battery(params.battery, clock.start).time_to(0.0)
        if flat is not None and flat <= clock.live_from + timedelta(hours=1):
            what = "the battery runs flat and the device falls silent"
            found.append((flat, spec.device_id, what))
    found.sort(key=lambda item: (item[0], item[1]))
    return [Happening(at, clock.real_at(at), device, what) for at, device, what in found]


def scripted_visits(specs: list[DeviceSpec], clock: SimClock) -> list[ScriptedVisit]:
    """The lock visits the scenarios script (for planning them in the registry)."""
    visits: list[ScriptedVisit] = []
    for spec in specs:
        params = spec.params
        if not isinstance(params, DoorLockGroup):
            continue
        for incident in params.incidents:
            starts = clock.start + incident.at
            visits.append(
                ScriptedVisit(
                    spec.device_id,
                    spec.staff_key_ids[incident.staff_key],
                    starts,
                    starts + incident.duration,
                )
            )
    return visits


def _left_unlocked(params: DoorLockGroup, visit: ScriptedVisit, clock: SimClock) -> bool:
    return any(
        incident.leave_unlocked and clock.start + incident.at == visit.starts_at
        for incident in params.incidents
    )


def _minutes(span: timedelta) -> str:
    return f"{round(span.total_seconds() / 60)} min"
