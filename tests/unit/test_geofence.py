"""Safe zones: distances, schedules (midnight, DST) and the exit/return state machine."""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.geofence import (
    EARTH_RADIUS_M,
    Circle,
    GeofencePolicy,
    GeofenceState,
    GeofenceTracker,
    Polygon,
    SafeZone,
    TimeWindow,
    Transition,
    haversine_m,
    signed_distance_m,
)

PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=150)

UPPSALA = (59.8586, 17.6389)
STOCKHOLM = ZoneInfo("Europe/Stockholm")
ALL_DAYS = frozenset(range(7))
T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)  # a Monday, 12:00 local


def destination(
    lat: float, lon: float, bearing_deg: float, distance_m: float
) -> tuple[float, float]:
    """The point ``distance_m`` from (lat, lon) along ``bearing_deg``, on the sphere."""
    delta = distance_m / EARTH_RADIUS_M
    theta = math.radians(bearing_deg)
    phi1, lambda1 = math.radians(lat), math.radians(lon)
    phi2 = math.asin(
        math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta)
    )
    lambda2 = lambda1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1),
        math.cos(delta) - math.sin(phi1) * math.sin(phi2),
    )
    return math.degrees(phi2), math.degrees(lambda2)


def offset(
    north_m: float, east_m: float, origin: tuple[float, float] = UPPSALA
) -> tuple[float, float]:
    """A point north/east of ``origin`` in local metres (for building polygons)."""
    lat0, lon0 = origin
    return (
        lat0 + math.degrees(north_m / EARTH_RADIUS_M),
        lon0 + math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat0)))),
    )


def square(half_side_m: float) -> Polygon:
    h = half_side_m
    return Polygon((offset(h, -h), offset(h, h), offset(-h, h), offset(-h, -h)))


def boundary_distance_by_sampling(polygon: Polygon, lat: float, lon: float) -> float:
    """Reference: min haversine distance to densely sampled points of the edges."""
    best = math.inf
    points = polygon.points
    for index, (lat_a, lon_a) in enumerate(points):
        lat_b, lon_b = points[(index + 1) % len(points)]
        samples = 4000
        for k in range(samples + 1):
            f = k / samples
            sample = (lat_a + f * (lat_b - lat_a), lon_a + f * (lon_b - lon_a))
            best = min(best, haversine_m(lat, lon, *sample))
    return best


# --------------------------------------------------------------------------- circles


@pytest.mark.parametrize(
    ("bearing", "distance", "expected"),
    [
        (0.0, 0.0, -50.0),
        (0.0, 100.0, 50.0),  # 100 m north of a 50 m circle: 50 m outside
        (90.0, 30.0, -20.0),
        (45.0, 50.0, 0.0),
        (180.0, 10_000.0, 9_950.0),
        (270.0, 49.0, -1.0),
    ],
)
def test_circle_signed_distance(bearing: float, distance: float, expected: float) -> None:
    circle = Circle(*UPPSALA, radius_m=50.0)
    lat, lon = destination(*UPPSALA, bearing, distance)
    result = signed_distance_m(circle, lat, lon)
    assert result == pytest.approx(expected, abs=1.0)
    assert result == pytest.approx(haversine_m(lat, lon, *UPPSALA) - 50.0, abs=1e-6)


