"""Thin async MQTT adapter: one device's connection to the broker (aiomqtt).

All behaviour lives in the pure :class:`~device_sims.session.DeviceSession`; this module
only moves bytes and sleeps. Per device it:

* connects through the shared :class:`~device_sims.ramp.Ramp` with its own client id, a
  persistent session, TCP_NODELAY and the retained last will ``{"v":1,"type":"status",
  "state":"offline"}``; subscribes to ``devices/{id}/commands``;
* publishes the online status, then the outbox (buffered readings first), QoS 1,
  counting a message only once the broker has acknowledged it;
* sleeps until the next simulated event is due in real time (``clock.real_at``), a
  command arrives or the run stops, then advances the simulation;
* ends the connection as the simulation says: ``abrupt`` closes the socket without
  DISCONNECT (the broker publishes the will), ``clean`` sends DISCONNECT (no will);
  at the end of a run it publishes a retained ``offline`` status, then disconnects;
* when the broker goes away, keeps simulating (buffering readings) and reconnects with
  exponential backoff;
* authenticates with the spec's username/password and, with :class:`TlsOptions`, over TLS
  with the device's own client certificate (``{id}.crt``/``{id}.key``, CN = device id)
  or one shared certificate;
* records why an attempt failed (:class:`~device_sims.report.Cause`: connection refused,
  not authorised, TLS error, ...) in the report, and which devices never connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import math
import random
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from device_sims.clock import SimClock
from device_sims.envelope import LAST_WILL_PAYLOAD, Outgoing
from device_sims.ramp import Ramp
from device_sims.report import Cause, FleetReport
from device_sims.scenario import DeviceSpec
from device_sims.session import DeviceSession
from firmware_contracts.topics import Channel, device_topic
from gateway.adapters.mqtt import internals
from gateway.support.backoff import Backoff

logger = logging.getLogger(__name__)

#: Never sleep longer than this in one go (robust against wall-clock jumps).
MAX_SLEEP_S = 600.0

#: paho's and aiomqtt's log for the devices' clients (a failed attempt is also counted in
#: the report, with its cause; ``welfare-gateway simulate`` quiets this one).
MQTT_LOGGER = logging.getLogger("device_sims.mqtt")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """TLS to the broker: the CA of the broker's certificate (None: the system's CAs) and,
    for mutual TLS, the client certificate: each device's own from ``cert_dir`` (found by
    device id as ``welfare-gateway pki device-cert`` writes them: ``{id}.crt`` and
    ``{id}.key``), or one ``cert_file``/``key_file`` for every device."""

    ca_file: Path | None = None
    cert_dir: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def client_cert(self, device_id: str) -> tuple[Path, Path] | None:
        if self.cert_dir is not None:
            return self.cert_dir / f"{device_id}.crt", self.cert_dir / f"{device_id}.key"
        if self.cert_file is not None:
            return self.cert_file, self.key_file or self.cert_file
        return None

    def context(self, device_id: str) -> ssl.SSLContext:
        """The device's TLS context (shared by all devices without a per-device cert)."""
        if self.cert_dir is None:
            return _shared_context(self)
        return self._new_context(device_id)

    def _new_context(self, device_id: str) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        cert = self.client_cert(device_id)
        if cert is not None:
            context.load_cert_chain(cert[0], cert[1])
        return context


@functools.lru_cache(maxsize=16)
def _shared_context(tls: TlsOptions) -> ssl.SSLContext:
    return tls._new_context("")


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    keepalive_s: int = 60
    timeout_s: float = 10.0  # connect, subscribe and PUBACK waits
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    tcp_nodelay: bool = True
    tls: TlsOptions | None = None  # None: plain TCP


#: Negative CONNACK reason codes meaning "who are you?": MQTT 3.1.1 return codes 4 and 5
#: (paho reports them as the v5 codes 0x86, 0x87), bad authentication method, banned.
_NOT_AUTHORISED = frozenset({4, 5, 0x86, 0x87, 0x8A, 0x8C})
CLOSED_BEFORE_CONNACK = internals.CLOSED_BEFORE_CONNACK


def classify_failure(exc: BaseException, client: aiomqtt.Client | None = None) -> tuple[Cause, str]:
    """Why a connection attempt failed, and the library's words for it."""
    socket_error = getattr(client, "socket_error", None)
    cause_exc = getattr(client, "connect_error", None) or exc
    if isinstance(cause_exc, OSError):
        return _classify_os_error(cause_exc)
    if isinstance(exc, aiomqtt.MqttCodeError):
        rc = exc.rc
        value = rc.value if isinstance(rc, ReasonCode) else rc
        detail = str(rc) if isinstance(rc, ReasonCode) else str(exc)
        if value in _NOT_AUTHORISED:
            return Cause.NOT_AUTHORISED, detail
        return Cause.REJECTED, detail
    message = str(exc)
    if socket_error and ("SSL" in socket_error or "alert" in socket_error):
        return Cause.TLS, _ssl_reason(socket_error)
    if message == CLOSED_BEFORE_CONNACK:
        return Cause.CLOSED, _socket_reason(socket_error) or message
    if "timed out" in message:
        return Cause.TIMEOUT, message
    return Cause.CLOSED, _socket_reason(socket_error) or message


