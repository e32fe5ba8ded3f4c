"""Safe zones for GPS alarms, and the per-person state machine that decides exits and returns.

Pure rules: no I/O, no clock. Every decision takes the fix's own time ``at`` (a
timezone-aware datetime), so buffered fixes replayed late are judged at the time they were
measured, and the same inputs always give the same answer.

Vocabulary used in the docstrings below:

* **fix**: one reported position (``lat``, ``lon`` in WGS 84 decimal degrees) with the
  device's own accuracy estimate ``accuracy_m`` (radius in metres) and measurement time ``at``.
* **signed distance**: metres from the fix to a zone's boundary; negative inside the zone,
  positive outside, zero on the boundary.
* **active zone**: a zone whose schedule (its time windows) covers ``at``.

The rules an operator can rely on:

1. Only active zones count. A night-only zone never alarms in the daytime.
2. A fix that cannot be trusted never raises and never clears an alarm: it is ignored, with no
   state change. Untrusted means accuracy worse than ``GeofencePolicy.max_accuracy_m``, an
   unknown or invalid accuracy, invalid coordinates, or exactly (0, 0), which many trackers
   send when they have no satellite fix.
3. "Outside" needs certainty: the whole accuracy circle plus a hysteresis margin must lie
   outside every active zone. "Inside" needs the fix to be inside some active zone by more
   than the margin. In between, the previous state is kept, so a person standing on the
   border does not make the alarm flap.
4. Fixes older than the last one used are ignored, so replayed buffers cannot flip the state
   back.
5. When the active period of every zone ends while the person is outside, the condition is
   cleared ("returned" with no zone ids): outside the agreed hours there is no zone to be
   outside of. If a zone becomes active again and the person is still outside, the first
   confident fix raises a new "exited".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG), used for the spherical (haversine) distance."""

_Point = tuple[float, float]


# --------------------------------------------------------------------------- shapes


def _check_coordinates(lat: float, lon: float, what: str) -> None:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise ValueError(f"{what}: coordinates must be finite numbers, got ({lat}, {lon})")
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"{what}: latitude {lat} is outside [-90, 90]")
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"{what}: longitude {lon} is outside [-180, 180]")


@dataclass(frozen=True, slots=True)
class Circle:
    """A circular zone: every point within ``radius_m`` metres (great-circle) of the centre."""

    lat: float
    lon: float
    radius_m: float

    def __post_init__(self) -> None:
        _check_coordinates(self.lat, self.lon, "Circle centre")
        if not (math.isfinite(self.radius_m) and self.radius_m > 0):
            raise ValueError(f"Circle radius_m must be a positive number, got {self.radius_m}")


@dataclass(frozen=True, slots=True)
class Polygon:
    """A polygonal zone given by its corners as ``(lat, lon)`` pairs.

    The ring is closed implicitly: do not repeat the first corner at the end. Edges are
    straight lines in latitude/longitude, which is how map tools draw small polygons. The
    polygon must be simple: at least 3 corners, no repeated consecutive corners, non-zero
    area, and no edge may cross or touch a non-neighbouring edge or fold back onto its
    neighbour. Zones must not cross the 180th meridian or contain a pole (irrelevant in
    Sweden, not checked).
    """

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        points = tuple((float(lat), float(lon)) for lat, lon in self.points)
        object.__setattr__(self, "points", points)
        _validate_polygon(points)


Shape = Circle | Polygon


def _validate_polygon(points: tuple[_Point, ...]) -> None:
    if len(points) < 3:
        raise ValueError(f"Polygon needs at least 3 corners, got {len(points)}")
    for index, (lat, lon) in enumerate(points):
        _check_coordinates(lat, lon, f"Polygon corner {index}")
    count = len(points)
    for index in range(count):
        if points[index] == points[(index + 1) % count]:
            if index == count - 1:
                raise ValueError(
                    "Polygon repeats its first corner at the end; the ring is closed implicitly, "
                    "leave the last corner out"
                )
            raise ValueError(f"Polygon corners {index} and {index + 1} are the same point")
    if _all_on_one_line(points):
        raise ValueError("Polygon has zero area (all corners on one line)")
    crossing = _find_self_intersection(points)
    if crossing is not None:
        first, second = crossing
        raise ValueError(
            f"Polygon is not simple: edge {first} crosses or touches edge {second} "
            "(edge i runs from corner i to corner i+1)"
        )


