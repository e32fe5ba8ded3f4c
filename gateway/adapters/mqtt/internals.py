"""The one place the gateway reaches into paho-mqtt's and aiomqtt's private API.

aiomqtt has no public way to the paho client under it (needed for paho's manual
acknowledgement, its ``on_message`` hot path, its logger and its socket) nor to the future
it completes when the connection is lost; paho has none to its packet decoder (the PUBLISH
fast path, :mod:`gateway.adapters.mqtt.publish_decoder`). Such names may change in any release, so
they are used only on the releases this module was tested with (``TESTED``, the same
ranges ``pyproject.toml`` pins; ``tests/unit/test_mqtt_internals.py`` holds the two
together): on any other version the accessors raise :class:`UntestedVersion`, and the
optional fast path is left out with a warning.

The fast path replaces a function of paho for the whole process, so it is installed only
by the worker's composition root (``GatewayService.run``, setting
``mqtt_publish_fast_path``) and undone when that returns; nothing installs it as a side
effect of constructing a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any, Final, Self

import aiomqtt
import paho.mqtt
import paho.mqtt.client as paho_mqtt
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

#: (major, minor) of each library this module was tested with; any patch release of it is
#: accepted. pyproject.toml pins the same ranges.
TESTED: Final[dict[str, tuple[int, int]]] = {"paho-mqtt": (2, 2), "aiomqtt": (2, 5)}


class UntestedVersion(RuntimeError):
    """An installed paho-mqtt or aiomqtt outside the range this module was tested with."""


def installed_versions() -> dict[str, str]:
    """The versions of the imported libraries (what they say of themselves)."""
    return {"paho-mqtt": paho.mqtt.__version__, "aiomqtt": aiomqtt.__version__}


def _minor(version: str) -> tuple[int, int] | None:
    major, _, rest = version.partition(".")
    minor = "".join(c for c in rest.partition(".")[0] if c.isdigit())
    if not (major.isdigit() and minor):
        return None
    return int(major), int(minor)


def untested(*names: str) -> list[str]:
    """``"name version"`` of each library (of ``names``, or all) outside its tested range."""
    return [
        f"{name} {version}"
        for name, version in installed_versions().items()
        if (not names or name in names) and _minor(version) != TESTED[name]
    ]


def _tested_text() -> str:
    return ", ".join(f"{name} {major}.{minor}.x" for name, (major, minor) in TESTED.items())


def check_versions() -> None:
    """Raise :class:`UntestedVersion` unless paho-mqtt and aiomqtt are tested versions."""
    found = untested()
    if found:
        raise UntestedVersion(
            f"{', '.join(found)}: not a version welfare-gateway was tested with "
            f"({_tested_text()}); gateway/adapters/mqtt/internals.py uses their private API. "
            "Install the versions pyproject.toml pins."
        )


# --- aiomqtt's client ---------------------------------------------------------------------


def paho_client(client: aiomqtt.Client) -> paho_mqtt.Client:
    """The paho client under an aiomqtt client (``aiomqtt.Client._client``)."""
    check_versions()
    return client._client


def disable_paho_logger(client: aiomqtt.Client) -> None:
    """Skip paho's per-packet debug logging (aiomqtt enables it with its own logger)."""
    paho_client(client).disable_logger()


def disconnected(client: aiomqtt.Client) -> asyncio.Future[None]:
    """The future aiomqtt completes when the connection ends (``Client._disconnected``):
    with an exception when it was lost, with ``None`` on a clean disconnect."""
    check_versions()
    return client._disconnected


def is_disconnected(client: aiomqtt.Client) -> bool:
    return disconnected(client).done()


#: aiomqtt's own text when a connection closes before the CONNACK (see FleetClient)
CLOSED_BEFORE_CONNACK = "the broker closed the connection before answering"