def _socket_reason(text: str | None) -> str | None:
    """``failed to receive on socket: [Errno 104] Connection reset by peer`` -> the end."""
    if text is None:
        return None
    return re.sub(r"^.*?socket: (\[Errno \d+\] )?", "", text)


def _ssl_reason(text: str) -> str:
    """``failed to receive on socket: [SSL: X] tlsv13 alert ... (_ssl.c:2580)`` -> the
    words in between."""
    found = re.search(r"\[SSL: [A-Z0-9_]+\] ([^(]+)", text)
    return found.group(1).strip() if found else text


def _classify_os_error(exc: OSError) -> tuple[Cause, str]:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Cause.TLS, f"the broker's certificate: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return Cause.TLS, exc.reason or str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return Cause.REFUSED, exc.strerror or str(exc)
    if isinstance(exc, TimeoutError):
        return Cause.TIMEOUT, str(exc) or "timed out"
    if isinstance(exc, socket.gaierror):
        return Cause.UNREACHABLE, exc.strerror or str(exc)
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return Cause.CLOSED, exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError):
        return Cause.TLS, f"{exc.strerror}: {exc.filename}"
    return Cause.UNREACHABLE, exc.strerror or str(exc)


class Ending(enum.Enum):
    FAILED = "failed"  # could not connect
    LOST = "lost"  # the broker went away (or stopped answering)
    ABRUPT = "abrupt"  # the device dropped the link without DISCONNECT
    CLEAN = "clean"  # the device sent DISCONNECT
    STOPPED = "stopped"  # the run ended: offline status, then DISCONNECT