def test_haversine_one_degree_of_latitude() -> None:
    assert haversine_m(59.0, 17.0, 60.0, 17.0) == pytest.approx(111_195.0, abs=1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lat": 91.0, "lon": 17.0, "radius_m": 50.0}, "latitude"),
        ({"lat": 59.0, "lon": 181.0, "radius_m": 50.0}, "longitude"),
        ({"lat": math.nan, "lon": 17.0, "radius_m": 50.0}, "finite"),
        ({"lat": 59.0, "lon": 17.0, "radius_m": 0.0}, "radius_m"),
        ({"lat": 59.0, "lon": 17.0, "radius_m": -5.0}, "radius_m"),
    ],
)
def test_circle_validation(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Circle(**kwargs)


# --------------------------------------------------------------------------- polygons


@pytest.mark.parametrize(
    ("north", "east", "expected"),
    [
        (0.0, 0.0, -100.0),  # centre of a 200 m square
        (150.0, 0.0, 50.0),  # 50 m north of the north edge
        (0.0, 90.0, -10.0),  # 10 m inside the east edge
        (-160.0, 20.0, 60.0),
        (130.0, 140.0, 50.0),  # outside the north-east corner (30, 40, 50 triangle)
        (1_100.0, 0.0, 1_000.0),
        (0.0, -1_100.0, 1_000.0),
        (-800.0, 900.0, math.hypot(700.0, 800.0)),
    ],
)
def test_square_signed_distance(north: float, east: float, expected: float) -> None:
    polygon = square(100.0)
    lat, lon = offset(north, east)
    result = signed_distance_m(polygon, lat, lon)
    assert result == pytest.approx(expected, abs=1.0)
    reference = boundary_distance_by_sampling(polygon, lat, lon)
    assert abs(result) == pytest.approx(reference, abs=1.0)
    assert math.copysign(1.0, result) == math.copysign(1.0, expected)


def test_point_on_polygon_edge_is_zero() -> None:
    lat, lon = offset(100.0, 0.0)
    assert abs(signed_distance_m(square(100.0), lat, lon)) < 1e-6


def test_concave_polygon_notch_is_outside() -> None:
    # An L: 200 x 200 m with the north-east 100 x 100 m quarter cut away.
    shape = Polygon(
        (
            offset(0.0, 0.0),
            offset(200.0, 0.0),
            offset(200.0, 100.0),
            offset(100.0, 100.0),
            offset(100.0, 200.0),
            offset(0.0, 200.0),
        )
    )
    assert signed_distance_m(shape, *offset(150.0, 150.0)) == pytest.approx(50.0, abs=1.0)
    assert signed_distance_m(shape, *offset(150.0, 50.0)) == pytest.approx(-50.0, abs=1.0)
    assert signed_distance_m(shape, *offset(50.0, 150.0)) == pytest.approx(-50.0, abs=1.0)


def test_polygon_orientation_does_not_matter() -> None:
    clockwise = square(100.0)
    counter = Polygon(tuple(reversed(clockwise.points)))
    for north, east in [(0.0, 0.0), (150.0, 0.0), (130.0, 140.0)]:
        point = offset(north, east)
        assert signed_distance_m(counter, *point) == pytest.approx(
            signed_distance_m(clockwise, *point), abs=1e-9
        )


def test_polygon_normalises_lists_to_tuples() -> None:
    polygon = Polygon([[59.0, 17.0], [59.001, 17.0], [59.0, 17.001]])  # type: ignore[arg-type]
    assert polygon.points == ((59.0, 17.0), (59.001, 17.0), (59.0, 17.001))
    hash(polygon)


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (((59.0, 17.0), (59.1, 17.0)), "at least 3"),
        (((59.0, 17.0), (59.0, 17.0), (59.1, 17.1)), "same point"),
        (((59.0, 17.0), (59.1, 17.0), (59.1, 17.1), (59.0, 17.0)), "closed implicitly"),
        (((59.0, 17.0), (59.1, 17.1), (59.2, 17.2)), "zero area"),
        (((59.0, 17.0), (59.5, 17.5), (60.0, 18.0), (59.25, 17.25)), "zero area"),
        (((59.0, 17.0), (59.1, 17.1), (59.1, 17.0), (59.0, 17.1)), "not simple"),  # bow tie
        (((59.0, 17.0), (59.2, 17.0), (59.1, 17.0), (59.1, 17.1)), "not simple"),  # folds back
        (((95.0, 17.0), (59.1, 17.0), (59.1, 17.1)), "latitude"),
    ],
)
def test_polygon_validation(points: tuple[tuple[float, float], ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Polygon(points)


@PROPERTY
@given(
    bearing=st.floats(0.0, 360.0, allow_nan=False),
    distance=st.floats(0.0, 1_000.0, allow_nan=False),
)
def test_many_sided_polygon_approximates_circle(bearing: float, distance: float) -> None:
    radius = 200.0
    corners = tuple(destination(*UPPSALA, 360.0 * k / 64, radius) for k in range(64))
    polygon, circle = Polygon(corners), Circle(*UPPSALA, radius_m=radius)
    lat, lon = destination(*UPPSALA, bearing, distance)
    assert signed_distance_m(polygon, lat, lon) == pytest.approx(
        signed_distance_m(circle, lat, lon), abs=1.0
    )


# --------------------------------------------------------------------------- schedules


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=STOCKHOLM)


def night_zone(weekdays: frozenset[int] = ALL_DAYS) -> SafeZone:
    window = TimeWindow(weekdays, time(22, 0), time(6, 0))
    return SafeZone("night", "Home at night", Circle(*UPPSALA, 200.0), (window,))


def test_zone_without_windows_is_always_active() -> None:
    zone = SafeZone("home", "Home", Circle(*UPPSALA, 200.0))
    assert zone.is_active(T0)
    assert zone.is_active(local(2026, 12, 24, 3))


@pytest.mark.parametrize(
    ("moment", "active"),
    [
        (local(2026, 5, 4, 21, 59), False),  # Monday before start
        (local(2026, 5, 4, 22, 0), True),  # Monday at start (inclusive)
        (local(2026, 5, 4, 23, 30), True),
        (local(2026, 5, 5, 0, 0), True),  # Tuesday after midnight: Monday's window
        (local(2026, 5, 5, 5, 59), True),
        (local(2026, 5, 5, 6, 0), False),  # end is exclusive
        (local(2026, 5, 5, 22, 30), False),  # Tuesday evening: Tuesday not listed
        (local(2026, 5, 4, 3, 0), False),  # Monday early: would be Sunday's window
        (local(2026, 5, 4, 12, 0), False),
    ],
)
def test_window_crossing_midnight_belongs_to_its_start_day(moment: datetime, active: bool) -> None:
    assert night_zone(frozenset({0})).is_active(moment) is active


@pytest.mark.parametrize(
    ("moment", "active"),
    [
        (local(2026, 5, 8, 8, 0), True),  # Friday
        (local(2026, 5, 8, 16, 59), True),
        (local(2026, 5, 8, 17, 0), False),
        (local(2026, 5, 8, 7, 59), False),
        (local(2026, 5, 9, 12, 0), False),  # Saturday
    ],
)
def test_same_day_window(moment: datetime, active: bool) -> None:
    window = TimeWindow(frozenset(range(5)), time(8, 0), time(17, 0))
    zone = SafeZone("day", "Day centre", Circle(*UPPSALA, 200.0), (window,))
    assert zone.is_active(moment) is active


def test_start_equal_to_end_means_24_hours() -> None:
    window = TimeWindow(frozenset({2}), time(0, 0), time(0, 0))  # all of Wednesday
    assert window.covers(local(2026, 5, 6, 0, 0))
    assert window.covers(local(2026, 5, 6, 23, 59))
    assert not window.covers(local(2026, 5, 7, 0, 0))
    assert not window.covers(local(2026, 5, 5, 23, 59))


@pytest.mark.parametrize(
    ("utc", "active"),
    [
        # 2026-03-29 (Sunday): clocks go 02:00 CET -> 03:00 CEST. Saturday's 22:00-06:00
        # window ends at 06:00 CEST = 04:00 UTC, an hour earlier in UTC than the day before.
        (datetime(2026, 3, 28, 20, 59, tzinfo=UTC), False),  # 21:59 CET
        (datetime(2026, 3, 28, 21, 0, tzinfo=UTC), True),  # 22:00 CET
        (datetime(2026, 3, 29, 0, 30, tzinfo=UTC), True),  # 01:30 CET
        (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), True),  # 03:30 CEST
        (datetime(2026, 3, 29, 3, 59, tzinfo=UTC), True),  # 05:59 CEST
        (datetime(2026, 3, 29, 4, 0, tzinfo=UTC), False),  # 06:00 CEST
        (datetime(2026, 3, 29, 4, 30, tzinfo=UTC), False),  # 06:30 CEST (05:30 at fixed +1)
        # 2026-10-25 (Sunday): clocks go 03:00 CEST -> 02:00 CET; the window lasts 9 hours.
        (datetime(2026, 10, 24, 20, 0, tzinfo=UTC), True),  # 22:00 CEST
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), True),  # 02:30 CEST
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), True),  # 02:30 CET (repeated hour)
        (datetime(2026, 10, 25, 4, 30, tzinfo=UTC), True),  # 05:30 CET (06:30 at fixed +2)
        (datetime(2026, 10, 25, 5, 0, tzinfo=UTC), False),  # 06:00 CET
    ],
)
def test_night_window_on_dst_change_days(utc: datetime, active: bool) -> None:
    assert night_zone(frozenset({5})).is_active(utc) is active


