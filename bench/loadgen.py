"""Load generator process: many MQTT connections publishing QoS 1 contract messages.

Run as ``python -m bench.loadgen`` (one process per call; the benchmark starts several so
that publishing is not the bottleneck). Each connection speaks as one registered device.
Prints one JSON line with what it published and when.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from datetime import UTC, datetime

import aiomqtt
import orjson

from firmware_contracts.topics import device_topic
from gateway.mqtt.connection import NODELAY

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


async def device(
    host: str, port: int, device_id: str, count: int, offset: int, rate: float | None = None
) -> int:
    """Publish ``count`` messages; at ``rate`` per second if given, else as fast as acked."""
    async with aiomqtt.Client(
        host, port, identifier=f"load-{device_id}", socket_options=NODELAY,
        max_inflight_messages=INFLIGHT_PER_CONNECTION, timeout=60,
    ) as client:  # fmt: skip
        sem = asyncio.Semaphore(INFLIGHT_PER_CONNECTION)

        async def one(n: int) -> None:
            async with sem:
                topic, body = message(device_id, offset + n, n)
                await client.publish(topic, body, qos=1)

        if rate is None:
            await asyncio.gather(*(one(n) for n in range(count)))
            return count
        loop = asyncio.get_running_loop()
        start = loop.time()
        pending = set()
        for n in range(count):
            delay = start + n / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the offered load, not synchronisation
            pending.add(asyncio.create_task(one(n)))
            pending = {t for t in pending if not t.done()}
        await asyncio.gather(*pending)
    return count


async def main_async(args: argparse.Namespace) -> None:
    ids = [f"{args.prefix}{i:05d}" for i in range(args.first, args.first + args.devices)]
    started = time.time()
    per_device_rate = args.rate / len(ids) if args.rate else None
    done = await asyncio.gather(
        *(device(args.host, args.port, d, args.per_device, args.offset, per_device_rate)
          for d in ids)
    )  # fmt: skip
    finished = time.time()
    sys.stdout.write(orjson.dumps({"published": sum(done), "started": started,
                                   "finished": finished}).decode() + "\n")  # fmt: skip


def main() -> None:
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt's pending-calls notices
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="bench-")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--per-device", type=int, required=True)
    parser.add_argument("--offset", type=int, default=0, help="message-id offset")
    parser.add_argument("--rate", type=float, default=None, help="msgs/s for this process")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
