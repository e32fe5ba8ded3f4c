"""``python -m bench.ingest``: sustained ingest, validated and committed, zero loss, QoS 1.

One run, one private Mosquitto, one private PostgreSQL:

1. ceiling: a bare aiomqtt consumer (no validation, no storage) drains the same load;
2. the gateway (``welfare-gateway run`` in its own process) drains the same load, and the
   database is checked: every message stored exactly once;
3. a second gateway worker (``welfare-gateway worker``) joins the first: the two drain the
   same load again, checked the same way, and their rate is compared with step 2's.

The load is published by separate processes over many connections (one per simulated
device) as fast as they can: offered load above capacity, so the figure is the rate at
which the consumer keeps up while the broker queues the rest. Publish -> commit latency
comes from the commit timestamps PostgreSQL records (``track_commit_timestamp``) minus
the ``ts`` each publisher stamped. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
import psycopg

from bench import machine
from bench.cpu import CpuMeter, per_message_us, postmaster, wait_quiet
from bench.mosquitto import wait_until
from bench.stack import stack
from gateway.adapters.postgres import registry_repo as repo

API_PASSWORD = "bench-api"
TARGET_MSGS_PER_S = 7000
TARGET_RATIO = 0.75
TARGET_TWO_WORKERS_RATIO = 0.9  # two workers store at least 90 % of one's rate (2 cores)
PACED_RATE = 2000  # msgs/s: the paced phase's offered load (issue #22)
TARGET_PACED_CPU_RATIO = 1.2  # worker CPU per stored message / the bare consumer's


Procs = list[subprocess.Popen[bytes]]


def _loadgen(
    port: int,
    processes: int,
    devices: int,
    per_device: int,
    offset: int,
    rate: float | None = None,
    garbage_every: int = 0,
    prefix: str = "bench-",
    telemetry_only: bool = False,
) -> Procs:
    """``processes`` publisher processes, each with its share of the devices; ``rate`` is
    the offered load of all of them together (msgs/s), or None for as fast as the broker
    takes it."""
    share = devices // processes
    extra = ["--rate", str(rate / processes)] if rate else []
    if garbage_every:
        extra += ["--garbage-every", str(garbage_every)]
    if telemetry_only:
        extra.append("--telemetry-only")
    extra += ["--prefix", prefix]
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.loadgen",
                "--port",
                str(port),
                "--first",
                str(p * share),
                "--devices",
                str(share),
                "--per-device",
                str(per_device),
                "--offset",
                str(offset),
                *extra,
            ],
            stdout=subprocess.PIPE,
        )
        for p in range(processes)
    ]


def _wait_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> list[dict[str, Any]]:
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed ({proc.returncode})")
        out.append(orjson.loads(stdout.splitlines()[-1]))
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(
    devices: int, per_device: int, processes: int, workdir: Path, paced_s: float = 20.0
) -> dict[str, Any]:
    total = devices * per_device
    # the paced phases: PACED_RATE msgs/s for about paced_s seconds, on the same devices
    paced_per_device = max(1, round(PACED_RATE * paced_s / devices))
    paced_total = paced_per_device * devices
    with stack(workdir, commit_timestamps=True) as st:
        st.seed("bench-", devices, repo.DeviceModel("bench-gps", "Bench", "GPS", "gps_alarm", 60))
        broker = st.broker

        # 1. the ceiling: bare consumer, same broker, same load
        ready = workdir / "bare.ready"
        bare = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_consumer", "--port", str(broker.port),
             "--expect", str(total), "--ready-file", str(ready)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        wait_until(ready.exists, 30, "bare consumer subscribed")
        pubs = _wait_all(_loadgen(broker.port, processes, devices, per_device, 0), 600)
        bare_out, _ = bare.communicate(timeout=600)
        bare_result = orjson.loads(bare_out.splitlines()[-1])
        started = min(p["started"] for p in pubs)
        bare_rate = total / (bare_result["last"] - started)
        publish_rate_bare = total / (max(p["finished"] for p in pubs) - started)

        # 1b. the broker's own ceiling: the C client mosquitto_sub, same load
        c_rate = _mosquitto_sub_rate(broker.port, processes, devices, per_device, total)

        # 1c. the bare consumer's CPU per message at a paced load
        assert broker.proc is not None and st.pg is not None
        meter = CpuMeter(None, psutil.Process(broker.proc.pid), None)
        bare_paced = _bare_paced(workdir, broker.port, processes, devices, paced_per_device,
                                 8 * total, meter)  # fmt: skip

        # 2. the gateway, same broker, same load (new message ids)
        gw = st.start_gateway()
        proc = psutil.Process(gw.pid)
        rss_peak = 0.0

        def sample_rss() -> None:
            nonlocal rss_peak
            rss_peak = max(rss_peak, proc.memory_info().rss / 2**20)

        load = (broker.port, processes, devices, per_device)
        with psycopg.connect(st.database_url, autocommit=True) as conn:
            one = _gateway_phase(conn, *load, 2 * total, sample_rss)

            # 2b. the same worker's CPU per stored message at the paced load (the worker
            # of `run` also serves the API, idle here)
            meter = CpuMeter(proc, psutil.Process(broker.proc.pid), postmaster(st.pg.pgdata))
            # the saturation phase's own work first (the engine's telemetry session may
            # still be working off its backlog when storage is done): not the paced load's
            catch_up_s = wait_quiet(proc)
            meter.start()
            paced = _gateway_phase(conn, broker.port, processes, devices, paced_per_device,
                                   6 * total, rate=PACED_RATE)  # fmt: skip
            wait_quiet(proc)  # and all of the paced load's: its last messages' rules
            gateway_cpu = meter.stop()

            # 3. two workers: a `welfare-gateway worker` beside it, the same load again
            # (new message ids); its rate against step 2's, measured in the same run
            second, _ = st.start_worker("wg-bench-2")
            two = _gateway_phase(conn, *load, 4 * total)
        for worker in (gw, second):
            worker.terminate()
        for worker in (gw, second):
            worker.wait(60)

        # 4. the bare consumer at the paced load again, the workers gone: the machine's
        # speed drifts during a run (the bare consumer's own figure moved by up to 25 %
        # between runs an hour apart), so the paced ratio divides by the mean of the
        # bare figures measured before and after the worker's (both reported)
        bare_paced_after = _bare_paced(workdir, broker.port, processes, devices,
                                       paced_per_device, 10 * total, meter,
                                       name="bare-paced-after",
                                       # not "wg": the stopped workers' sessions are
                                       # still members of it and would take their share
                                       group="bench-bare")  # fmt: skip
    rate = one.rate
    latencies = one.latencies
    return {
        "messages": total,
        "stored": one.count,
        "stored_distinct": one.distinct,
        "lost": total - one.distinct,
        "stored_msgs_per_s": round(rate),
        "bare_consumer_msgs_per_s": round(bare_rate),
        "mosquitto_sub_msgs_per_s": round(c_rate) if c_rate else None,
        "ratio_to_bare": round(rate / bare_rate, 3),
        "publish_rate_msgs_per_s": round(publish_rate_bare),
        "publish_to_commit_ms": {
            "p50": round(_percentile(latencies, 0.50), 1),
            "p99": round(_percentile(latencies, 0.99), 1),
        },
        "gateway_rss_mb_peak": round(rss_peak, 1),
        "devices": devices,
        "publisher_processes": processes,
        "targets": {"stored_msgs_per_s": TARGET_MSGS_PER_S, "ratio_to_bare": TARGET_RATIO},
        "meets_targets": rate >= TARGET_MSGS_PER_S
        and rate / bare_rate >= TARGET_RATIO
        and one.distinct == total,
        "two_workers_stored_msgs_per_s": round(two.rate),
        "two_workers_lost": total - two.distinct,
        "two_workers_ratio_to_one": round(two.rate / rate, 3),
        "two_workers_target_ratio_to_one": TARGET_TWO_WORKERS_RATIO,
        "two_workers_meets_target": two.rate / rate >= TARGET_TWO_WORKERS_RATIO
        and two.distinct == total,
        "paced": {
            **_paced_figures(paced_total, paced, gateway_cpu, bare_paced, bare_paced_after),
            # CPU the worker spent after the saturation phase's last commit, before the
            # paced phase began (the engine's telemetry backlog): that phase's, not counted
            "worker_catch_up_cpu_s_before": round(catch_up_s, 2),
        },
    }


def _bare_paced(
    workdir: Path, port: int, processes: int, devices: int, per_device: int, offset: int,
    meter: CpuMeter, name: str = "bare-paced", group: str = "wg",
) -> dict[str, float]:  # fmt: skip
    """The bare consumer drains the paced load: its own CPU, and the broker's, per message."""
    total = devices * per_device
    ready = workdir / f"{name}.ready"
    bare = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_consumer", "--port", str(port),
         "--expect", str(total), "--ready-file", str(ready), "--group", group],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    wait_until(ready.exists, 30, "bare consumer subscribed")
    meter.start()
    pubs = _wait_all(_loadgen(port, processes, devices, per_device, offset, rate=PACED_RATE), 600)
    out, _ = bare.communicate(timeout=600)
    broker_s = meter.stop()["broker"]
    result = orjson.loads(out.splitlines()[-1])
    return {"bare_consumer_s": float(result["cpu_s"]), "broker_s": broker_s,
            "messages": float(total), "offered_msgs_per_s": _offered_rate(pubs)}  # fmt: skip


