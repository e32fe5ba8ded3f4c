"""``python -m bench.profile``: where a gateway worker's time per message goes.

A private Mosquitto and PostgreSQL; ``welfare-gateway worker`` (one worker, so it also
runs the alarm engine) under cProfile; the ingest benchmark's load, first paced
(``--rate``, 2,000 msgs/s by default) and then at saturation, each phase in a worker of
its own. Prints one JSON object: per phase, the profiled CPU per stored message split by
stage of the pipeline, and the functions that cost most (self time).

cProfile slows every Python call, so the absolute microseconds are inflated (C code,
such as orjson or the socket calls, much less): read the shares, and compare runs with
each other, not with bench/ingest's figures. cProfile counts wall time, so the time the
event loop sleeps in ``epoll.poll`` waiting for the next message is reported apart
(``waiting_us_per_msg``), not as CPU: at a paced load it is most of the wall time.
"""

from __future__ import annotations

import argparse
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg

from bench import machine
from bench.ingest import _loadgen, _stored, _wait_all
from bench.mosquitto import wait_until
from bench.stack import stack
from gateway.adapters.postgres import registry_repo as repo

#: stage of the pipeline -> where its code lives (first match wins; paths or built-ins)
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("device state", ("gateway/worker/fleet/device_state.py",)),
    (
        "binding to the registry",
        ("gateway/worker/fleet/", "gateway/domain/registry.py", "gateway/domain/fleet_index.py"),
    ),
    (
        "alarm rules",
        ("gateway/worker/alarms/engine.py", "gateway/domain/", "gateway/worker/locks/"),
    ),
    ("alarm intake and role", ("gateway/worker/alarms/",)),
    ("ingest (admit, limits)", ("gateway/worker/ingest.py",)),
    ("rows", ("gateway/worker/rows.py",)),
    ("batch writer, COPY and commit", ("gateway/worker/batch_writer.py", "psycopg")),
    ("decode and validation", ("firmware_contracts/", "pydantic", "orjson")),
    (
        "MQTT receive and ack",
        ("gateway/worker/consumer.py", "gateway/adapters/mqtt/", "aiomqtt", "paho"),
    ),
    ("metrics", ("prometheus_client",)),
    ("logging", ("logging/", "gateway/support/logs.py")),
    (
        "event loop and sockets",
        ("asyncio/", "selectors", "_socket", "select.epoll", "socket.py", "ssl", "_contextvars"),
    ),
]

#: the event loop waiting for its sockets (cProfile's wall time; idle, not CPU)
WAITING = "<method 'poll' of 'select.epoll' objects>"


def stage_of(filename: str, function: str) -> str:
    where = filename if filename != "~" else function  # a built-in: its name says whose
    for stage, marks in STAGES:
        if any(mark in where for mark in marks):
            return stage
    return "other"


def summarise(profile: Path, messages: int, top: int) -> dict[str, Any]:
    stats = pstats.Stats(str(profile))
    entries = stats.stats  # type: ignore[attr-defined]
    by_stage: dict[str, float] = {}
    functions = []
    waiting = 0.0
    for (filename, line, function), (_cc, calls, self_s, _cum, callers) in entries.items():
        if function == WAITING:  # the loop asleep until a socket is ready: not CPU
            waiting += self_s
            continue
        stage = stage_of(filename, function)
        if stage == "other" and filename == "~" and callers:
            # a built-in of no stage of its own (len, isinstance, dict.get ...): its time
            # goes to the stages of the code that called it, in proportion
            for (c_file, _c_line, c_function), caller in callers.items():
                share = stage_of(c_file, c_function)
                by_stage[share] = by_stage.get(share, 0.0) + caller[2]
        else:
            by_stage[stage] = by_stage.get(stage, 0.0) + self_s
        functions.append((self_s, calls, stage, _short(filename, line, function)))
    functions.sort(reverse=True)
    total = sum(by_stage.values())

    def us(seconds: float) -> float:
        return round(seconds / messages * 1e6, 2)

    return {
        "messages": messages,
        "profiled_cpu_us_per_msg": us(total),
        "waiting_us_per_msg": us(waiting),
        "stages": {
            stage: {"us_per_msg": us(s), "share": round(s / total, 3)}
            for stage, s in sorted(by_stage.items(), key=lambda kv: -kv[1])
        },
        "top_functions": [
            {
                "function": name,
                "stage": stage,
                "us_per_msg": us(s),
                "share": round(s / total, 3),
                "calls_per_msg": round(calls / messages, 2),
            }
            for s, calls, stage, name in functions[:top]
        ],
    }


def _short(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function
    for root in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if root in filename:
            filename = filename.split(root, 1)[1]
            break
    return f"{filename}:{line}({function})"


def phase(
    workdir: Path, name: str, rate: float | None, devices: int, per_device: int, top: int
) -> dict[str, Any]:
    with stack(workdir / name) as st:
        st.seed("bench-", devices, repo.DeviceModel("bench-gps", "Bench", "GPS", "gps_alarm", 60))
        out = workdir / f"{name}.prof"
        worker = st.start_gateway(command="worker", python_args=("-m", "cProfile", "-o", str(out)))
        processes = 2
        with psycopg.connect(st.database_url, autocommit=True) as conn:
            goal = _stored(conn) + devices * per_device
            started = time.monotonic()
            load = _loadgen(st.broker.port, processes, devices, per_device, 0,
                            rate=rate)  # fmt: skip
            wait_until(lambda: _stored(conn) >= goal, 900, f"{name}: stored")
            seconds = time.monotonic() - started
            _wait_all(load, 60)
        worker.send_signal(signal.SIGTERM)  # a clean stop: cProfile writes its file
        worker.wait(120)
    result = summarise(out, devices * per_device, top)
    result["stored_msgs_per_s_under_profile"] = round(devices * per_device / seconds)
    result["offered_msgs_per_s"] = rate or "as fast as the broker takes them"
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench.profile")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2000.0, help="the paced phase, msgs/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the paced phase")
    parser.add_argument("--saturation-messages", type=int, default=60_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for the tests")
    args = parser.parse_args(argv)
    if args.smoke:
        args.devices, args.seconds, args.saturation_messages, args.top = 20, 1.0, 1_000, 5
    paced_per_device = max(1, round(args.rate * args.seconds / args.devices))
    with tempfile.TemporaryDirectory(prefix="wg-profile-") as tmp:
        result = {
            "paced": phase(Path(tmp), "paced", args.rate, args.devices, paced_per_device, args.top),
            "saturation": phase(
                Path(tmp),
                "saturation",
                None,
                args.devices,
                max(1, args.saturation_messages // args.devices),
                args.top,
            ),
            "machine": machine.describe(),
        }
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return result


if __name__ == "__main__":
    main()
