"""Who receives an alarm: recipient groups chosen by kind, severity and time of day.

A route matches an alarm by kind, severity and local time of day; its ``chain`` lists the
recipient groups in escalation order. At level 0 the alarm goes to ``chain[0]``; each
escalation adds the next group (the earlier ones keep receiving it), and the last group
stays the last. The first matching route wins. Pure: the clock comes in as an argument.

Every built-in group is inside the municipality (its own staff, or an alarm centre acting
for it). A group whose webhook names another organisation may receive an alarm only under
the resident's consent (:mod:`gateway.domain.disclosure`); the caller passes the groups it
may not reach now as ``skip``: the chain goes on without them, and an alarm whose chain is
left empty goes to the fallback (the municipality's own group). So limit alarms (blood
pressure, weight) go by default to the municipality's home care, not to a regional clinic
(security review #17.7); a tenant routes them to the region only by configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from gateway.domain.alarms import Alarm, AlarmKind, Severity

SAFETY = frozenset(
    {AlarmKind.BUTTON, AlarmKind.FALL, AlarmKind.GEOFENCE_EXIT, AlarmKind.TAMPER,
     AlarmKind.DOOR_UNLOCKED, AlarmKind.UNAUTHORISED_UNLOCK,
     # digital supervision and passive alarms (#20, docs/supervision.md)
     AlarmKind.SUPERVISION_NOT_OK, AlarmKind.SUPERVISION_FAILED,
     AlarmKind.DOOR_OPENED_AT_NIGHT, AlarmKind.OUT_OF_BED, AlarmKind.NO_MOVEMENT,
     AlarmKind.FLOOR_MAT}
)  # fmt: skip
#: A planned supervision check's alarm goes first to the team its plan names (who acts,
#: ``detail.team``), then on along the route's chain.
PLANNED = frozenset({AlarmKind.SUPERVISION_NOT_OK, AlarmKind.SUPERVISION_FAILED})
LIMITS = frozenset({AlarmKind.BLOOD_PRESSURE, AlarmKind.WEIGHT_GAIN})
TECHNICAL = frozenset(
    {AlarmKind.DEVICE_SILENT, AlarmKind.BATTERY_LOW, AlarmKind.RECEIVER_UNREACHABLE}
)


@dataclass(frozen=True)
class Route:
    chain: tuple[str, ...]
    kinds: frozenset[AlarmKind] | None = None  # None: any kind
    severities: frozenset[Severity] | None = None
    hours: tuple[time, time] | None = None  # local [start, end); may cross midnight

    def matches(self, alarm: Alarm, local: time) -> bool:
        if self.kinds is not None and alarm.kind not in self.kinds:
            return False
        if self.severities is not None and alarm.severity not in self.severities:
            return False
        if self.hours is not None:
            start, end = self.hours
            inside = start <= local < end if start < end else (local >= start or local < end)
            if not inside:
                return False
        return True


NIGHT = (time(22, 0), time(7, 0))
DAY = (time(7, 0), time(22, 0))

DEFAULT_ROUTES: tuple[Route, ...] = (
    # Night: the night-supervision team first; home care and the named relative next.
    Route(("night_team", "home_care", "relative"), kinds=SAFETY, hours=NIGHT),
    Route(("home_care", "night_team", "relative"), kinds=SAFETY, hours=DAY),
    # Inside the municipality; the region only by a tenant's routes, under consent.
    Route(("home_care",), kinds=LIMITS),
    Route(("technicians", "night_team"), kinds=TECHNICAL),
)


@dataclass(frozen=True)
class RoutingPolicy:
    routes: tuple[Route, ...] = DEFAULT_ROUTES
    timezone: str = "Europe/Stockholm"
    fallback: tuple[str, ...] = ("night_team",)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", ZoneInfo(self.timezone))

    def chain(self, alarm: Alarm, at: datetime) -> tuple[str, ...]:
        """The escalation chain of the route chosen when the alarm was raised."""
        local = at.astimezone(self._zone).time()
        chain = self.fallback
        for route in self.routes:
            if route.matches(alarm, local):
                chain = route.chain
                break
        if alarm.kind in PLANNED:
            team = alarm.detail.get("team")
            if isinstance(team, str) and team:
                return (team, *(g for g in chain if g != team))
        return chain

    def recipients(self, alarm: Alarm, skip: frozenset[str] = frozenset()) -> tuple[str, ...]:
        """Groups that receive the alarm now, at its escalation level. Groups in ``skip``
        (another organisation without the resident's consent) are left out of the chain
        before the level is applied, so escalation goes on to the next group; nothing
        left: the fallback."""
        chain = self.chain(alarm, alarm.raised_at)
        if skip:
            chain = tuple(g for g in chain if g not in skip) or tuple(
                g for g in self.fallback if g not in skip
            )
        return chain[: min(len(chain), alarm.escalation_level + 1)]