def _all_on_one_line(points: Sequence[_Point]) -> bool:
    """Every corner within about 0.1 mm (1e-9 degrees) of the line through the first two."""
    a, b = points[0], points[1]
    length = math.hypot(b[0] - a[0], b[1] - a[1])
    return all(abs(_orientation(a, b, p)) / length < 1e-9 for p in points[2:])


def _orientation(a: _Point, b: _Point, c: _Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(a: _Point, b: _Point, p: _Point) -> bool:
    """``p`` (known to be collinear with a-b) lies within the bounding box of a-b."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _segments_touch(a: _Point, b: _Point, c: _Point, d: _Point) -> bool:
    o1, o2 = _orientation(a, b, c), _orientation(a, b, d)
    o3, o4 = _orientation(c, d, a), _orientation(c, d, b)
    if ((o1 > 0 > o2) or (o1 < 0 < o2)) and ((o3 > 0 > o4) or (o3 < 0 < o4)):
        return True
    return (
        (o1 == 0 and _on_segment(a, b, c))
        or (o2 == 0 and _on_segment(a, b, d))
        or (o3 == 0 and _on_segment(c, d, a))
        or (o4 == 0 and _on_segment(c, d, b))
    )


def _folds_back(before: _Point, corner: _Point, after: _Point) -> bool:
    """The edge leaving ``corner`` runs back along the edge arriving at it."""
    if _orientation(before, corner, after) != 0:
        return False
    dot = (before[0] - corner[0]) * (after[0] - corner[0]) + (before[1] - corner[1]) * (
        after[1] - corner[1]
    )
    return dot > 0


def _find_self_intersection(points: Sequence[_Point]) -> tuple[int, int] | None:
    """The first pair of edges that make the ring non-simple, or None. O(n^2)."""
    count = len(points)
    edges = [(points[i], points[(i + 1) % count]) for i in range(count)]
    for i in range(count):
        if _folds_back(points[i - 1], points[i], points[(i + 1) % count]):
            return ((i - 1) % count, i)
        for j in range(i + 2, count):
            if i == 0 and j == count - 1:
                continue  # neighbours through the closing corner
            if _segments_touch(*edges[i], *edges[j]):
                return (i, j)
    return None


# --------------------------------------------------------------------------- distances


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres on a sphere of radius ``EARTH_RADIUS_M``.

    The spherical model differs from the WGS 84 ellipsoid by at most about 0.5 %, which is
    far below GPS accuracy at the distances that matter for a safe zone.
    """
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lon2 - lon1)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def signed_distance_m(shape: Shape, lat: float, lon: float) -> float:
    """Metres from the point (``lat``, ``lon``) to the boundary of ``shape``.

    Negative inside, positive outside, 0 on the boundary.

    * Circle: haversine distance from the point to the centre, minus the radius.
    * Polygon: the distance to the nearest edge, negative when the point is inside (ray
      casting, even-odd rule). Computed in a local equirectangular projection centred on the
      point (x = R * cos(lat_point) * d_lon, y = R * d_lat). That projection is an affine map
      of latitude/longitude, so the inside/outside decision is exact for the polygon's
      straight lat/lon edges; the metric error grows as d^2 * tan(lat) / R for an edge at
      distance d: about 0.1 m at 500 m and 1 m at 2 km at 60 degrees north, and the
      alarm decisions are made within a few hundred metres of the boundary.
    """
    if isinstance(shape, Circle):
        return haversine_m(lat, lon, shape.lat, shape.lon) - shape.radius_m
    return _polygon_signed_distance_m(shape, lat, lon)


def _wrap_degrees(delta: float) -> float:
    """A longitude difference folded into [-180, 180)."""
    return (delta + 180.0) % 360.0 - 180.0


