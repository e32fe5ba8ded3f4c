"""The follow-up report benchmark's smoke mode runs end to end: a fleet and its history
seeded, the rollup of a raw day, each query timed, the report over HTTP as JSON, HTML
and CSV. The seconds themselves are judged by the full run (``python -m bench.report``,
docs/performance.md), never by a timed test; here the figures must be the seeded ones."""

from __future__ import annotations

from bench import report


def test_report_bench_smoke_renders_the_seeded_fleet() -> None:
    result = report.main(["--smoke"])
    assert result["devices"] == 500 and result["days"] == 60
    assert result["rows"]["report_device_days"] == 500 * 60
    figures = result["figures"]
    assert figures["devices_by_type"] == {
        "gps_alarm": 200, "door_lock": 150, "scale": 100, "blood_pressure_monitor": 50,
        "door_sensor": 0, "motion_sensor": 0, "bed_sensor": 0, "floor_mat": 0,
    }  # fmt: skip
    assert figures["users"] == {
        "safety_alarm": 0, "gps_alarm": 200, "night_supervision": 0, "keyless_locks": 150,
        "remote_self_monitoring": 150,
    }  # fmt: skip
    # one scale in ten never used; a quarter of the GPS alarms hardly worn
    assert figures["unused_devices"]["scale"] == 25
    assert figures["gps_rarely_worn"] == 50 and figures["gps_judged"] == 200
    assert figures["visits"]["planned"] > figures["visits"]["opened"] > 0
    assert result["svg_charts"] == 8 and result["rollup_days"] == 1
    assert set(result["year_per_query_s"]) == {
        "holdings", "device_use", "responses", "escalations", "conditions", "visits",
    }  # fmt: skip
    assert result["year_json_s"] > 0 and result["year_html_s"] > 0
