"""The benchmark's smoke mode runs end to end (figures present, nothing lost). Targets
are judged by the full benchmark (bench/run), never by a timed test."""

from __future__ import annotations

from pathlib import Path

from bench import run


def test_bench_smoke_produces_every_figure(tmp_path: Path) -> None:
    result = run.main(["--smoke", "--out", str(tmp_path / "smoke.json")])
    assert (tmp_path / "smoke.json").exists()
    ingest = result["ingest"]
    assert ingest["lost"] == 0 and ingest["stored_distinct"] == ingest["messages"]
    assert ingest["stored_msgs_per_s"] > 0 and ingest["bare_consumer_msgs_per_s"] > 0
    assert ingest["two_workers_lost"] == 0 and ingest["two_workers_stored_msgs_per_s"] > 0
    assert result["alarm_latency_ms"]["alarms"] == 20
    assert result["alarm_latency_ms_two_workers"]["alarms"] == 20
    failover = result["failover"]  # the engine's worker killed: presses still delivered
    assert failover["delivered"] == failover["presses"] and failover["stored_all"]
    assert failover["duplicates"] == 0 and failover["false_silent"] == 0
    assert result["silent_detection_s"]["measured"] is not None
    reads = result["api_read_ms"]["readings_page_of_100"]
    assert reads["statuses"] == {"200": 50}
    assert result["machine"]["cores"] >= 1
    memory = result["memory"]  # the worker and an API replica ran as their own processes
    assert memory["devices_connected"] == 30 and memory["health_rows_stored_during_run"] > 0
    assert set(memory["rss_mb"]) == {"broker", "worker", "api"}