def _project(points: Sequence[_Point], lat0: float, lon0: float) -> list[_Point]:
    """Corners as (x east, y north) metres in the equirectangular projection centred on
    (lat0, lon0)."""
    x_scale = EARTH_RADIUS_M * math.cos(math.radians(lat0))
    return [
        (
            x_scale * math.radians(_wrap_degrees(lon - lon0)),
            EARTH_RADIUS_M * math.radians(lat - lat0),
        )
        for lat, lon in points
    ]


def _distance_to_segment_from_origin(a: _Point, b: _Point) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    length_sq = dx * dx + dy * dy
    t = 0.0 if length_sq == 0.0 else max(0.0, min(1.0, -(a[0] * dx + a[1] * dy) / length_sq))
    return math.hypot(a[0] + t * dx, a[1] + t * dy)


def _origin_inside(corners: Sequence[_Point]) -> bool:
    """Even-odd ray casting from the origin towards +x."""
    inside = False
    for index, (ax, ay) in enumerate(corners):
        bx, by = corners[index - 1]
        if (ay > 0.0) != (by > 0.0):
            x_cross = ax + (0.0 - ay) * (bx - ax) / (by - ay)
            if x_cross > 0.0:
                inside = not inside
    return inside


def _polygon_signed_distance_m(polygon: Polygon, lat: float, lon: float) -> float:
    corners = _project(polygon.points, lat, lon)
    distance = min(
        _distance_to_segment_from_origin(corners[i - 1], corners[i]) for i in range(len(corners))
    )
    if distance == 0.0:
        return 0.0
    return -distance if _origin_inside(corners) else distance


# --------------------------------------------------------------------------- schedules


def _require_aware(at: datetime, name: str = "at") -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {at.isoformat()}")


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A weekly period in local wall-clock time, e.g. Monday-Friday 22:00-06:00.

    ``weekdays`` are the days on which the window *starts* (0 = Monday ... 6 = Sunday).
    The window covers local times ``start <= t < end`` on each of those days. If ``end`` is
    not after ``start`` the window crosses midnight: it runs from ``start`` on the listed day
    to ``end`` on the following day, so Friday 22:00-06:00 covers Saturday 05:00 even when
    Saturday is not listed, and does not cover Friday 05:00 unless Thursday is listed.
    ``start == end`` means 24 hours from ``start`` (00:00-00:00 is the whole day).

    Times are wall-clock times of the zone's timezone, so 22:00 means 22:00 both in winter
    and in summer time. On the day clocks go forward, a wall time that does not exist (02:xx in
    Sweden) is never reached; on the day clocks go back, the repeated hour is covered both
    times if it is inside the window.
    """

    weekdays: frozenset[int]
    start: time
    end: time

    def __post_init__(self) -> None:
        weekdays = frozenset(self.weekdays)
        object.__setattr__(self, "weekdays", weekdays)
        if not weekdays:
            raise ValueError("TimeWindow needs at least one weekday (0 = Monday ... 6 = Sunday)")
        if not weekdays <= frozenset(range(7)):
            raise ValueError(f"TimeWindow weekdays must be in 0..6 (0 = Monday), got {weekdays}")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("TimeWindow start and end are local wall-clock times without tzinfo")

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def covers(self, local: datetime) -> bool:
        """Whether the wall-clock time ``local`` (already in the zone's timezone) is inside."""
        clock, weekday = local.time(), local.weekday()
        if not self.crosses_midnight:
            return weekday in self.weekdays and self.start <= clock < self.end
        if weekday in self.weekdays and clock >= self.start:
            return True
        return (weekday - 1) % 7 in self.weekdays and clock < self.end


@dataclass(frozen=True, slots=True)
class SafeZone:
    """A zone the person is expected to stay in, active during ``windows``.

    An empty ``windows`` means always active. Otherwise the zone is active when any window
    covers the moment, read as wall-clock time in ``timezone`` (an IANA name; daylight
    saving time is handled by the timezone database).
    """

    zone_id: str
    name: str
    shape: Circle | Polygon
    windows: tuple[TimeWindow, ...] = ()
    timezone: str = "Europe/Stockholm"

    def __post_init__(self) -> None:
        if not self.zone_id:
            raise ValueError("SafeZone zone_id must not be empty")
        object.__setattr__(self, "windows", tuple(self.windows))
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"SafeZone {self.zone_id}: unknown timezone {self.timezone!r}"
            ) from exc

    def is_active(self, at: datetime) -> bool:
        """Whether the zone counts at the (timezone-aware) moment ``at``."""
        _require_aware(at)
        if not self.windows:
            return True
        local = at.astimezone(ZoneInfo(self.timezone))
        return any(window.covers(local) for window in self.windows)


