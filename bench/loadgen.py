"""Load generator process: many MQTT connections publishing QoS 1 contract messages.

Run as ``python -m bench.loadgen`` (one process per call; the benchmark starts several so
that publishing is not the bottleneck). Each connection speaks as one registered device.
Plain paho clients driven by one ``select`` loop: no asyncio task or future per message,
so the generator takes as little CPU as possible from the system under test. Each device
sends three heartbeats to one position, or positions only (``--telemetry-only``). Prints
one JSON line with what it published and when.
"""

from __future__ import annotations

import argparse
import select
import socket
import sys
import time
from datetime import UTC, datetime

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_contracts.topics import device_topic

INFLIGHT_PER_CONNECTION = 16


def message(device_id: str, n: int, kind: int) -> tuple[str, bytes]:
    ts = datetime.now(UTC).isoformat()
    if kind % 4 == 0:
        body = {"v": 1, "type": "position", "id": f"m{n}", "ts": ts,
                "lat": 59.6 + (n % 100) * 1e-4, "lon": 16.5, "accuracy_m": 8.0}  # fmt: skip
        return device_topic(device_id, "telemetry"), orjson.dumps(body)
    body = {"v": 1, "type": "heartbeat", "id": f"m{n}", "ts": ts, "battery_percent": 80,
            "rssi_dbm": -70}  # fmt: skip
    return device_topic(device_id, "heartbeat"), orjson.dumps(body)


class Device:
    def __init__(
        self,
        host: str,
        port: int,
        device_id: str,
        count: int,
        offset: int,
        garbage_every: int,
        telemetry_only: bool = False,
    ) -> None:
        self.device_id = device_id
        self.garbage_every = garbage_every
        self.telemetry_only = telemetry_only
        self.count = count
        self.offset = offset
        self.sent = 0
        self.acked = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"load-{device_id}")
        self.client.max_inflight_messages_set(INFLIGHT_PER_CONNECTION)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.connect(host, port, keepalive=60)
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fd = sock.fileno()

    def _on_publish(self, *_: object) -> None:
        self.acked += 1

    def inflight(self) -> int:
        return self.sent - self.acked

    def publish_next(self) -> None:
        n = self.offset + self.sent
        if self.garbage_every and self.sent % self.garbage_every == self.garbage_every - 1:
            # what a broken firmware sends: refused into quarantine, must not slow the rest
            topic, body = device_topic(self.device_id, "telemetry"), b'{"v":1,"type":"wei'
        else:
            topic, body = message(self.device_id, n, 0 if self.telemetry_only else self.sent)
        self.client.publish(topic, body, qos=1)
        self.sent += 1


def run(args: argparse.Namespace) -> dict[str, float]:
    ids = [f"{args.prefix}{i:05d}" for i in range(args.first, args.first + args.devices)]
    devices = [
        Device(
            args.host,
            args.port,
            d,
            args.per_device,
            args.offset,
            args.garbage_every,
            args.telemetry_only,
        )
        for d in ids
    ]
    by_sock = {d.fd: d for d in devices}
    # wait for every CONNACK
    while any(not d.client.is_connected() for d in devices):
        readable, _, _ = select.select(list(by_sock), [], [], 1.0)
        for fd in readable:
            by_sock[fd].client.loop_read()
    started = time.time()
    interval = len(devices) / args.rate if args.rate else 0.0  # per device, seconds
    total = sum(d.count for d in devices)
    last_misc = time.monotonic()
    while sum(d.acked for d in devices) < total:
        now = time.time()
        for i, d in enumerate(devices):
            if d.sent >= d.count or d.inflight() >= INFLIGHT_PER_CONNECTION:
                continue
            if interval and now < started + (d.sent + i / len(devices)) * interval:
                continue  # pacing the offered load
            d.publish_next()
        want_write = [fd for fd, d in by_sock.items() if d.client.want_write()]
        readable, writable, _ = select.select(list(by_sock), want_write, [], 0.005)
        for fd in readable:
            by_sock[fd].client.loop_read(max_packets=100)
        for fd in writable:
            by_sock[fd].client.loop_write()
        if time.monotonic() - last_misc > 1.0:
            for d in devices:
                d.client.loop_misc()
            last_misc = time.monotonic()
    finished = time.time()
    for d in devices:
        d.client.disconnect()
    return {"published": float(total), "started": started, "finished": finished}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="bench-")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--per-device", type=int, required=True)
    parser.add_argument("--offset", type=int, default=0, help="message-id offset")
    parser.add_argument("--rate", type=float, default=None, help="msgs/s for this process")
    parser.add_argument("--garbage-every", type=int, default=0, help="every Nth is malformed")
    parser.add_argument("--telemetry-only", action="store_true",
                        help="positions only (devices/{id}/telemetry), no heartbeats")  # fmt: skip
    result = run(parser.parse_args())
    sys.stdout.write(orjson.dumps({**result, "published": int(result["published"])}).decode())
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