def test_window_in_the_skipped_hour_never_starts() -> None:
    window = TimeWindow(ALL_DAYS, time(2, 15), time(2, 45))
    zone = SafeZone("z", "Z", Circle(*UPPSALA, 100.0), (window,))
    spring_day = [
        datetime(2026, 3, 29, 0, 0, tzinfo=UTC) + timedelta(minutes=m) for m in range(240)
    ]
    assert not any(zone.is_active(moment) for moment in spring_day)
    assert zone.is_active(datetime(2026, 3, 30, 0, 30, tzinfo=UTC))  # 02:30 CEST next day


def test_any_aware_timezone_is_converted_to_the_zone_timezone() -> None:
    zone = night_zone(frozenset({0}))
    new_york = ZoneInfo("America/New_York")
    # Monday 2026-05-04 17:30 in New York is Monday 23:30 in Stockholm.
    assert zone.is_active(datetime(2026, 5, 4, 17, 30, tzinfo=new_york))


def test_zone_timezone_is_respected() -> None:
    window = TimeWindow(ALL_DAYS, time(8, 0), time(9, 0))
    helsinki = SafeZone("z", "Z", Circle(*UPPSALA, 100.0), (window,), timezone="Europe/Helsinki")
    assert helsinki.is_active(local(2026, 5, 4, 7, 30))  # 08:30 in Helsinki
    assert not helsinki.is_active(local(2026, 5, 4, 8, 30))