def _offered_rate(pubs: list[dict[str, Any]]) -> float:
    """The rate the publishers offered, all of them together: messages / (last publisher
    done - first started)."""
    published = sum(float(p["published"]) for p in pubs)
    seconds = float(max(p["finished"] for p in pubs) - min(p["started"] for p in pubs))
    return published / seconds


def _paced_figures(
    messages: int, stored: _Phase, cpu: dict[str, float], before: dict[str, float],
    after: dict[str, float],
) -> dict[str, Any]:  # fmt: skip
    """CPU per stored message at the paced load: the worker, and broker + database +
    worker, beside the bare consumer (and broker + bare consumer) in the same run, the
    mean of its figures before and after the worker's."""
    bare = {k: before[k] + after[k] for k in ("bare_consumer_s", "broker_s", "messages")}
    bare_us = per_message_us(bare["bare_consumer_s"], int(bare["messages"]))
    worker_us = per_message_us(cpu["worker"], stored.distinct)
    return {
        "offered_msgs_per_s": PACED_RATE,
        # as measured at the publishers: the worker's phase and the bare consumer's two
        # must match, for CPU per message depends on the rate
        "offered_msgs_per_s_measured": {
            "worker": round(stored.offered),
            "bare_consumer_before": round(before["offered_msgs_per_s"]),
            "bare_consumer_after": round(after["offered_msgs_per_s"]),
        },
        "messages": messages,
        "stored_distinct": stored.distinct,
        "lost": messages - stored.distinct,
        "cpu_us_per_msg": {
            "worker": worker_us,
            "broker": per_message_us(cpu["broker"], stored.distinct),
            "database": per_message_us(cpu["database"], stored.distinct),
            "broker_database_worker": per_message_us(sum(cpu.values()), stored.distinct),
            "bare_consumer": bare_us,
            "bare_consumer_before": per_message_us(
                before["bare_consumer_s"], int(before["messages"])
            ),
            "bare_consumer_after": per_message_us(
                after["bare_consumer_s"], int(after["messages"])
            ),
            "broker_bare_consumer": per_message_us(
                bare["bare_consumer_s"] + bare["broker_s"], int(bare["messages"])
            ),
        },
        "worker_to_bare_consumer": round(worker_us / bare_us, 2) if bare_us else None,
        "target_worker_to_bare_consumer": TARGET_PACED_CPU_RATIO,
        "meets_target": bool(bare_us) and worker_us / bare_us <= TARGET_PACED_CPU_RATIO,
    }


