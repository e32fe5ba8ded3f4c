"""The follow-up report's pure figures and rendering (gateway.domain.followup, report_render)."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

import pytest

from gateway.domain import report_render as render
from gateway.domain.followup import (
    ZONE,
    ConditionSpell,
    DeviceUse,
    Holding,
    Period,
    PeriodError,
    Report,
    ResponseGroup,
    Service,
    SupervisionCounts,
    Target,
    Visits,
    compute,
    service_of,
)

NOV = Period.month(2026, 11)


def local(day: date, hour: int = 0) -> datetime:
    return datetime.combine(day, datetime.min.time(), ZONE).replace(hour=hour)


def test_periods() -> None:
    assert (NOV.start, NOV.end, NOV.days) == (date(2026, 11, 1), date(2026, 12, 1), 30)
    assert Period.month(2028, 2).days == 29
    assert NOV.lo == local(date(2026, 11, 1)) and NOV.unused_from == date(2026, 11, 17)
    # the March month holds the change to summer time: 31 days of local dates still
    march = Period.month(2026, 3)
    assert (march.hi - march.lo) == timedelta(days=31, hours=-1)
    for bad in ((date(2026, 1, 2), date(2026, 1, 2)), (date(2025, 1, 1), date(2026, 1, 3))):
        with pytest.raises(PeriodError):
            Period(*bad)
    with pytest.raises(PeriodError):
        Period.month(2026, 13)


def test_services_map_device_types_and_name_the_categories_not_served() -> None:
    assert service_of("gps_alarm") is Service.GPS_ALARM
    assert service_of("door_lock") is Service.KEYLESS_LOCKS
    assert service_of("scale") is service_of("blood_pressure_monitor") is Service.SELF_MONITORING
    assert service_of("toaster") is None


def holding(device: str, kind: str, person: str, start: date, end: date | None = None) -> Holding:
    return Holding(device, kind, person, local(start), local(end) if end else None)


def report(holdings: list[Holding], use: list[DeviceUse], target: Target | None = None) -> Report:
    return compute(
        "kommun-a",
        NOV,
        holdings=holdings,
        use=use,
        target=target,
        by_kind=[ResponseGroup("button", 4, 4, 3, 40.0, 70.0)],
        by_hour=[],
        escalations=[],
        conditions=[ConditionSpell("device_silent", 0, 0, 0.0, None, None, 0)],
        visits=Visits(0, 0),
    )


def test_unused_and_rarely_worn() -> None:
    before = date(2026, 10, 1)
    holdings = [
        # worn on 7 and 8 of the last 28 days: 1.75 a week (rarely) and 2.0 (not)
        holding("g1", "gps_alarm", "p1", before),
        holding("g2", "gps_alarm", "p2", before),
        holding("g3", "gps_alarm", "p3", date(2026, 11, 27)),  # held 4 days: not judged
        holding("l1", "door_lock", "p4", before),  # unused the last 14 days
        # s1 returned and given again with a gap inside the last 14 days: not judged unused
        holding("s1", "scale", "p5", before, date(2026, 11, 20)),
        holding("s1", "scale", "p6", date(2026, 11, 22)),
    ]
    use = [DeviceUse("g1", 7, 3), DeviceUse("g2", 8, 1), DeviceUse("l1", 0, 0)]
    r = report(holdings, use)
    assert r.gps_rarely_worn == 1 and r.gps_judged == 2
    # g3 is not held throughout the last 14 days; s1's holding has a gap in them
    unused = r.unused_devices
    assert unused["door_lock"] == 1 and unused["scale"] == 0 and unused["gps_alarm"] == 0
    lines = {s.service: s for s in r.services}
    assert (lines[Service.GPS_ALARM].devices, lines[Service.GPS_ALARM].users) == (3, 3)
    assert lines[Service.SELF_MONITORING].users == 2 and not lines[Service.SELF_MONITORING].national
    # night supervision: its users are the residents with a plan, not device holders
    assert lines[Service.NIGHT_SUPERVISION].in_use
    assert lines[Service.NIGHT_SUPERVISION].users == 0
    assert not lines[Service.SAFETY_ALARM].in_use and lines[Service.SAFETY_ALARM].users == 0


def test_supervision_users_and_checks_come_from_its_counts() -> None:
    sensors = [holding("bed-1", "bed_sensor", "p1", date(2026, 10, 1))]
    r = compute(
        "kommun-a", NOV, holdings=sensors, use=[], target=None, by_kind=[], by_hour=[],
        escalations=[], conditions=[], visits=Visits(0, 0),
        supervised=SupervisionCounts(users=2, checks_ok=5, checks_not_ok=1, checks_failed=1,
                                     checks_retried=2),
    )  # fmt: skip
    line = next(s for s in r.services if s.service is Service.NIGHT_SUPERVISION)
    assert (line.devices, line.users, line.in_use) == (1, 2, True)
    assert r.devices_by_type["bed_sensor"] == 1
    assert "bed_sensor" not in r.unused_devices  # its states are not in the rollup
    sup = r.supervision
    assert (sup.users, sup.checks_ok, sup.checks_not_ok, sup.checks_failed) == (2, 5, 1, 1)
    assert 'data-chart="supervision"' in render.as_html(r)
    assert ["supervision", "night_supervision", "checks_retried", "2"] in list(
        csv.reader(io.StringIO(render.as_csv(r)))
    )


def test_a_units_shared_device_is_in_use_without_a_user() -> None:
    ward = Holding("ward-scale", "scale", None, local(date(2026, 10, 1)), None)
    own = holding("s2", "scale", "p1", date(2026, 10, 1))
    r = report([ward, own], [])
    line = next(s for s in r.services if s.service is Service.SELF_MONITORING)
    assert (line.devices, line.devices_at_end, line.users) == (2, 2, 1)


def test_target_judges_the_share_and_is_drawn() -> None:
    r = report([], [], Target(60, 0.8))
    line = r.response_by_kind[0]
    assert (line.share_within_target, line.meets_target) == (0.75, False)
    html = render.as_html(r, "en")
    assert 'class="target-line" data-value="0.8"' in html and "<script" not in html
    assert 'data-chart="response-by-kind"' in html and 'data-label="Button"' in html
    untargeted = report([], [])
    assert untargeted.response_by_kind[0].share_within_target is None
    assert "target-line" not in render.as_html(untargeted)


def test_the_page_allows_its_own_style_block_and_nothing_else() -> None:
    import base64
    import hashlib
    import re

    html = render.as_html(report([], [], Target(60, 0.8)))
    (style,) = re.findall(r"<style>(.*?)</style>", html, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    csp = render.page_csp()
    assert f"style-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp
    assert "script" not in csp and "<script" not in html


def test_csv_is_one_figure_a_row() -> None:
    r = report([holding("g1", "gps_alarm", "p1", date(2026, 10, 1))], [], Target(60, 0.8))
    rows = list(csv.reader(io.StringIO(render.as_csv(r))))
    assert rows[0] == list(render.CSV_HEADER) and all(len(row) == 4 for row in rows)
    assert ["services", "gps_alarm", "users", "1"] in rows
    assert ["response_by_kind", "button", "share_within_target", "0.75"] in rows


def test_bar_chart_scales_marks_and_escapes() -> None:
    svg = render.bar_chart("x", ["<a>", "b"], [("s", [2, None])], target=1.0)
    assert svg.count('class="bar"') == 1 and "&lt;a&gt;" in svg and "<a>" not in svg
    assert 'class="target-line"' in svg