class DeviceConnection:
    def __init__(
        self,
        session: DeviceSession,
        clock: SimClock,
        *,
        spec: DeviceSpec,
        host: str,
        port: int,
        ramp: Ramp,
        report: FleetReport,
        stopping: asyncio.Event,
        rng: random.Random,
        options: ConnectionOptions | None = None,
        now: Callable[[], datetime] = utc_now,
        connected: asyncio.Event | None = None,
    ) -> None:
        self.session = session
        self._clock = clock
        self._spec = spec
        self._host = host
        self._port = port
        self._ramp = ramp
        self._report = report
        self._stopping = stopping
        self._options = options or ConnectionOptions()
        self._backoff = Backoff(
            self._options.backoff_base_s, self._options.backoff_cap_s, jitter=0.5, rng=rng
        )
        self._now = now
        self._wake = asyncio.Event()
        self._ever_connected = False
        self._connecting = False
        self._last_failure: Cause | None = None
        self._tls: ssl.SSLContext | None = None
        self._first_connection = connected
        self._status_topic = device_topic(spec.device_id, Channel.STATUS)
        self._topics = {channel: device_topic(spec.device_id, channel) for channel in Channel}

    def wake(self) -> None:
        self._wake.set()

    # --- the device's life -------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except Exception:
            self._report.failed_devices += 1
            logger.exception("%s: simulator failed", self.session.device_id)
        finally:
            if not self._ever_connected:
                if self._last_failure is not None:
                    self._report.unconnected[self._last_failure] += 1
                elif self._connecting:  # cut off while waiting for an answer
                    self._report.unconnected[Cause.TIMEOUT] += 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        retry_at = 0.0
        while not self._stopping.is_set():
            self._tick()
            session = self.session
            if session.want_online and not session.dead and loop.time() >= retry_at:
                ending = await self._connected()
                if ending is Ending.FAILED:
                    retry_at = loop.time() + self._backoff.next()
                elif ending is Ending.LOST:
                    self._backoff.reset()
                    retry_at = loop.time() + self._backoff.next()
                continue
            timeout = self._seconds_to_due()
            if session.want_online and not session.dead:
                timeout = min(timeout, max(0.0, retry_at - loop.time()))
            await self._idle(timeout)

    def _tick(self) -> None:
        self.session.tick(self._clock.sim_at(self._now()))

    def _seconds_to_due(self) -> float:
        due = self.session.next_due()
        if due is None:
            return math.inf
        wait = (self._clock.real_at(due) - self._now()).total_seconds()
        return max(0.0, min(wait, MAX_SLEEP_S))

    async def _idle(self, seconds: float) -> None:
        """Sleep ``seconds`` unless something wakes the device first (run stop, command)."""
        if not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if math.isinf(seconds) else seconds)
        self._wake.clear()

    # --- one connection ----------------------------------------------------------------

    async def _connected(self) -> Ending:
        client: aiomqtt.Client | None = None
        try:
            async with self._ramp.slot():
                if self._stopping.is_set():
                    return Ending.STOPPED
                self._connecting = True
                client = self._client()
                await client.__aenter__()
        except (aiomqtt.MqttError, OSError) as exc:
            self._connecting = False
            self._failed(exc, client)
            return Ending.FAILED
        self._connecting = False
        self._report.connections += 1
        if not self._ever_connected:
            self._ever_connected = True
            self._report.connected_devices += 1
            if self._first_connection is not None:
                self._first_connection.set()
        ending = Ending.LOST
        try:
            ending = await self._serve(client)
        except aiomqtt.MqttError as exc:
            logger.info("%s: connection lost: %s", self.session.device_id, exc)
        finally:
            self.session.on_disconnected()
            await self._close(client, ending)
        if ending is Ending.LOST:
            self._report.connection_losses += 1
        return ending

    def _failed(self, exc: BaseException, client: aiomqtt.Client | None) -> None:
        cause, detail = classify_failure(exc, client)
        report = self._report
        report.connect_failures += 1
        report.failures[cause] += 1
        report.failure_detail.setdefault(cause, detail)
        self._last_failure = cause
        logger.debug("%s: connect failed (%s): %s", self.session.device_id, cause.value, detail)

    def _client(self) -> aiomqtt.Client:
        options = self._options
        socket_options = (
            [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)] if options.tcp_nodelay else []
        )
        if options.tls is not None and self._tls is None:
            self._tls = options.tls.context(self._spec.device_id)  # once per device
        return internals.FleetClient(
            self._host,
            self._port,
            identifier=self._spec.device_id,
            username=self._spec.username,
            password=self._spec.password,
            will=aiomqtt.Will(self._status_topic, LAST_WILL_PAYLOAD, qos=1, retain=True),
            clean_session=False,
            keepalive=options.keepalive_s,
            timeout=options.timeout_s,
            socket_options=socket_options,
            tls_context=self._tls,
            logger=MQTT_LOGGER,
        )

    async def _serve(self, client: aiomqtt.Client) -> Ending:
        await client.subscribe(self._topics[Channel.COMMANDS], qos=1)
        self.session.on_connected(self._now())
        listener = asyncio.create_task(self._listen(client))
        try:
            while True:
                if not await self._flush_unless_lost(client, listener):
                    return Ending.LOST
                if self._stopping.is_set():
                    return Ending.STOPPED
                if not self.session.want_online:
                    return Ending.ABRUPT if self.session.down_mode == "abrupt" else Ending.CLEAN
                if listener.done():
                    return Ending.LOST
                await self._idle(self._seconds_to_due())
                self._tick()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                payload = message.payload
                if isinstance(payload, bytes | bytearray):
                    self._report.commands += 1
                    self.session.on_command(bytes(payload), self._now())
                    self.wake()
        except aiomqtt.MqttError:
            pass
        finally:
            self.wake()

    async def _flush_unless_lost(
        self, client: aiomqtt.Client, listener: asyncio.Task[None]
    ) -> bool:
        """Publish the outbox; False if the connection dropped first.

        aiomqtt's publish waits for its PUBACK until its timeout even when the socket is
        already gone; the listener ends at once on a disconnection, so race the two.
        """
        if self.session.outbox.peek() is None or self._stopping.is_set():
            return True
        flush = asyncio.create_task(self._flush(client))
        await asyncio.wait([flush, listener], return_when=asyncio.FIRST_COMPLETED)
        if not flush.done():
            flush.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await flush
            return False
        flush.result()  # raises MqttError if publishing failed
        return True

    async def _flush(self, client: aiomqtt.Client) -> None:
        outbox = self.session.outbox
        while (item := outbox.peek()) is not None and not self._stopping.is_set():
            await self._publish(client, item)
            outbox.pop()

    async def _publish(self, client: aiomqtt.Client, item: Outgoing) -> None:
        await client.publish(self._topics[item.channel], item.payload, qos=1, retain=item.retain)
        self._report.published[item.msg_type] += 1

    async def _close(self, client: aiomqtt.Client, ending: Ending) -> None:
        if ending is Ending.STOPPED:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._publish(client, self.session.offline_status(self._now()))
        if ending is Ending.ABRUPT:
            await self._drop_socket(client)
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)
        # aiomqtt keeps an unexpected disconnection as a future's exception; read it so
        # asyncio does not log "exception was never retrieved".
        disconnected = internals.disconnected(client)
        if disconnected.done() and not disconnected.cancelled():
            disconnected.exception()

    async def _drop_socket(self, client: aiomqtt.Client) -> None:
        """Close the TCP connection without DISCONNECT, as a crashing device would."""
        sock = internals.paho_client(client).socket()  # paho socket: aiomqtt has no API
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # paho notices the closed socket on its next read and reports the disconnection.
        await asyncio.wait([internals.disconnected(client)], timeout=self._options.timeout_s)
