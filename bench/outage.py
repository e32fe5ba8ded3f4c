"""``python -m bench.outage``: PostgreSQL down for minutes while telemetry flows and
buttons are pressed: how fast each press still reaches the operator, and whether
everything is stored once the database is back.

One gateway (``welfare-gateway run``) on a private Mosquitto and PostgreSQL. Background
telemetry flows at a paced rate (``bench.loadgen``). After a few seconds PostgreSQL is
stopped (a fast shutdown: every connection cut) and kept down for ``--outage-s``; during
the outage one new device presses its button every second, and an operator client
subscribed to ``tenants/bench/alarms`` measures each press's publish -> ``raised``. Then
PostgreSQL starts again on the same data directory and socket (the gateway's URL stays
valid; checked), and the benchmark waits (bounded) until every background message and
every press is stored, and every alarm event the operator received is in
``alarm_events`` exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import machine
from bench.failover import ENGINE
from bench.ingest import _loadgen, _wait_all
from bench.mosquitto import wait_until
from bench.presses import (
    alarm_events_check,
    latency_ms,
    press,
    presses_stored,
    pressing_gateway,
    stored,
    until,
    watching,
)
from bench.stack import Stack, gauge, stack

TARGET_S = 1.0  # every press delivered within a second, database down or not
LOAD_DEVICES = 100
WARMUP_S = 3.0  # telemetry flowing and stored before the outage
TAIL_S = 1.0  # the background load goes on this long after the restart
PRESS_EVERY_S = 1.0
CATCH_UP_TIMEOUT_S = 1800.0


async def measure(
    st: Stack, metrics: str, presses: list[str], outage_s: float, rate: int
) -> dict[str, Any]:
    port = st.broker.port
    published: dict[str, float] = {}
    async with watching(port) as (op, devices):
        await asyncio.to_thread(wait_until, lambda: gauge(metrics, ENGINE) == 1.0, 60,
                                "the gateway running the alarm engine")  # fmt: skip
        per_device = int(rate * (WARMUP_S + outage_s + TAIL_S) / LOAD_DEVICES)
        total = per_device * LOAD_DEVICES
        load = _loadgen(port, 2, LOAD_DEVICES, per_device, 0, rate=rate)
        down = False
        try:
            await asyncio.sleep(WARMUP_S)  # the scenario's timeline, not a synchronisation
            before_outage = await asyncio.to_thread(stored, st.database_url)
            await asyncio.to_thread(st.stop_database)
            down = True
            stopped_at = time.monotonic()
            await press(devices, presses, PRESS_EVERY_S, published)
            # the database stays down for the whole outage (the last press has a second)
            await asyncio.sleep(max(0.0, stopped_at + outage_s - time.monotonic()))  # pacing
            during_outage = set(op.arrivals)
            noticed = await asyncio.to_thread(gauge, metrics, "wg_database_up") == 0.0
            await asyncio.to_thread(st.start_database)
            down = False
            restarted_at = time.monotonic()
            await op.delivered(presses, 30)  # any press not in yet: late, still counted

            def all_stored() -> bool:
                return (stored(st.database_url) >= total
                        and presses_stored(st.database_url) >= len(presses))  # fmt: skip

            caught_up = await asyncio.to_thread(until, all_stored, CATCH_UP_TIMEOUT_S, 0.5)
            catch_up_s = time.monotonic() - restarted_at if caught_up is not None else None
            pubs = await asyncio.to_thread(_wait_all, load, 120)
            events = await asyncio.to_thread(alarm_events_check, st.database_url, op, 60)
            background = await asyncio.to_thread(stored, st.database_url)
            pressed = await asyncio.to_thread(presses_stored, st.database_url)
        finally:
            for proc in load:
                if proc.poll() is None:
                    proc.kill()
            if down:
                st.start_database()
    sent = sum(p["published"] for p in pubs)
    offered = sent / (max(p["finished"] for p in pubs) - min(p["started"] for p in pubs))
    return {
        "latencies": op.latencies(published),
        "delivered_during_outage": len(during_outage & set(presses)),
        "gateway_saw_database_down": noticed,
        "sent": sent,
        "background_stored": background,
        "stored_before_outage": before_outage,
        "presses_stored": pressed,
        "catch_up_s": catch_up_s,
        "alarm_events": events,
        "duplicate_event_ids": op.duplicate_event_ids(),
        "background_msgs_per_s": offered,
    }


def run(outage_s: float, rate: int, workdir: Path) -> dict[str, Any]:
    presses_n = int(outage_s / PRESS_EVERY_S)
    with stack(workdir) as st, pressing_gateway(st, LOAD_DEVICES, presses_n) as (
        presses, metrics
    ):
        result = asyncio.run(measure(st, metrics, presses, outage_s, rate))
    lat = result["latencies"]
    lost_background = max(0, result["sent"] - result["background_stored"])
    lost_presses = len(presses) - result["presses_stored"]
    lost = lost_background + lost_presses
    within = len(lat) == len(presses) and max(lat) <= TARGET_S
    catch_up = result["catch_up_s"]
    events = result["alarm_events"]
    return {
        "outage_s": outage_s,
        "background_msgs_per_s": round(result["background_msgs_per_s"]),
        "presses": len(presses),
        "delivered": len(lat),
        "delivered_during_outage": result["delivered_during_outage"],
        "press_latency_ms": latency_ms(lat),
        "all_within_1s": within,
        "stored_all": lost == 0,
        "lost": lost,
        "lost_background": lost_background,
        "lost_presses": lost_presses,
        "background_sent": result["sent"],
        "stored_before_outage": result["stored_before_outage"],
        "gateway_saw_database_down": result["gateway_saw_database_down"],
        "alarm_events_stored_once": events["stored_once"],
        "alarm_events": events,
        "duplicate_event_ids": result["duplicate_event_ids"],
        "catch_up_s": round(catch_up, 2) if catch_up is not None else None,
        "target_s": TARGET_S,
        "meets_target": within
        and lost == 0
        and events["stored_once"]
        and result["gateway_saw_database_down"],
        "note": "one `run` gateway; PostgreSQL stopped (fast shutdown) after "
        f"{WARMUP_S:g} s of background load and started again on the same socket; one "
        "new device's button every second during the outage; catch_up_s = from the "
        "restart until every background message and press is stored (the load goes on "
        f"{TAIL_S:g} s after the restart); per-device rate limits lifted (100 simulated "
        "devices stand for a fleet)",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench.outage")
    parser.add_argument("--outage-s", type=float, default=600.0, help="database down for")
    parser.add_argument("--background-rate", type=int, default=1000, help="msgs/s")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for the tests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.outage_s, args.background_rate = 5.0, 200
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        result = {"outage": run(args.outage_s, args.background_rate, Path(tmp)),
                  "machine": machine.describe()}  # fmt: skip
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return result


if __name__ == "__main__":
    main()
