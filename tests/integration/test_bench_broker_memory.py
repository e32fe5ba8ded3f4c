"""bench.broker_memory's raw devices do what the device contract asks of a connection, on a
real Mosquitto: a retained online status a later subscriber receives, a retained last will
the broker publishes when the connection ends without a DISCONNECT, a granted subscription
to the commands channel; and the bench reports each step's broker memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import orjson

from bench import broker_memory
from device_sims.scenario import load_scenario
from tests.services import Mosquitto

DEVICES = 6


async def _statuses(port: int, want: int, timeout_s: float = 10.0) -> dict[str, str]:
    """Device id -> state of the first ``want`` status messages a new subscriber gets."""
    got: dict[str, str] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier="status-reader") as client:
        await client.subscribe("devices/+/status", qos=1)
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                got[str(message.topic).split("/")[1]] = orjson.loads(bytes(message.payload))[
                    "state"
                ]  # fmt: skip
                if len(got) == want:
                    return got
    return got


def test_raw_devices_keep_the_contract_with_a_real_broker(mosquitto: Mosquitto) -> None:
    devices = broker_memory._devices(load_scenario(broker_memory.SCENARIO).device_specs(DEVICES))
    ids = {d.device_id for d in devices}
    does = broker_memory.STEPS[-1][1]

    async def scenario() -> tuple[dict[str, str], dict[str, bool], dict[str, str]]:
        writers = await broker_memory._step(mosquitto.port, devices, does)
        online = await _statuses(mosquitto.port, DEVICES)  # retained: sent before we listened
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="gw") as client:
            await client.subscribe("devices/+/status", qos=1)
            retained: dict[str, bool] = {}
            async with asyncio.timeout(10):
                async for message in client.messages:  # the retained ones first
                    retained[str(message.topic).split("/")[1]] = message.retain
                    if len(retained) == DEVICES:
                        break
            for writer in writers:
                writer.transport.abort()  # no DISCONNECT: the broker publishes the will
            wills: dict[str, str] = {}
            async with asyncio.timeout(10):
                async for message in client.messages:
                    wills[str(message.topic).split("/")[1]] = orjson.loads(
                        bytes(message.payload)
                    )["state"]  # fmt: skip
                    if len(wills) == DEVICES:
                        break
        return online, retained, wills

    online, retained, wills = asyncio.run(scenario())
    assert online == dict.fromkeys(ids, "online")
    assert retained == dict.fromkeys(ids, True)
    assert wills == dict.fromkeys(ids, "offline")


def test_each_step_reports_the_brokers_memory(tmp_path: Path) -> None:
    result = broker_memory.run(DEVICES, tmp_path)
    steps = [name for name, _ in broker_memory.STEPS]
    assert list(result["broker_rss_mb"]) == steps
    assert list(result["added_mb_per_10k_devices"]) == steps
    assert result["broker_rss_mb_no_devices"] > 0
    assert all(v > 0 for v in result["broker_rss_mb"].values())
    assert result["contract_mb_per_10k_devices"] >= 0
