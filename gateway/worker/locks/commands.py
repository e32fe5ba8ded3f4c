"""Commands to devices on ``devices/{id}/commands`` (QoS 1) and their replies.

Its own MQTT connection. ``send`` publishes a command and waits, at most until a given
deadline, for the device's reply on ``devices/{id}/replies``: replies arrive through
ingest (validated, from the device's own topic) and are handed to :meth:`on_reply`,
matched by (device id, command id), so no other device can answer for it.
"""

from __future__ import annotations

import asyncio
import logging

import aiomqtt
import orjson

from firmware_contracts.messages import Command, Reply
from firmware_contracts.topics import Channel, device_topic
from gateway.adapters.mqtt.connection import BrokerAddress, keep_connected

log = logging.getLogger(__name__)


class NotConnected(Exception):
    """The command could not be handed to the broker before its deadline."""


class CommandChannel:
    def __init__(self, url: str, client_id: str) -> None:
        self._address = BrokerAddress.parse(url)
        self._client_id = client_id
        self._client: aiomqtt.Client | None = None
        self._pending: dict[tuple[str, str], asyncio.Future[Reply]] = {}
        self.connected = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        async def session(client: aiomqtt.Client) -> None:
            self._client = client
            self.connected.set()
            try:
                await stop.wait()
            finally:
                self._client = None
                self.connected.clear()

        await keep_connected(self._address, self._client_id, stop, session,
                             what="command channel")  # fmt: skip

    async def send(self, device_id: str, command: Command, wait_s: float) -> Reply | None:
        """Publish ``command``; the device's reply, or None when none came in ``wait_s``
        seconds. Raises :class:`NotConnected` if the broker did not take it in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        key = (device_id, command.id)
        future: asyncio.Future[Reply] = loop.create_future()
        self._pending[key] = future
        try:
            try:
                await asyncio.wait_for(self.connected.wait(), max(0.0, deadline - loop.time()))
                client = self._client
                if client is None:
                    raise NotConnected("command channel not connected")
                payload = orjson.dumps(command.model_dump(mode="json", exclude_none=True))
                await asyncio.wait_for(
                    client.publish(device_topic(device_id, Channel.COMMANDS), payload, qos=1),
                    max(0.0, deadline - loop.time()),
                )
            except (TimeoutError, aiomqtt.MqttError) as exc:
                raise NotConnected(f"command not handed to the broker: {exc!r}") from None
            try:
                return await asyncio.wait_for(future, max(0.0, deadline - loop.time()))
            except TimeoutError:
                return None
        finally:
            self._pending.pop(key, None)

    def on_reply(self, device_id: str, reply: Reply) -> bool:
        """A reply from ``device_id``; True if a command was waiting for it."""
        future = self._pending.get((device_id, reply.command_id))
        if future is None or future.done():
            return False
        future.set_result(reply)
        return True
