"""Sends dynamic-security commands to Mosquitto as the broker admin identity and awaits
the plugin's answer (thin adapter; the commands themselves are built in ``dynsec``).

One short MQTT v5 session per request: registration is rare, and a fresh session never
holds a stale answer. Nothing from the request (it carries passwords) is ever logged.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from gateway.adapters.mosquitto import dynsec
from gateway.adapters.mqtt import internals
from gateway.adapters.mqtt.connection import NODELAY


class BrokerAccessError(Exception):
    """Managing broker identities failed; the API answers 503 with this message."""


class BrokerUnavailable(BrokerAccessError):
    """The broker could not be reached, refused the admin identity, or did not answer."""


class BrokerRefused(BrokerAccessError):
    """The dynamic security plugin refused a command."""


class IdentityTaken(BrokerAccessError):
    """The name is held by a broker identity that is not a device's (the gateway, the
    admin, an operator): a device may not take it over. The API answers 409."""


@dataclass(frozen=True)
class AdminEndpoint:
    host: str
    port: int
    username: str
    password: str
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def from_url(cls, url: str, username: str, password: str, **tls: Any) -> AdminEndpoint:
        parts = urlsplit(url)
        secure = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if secure else 1883),
            username=username,
            password=password,
            tls=secure,
            **tls,
        )

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


class DynsecClient:
    def __init__(self, endpoint: AdminEndpoint, timeout_s: float = 5.0) -> None:
        self._endpoint = endpoint
        self._timeout_s = timeout_s

    async def execute(self, commands: Sequence[dynsec.Command]) -> list[dict[str, Any]]:
        """Run ``commands`` in one request; their answers, in order. Raises
        :class:`BrokerRefused` or :class:`BrokerUnavailable`."""
        correlation = secrets.token_hex(8)
        ep = self._endpoint
        try:
            async with asyncio.timeout(self._timeout_s):
                async with internals.Client(
                    ep.host,
                    ep.port,
                    username=ep.username,
                    password=ep.password,
                    identifier=f"wg-dynsec-{correlation}",
                    protocol=aiomqtt.ProtocolVersion.V5,
                    tls_context=ep.tls_context(),
                    socket_options=NODELAY,
                    timeout=self._timeout_s,
                ) as client:
                    internals.disable_paho_logger(client)
                    granted = await client.subscribe(dynsec.RESPONSE_TOPIC, qos=1)
                    if any(_refused(code) for code in granted):
                        raise BrokerUnavailable(
                            f"broker admin {ep.username!r} may not read "
                            f"{dynsec.RESPONSE_TOPIC} (is it the dynsec admin?)"
                        )
                    payload = dynsec.request(commands, correlation)
                    await client.publish(dynsec.CONTROL_TOPIC, payload, qos=1)
                    async for message in client.messages:
                        if not isinstance(message.payload, bytes):
                            continue
                        answers = dynsec.parse_response(message.payload, correlation)
                        if answers is not None:
                            return dynsec.check(commands, answers)
        except dynsec.DynsecError as exc:
            raise BrokerRefused(str(exc)) from None
        except TimeoutError:
            raise BrokerUnavailable(
                f"no answer from the broker's dynamic security plugin within {self._timeout_s}s"
            ) from None
        except aiomqtt.MqttError as exc:
            raise BrokerUnavailable(f"cannot reach the broker as admin: {exc}") from None
        raise BrokerUnavailable("broker session ended without an answer")


def _refused(code: Any) -> bool:
    if isinstance(code, int):
        return code >= 0x80
    return bool(getattr(code, "is_failure", False))
