"""``python -m bench.broker_memory``: what Mosquitto holds for the device contract alone.

The contract (docs/contract.md) asks four things of every device's connection: a
persistent session, a retained last will on its status channel, a subscription to its
commands channel, and a retained ``online`` status. Each step below starts its own broker
(the benchmarks' configuration) and connects that many devices, each doing the step's
things and nothing else: no gateway, no traffic. The broker's resident memory then is what
the contract costs it, whatever gateway runs beside it.

The devices are raw sockets speaking MQTT 3.1.1 (:mod:`gateway.adapters.mqtt.packets`),
with the simulators' device ids, topics and payloads, so that thousands fit in one process
and take seconds to connect.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench import machine
from bench.mosquitto import Mosquitto
from device_sims.catalog import build_simulator
from device_sims.clock import SimClock
from device_sims.connection import ConnectionOptions
from device_sims.envelope import LAST_WILL_PAYLOAD
from device_sims.scenario import DeviceSpec, load_scenario
from firmware_contracts.topics import Channel, device_topic
from gateway.adapters.mqtt import packets

SCENARIO = Path(__file__).resolve().parent.parent / "device_sims" / "scenarios" / "load_fleet.toml"

#: each step adds one thing the contract asks of a connection to the step before it
STEPS: tuple[tuple[str, frozenset[str]], ...] = (
    ("persistent_session", frozenset()),
    ("last_will", frozenset({"will"})),
    ("commands_subscription", frozenset({"will", "subscription"})),
    ("retained_status", frozenset({"will", "subscription", "status"})),
)
CONNECTING_AT_ONCE = 200
_KEEPALIVE_S = ConnectionOptions().keepalive_s  # the simulators' (a longer one costs nothing)
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class _Device:
    device_id: str
    status: bytes  # the retained ``online`` status the simulator would publish


def _devices(specs: Iterable[DeviceSpec]) -> list[_Device]:
    now = datetime.now(UTC)
    clock = SimClock(real_start=now)
    return [
        _Device(spec.device_id,
                build_simulator(spec, seed=0, clock=clock).status("online", now).payload)
        for spec in specs
    ]  # fmt: skip


def _refusal(first: int, buffer: bytearray, start: int, end: int) -> int:
    """The broker's refusal in a CONNACK or a SUBACK (0: accepted; a PUBACK accepts)."""
    if first == packets.CONNACK:
        return packets.decode_connack(buffer, start, end, packets.V311).reason
    if first == packets.SUBACK:
        (granted,) = packets.decode_ack(buffer, start, end, packets.V311)[1]
        return granted if granted >= 0x80 else 0
    return 0


async def _connect(port: int, device: _Device, does: frozenset[str]) -> asyncio.StreamWriter:
    """One device's connection, doing ``does``; returns once the broker has answered all."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    status_topic = device_topic(device.device_id, Channel.STATUS)
    will = (packets.Will(status_topic, LAST_WILL_PAYLOAD, qos=1, retain=True)
            if "will" in does else None)  # fmt: skip
    writer.write(packets.connect(
        device.device_id, protocol=packets.V311, keepalive_s=_KEEPALIVE_S,
        clean_start=False, will=will,
    ))  # fmt: skip
    expected = [packets.CONNACK]
    if "subscription" in does:
        topic = device_topic(device.device_id, Channel.COMMANDS)
        writer.write(packets.subscribe(1, [topic], 1, packets.V311))
        expected.append(packets.SUBACK)
    if "status" in does:
        writer.write(packets.publish(status_topic, device.status, qos=1, retain=True,
                                     packet_id=2, protocol=packets.V311))  # fmt: skip
        expected.append(packets.PUBACK)
    frames = packets.FrameReader()
    while expected:
        data = await reader.read(4096)
        if not data:
            raise ConnectionError(f"the broker closed {device.device_id}'s connection")
        frames.feed(data)
        for first, start, end in frames.frames():
            if not expected or first & 0xF0 != expected.pop(0):
                raise ConnectionError(f"{device.device_id}: unexpected packet {first:#x}")
            refused = _refusal(first, frames.buffer, start, end)
            if refused:
                raise ConnectionError(f"{device.device_id}: refused ({refused:#x})")
        frames.consume()
    return writer


async def _step(
    port: int, devices: list[_Device], does: frozenset[str]
) -> list[asyncio.StreamWriter]:
    limit = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def one(device: _Device) -> asyncio.StreamWriter:
        async with limit:
            return await asyncio.wait_for(_connect(port, device, does), TIMEOUT_S)

    return list(await asyncio.gather(*(one(d) for d in devices)))


def _rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss / 2**20)


def measure(devices: list[_Device], does: frozenset[str], workdir: Path) -> tuple[float, float]:
    """The broker's resident MB with no device connected, then with ``devices`` connected
    doing ``does``."""
    broker = Mosquitto(workdir, extra_config=["max_connections -1"]).start()
    try:
        assert broker.proc is not None
        empty = _rss_mb(broker.proc.pid)

        async def connected() -> float:
            writers = await _step(broker.port, devices, does)
            try:
                assert broker.proc is not None
                return _rss_mb(broker.proc.pid)
            finally:
                for writer in writers:
                    writer.close()

        return empty, asyncio.run(connected())
    finally:
        broker.stop()


def run(devices: int, workdir: Path) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the broker inherits it
    fleet = _devices(load_scenario(SCENARIO).device_specs(devices))
    rss: dict[str, float] = {}
    added: dict[str, float] = {}
    before = 0.0
    empty = 0.0
    for name, does in STEPS:
        empty, rss[name] = measure(fleet, does, workdir / name)
        added[name] = max(0.0, rss[name] - empty - before)
        before = rss[name] - empty
    per_10k = 10_000 / devices
    return {
        "devices": devices,
        "measures": "Mosquitto's RSS with that many devices connected, each doing only what "
        "the device contract asks of a connection, step by step (no gateway, no traffic); "
        "each step on a fresh broker",
        "broker_rss_mb_no_devices": round(empty, 1),
        "broker_rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "added_mb_per_10k_devices": {k: round(v * per_10k, 1) for k, v in added.items()},
        "bytes_per_device": {k: round(v * 2**20 / devices) for k, v in added.items()},
        "contract_mb_per_10k_devices": round((rss[STEPS[-1][0]] - empty) * per_10k, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench.broker_memory")
    parser.add_argument("--devices", type=int, default=10_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        result = {**run(args.devices, Path(tmp)), "machine": machine.describe()}
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return result


if __name__ == "__main__":
    main()