class Client(aiomqtt.Client):
    """aiomqtt's client, with a socket closed before its write watch is registered left
    unwatched: aiomqtt asks the loop (from paho's thread) to watch the descriptor, and when
    the broker refuses the TLS handshake the socket can be closed by the time the loop gets
    to it; the loop then logged "Exception in callback" with a traceback (OSError: bad
    file descriptor), seen in CI by tests/integration/test_simulate_secured.py. Every MQTT
    client of the gateway and the simulators is one of these (it overrides a private hook
    of aiomqtt, so it lives here, built on tested versions only)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_versions()
        super().__init__(*args, **kwargs)

    def _on_socket_register_write(
        self, client: paho_mqtt.Client, userdata: Any, sock: Any
    ) -> None:
        def write() -> None:  # as aiomqtt's: a failed write is the connection's end
            try:
                client.loop_write()
            except Exception as exc:
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def watch() -> None:  # on the loop, later: the socket may be closed by then
            fileno = sock.fileno()
            if fileno != -1:
                self._loop.add_writer(fileno, write)

        self._loop.call_soon_threadsafe(watch)


class FleetClient(Client):
    """aiomqtt's client for one of thousands of simulated devices (``device_sims``): it
    overrides aiomqtt's private hooks, so it lives here, built on tested versions only.

    * Keepalive housekeeping less often: aiomqtt runs paho's ``loop_misc`` (pings, ping
      timeouts) every second per client, 10,000 wake-ups a second for a 10,000-device
      fleet; a device needs it a few times per keepalive period (pings at most
      ``misc_interval_s`` late, well inside the broker's 1.5 x keepalive grace).
    * What went wrong while connecting, for a one-line diagnosis: the socket/TLS connect's
      exception (aiomqtt keeps only its text) and the socket error paho logged (a TLS
      alert arrives after the handshake, e.g. a refused client certificate).
    * A connection closed before the CONNACK fails the attempt at once (aiomqtt would
      wait out its timeout).
    * (from ``Client``) a socket closed before its write watch is registered is not
      watched.
    """

    misc_interval_s = 5.0
    connect_error: OSError | None = None
    socket_error: str | None = None

    async def _misc_loop(self) -> None:
        while self._client.loop_misc() == paho_mqtt.MQTT_ERR_SUCCESS:  # noqa: ASYNC110
            await asyncio.sleep(self.misc_interval_s)

    async def __aenter__(self) -> Self:
        self._client.on_log = self._on_log
        try:
            await super().__aenter__()
        finally:
            self._client.on_log = None
        return self

    def _on_log(self, _client: Any, _userdata: Any, level: int, message: str) -> None:
        if level == paho_mqtt.MQTT_LOG_ERR:
            self.socket_error = message

    def _client_connect(self) -> None:
        try:
            super()._client_connect()
        except OSError as exc:
            self.connect_error = exc
            raise

    def _on_disconnect(
        self,
        client: paho_mqtt.Client,
        userdata: Any,
        flags: paho_mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any = None,
    ) -> None:
        if not self._connected.done() and self._lock.locked():
            self._connected.set_exception(aiomqtt.MqttError(CLOSED_BEFORE_CONNACK))
            return
        super()._on_disconnect(client, userdata, flags, reason_code, properties)


# --- paho's PUBLISH decoder ----------------------------------------------------------------

_fast_path_holders = 0


def install_publish_fast_path() -> bool:
    """Decode incoming PUBLISH packets with :mod:`gateway.adapters.mqtt.publish_decoder` in this
    process. False, with a warning and nothing changed, on an untested paho. Counted:
    every True is undone by one :func:`uninstall_publish_fast_path`."""
    global _fast_path_holders
    if _fast_path_holders == 0:
        found = untested("paho-mqtt")
        if found:
            log.warning(
                "MQTT PUBLISH fast path not installed: untested paho-mqtt",
                extra={"found": found[0], "tested": _tested_text()},
            )
            return False
        from gateway.adapters.mqtt import publish_decoder  # imports paho.mqtt._packet

        publish_decoder.install()
    _fast_path_holders += 1
    return True


def uninstall_publish_fast_path() -> None:
    """Undo one :func:`install_publish_fast_path`; the last one puts paho's own decoder
    back."""
    global _fast_path_holders
    if _fast_path_holders == 0:
        return
    _fast_path_holders -= 1
    if _fast_path_holders == 0:
        from gateway.adapters.mqtt import publish_decoder

        publish_decoder.uninstall()


def publish_fast_path_installed() -> bool:
    """Whether paho decodes PUBLISH packets with the fast path now."""
    # not imported: not installed
    decoder = sys.modules.get("gateway.adapters.mqtt.publish_decoder")
    return decoder is not None and bool(decoder.installed())


@contextlib.contextmanager
def publish_fast_path(enabled: bool = True) -> Iterator[bool]:
    """The fast path installed (if ``enabled`` and paho is a tested version) while the
    block runs; yields whether it is."""
    installed = enabled and install_publish_fast_path()
    try:
        yield installed
    finally:
        if installed:
            uninstall_publish_fast_path()