def active_zones(zones: Iterable[SafeZone], at: datetime) -> tuple[SafeZone, ...]:
    """The zones whose schedule covers ``at``, in their given order."""
    return tuple(zone for zone in zones if zone.is_active(at))


# --------------------------------------------------------------------------- state machine


class GeofenceState(StrEnum):
    INSIDE = "inside"
    OUTSIDE = "outside"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class GeofencePolicy:
    """Tuning of the exit/return decision.

    * ``hysteresis_m``: the margin a fix must clear beyond the boundary (both ways) before
      the state changes; stops a person on the border from flapping the alarm.
    * ``max_accuracy_m``: fixes with a worse (larger) accuracy radius are ignored.
    """

    hysteresis_m: float = 25.0
    max_accuracy_m: float = 500.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.hysteresis_m) and self.hysteresis_m >= 0):
            raise ValueError(f"hysteresis_m must be >= 0, got {self.hysteresis_m}")
        if not (math.isfinite(self.max_accuracy_m) and self.max_accuracy_m >= 0):
            raise ValueError(f"max_accuracy_m must be >= 0, got {self.max_accuracy_m}")


@dataclass(frozen=True, slots=True)
class Transition:
    """A change that the alarm engine acts on.

    * ``kind="exited"``: raise the geofence condition. ``distance_m`` is the smallest signed
      distance to the active zones (positive, metres outside); ``zone_ids`` are all active
      zones, in the order given (the person is outside each of them).
    * ``kind="returned"`` with zone ids: clear the condition; the person is back inside
      ``zone_ids`` (the active zones they are inside by more than the margin) and
      ``distance_m`` is the smallest signed distance (negative).
    * ``kind="returned"`` with ``zone_ids == ()``: clear the condition because no zone is
      active any more (the schedule ended); nothing was measured, ``distance_m`` is NaN.
    """

    kind: Literal["exited", "returned"]
    at: datetime
    distance_m: float
    zone_ids: tuple[str, ...]


def _fix_is_usable(lat: float, lon: float, accuracy_m: float, max_accuracy_m: float) -> bool:
    if not all(math.isfinite(value) for value in (lat, lon, accuracy_m)):
        return False
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return False
    if lat == 0.0 and lon == 0.0:
        return False  # "null island": trackers without a satellite fix report (0, 0)
    return 0.0 <= accuracy_m <= max_accuracy_m


