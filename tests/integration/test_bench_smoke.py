"""The benchmark's smoke mode runs end to end (figures present, nothing lost). Targets
are judged by the full benchmark (bench/run), never by a timed test."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run


# Every phase of bench/run for a few seconds, each on a stack of its own: 188 s on this
# machine on 2026-12-07 (running at about half its usual speed), over the suite's 180 s
# for one test. A time limit, not a timed assertion.
@pytest.mark.timeout(420)
def test_bench_smoke_produces_every_figure(tmp_path: Path) -> None:
    result = run.main(["--smoke", "--out", str(tmp_path / "smoke.json")])
    assert (tmp_path / "smoke.json").exists()
    ingest = result["ingest"]
    assert ingest["lost"] == 0 and ingest["stored_distinct"] == ingest["messages"]
    assert ingest["stored_msgs_per_s"] > 0 and ingest["bare_consumer_msgs_per_s"] > 0
    assert ingest["two_workers_lost"] == 0 and ingest["two_workers_stored_msgs_per_s"] > 0
    paced = ingest["paced"]  # CPU per stored message at a paced load, beside the bare one
    assert paced["lost"] == 0 and paced["stored_distinct"] == paced["messages"]
    cpu = paced["cpu_us_per_msg"]
    assert cpu["worker"] > 0 and cpu["bare_consumer"] > 0 and cpu["database"] > 0
    assert cpu["broker_database_worker"] > cpu["worker"]
    assert paced["worker_to_bare_consumer"] == round(cpu["worker"] / cpu["bare_consumer"], 2)
    offered = paced["offered_msgs_per_s_measured"]  # the same load for the worker and the bare
    assert set(offered) == {"worker", "bare_consumer_before", "bare_consumer_after"}
    assert result["alarm_latency_ms"]["alarms"] == 20
    assert result["alarm_latency_ms_two_workers"]["alarms"] == 20
    failover = result["failover"]  # the engine's worker killed: presses still delivered
    assert failover["delivered"] == failover["presses"] and failover["stored_all"]
    assert failover["duplicates"] == 0 and failover["false_silent"] == 0
    assert result["silent_detection_s"]["measured"] is not None
    outage = result["outage"]  # PostgreSQL stopped and started again under load
    assert outage["gateway_saw_database_down"]
    assert outage["presses"] == 5 and outage["delivered"] == 5
    assert outage["press_latency_ms"]["max"] is not None
    assert outage["stored_all"] and outage["lost"] == 0
    assert outage["alarm_events_stored_once"] and outage["catch_up_s"] is not None
    for key in ("flood", "flood_with_heartbeats"):  # twice the measured capacity offered
        flood = result[key]
        assert flood["capacity_msgs_per_s"] > 0 and flood["offered_msgs_per_s"] > 0
        assert flood["presses"] == 25 and flood["delivered"] == 25
        assert flood["press_latency_ms"]["p99"] is not None
        assert flood["stored_all"] and flood["lost"] == 0
        assert flood["duplicate_event_ids"] == 0 and flood["raised_twice"] == 0
    reads = result["api_read_ms"]["readings_page_of_100"]
    assert reads["statuses"] == {"200": 50}
    assert result["machine"]["cores"] >= 1
    memory = result["memory"]  # the worker and an API replica ran as their own processes
    assert memory["devices_connected"] == 30 and memory["health_rows_stored_during_run"] > 0
    assert set(memory["rss_mb"]) == {"broker", "worker", "api"}
    # the floor: the broker holding the device contract alone, and the libraries
    assert memory["broker_for_the_device_contract"]["devices"] == 30
    assert memory["floor_mb"] > memory["python_with_libraries_mb"]


def test_profile_smoke_splits_a_workers_time_by_stage() -> None:
    from bench import profile

    result = profile.main(["--smoke"])
    for phase in ("paced", "saturation"):
        figures = result[phase]
        assert figures["profiled_cpu_us_per_msg"] > 0
        shares = [stage["share"] for stage in figures["stages"].values()]
        assert abs(sum(shares) - 1.0) < 0.01
        # the pipeline's own stages are seen, not only "other"
        for stage in ("MQTT receive and ack", "decode and validation",
                      "batch writer, COPY and commit", "event loop and sockets"):  # fmt: skip
            assert figures["stages"][stage]["us_per_msg"] > 0, (phase, stage)
        assert len(figures["top_functions"]) == 5