def test_naive_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        night_zone().is_active(datetime(2026, 5, 4, 23, 0))


@pytest.mark.parametrize(
    ("weekdays", "start", "message"),
    [
        (frozenset(), time(8), "at least one weekday"),
        (frozenset({7}), time(8), "0..6"),
        (frozenset({1}), time(8, tzinfo=UTC), "wall-clock"),
    ],
)
def test_time_window_validation(weekdays: frozenset[int], start: time, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TimeWindow(weekdays, start, time(9))


def test_safe_zone_validation() -> None:
    with pytest.raises(ValueError, match="unknown timezone"):
        SafeZone("z", "Z", Circle(*UPPSALA, 100.0), timezone="Europe/Uppsala")
    with pytest.raises(ValueError, match="zone_id"):
        SafeZone("", "Z", Circle(*UPPSALA, 100.0))


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="hysteresis_m"):
        GeofencePolicy(hysteresis_m=-1.0)
    with pytest.raises(ValueError, match="max_accuracy_m"):
        GeofencePolicy(max_accuracy_m=math.inf)


# --------------------------------------------------------------------------- tracker

RADIUS = 200.0
HOME = SafeZone("home", "Home", Circle(*UPPSALA, RADIUS))


def at_distance(signed_m: float, bearing: float = 0.0) -> tuple[float, float]:
    """A point ``signed_m`` from HOME's boundary (negative inside)."""
    return destination(*UPPSALA, bearing, RADIUS + signed_m)


