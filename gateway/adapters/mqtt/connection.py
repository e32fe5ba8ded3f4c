"""Parsing broker URLs into aiomqtt connection arguments, and receiving until told to
stop (shared by the gateway's MQTT clients)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiomqtt

from gateway.adapters.mqtt import internals
from gateway.support.backoff import Backoff

log = logging.getLogger(__name__)

NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool
    ca_file: str | None = None  # mqtts://...?ca=/path: the CA the broker's cert is from
    cert_file: str | None = None  # ?cert=/path&key=/path: a client certificate (mTLS)
    key_file: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            ca_file=query.get("ca"),
            cert_file=query.get("cert"),
            key_file=query.get("key"),
        )

    def tls_context(self) -> ssl.SSLContext:
        """The system's trust store, or only ``ca_file``; a client certificate if given."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "socket_options": NODELAY,
        }
        if self.tls:
            kwargs["tls_context"] = self.tls_context()
        return kwargs


async def messages_until(
    client: aiomqtt.Client, stop: asyncio.Event
) -> AsyncIterator[tuple[str, bytes]]:
    """(topic, payload) of each message received, until ``stop`` is set; a broken
    connection raises ``aiomqtt.MqttError`` as iterating the client does."""
    messages = aiter(client.messages)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while True:
            nxt = asyncio.ensure_future(anext(messages))
            await asyncio.wait({nxt, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                nxt.cancel()
                return
            message = nxt.result()
            if isinstance(message.payload, bytes):
                yield str(message.topic), message.payload
    finally:
        stopping.cancel()


async def keep_connected(
    address: BrokerAddress,
    identifier: str,
    stop: asyncio.Event,
    session: Callable[[aiomqtt.Client], Awaitable[None]],
    *,
    what: str,
    will: aiomqtt.Will | None = None,
    keepalive: int = 60,
) -> None:
    """Connect and run ``session(client)``; when the connection breaks, log it and
    connect again (0.1 s doubling to 5 s between attempts) until ``stop`` is set or the
    session returns. The session cleans up its own state (try/finally)."""
    backoff = Backoff(0.1, 5.0)
    while not stop.is_set():
        try:
            async with internals.Client(
                **address.client_kwargs(), identifier=identifier, will=will, timeout=10,
                keepalive=keepalive,
            ) as client:
                internals.disable_paho_logger(client)
                backoff.reset()
                await session(client)
                return
        except aiomqtt.MqttError as exc:
            log.warning(f"{what} disconnected", extra={"error": type(exc).__name__})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff.next())
