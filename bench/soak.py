"""``python -m bench.soak``: workers killed and restarted again and again under steady
load, for half an hour: is every press delivered once, is nothing lost or falsely
raised, and does the workers' memory stay flat?

``--workers`` ``welfare-gateway worker`` processes on a private Mosquitto and
PostgreSQL. Background telemetry flows at ``--rate`` (paced, ``bench.loadgen``) the whole
time; one new device presses its button every 2 s, and four devices heartbeat every
0.5 s against a 2.5 s silence bound (as in ``bench.failover``). Every ``--kill-every-s``
one worker is killed (SIGKILL) and started again at once with the same client id: the
alarm engine's worker (found from its /metrics ``wg_alarm_engine_active``) and another
one in turn, the one killed least recently first. An operator client on
``tenants/bench/alarms`` counts deliveries, duplicates and false alarms; each worker's
RSS is sampled every few seconds. At the end the benchmark waits (bounded) until the
background load is stored.

RSS: per client id, the first sample after ``--warmup-s`` (into the run), the last one
and the largest. A killed worker starts again as a fresh process, so the growth of each
process (its first sample ``--warmup-s`` after it started against its last) is reported
too, as the leak figure that restarts cannot hide.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench import machine
from bench.failover import (
    BEATING_DEVICES,
    ENGINE,
    HEARTBEAT_INTERVAL_S,
    RULES,
    TARGET_GAP_S,
    _heartbeats,
    _takeover,
)
from bench.ingest import _loadgen, _wait_all
from bench.mosquitto import wait_until
from bench.presses import (
    FLEET_LIMITS,
    Operator,
    press,
    presses_stored,
    stored,
    until,
    watching,
)
from bench.stack import Stack, gauge, stack
from gateway.adapters.postgres import registry_repo as repo

LOAD_DEVICES = 100
PRESS_EVERY_S = 2.0
RSS_FLAT = 0.10  # the last sample at most 10 % above the first after warm-up
STORE_TIMEOUT_S = 600.0
#: devices that do not heartbeat (load, presses): the longest interval a model may have,
#: so that the 0.3 x interval + 1 s bound of RULES (for the heartbeating devices) never
#: runs out for them within a run
QUIET_INTERVAL_S = 86_400
ENV = {**RULES, **FLEET_LIMITS}


@dataclass
class _Worker:
    client_id: str
    proc: subprocess.Popen[bytes]
    metrics: str
    started: float  # time.monotonic()
    incarnation: int = 0
    last_killed: float = -math.inf


@dataclass
class _Rss:
    every_s: float
    samples: list[tuple[float, str, int, float, float]] = field(default_factory=list)
    # (seconds into the run, client id, incarnation, seconds since it started, MB)

    def sample(self, workers: list[_Worker], t0: float) -> None:
        now = time.monotonic()
        for w in workers:
            with contextlib.suppress(psutil.Error):  # killed between two samples
                mb = psutil.Process(w.proc.pid).memory_info().rss / 2**20
                self.samples.append((now - t0, w.client_id, w.incarnation, now - w.started, mb))

    async def run(self, workers: list[_Worker], t0: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample(workers, t0)
            with contextlib.suppress(TimeoutError):  # the sampling pace
                await asyncio.wait_for(stop.wait(), self.every_s)

    def summary(self, warmup_s: float) -> dict[str, Any]:
        per_worker: dict[str, dict[str, Any]] = {}
        flat = True
        for cid in sorted({s[1] for s in self.samples}):
            mine = [s for s in self.samples if s[1] == cid]
            after = [s for s in mine if s[0] >= warmup_s] or mine
            first, last = after[0][4], mine[-1][4]
            flat = flat and last <= first * (1 + RSS_FLAT)
            per_worker[cid] = {"first": round(first, 1), "last": round(last, 1),
                               "max": round(max(s[4] for s in mine), 1),
                               "processes": len({s[2] for s in mine})}  # fmt: skip
        growth: list[float] = []  # per process: last against its first after warm-up
        for key in {(s[1], s[2]) for s in self.samples}:
            warm = [s for s in self.samples if (s[1], s[2]) == key and s[3] >= warmup_s]
            if len(warm) >= 2:
                growth.append((warm[-1][4] / warm[0][4] - 1) * 100)
        return {
            "rss_mb": per_worker,
            "rss_flat_within_10pct": flat and bool(per_worker),
            "rss_growth_per_process_pct_max": round(max(growth), 1) if growth else None,
            "rss_samples": len(self.samples),
        }


async def _start(st: Stack, client_id: str) -> _Worker:
    proc, metrics = await asyncio.to_thread(st.start_worker, client_id, **ENV)
    return _Worker(client_id, proc, metrics, time.monotonic())


async def _engine_of(workers: list[_Worker]) -> list[_Worker]:
    """The workers whose metrics show the alarm engine (waits, bounded, for one)."""
    deadline = time.monotonic() + 30
    while True:
        flags = await asyncio.gather(*(asyncio.to_thread(gauge, w.metrics, ENGINE)
                                       for w in workers))  # fmt: skip
        engine = [w for w, flag in zip(workers, flags, strict=True) if flag == 1.0]
        if engine or time.monotonic() > deadline:
            return engine
        await asyncio.sleep(0.1)  # polling


async def _kill_one(st: Stack, workers: list[_Worker], k: int, t0: float) -> dict[str, Any]:
    """SIGKILL one worker (even ``k``: the engine's; odd: another) and start it again
    with the same client id at once."""
    engine = await _engine_of(workers)
    wanted = engine if k % 2 == 0 else [w for w in workers if w not in engine]
    victim = min(wanted or workers, key=lambda w: w.last_killed)
    was_engine = victim in engine
    victim.proc.kill()
    killed_at = victim.last_killed = time.monotonic()
    await asyncio.to_thread(victim.proc.wait, 30)
    others = [w for w in workers if w is not victim]
    takeover = None
    if was_engine and others:  # the oldest other worker takes the engine over
        oldest = min(others, key=lambda w: w.started)
        takeover = asyncio.ensure_future(
            asyncio.to_thread(_takeover, oldest.metrics, killed_at, 30)
        )
    record: dict[str, Any] = {"at_s": round(killed_at - t0, 1), "client_id": victim.client_id,
                              "was_engine": was_engine}  # fmt: skip
    try:
        fresh = await _start(st, victim.client_id)
    except (RuntimeError, TimeoutError) as exc:
        workers.remove(victim)
        record["restart_error"] = str(exc)
    else:
        victim.proc, victim.metrics, victim.started = fresh.proc, fresh.metrics, fresh.started
        victim.incarnation += 1
        record["restarted_after_s"] = round(fresh.started - killed_at, 2)
    if takeover is not None:
        taken = await takeover
        record["takeover_s"] = round(taken, 2) if taken is not None else None
    return record


async def _kills(
    st: Stack, workers: list[_Worker], every_s: float, duration_s: float, t0: float
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    k = 0
    while (k + 1) * every_s < duration_s and workers:
        await asyncio.sleep(max(0.0, t0 + (k + 1) * every_s - time.monotonic()))  # pacing
        records.append(await _kill_one(st, workers, k, t0))
        k += 1
    return records


async def measure(
    st: Stack,
    presses: list[str],
    beating: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    port = st.broker.port
    duration = args.minutes * 60
    published: dict[str, float] = {}
    rss = _Rss(args.rss_every_s)
    workers: list[_Worker] = []
    load: list[subprocess.Popen[bytes]] = []
    async with watching(port) as (op, devices):
        stop_beats, stop_rss = asyncio.Event(), asyncio.Event()
        beats = asyncio.create_task(_heartbeats(devices, beating, stop_beats))
        try:
            for n in range(1, args.workers + 1):
                workers.append(await _start(st, f"wg-{n}"))
                if n == 1:  # the first one runs the engine; the others stand by
                    await asyncio.to_thread(wait_until,
                                            lambda: gauge(workers[0].metrics, ENGINE) == 1.0,
                                            60, "wg-1 running the alarm engine")  # fmt: skip
            per_device = int(args.rate * duration / LOAD_DEVICES)
            total = per_device * LOAD_DEVICES
            load = _loadgen(port, 2, LOAD_DEVICES, per_device, 0, rate=args.rate)
            t0 = time.monotonic()
            sampler = asyncio.create_task(rss.run(workers, t0, stop_rss))
            pressing = asyncio.create_task(press(devices, presses, PRESS_EVERY_S, published))
            kills = await _kills(st, workers, args.kill_every_s, duration, t0)
            await pressing
            await op.delivered(presses, 30)
            await asyncio.sleep(max(0.0, t0 + duration - time.monotonic()))  # pacing
            stop_beats.set()
            await beats
            pubs = await asyncio.to_thread(_wait_all, load, 600)
            sent = sum(p["published"] for p in pubs)
            stored_in = await asyncio.to_thread(
                until, lambda: stored(st.database_url) >= total, STORE_TIMEOUT_S, 0.5
            )
            stop_rss.set()
            await sampler
            background = await asyncio.to_thread(stored, st.database_url)
            pressed = await asyncio.to_thread(presses_stored, st.database_url)
        finally:
            stop_beats.set()
            stop_rss.set()
            for proc in load:
                if proc.poll() is None:
                    proc.kill()
            for w in workers:
                if w.proc.poll() is None:
                    w.proc.terminate()
            for w in workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    w.proc.wait(60)
    return {
        "op": op,
        "published": published,
        "kills": kills,
        "sent": sent,
        "background_stored": background,
        "presses_stored": pressed,
        "stored_wait_s": stored_in,
        "rss": rss.summary(args.warmup_s),
    }


def _false_alarms(op: Operator, beating: set[str], pressed: set[str]) -> dict[str, Any]:
    silent = sum(n for (d, kind), n in op.other_raised.items()
                 if kind == "device_silent" and d in beating)  # fmt: skip
    kinds: dict[str, int] = {}
    for (_, kind), n in op.other_raised.items():
        kinds[kind] = kinds.get(kind, 0) + n
    never_pressed = sum(1 for d in op.button_raised if d not in pressed)
    return {
        "total": sum(op.other_raised.values()) + never_pressed,
        "device_silent_heartbeating": silent,
        "button_never_pressed": never_pressed,
        "by_kind": kinds,
    }


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with stack(workdir) as st:
        quiet = repo.DeviceModel("bench-gps", "Bench", "GPS", "gps_alarm", QUIET_INTERVAL_S)
        st.seed("bench-", LOAD_DEVICES, quiet)
        presses = st.seed("press-", int(args.minutes * 60 / PRESS_EVERY_S), repo.DeviceModel(
            "bench-btn", "Bench", "Button", "gps_alarm", QUIET_INTERVAL_S))  # fmt: skip
        beating = st.seed("beat-", BEATING_DEVICES, repo.DeviceModel(
            "bench-hb", "Bench", "Heartbeat", "gps_alarm", HEARTBEAT_INTERVAL_S))  # fmt: skip
        result = asyncio.run(measure(st, presses, beating, args))
    op: Operator = result["op"]
    published: dict[str, float] = result["published"]
    lat = op.latencies(published)
    lost_presses = len(published) - len(lat)
    duplicates = {"event_ids_seen_twice": op.duplicate_event_ids(),
                  "raised_twice_for_one_device": op.raised_twice()}  # fmt: skip
    false = _false_alarms(op, set(beating), set(published))
    lost_messages = max(0, result["sent"] - result["background_stored"])
    stored_all = lost_messages == 0 and result["presses_stored"] == len(published)
    max_latency = max(lat) if lat else None
    kills = result["kills"]
    rss = result["rss"]
    return {
        "minutes": args.minutes,
        "rate": args.rate,
        "workers": args.workers,
        "kills": len(kills),
        "kill_log": kills,
        "presses": len(published),
        "delivered": len(lat),
        "lost_presses": lost_presses,
        "duplicate_notifications": duplicates,
        "false_alarms": false,
        "max_press_latency_s": round(max_latency, 3) if max_latency is not None else None,
        "stored_all": stored_all,
        "lost_messages": lost_messages,
        "presses_stored": result["presses_stored"],
        "background_sent": result["sent"],
        **rss,
        "target_max_press_latency_s": TARGET_GAP_S,
        "meets_target": lost_presses == 0
        and sum(duplicates.values()) == 0
        and false["total"] == 0
        and max_latency is not None
        and max_latency <= TARGET_GAP_S
        and stored_all
        and rss["rss_flat_within_10pct"]
        and not any("restart_error" in k for k in kills),
        "note": f"{args.workers} `welfare-gateway worker` processes; every "
        f"{args.kill_every_s:g} s one SIGKILLed (the engine's and another in turn) and "
        "started again at once with the same client id; a new device's button every 2 s; "
        f"{BEATING_DEVICES} devices heartbeat every 0.5 s against a 2.5 s bound; RSS "
        f"first = first sample {args.warmup_s:g} s into the run; per-device rate limits "
        "lifted",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench.soak")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=1000, help="background msgs/s")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every-s", type=float, default=300.0)
    parser.add_argument("--warmup-s", type=float, default=60.0, help="before RSS is compared")
    parser.add_argument("--rss-every-s", type=float, default=5.0)
    parser.add_argument("--smoke", action="store_true", help="a minute, for the tests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.minutes, args.rate, args.kill_every_s = 1.0, 200, 20.0
        args.warmup_s, args.rss_every_s = 10.0, 2.0
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        result = {"soak": run(args, Path(tmp)), "machine": machine.describe()}
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return result


if __name__ == "__main__":
    main()