def feed(
    tracker: GeofenceTracker,
    signed_m: float,
    *,
    accuracy: float = 10.0,
    at: datetime = T0,
    zones: tuple[SafeZone, ...] = (HOME,),
) -> Transition | None:
    return tracker.update(zones, *at_distance(signed_m), accuracy, at)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def test_first_fix_inside_is_quiet() -> None:
    tracker = GeofenceTracker()
    assert feed(tracker, -100.0) is None
    assert tracker.state is GeofenceState.INSIDE
    assert tracker.last_fix_at == T0


def test_first_fix_confidently_outside_is_an_exit() -> None:
    tracker = GeofenceTracker()
    transition = feed(tracker, 300.0)
    assert transition is not None
    assert transition.kind == "exited"
    assert transition.at == T0
    assert transition.distance_m == pytest.approx(300.0, abs=0.01)
    assert transition.zone_ids == ("home",)
    assert tracker.state is GeofenceState.OUTSIDE


def test_first_fix_on_the_border_stays_unknown() -> None:
    tracker = GeofenceTracker()
    assert feed(tracker, 20.0) is None
    assert feed(tracker, -20.0, at=minutes(1)) is None
    assert tracker.state is GeofenceState.UNKNOWN


def test_exit_then_return() -> None:
    tracker = GeofenceTracker()
    assert feed(tracker, -100.0) is None
    exited = feed(tracker, 100.0, at=minutes(1))
    assert exited is not None and exited.kind == "exited"
    assert feed(tracker, 500.0, at=minutes(2)) is None  # still outside: nothing new
    returned = feed(tracker, -30.0, at=minutes(3))
    assert returned is not None
    assert returned.kind == "returned"
    assert returned.zone_ids == ("home",)
    assert returned.distance_m == pytest.approx(-30.0, abs=0.01)
    assert tracker.state is GeofenceState.INSIDE


def test_person_standing_on_the_border_does_not_flap() -> None:
    tracker = GeofenceTracker()
    feed(tracker, -100.0)
    for step, signed in enumerate([-20.0, 30.0, 0.0, 34.0, -24.0, 30.0] * 5, start=1):
        assert feed(tracker, signed, accuracy=10.0, at=minutes(step)) is None
    assert tracker.state is GeofenceState.INSIDE


def test_exit_needs_the_whole_accuracy_circle_outside() -> None:
    tracker = GeofenceTracker()
    feed(tracker, -100.0)
    assert feed(tracker, 100.0, accuracy=80.0, at=minutes(1)) is None  # 100 <= 80 + 25
    assert tracker.state is GeofenceState.INSIDE
    transition = feed(tracker, 100.0, accuracy=70.0, at=minutes(2))  # 100 > 70 + 25
    assert transition is not None and transition.kind == "exited"


def test_return_needs_the_hysteresis_margin() -> None:
    tracker = GeofenceTracker()
    feed(tracker, 300.0)
    assert feed(tracker, -24.0, at=minutes(1)) is None
    assert tracker.state is GeofenceState.OUTSIDE
    transition = feed(tracker, -26.0, at=minutes(2))
    assert transition is not None and transition.kind == "returned"


def test_zero_margins_decide_on_the_boundary_itself() -> None:
    tracker = GeofenceTracker(GeofencePolicy(hysteresis_m=0.0))
    assert feed(tracker, 0.5, accuracy=0.0) is not None
    assert tracker.state is GeofenceState.OUTSIDE
    returned = feed(tracker, -0.5, accuracy=0.0, at=minutes(1))
    assert returned is not None and returned.kind == "returned"


@pytest.mark.parametrize(
    ("lat", "lon", "accuracy"),
    [
        (*at_distance(5_000.0), 501.0),  # worse than max_accuracy_m
        (*at_distance(5_000.0), math.nan),
        (*at_distance(5_000.0), math.inf),
        (*at_distance(5_000.0), -1.0),
        (0.0, 0.0, 5.0),  # "null island": no satellite fix
        (math.nan, 17.0, 5.0),
        (91.0, 17.0, 5.0),
    ],
)
def test_untrusted_fix_is_ignored(lat: float, lon: float, accuracy: float) -> None:
    tracker = GeofenceTracker()
    feed(tracker, -100.0)
    assert tracker.update((HOME,), lat, lon, accuracy, minutes(5)) is None
    assert tracker.state is GeofenceState.INSIDE
    assert tracker.last_fix_at == T0


