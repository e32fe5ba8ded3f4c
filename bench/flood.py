"""``python -m bench.flood``: a flood at about twice what the gateway can store, and a
button pressed every 200 ms meanwhile: does a press still reach the operator at once,
and is the flood stored in the end?

One gateway (``welfare-gateway run``) on a private Mosquitto and PostgreSQL. Its capacity
is ``--capacity`` msgs/s or, by default, *measured* first with the same kind of messages:
an unthrottled burst from two load generators, stored rows / (all stored - first
publish), polled every 0.1 s. Then four load generators offer twice that rate, paced, for
``--seconds`` (the broker queues what the gateway cannot take yet); one new device
presses its button every 200 ms, and an operator client on ``tenants/bench/alarms``
measures each press's publish -> ``raised``. Afterwards the benchmark waits (bounded)
until every flood message is stored. The offered rate actually reached is reported (on 2
cores the load generators share the CPU with the gateway and the broker).

Two floods (``--mix``), each on a fresh stack:

- ``telemetry``: positions only, on ``devices/{id}/telemetry``, which the alarm engine
  reads on a session of its own: presses must not wait behind them;
- ``standard``: bench.loadgen's usual mix, three heartbeats to one position (a reconnect
  storm is mostly heartbeats). Heartbeats travel on the engine's telemetry session too:
  when they shared the safety session with the presses, this figure was p99 3 s.
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
from bench.ingest import _loadgen, _percentile, _wait_all
from bench.mosquitto import wait_until
from bench.presses import (
    latency_ms,
    press,
    presses_stored,
    pressing_gateway,
    stored,
    until,
    watching,
)
from bench.stack import Stack, gauge, stack

TARGET_P99_MS = 250.0
LOAD_DEVICES = 100
OVERLOAD = 2.0  # offered / capacity
FLOOD_PROCESSES = 4
PRESS_EVERY_S = 0.2
RAMP_S = 1.0  # the flood under way before the first press
DRAIN_TIMEOUT_S = 900.0
FULL_BURST = 300  # messages per device for the capacity measurement (30,000 in all)
SMOKE_SECONDS, SMOKE_BURST = 5.0, 30
MIXES = ("telemetry", "standard")
MIX_NOTES = {
    "telemetry": "positions only, on the engine's telemetry session",
    "standard": "three heartbeats to one position (a reconnect storm's mix); heartbeats "
    "are on the engine's telemetry session, not the presses' safety session",
}


def _capacity(st: Stack, per_device: int, telemetry_only: bool) -> float:
    """Stored msgs/s of the running gateway for an unthrottled burst (ids from 0)."""
    total = per_device * LOAD_DEVICES
    goal = stored(st.database_url) + total
    load = _loadgen(st.broker.port, 2, LOAD_DEVICES, per_device, 0,
                    telemetry_only=telemetry_only)  # fmt: skip
    try:
        if until(lambda: stored(st.database_url) >= goal, DRAIN_TIMEOUT_S, 0.1) is None:
            raise TimeoutError("the capacity burst was not stored")
        done = time.time()
        pubs = _wait_all(load, 60)
    finally:
        for proc in load:
            if proc.poll() is None:
                proc.kill()
    return float(total / (done - min(p["started"] for p in pubs)))


async def measure(
    st: Stack,
    metrics: str,
    presses: list[str],
    seconds: float,
    offered: float,
    offset: int,
    telemetry_only: bool,
) -> dict[str, Any]:
    port = st.broker.port
    published: dict[str, float] = {}
    async with watching(port) as (op, devices):
        await asyncio.to_thread(wait_until, lambda: gauge(metrics, ENGINE) == 1.0, 60,
                                "the gateway running the alarm engine")  # fmt: skip
        goal = await asyncio.to_thread(stored, st.database_url)
        per_device = int(offered * (RAMP_S + seconds) / LOAD_DEVICES)
        goal += per_device * LOAD_DEVICES
        load = _loadgen(port, FLOOD_PROCESSES, LOAD_DEVICES, per_device, offset, rate=offered,
                        telemetry_only=telemetry_only)  # fmt: skip
        try:
            await asyncio.sleep(RAMP_S)  # the scenario's timeline, not a synchronisation
            await press(devices, presses, PRESS_EVERY_S, published)
            # a press queued behind a heartbeat flood may wait about as long as the flood
            await op.delivered(presses, 2 * seconds + 30)
            pubs = await asyncio.to_thread(_wait_all, load, 4 * seconds + 120)
            flood_ended = max(p["finished"] for p in pubs)
            drained = await asyncio.to_thread(
                until, lambda: stored(st.database_url) >= goal, DRAIN_TIMEOUT_S, 0.5
            )
            drain_s = time.time() - flood_ended if drained is not None else None
            now_stored = await asyncio.to_thread(stored, st.database_url)
            pressed = await asyncio.to_thread(presses_stored, st.database_url)
        finally:
            for proc in load:
                if proc.poll() is None:
                    proc.kill()
    sent = sum(p["published"] for p in pubs)
    return {
        "latencies": op.latencies(published),
        "sent": sent,
        "lost": max(0, goal - now_stored),
        "presses_stored": pressed,
        "drain_s": drain_s,
        "offered_msgs_per_s": sent / (flood_ended - min(p["started"] for p in pubs)),
        "duplicate_event_ids": op.duplicate_event_ids(),
        "raised_twice": op.raised_twice(),
    }


def run(
    seconds: float, capacity: float | None, workdir: Path, burst: int, mix: str = "telemetry"
) -> dict[str, Any]:
    """``capacity`` None: measured with a burst of ``burst`` messages per device. ``mix``:
    ``telemetry`` (positions only) or ``standard`` (three heartbeats to one position)."""
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {MIXES}")
    telemetry_only = mix == "telemetry"
    presses_n = int(seconds / PRESS_EVERY_S)
    with stack(workdir) as st, pressing_gateway(st, LOAD_DEVICES, presses_n) as (
        presses, metrics
    ):
        measured = capacity is None
        cap = _capacity(st, burst, telemetry_only) if capacity is None else capacity
        result = asyncio.run(measure(st, metrics, presses, seconds, OVERLOAD * cap,
                                     burst if measured else 0, telemetry_only))  # fmt: skip
    lat = result["latencies"]
    p99 = _percentile(lat, 0.99) * 1000 if lat else None
    delivered_all = len(lat) == len(presses)
    drain = result["drain_s"]
    return {
        "mix": mix,
        "seconds": seconds,
        "capacity_msgs_per_s": round(cap),
        "capacity_source": "measured (unthrottled burst, stored rate)"
        if measured
        else "--capacity",
        "offered_msgs_per_s": round(result["offered_msgs_per_s"]),
        "offered_ratio_to_capacity": round(result["offered_msgs_per_s"] / cap, 2),
        "presses": len(presses),
        "delivered": len(lat),
        "press_latency_ms": latency_ms(lat),
        "duplicate_event_ids": result["duplicate_event_ids"],
        "raised_twice": result["raised_twice"],
        "flood_messages": result["sent"],
        "stored_all": result["lost"] == 0,
        "lost": result["lost"],
        "presses_stored": result["presses_stored"],
        "drain_s_after_flood": round(drain, 2) if drain is not None else None,
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": p99 is not None
        and p99 < TARGET_P99_MS
        and delivered_all
        and result["lost"] == 0,
        "note": f"one `run` gateway; {FLOOD_PROCESSES} load generators paced at "
        f"{OVERLOAD:g} x capacity over {LOAD_DEVICES} devices ({MIX_NOTES[mix]}; per-device "
        "rate limits lifted); a new device's button every 200 ms from 1 s into the flood",
    }


def run_mixes(
    seconds: float, capacity: float | None, burst: int, mixes: tuple[str, ...] = MIXES
) -> dict[str, Any]:
    """Each flood on a fresh stack: ``flood`` (telemetry) and ``flood_with_heartbeats``."""
    result: dict[str, Any] = {}
    for mix in mixes:
        with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
            key = "flood" if mix == "telemetry" else "flood_with_heartbeats"
            result[key] = run(seconds, capacity, Path(tmp), burst, mix)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench.flood")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the flood lasts")
    parser.add_argument("--capacity", type=float, default=None,
                        help="the gateway's msgs/s (default: measured first)")  # fmt: skip
    parser.add_argument("--mix", choices=[*MIXES, "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for the tests")
    args = parser.parse_args(argv)
    burst = FULL_BURST
    if args.smoke:
        args.seconds, burst = SMOKE_SECONDS, SMOKE_BURST
    mixes = MIXES if args.mix == "both" else (args.mix,)
    result = {**run_mixes(args.seconds, args.capacity, burst, mixes),
              "machine": machine.describe()}  # fmt: skip
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return result


if __name__ == "__main__":
    main()