@dataclass
class _Phase:
    """What the gateway stored of one load (the rows whose message ids it published)."""

    count: int
    distinct: int
    rate: float  # rows / (last commit - first publish)
    latencies: list[float]  # publish -> commit, ms
    offered: float  # msgs/s, as the publishers offered it


#: A row of one phase: message id ``m{n}`` with ``first <= n <= last`` (the CASE keeps the
#: cast off other ids, such as the probes')
_OF_PHASE = ("(case when msg_id ~ '^m[0-9]+$' then substr(msg_id, 2)::bigint end)"
             " between %(first)s and %(last)s")  # fmt: skip


def _gateway_phase(
    conn: psycopg.Connection[Any],
    port: int,
    processes: int,
    devices: int,
    per_device: int,
    offset: int,
    on_poll: Callable[[], None] = lambda: None,
    rate: float | None = None,
) -> _Phase:
    """The load (message ids from ``offset``; at ``rate`` msgs/s in all, or as fast as
    the broker takes it) published while the running gateway workers drain it; returns
    once all of it is stored (or after 900 s)."""
    total = devices * per_device
    goal = _stored(conn) + total
    loadgen = _loadgen(port, processes, devices, per_device, offset,
                       rate=rate)  # fmt: skip
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        on_poll()
        if _stored(conn) >= goal:
            break
        time.sleep(0.25)
    pubs = _wait_all(loadgen, 60)
    started = min(p["started"] for p in pubs)
    stats = conn.execute(
        "with rows as (select device_id, msg_id, ts, pg_xact_commit_timestamp(xmin) as committed"
        f" from device_health where {_OF_PHASE} union all"
        " select device_id, msg_id, ts, pg_xact_commit_timestamp(xmin) from positions"
        f" where {_OF_PHASE})"
        " select count(*), max(extract(epoch from committed)),"
        " array_agg(extract(epoch from committed - ts) * 1000),"
        " count(distinct (device_id, msg_id)) from rows",
        {"first": offset, "last": offset + per_device - 1},  # each device's ids
    ).fetchone()
    assert stats is not None
    count, last_commit, latencies, distinct = stats
    return _Phase(int(count), int(distinct), count / (float(last_commit) - started),
                  [float(x) for x in latencies], _offered_rate(pubs))  # fmt: skip