def test_poor_fix_does_not_clear_an_exit() -> None:
    tracker = GeofenceTracker()
    feed(tracker, 300.0)
    assert feed(tracker, -150.0, accuracy=800.0, at=minutes(1)) is None
    assert tracker.state is GeofenceState.OUTSIDE


def test_fix_older_than_the_last_used_is_ignored() -> None:
    tracker = GeofenceTracker()
    feed(tracker, -100.0, at=minutes(10))
    assert feed(tracker, 1_000.0, at=minutes(9)) is None  # replayed buffer
    assert tracker.state is GeofenceState.INSIDE
    assert tracker.last_fix_at == minutes(10)
    transition = feed(tracker, 1_000.0, at=minutes(10))  # same instant is used
    assert transition is not None and transition.kind == "exited"


def test_out_of_order_return_cannot_clear_a_newer_exit() -> None:
    tracker = GeofenceTracker()
    feed(tracker, -100.0, at=minutes(0))
    feed(tracker, 400.0, at=minutes(20))
    assert feed(tracker, -100.0, at=minutes(15)) is None
    assert tracker.state is GeofenceState.OUTSIDE


def test_naive_fix_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        GeofenceTracker().update((HOME,), *UPPSALA, 5.0, datetime(2026, 5, 4, 12))


def test_night_zone_does_not_alarm_in_the_daytime() -> None:
    tracker = GeofenceTracker()
    zones = (night_zone(),)
    assert feed(tracker, 5_000.0, at=local(2026, 5, 4, 12), zones=zones) is None
    assert tracker.state is GeofenceState.UNKNOWN
    transition = feed(tracker, 5_000.0, at=local(2026, 5, 4, 22, 30), zones=zones)
    assert transition is not None and transition.kind == "exited"
    assert transition.zone_ids == ("night",)


def test_end_of_active_period_clears_an_exit_and_next_period_raises_again() -> None:
    tracker = GeofenceTracker()
    zones = (night_zone(),)
    assert feed(tracker, 800.0, at=local(2026, 5, 5, 5, 0), zones=zones) is not None
    cleared = feed(tracker, 800.0, at=local(2026, 5, 5, 6, 10), zones=zones)
    assert cleared is not None
    assert cleared.kind == "returned"
    assert cleared.zone_ids == ()
    assert math.isnan(cleared.distance_m)
    assert tracker.state is GeofenceState.UNKNOWN
    assert feed(tracker, 800.0, at=local(2026, 5, 5, 12), zones=zones) is None
    again = feed(tracker, 800.0, at=local(2026, 5, 5, 22, 5), zones=zones)
    assert again is not None and again.kind == "exited"


def test_end_of_active_period_while_inside_is_quiet() -> None:
    tracker = GeofenceTracker()
    zones = (night_zone(),)
    feed(tracker, -100.0, at=local(2026, 5, 5, 5, 0), zones=zones)
    assert feed(tracker, -100.0, at=local(2026, 5, 5, 7, 0), zones=zones) is None
    assert tracker.state is GeofenceState.UNKNOWN


def test_no_zones_at_all_means_unknown() -> None:
    tracker = GeofenceTracker()
    assert tracker.update((), *UPPSALA, 5.0, T0) is None
    assert tracker.state is GeofenceState.UNKNOWN


def test_check_schedule_clears_when_the_zone_ends_without_a_fix() -> None:
    tracker = GeofenceTracker()
    zones = (night_zone(),)
    feed(tracker, 800.0, at=local(2026, 5, 5, 5, 0), zones=zones)
    assert tracker.check_schedule(zones, local(2026, 5, 5, 5, 30)) is None  # still active
    assert tracker.state.value == "outside"
    assert tracker.check_schedule(zones, local(2026, 5, 5, 4, 0)) is None  # stale
    cleared = tracker.check_schedule(zones, local(2026, 5, 5, 6, 0))
    assert cleared is not None and cleared.kind == "returned" and cleared.zone_ids == ()
    assert tracker.last_fix_at == local(2026, 5, 5, 6, 0)
    # A buffered fix from before the end arrives late: ignored, the alarm stays cleared.
    assert feed(tracker, 900.0, at=local(2026, 5, 5, 5, 50), zones=zones) is None
    assert tracker.state is GeofenceState.UNKNOWN
    assert tracker.check_schedule(zones, local(2026, 5, 5, 7, 0)) is None


