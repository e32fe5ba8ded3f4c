"""``bench/run``: every benchmark figure in one JSON object (also written to a file).

``--smoke`` runs each benchmark for a few seconds (part of the test suite); the full run
takes about 25 minutes on a 2-core machine (ten of them the database outage) and
stops by itself. The soak (``python -m bench.soak``, 30 minutes) runs on its own.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import alarms, api, failover, flood, ingest, machine, memory, outage

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench/run")
    parser.add_argument("--smoke", action="store_true", help="a few seconds per figure")
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        ingest_args = (20, 50, 2) if args.smoke else (200, 500, 2)
        ingest_result = ingest.run(*ingest_args, Path(tmp) / "ingest",
                                   paced_s=1.0 if args.smoke else 20.0)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        alarm_args = (20, 200) if args.smoke else (500, 2500)
        alarm_result = alarms.run(*alarm_args, Path(tmp) / "alarms")
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        # the same, a `welfare-gateway worker` beside the `run` process (the engine's)
        two = alarms.run(*alarm_args, Path(tmp) / "alarms-2", workers=2)
        alarm_result["alarm_latency_ms_two_workers"] = two["alarm_latency_ms"]
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        failover_args = (8.0, 200) if args.smoke else (20.0, 1000)
        failover_result = {"failover": failover.run(*failover_args, Path(tmp) / "failover")}
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        # PostgreSQL down for 10 minutes in the full run (what the issue asks for)
        outage_args = (5.0, 200) if args.smoke else (600.0, 1000)
        outage_result = {"outage": outage.run(*outage_args, Path(tmp) / "outage")}
    flood_args = ((flood.SMOKE_SECONDS, None, flood.SMOKE_BURST) if args.smoke
                  else (60.0, None, flood.FULL_BURST))  # fmt: skip
    flood_result = flood.run_mixes(*flood_args)  # telemetry alone, then with heartbeats
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        api_args = (50, 200) if args.smoke else (1000, 2500)
        api_result = api.run(*api_args, Path(tmp) / "api")
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        # smoke: a few devices for a few seconds (the worker and API processes start,
        # link and serve); the figure is only meaningful in the full run
        memory_args = (30, 3.0) if args.smoke else (10_000, 70.0)
        memory_result = {"memory": memory.run(*memory_args, Path(tmp) / "memory")}
    result: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "ingest": ingest_result,
        **alarm_result,
        **failover_result,
        **outage_result,
        **flood_result,
        **api_result,
        **memory_result,
        "machine": machine.describe(),
    }
    out = args.out or RESULTS / ("smoke.json" if args.smoke else "latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