class GeofenceTracker:
    """The geofence state of one person (one tracker per person and device).

    Starts UNKNOWN unless restored with ``state`` and ``last_fix_at`` (for instance after a
    restart). See the module docstring for the rules; ``update`` states them precisely.
    Not thread-safe: feed one person's fixes from one task.
    """

    __slots__ = ("_last_fix_at", "_policy", "_state")

    def __init__(
        self,
        policy: GeofencePolicy | None = None,
        *,
        state: GeofenceState = GeofenceState.UNKNOWN,
        last_fix_at: datetime | None = None,
    ) -> None:
        if last_fix_at is not None:
            _require_aware(last_fix_at, "last_fix_at")
        self._policy = policy if policy is not None else GeofencePolicy()
        self._state = state
        self._last_fix_at = last_fix_at

    @property
    def policy(self) -> GeofencePolicy:
        return self._policy

    @property
    def state(self) -> GeofenceState:
        return self._state

    @property
    def last_fix_at(self) -> datetime | None:
        """Time of the last fix (or schedule check) that was used; older ones are ignored."""
        return self._last_fix_at

    def update(
        self,
        zones: Sequence[SafeZone],
        lat: float,
        lon: float,
        accuracy_m: float,
        at: datetime,
    ) -> Transition | None:
        """Feed one fix; return the transition it causes, if any.

        In order:

        1. ``at`` must be timezone-aware (ValueError otherwise).
        2. An untrusted fix is ignored (None, no state change): accuracy not in
           ``[0, max_accuracy_m]``, non-finite or out-of-range coordinates, or exactly (0, 0).
        3. A fix earlier than ``last_fix_at`` is ignored (None, no state change). A fix at
           the same instant is used.
        4. If no zone is active at ``at``: the state becomes UNKNOWN; if it was OUTSIDE,
           "returned" with ``zone_ids=()`` clears the condition.
        5. Otherwise, with d = the smallest signed distance to the active zones and
           h = ``hysteresis_m``: OUTSIDE when d > ``accuracy_m`` + h; INSIDE when d < -h;
           else the state stays as it was (UNKNOWN stays UNKNOWN).
           "exited" when the state becomes OUTSIDE from INSIDE or UNKNOWN (a first fix
           confidently outside is an exit: the person may already be lost); "returned"
           when it becomes INSIDE from OUTSIDE.

        Exits and returns therefore strictly alternate, starting with an exit.
        """
        _require_aware(at)
        if not _fix_is_usable(lat, lon, accuracy_m, self._policy.max_accuracy_m):
            return None
        if self._is_stale(at):
            return None
        self._last_fix_at = at
        active = active_zones(zones, at)
        if not active:
            return self._deactivate(at)
        distances = [(zone.zone_id, signed_distance_m(zone.shape, lat, lon)) for zone in active]
        return self._judge(distances, accuracy_m, at)

    def check_schedule(self, zones: Sequence[SafeZone], at: datetime) -> Transition | None:
        """Apply rule 4 of ``update`` without a fix, e.g. from a timer when a night zone ends.

        Trackers that report rarely (only on alarm or manual locate, or with a flat battery)
        would otherwise keep a condition open long after the zone's hours. If some zone is
        active at ``at``, nothing changes (the position is not known). If none is, the state
        becomes UNKNOWN, ``last_fix_at`` advances to ``at`` (older buffered fixes are then
        ignored) and an open condition is cleared with "returned", ``zone_ids=()``. A time
        earlier than ``last_fix_at`` is ignored.
        """
        _require_aware(at)
        if self._is_stale(at) or active_zones(zones, at):
            return None
        self._last_fix_at = at
        return self._deactivate(at)

    def _is_stale(self, at: datetime) -> bool:
        return self._last_fix_at is not None and at < self._last_fix_at

    def _deactivate(self, at: datetime) -> Transition | None:
        was_outside = self._state is GeofenceState.OUTSIDE
        self._state = GeofenceState.UNKNOWN
        if was_outside:
            return Transition(kind="returned", at=at, distance_m=math.nan, zone_ids=())
        return None

    def _judge(
        self, distances: Sequence[tuple[str, float]], accuracy_m: float, at: datetime
    ) -> Transition | None:
        margin = self._policy.hysteresis_m
        nearest = min(distance for _, distance in distances)
        previous = self._state
        if nearest > accuracy_m + margin:
            self._state = GeofenceState.OUTSIDE
            if previous is not GeofenceState.OUTSIDE:
                zone_ids = tuple(zone_id for zone_id, _ in distances)
                return Transition(kind="exited", at=at, distance_m=nearest, zone_ids=zone_ids)
        elif nearest < -margin:
            self._state = GeofenceState.INSIDE
            if previous is GeofenceState.OUTSIDE:
                zone_ids = tuple(zone_id for zone_id, d in distances if d < -margin)
                return Transition(kind="returned", at=at, distance_m=nearest, zone_ids=zone_ids)
        return None