def test_inside_any_active_zone_counts_as_inside() -> None:
    corners = [(100.0, -100.0), (100.0, 100.0), (-100.0, 100.0), (-100.0, -100.0)]
    centre = offset(0.0, 1_000.0)
    day_centre = SafeZone(
        "day", "Day centre", Polygon(tuple(offset(n, e, centre) for n, e in corners))
    )
    zones = (HOME, day_centre)
    tracker = GeofenceTracker()
    at_day_centre = offset(0.0, 1_000.0)
    assert tracker.update(zones, *at_day_centre, 10.0, minutes(0)) is None
    assert tracker.state is GeofenceState.INSIDE
    between = offset(0.0, 600.0)
    exited = tracker.update(zones, *between, 10.0, minutes(1))
    assert exited is not None
    assert exited.zone_ids == ("home", "day")
    assert exited.distance_m == pytest.approx(300.0, abs=1.0)  # 300 m to the day centre
    returned = tracker.update(zones, *at_day_centre, 10.0, minutes(2))
    assert returned is not None and returned.zone_ids == ("day",)


def test_inactive_zone_is_ignored_even_if_the_person_is_in_it() -> None:
    far_night_zone = SafeZone(
        "cabin",
        "Summer cabin at night",
        Circle(*offset(0.0, 3_000.0), 300.0),
        (TimeWindow(ALL_DAYS, time(22), time(6)),),
    )
    tracker = GeofenceTracker()
    feed(tracker, -50.0, zones=(HOME, far_night_zone))
    at_cabin = offset(0.0, 3_000.0)
    transition = tracker.update((HOME, far_night_zone), *at_cabin, 10.0, minutes(1))
    assert transition is not None
    assert transition.zone_ids == ("home",)


def test_polygon_zone_exit_and_return() -> None:
    zone = SafeZone("yard", "Garden", square(100.0))
    tracker = GeofenceTracker()
    assert tracker.update((zone,), *offset(0.0, 0.0), 10.0, minutes(0)) is None
    exited = tracker.update((zone,), *offset(0.0, 200.0), 10.0, minutes(1))
    assert exited is not None and exited.distance_m == pytest.approx(100.0, abs=1.0)
    returned = tracker.update((zone,), *offset(0.0, 50.0), 10.0, minutes(2))
    assert returned is not None and returned.distance_m == pytest.approx(-50.0, abs=1.0)


def test_restored_tracker_continues_from_its_state() -> None:
    tracker = GeofenceTracker(state=GeofenceState.OUTSIDE, last_fix_at=minutes(5))
    assert feed(tracker, -100.0, at=minutes(4)) is None
    transition = feed(tracker, -100.0, at=minutes(6))
    assert transition is not None and transition.kind == "returned"


# --------------------------------------------------------------------------- properties

POLICY = GeofencePolicy()
bearings = st.floats(0.0, 360.0, allow_nan=False)
accuracies = st.floats(0.0, POLICY.max_accuracy_m, allow_nan=False)


@st.composite
def band_fixes(draw: st.DrawFn) -> tuple[float, float, float]:
    """A fix in the undecided band: neither confidently inside nor outside."""
    accuracy = draw(accuracies)
    margin = POLICY.hysteresis_m
    signed = draw(st.floats(-margin + 0.5, accuracy + margin - 0.5))
    lat, lon = at_distance(signed, draw(bearings))
    return lat, lon, accuracy


