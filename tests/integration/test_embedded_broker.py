"""The demo's embedded amqtt broker delivers retained messages only to a matching
subscription of the client's own, and survives clients that connect while others
subscribe.

amqtt 0.12.1, as released, replays on every connect the retained messages matching *any*
client's subscriptions (a device subscribed to its commands got every device's retained
``status``), and iterates its subscription table across awaits, so a connect during
another client's subscribe failed with "dictionary changed size during iteration".
"""

from __future__ import annotations

import asyncio
import logging

import aiomqtt
import pytest

from gateway.adapters.embedded import EmbeddedBroker
from gateway.entrypoints.runtime import free_port


async def _retained(port: int, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="publisher") as client:
        await client.publish(topic, payload, qos=1, retain=True)


async def _received_until(client: aiomqtt.Client, payload: bytes) -> list[str]:
    """The topics delivered to ``client`` up to and including the message ``payload``."""
    topics: list[str] = []
    async with asyncio.timeout(10):
        async for message in client.messages:
            topics.append(str(message.topic))
            if message.payload == payload:
                return topics
    raise AssertionError("unreachable")


async def test_a_connect_gets_no_retained_message_of_another_clients_subscription() -> None:
    broker = EmbeddedBroker(free_port())
    await broker.start()
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="gateway") as gateway:
            await gateway.subscribe("devices/+/status", qos=1)
            await _retained(broker.port, "devices/d1/status", b'{"state":"online"}')
            # The gateway's own subscription gets the live message: the broker has it.
            assert await _received_until(gateway, b'{"state":"online"}') == ["devices/d1/status"]

            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="d2") as device:
                await device.subscribe("devices/d2/commands", qos=1)
                # A probe through the device's own subscription comes after whatever
                # the broker sends it on connect and subscribe.
                await gateway.publish("devices/d2/commands", b"probe", qos=1)
                delivered = await _received_until(device, b"probe")
            assert delivered == ["devices/d2/commands"], delivered

            # A new subscriber of a matching filter does get the retained message.
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="ops") as ops:
                await ops.subscribe("devices/+/status", qos=1)
                assert await _received_until(ops, b'{"state":"online"}') == ["devices/d1/status"]
    finally:
        await broker.stop()


async def test_clients_connecting_while_others_subscribe_all_get_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = EmbeddedBroker(free_port())
    await broker.start()
    caplog.set_level(logging.ERROR)
    try:
        for n in range(50):  # statuses of devices seen earlier, as on a running broker
            await _retained(broker.port, f"devices/old-{n}/status", b"{}")

        async def device(n: int) -> list[str]:
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier=f"dev-{n}") as c:
                await c.publish(f"devices/dev-{n}/status", b"{}", qos=1, retain=True)
                for topic in ("commands", "config", "acks"):
                    await c.subscribe(f"devices/dev-{n}/{topic}", qos=1)
                await c.publish(f"devices/dev-{n}/commands", f"echo-{n}".encode(), qos=1)
                return await _received_until(c, f"echo-{n}".encode())

        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="gateway") as gateway:
            await gateway.subscribe("devices/+/status", qos=1)
            got = await asyncio.gather(*(device(n) for n in range(40)))
        assert got == [[f"devices/dev-{n}/commands"] for n in range(40)]
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, errors
    finally:
        await broker.stop()