FLOODERS = 4


def run_garbage(devices: int, per_device: int, processes: int, workdir: Path) -> dict[str, Any]:
    """Good traffic alone; the same good traffic with as many malformed messages mixed in
    (every device half garbage); and the same good traffic while a few misbehaving
    devices send as many malformed messages as all the good ones together (the case the
    per-device limits are for): the rate at which good messages are stored, each time,
    on one gateway."""
    total = devices * per_device
    with stack(workdir, commit_timestamps=True) as st:
        model = repo.DeviceModel("bench-gps", "Bench", "GPS", "gps_alarm", 60)
        st.seed("bench-", devices, model)
        st.seed("flood-", FLOODERS, model)
        # the good devices send 2,000 messages each over the three phases, far above any
        # real device's rate (that is the point of a throughput test), so their allowance
        # is raised to cover it; the flooders send 12,500 each and run into it
        gw = st.start_gateway(WG_LIMITS__DEVICE_BURST=str(4 * per_device + 1_000))
        rates = {}
        phases = (("clean", 0, 0, False), ("half_garbage", 2, 10 * total, False),
                  ("few_devices_flood", 0, 20 * total, True))  # fmt: skip
        for phase, garbage_every, offset, flood in phases:
            sent = total * (2 if garbage_every else 1)
            good = total
            before = st.count("select count(*) from device_health where msg_id like 'm%%'")
            before += st.count("select count(*) from positions")
            load = _loadgen(st.broker.port, processes, devices,
                            sent // devices, offset, garbage_every=garbage_every)  # fmt: skip
            if flood:
                load += _loadgen(st.broker.port, 1, FLOODERS, total // FLOODERS, offset,
                                 garbage_every=1, prefix="flood-")  # fmt: skip
            pubs = _wait_all(load, 600)
            started = min(p["started"] for p in pubs)

            def stored(before: int = before, good: int = good) -> bool:
                now = st.count("select count(*) from device_health where msg_id like 'm%%'")
                return now + st.count("select count(*) from positions") - before >= good

            wait_until(stored, 600, f"{phase} stored")
            last = st.count(
                "select extract(epoch from max(pg_xact_commit_timestamp(xmin)))::bigint * 1000"
                " from positions"
            )
            rates[phase] = round(good / (last / 1000 - started))
        quarantined = st.count("select count(*) from quarantine where reason = 'invalid_json'")
        limited = st.count("select count(*) from quarantine where reason = 'rate_limited'")
        gw.terminate()
        gw.wait(60)
    return {
        "good_msgs_per_s_clean": rates["clean"],
        "good_msgs_per_s_with_equal_garbage": rates["half_garbage"],
        "good_msgs_per_s_with_few_devices_flooding": rates["few_devices_flood"],
        "flooding_devices": FLOODERS,
        "garbage_quarantined": quarantined,
        "flood_refused_kept_as_evidence": limited,
        "garbage_sent": 2 * total,
    }


def _mosquitto_sub_rate(
    port: int, processes: int, devices: int, per_device: int, total: int
) -> float | None:
    """The same load drained by the C client (the broker's ceiling on this machine)."""
    binary = shutil.which("mosquitto_sub")
    stdbuf = shutil.which("stdbuf")  # line-buffered output, so SUBACK is seen at once
    if binary is None or stdbuf is None:
        return None
    sub = subprocess.Popen(
        [stdbuf, "-oL", binary, "-d", "-p", str(port), "-V", "5", "-q", "1", "-C", str(total),
         "-i", "bench-c", "-t", "$share/csub/devices/+/heartbeat",
         "-t", "$share/csub/devices/+/telemetry"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    subscribed = threading.Event()

    def read_output() -> None:  # -d prints "... received SUBACK"; the rest is drained
        assert sub.stdout is not None
        for line in sub.stdout:
            if b"SUBACK" in line:
                subscribed.set()

    threading.Thread(target=read_output, daemon=True).start()
    if not subscribed.wait(30):
        sub.kill()
        return None
    pubs = _wait_all(_loadgen(port, processes, devices, per_device, total), 600)
    sub.wait(600)
    finished = time.time()
    return float(total / (finished - min(float(p["started"]) for p in pubs)))


def _stored(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "select (select count(*) from device_health where msg_id like 'm%')"
        " + (select count(*) from positions)"
    ).fetchone()
    return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench.ingest")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--per-device", type=int, default=500)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for the tests")
    parser.add_argument("--garbage", action="store_true", help="the garbage-flood figure")
    args = parser.parse_args(argv)
    if args.smoke:
        args.devices, args.per_device = 20, 50
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        if args.garbage:
            measured = run_garbage(args.devices, args.per_device, args.processes, Path(tmp))
        else:
            measured = run(args.devices, args.per_device, args.processes, Path(tmp),
                           paced_s=1.0 if args.smoke else 20.0)  # fmt: skip
        result = {
            "ingest": measured,
            "machine": machine.describe(),
        }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return result


if __name__ == "__main__":
    main()