@PROPERTY
@given(
    anchor=st.sampled_from([None, -100.0, 300.0]),
    fixes=st.lists(band_fixes(), max_size=30),
)
def test_fixes_in_the_band_never_change_anything(
    anchor: float | None, fixes: list[tuple[float, float, float]]
) -> None:
    tracker = GeofenceTracker(POLICY)
    transitions = [] if anchor is None else [feed(tracker, anchor)]
    state = tracker.state
    for step, (lat, lon, accuracy) in enumerate(fixes, start=1):
        transitions.append(tracker.update((HOME,), lat, lon, accuracy, minutes(step)))
        assert tracker.state is state
    assert sum(t is not None for t in transitions) <= 1


@st.composite
def any_fixes(draw: st.DrawFn) -> tuple[float, float, float, datetime]:
    lat, lon = at_distance(draw(st.floats(-RADIUS, 2_000.0)), draw(bearings))
    accuracy = draw(st.floats(0.0, 900.0))
    moment = T0 + timedelta(minutes=draw(st.integers(-60, 3 * 24 * 60)))
    return lat, lon, accuracy, moment


ZONE_SETS = st.sampled_from([(HOME,), (night_zone(),), (HOME, night_zone()), ()])


@PROPERTY
@given(
    zones=ZONE_SETS,
    fixes=st.lists(any_fixes(), max_size=40),
    sorted_times=st.booleans(),
    schedule_checks=st.booleans(),
)
def test_transitions_alternate_starting_with_an_exit(
    zones: tuple[SafeZone, ...],
    fixes: list[tuple[float, float, float, datetime]],
    sorted_times: bool,
    schedule_checks: bool,
) -> None:
    if sorted_times:
        fixes = sorted(fixes, key=lambda fix: fix[3])
    tracker = GeofenceTracker(POLICY)
    kinds: list[str] = []
    for lat, lon, accuracy, moment in fixes:
        transition = tracker.update(zones, lat, lon, accuracy, moment)
        if transition is not None:
            kinds.append(transition.kind)
        if schedule_checks:
            check = tracker.check_schedule(zones, moment + timedelta(minutes=1))
            if check is not None:
                kinds.append(check.kind)
    expected = ["exited", "returned"] * len(kinds)
    assert kinds == expected[: len(kinds)]
    assert (tracker.state is GeofenceState.OUTSIDE) == (len(kinds) % 2 == 1)


@PROPERTY
@given(
    inside=st.floats(-RADIUS, -POLICY.hysteresis_m - 0.5),
    inside_bearing=bearings,
    beyond=st.floats(0.5, 20_000.0),
    accuracy=accuracies,
    bearing=bearings,
)
def test_far_outside_after_inside_always_exits(
    inside: float, inside_bearing: float, beyond: float, accuracy: float, bearing: float
) -> None:
    tracker = GeofenceTracker(POLICY)
    assert tracker.update((HOME,), *at_distance(inside, inside_bearing), 10.0, T0) is None
    assert tracker.state is GeofenceState.INSIDE
    far = accuracy + POLICY.hysteresis_m + beyond
    transition = tracker.update((HOME,), *at_distance(far, bearing), accuracy, minutes(1))
    assert transition is not None
    assert transition.kind == "exited"
    assert transition.distance_m == pytest.approx(far, abs=0.01)


@PROPERTY
@given(
    prefix=st.lists(any_fixes(), max_size=15),
    zones=ZONE_SETS,
    bad=any_fixes(),
    excess=st.floats(0.001, 10_000.0),
)
def test_fix_with_bad_accuracy_changes_nothing(
    prefix: list[tuple[float, float, float, datetime]],
    zones: tuple[SafeZone, ...],
    bad: tuple[float, float, float, datetime],
    excess: float,
) -> None:
    tracker = GeofenceTracker(POLICY)
    for lat, lon, accuracy, moment in prefix:
        tracker.update(zones, lat, lon, accuracy, moment)
    state, last = tracker.state, tracker.last_fix_at
    lat, lon, _, moment = bad
    late = moment + timedelta(days=10)
    assert tracker.update(zones, lat, lon, POLICY.max_accuracy_m + excess, late) is None
    assert tracker.state is state
    assert tracker.last_fix_at == last
