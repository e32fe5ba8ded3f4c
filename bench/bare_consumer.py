"""The ceiling: a bare aiomqtt consumer (QoS 1, shared subscription,
acknowledging on receipt, parsing each payload's JSON and counting it: no validation, no
storage) on the same broker and load, as issue #22 measured it.

Run as ``python -m bench.bare_consumer``; prints one JSON line when it has received
``--expect`` messages: the time of the first and the last, and the CPU time it used
between them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import aiomqtt
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.adapters.mqtt.connection import NODELAY
from gateway.worker.consumer import subscription_filters


async def consume(port: int, expect: int, ready_file: str, group: str = "wg") -> None:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    # The session ends with the connection: a lingering member of the share group would
    # take half of the gateway's messages in the next phase.
    props.SessionExpiryInterval = 0
    props.ReceiveMaximum = 2000
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="bench-bare", protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=True, properties=props, socket_options=NODELAY,
    ) as client:  # fmt: skip
        await client.subscribe([(f, SubscribeOptions(qos=1)) for f in subscription_filters(group)])
        with open(ready_file, "w") as f:  # noqa: ASYNC230 - once, before the load
            f.write("ready")
        # Read exactly as the gateway does (one await, then drain what is queued), so the
        # ceiling is the same client library doing nothing but receiving.
        queue = client._queue
        received = 0
        first = 0.0
        cpu_first = 0.0
        parsed = 0
        async for message in client.messages:
            if received == 0:
                first = time.time()
                cpu_first = time.process_time()
            received += 1
            parsed += isinstance(orjson.loads(message.payload), dict)
            while not queue.empty() and received < expect:
                parsed += isinstance(orjson.loads(queue.get_nowait().payload), dict)
                received += 1
            if received >= expect:
                break
        last = time.time()
        cpu_s = time.process_time() - cpu_first  # this process's CPU, first to last message
    sys.stdout.write(orjson.dumps({"received": received, "parsed": parsed, "first": first,
                                   "last": last, "cpu_s": cpu_s}).decode())  # fmt: skip
    sys.stdout.write("\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--group", default="wg", help="the shared subscription's group")
    args = parser.parse_args()
    asyncio.run(consume(args.port, args.expect, args.ready_file, args.group))


if __name__ == "__main__":
    main()
