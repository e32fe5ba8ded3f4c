"""paho-mqtt's and aiomqtt's private API is reached through one adapter
(``gateway.adapters.mqtt.internals``), only on the versions it was tested with, and the PUBLISH fast
path is installed by the worker's composition root, never by constructing a client
(security review #17, finding 8)."""

from __future__ import annotations

import ast
import asyncio
import logging
import struct
import tomllib
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import paho.mqtt
import pytest
from packaging.requirements import Requirement
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion

from gateway import bootstrap
from gateway.adapters.mqtt import internals, publish_decoder
from gateway.config.settings import Settings
from gateway.support.metrics import IngestMetrics
from gateway.worker.consumer import ConsumerConfig, Inbound, MqttConsumer
from gateway.worker.service import GatewayService

ROOT = Path(__file__).resolve().parents[2]
PAHO_DECODE = publish_decoder._paho_decode_publish  # paho's own, as imported


@pytest.fixture
def pahos_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """paho's own decoder in place for the test (another test may have left the fast path
    installed), and whatever was there put back afterwards."""
    assert PAHO_DECODE.__module__ == "paho.mqtt._packet"
    monkeypatch.setattr(_packet, "decode_publish", PAHO_DECODE)
    monkeypatch.setattr(internals, "_fast_path_holders", 0)


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {r.name: r for r in map(Requirement, project["dependencies"])}


def test_pyproject_allows_only_the_tested_paho_and_aiomqtt() -> None:
    reqs = _requirements()
    paho, aiomqtt = reqs["paho-mqtt"].specifier, reqs["aiomqtt"].specifier
    assert "2.2.0" in paho
    assert "2.1.0" not in paho, "paho 2.1.0 has no paho.mqtt._packet: a worker cannot start"
    assert "2.3.0" not in paho and "3.0.0" not in paho
    assert "2.5.1" in aiomqtt
    assert "2.4.0" not in aiomqtt and "2.6.0" not in aiomqtt


async def _nothing(_: Inbound) -> None:
    return None


def test_constructing_a_consumer_installs_nothing(pahos_decoder: None) -> None:
    config = ConsumerConfig(
        url="mqtt://127.0.0.1:1",
        client_id="wg-test",
        shared_group="wg",
        protocol=5,
        session_expiry_s=60,
        receive_maximum=10,
        keepalive_s=30,
    )
    MqttConsumer(config, _nothing, IngestMetrics())
    assert _packet.decode_publish is PAHO_DECODE


def test_pyproject_pins_what_internals_was_tested_with() -> None:
    reqs = _requirements()
    for name, (major, minor) in internals.TESTED.items():
        spec = reqs[name].specifier
        assert internals.installed_versions()[name] in spec, name  # within the tested minor:
        for outside in (f"{major}.{minor - 1}.99", f"{major}.{minor + 1}.0", f"{major + 1}.0.0"):
            assert outside not in spec, f"{name} {outside}"
    assert internals.untested() == []  # what is installed here is what was tested


@pytest.mark.parametrize(
    ("name", "module", "version"),
    [("paho-mqtt", paho.mqtt, "2.1.0"), ("paho-mqtt", paho.mqtt, "2.3.0"),
     ("paho-mqtt", paho.mqtt, "3.0.0"), ("aiomqtt", aiomqtt, "2.6.0"),
     ("aiomqtt", aiomqtt, "not-a-version")],
)  # fmt: skip
async def test_an_unknown_version_is_refused_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, name: str, module: object, version: str
) -> None:
    monkeypatch.setattr(module, "__version__", version)
    with pytest.raises(internals.UntestedVersion) as refused:
        internals.check_versions()
    message = str(refused.value)
    assert f"{name} {version}" in message
    assert "paho-mqtt 2.2.x, aiomqtt 2.5.x" in message and "pyproject.toml" in message
    client = aiomqtt.Client("127.0.0.1")
    for access in (internals.paho_client, internals.disable_paho_logger,
                   internals.disconnected, internals.is_disconnected):  # fmt: skip
        with pytest.raises(internals.UntestedVersion):
            access(client)


async def test_the_accessors_reach_aiomqtts_internals() -> None:
    client = aiomqtt.Client("127.0.0.1")
    assert isinstance(internals.paho_client(client), paho.mqtt.client.Client)
    internals.disable_paho_logger(client)
    assert isinstance(internals.disconnected(client), asyncio.Future)
    assert not internals.is_disconnected(client)


def test_install_and_uninstall_put_pahos_decoder_back(pahos_decoder: None) -> None:
    assert not internals.publish_fast_path_installed()
    assert internals.install_publish_fast_path()
    assert _packet.decode_publish is publish_decoder.decode_publish
    assert internals.install_publish_fast_path()  # a second holder (two workers in a process)
    internals.uninstall_publish_fast_path()
    assert internals.publish_fast_path_installed()  # the other still holds it
    internals.uninstall_publish_fast_path()
    assert _packet.decode_publish is PAHO_DECODE
    assert not internals.publish_fast_path_installed()
    internals.uninstall_publish_fast_path()  # one too many: nothing happens
    assert _packet.decode_publish is PAHO_DECODE


def test_the_context_manager_undoes_even_on_an_error(pahos_decoder: None) -> None:
    with internals.publish_fast_path(enabled=False) as installed:
        assert not installed and _packet.decode_publish is PAHO_DECODE
    seen: list[bool] = []

    def failing_run() -> None:
        with internals.publish_fast_path() as installed:
            seen.append(installed and _packet.decode_publish is publish_decoder.decode_publish)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing_run()
    assert seen == [True]
    assert _packet.decode_publish is PAHO_DECODE


def test_the_fast_path_is_left_out_on_an_untested_paho(
    pahos_decoder: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(paho.mqtt, "__version__", "2.3.0")
    with caplog.at_level(logging.WARNING, logger=internals.__name__), \
            internals.publish_fast_path() as installed:  # fmt: skip
        assert not installed
        assert _packet.decode_publish is PAHO_DECODE
    assert "fast path not installed" in caplog.text


def test_the_installed_decoder_still_decodes(pahos_decoder: None) -> None:
    topic, payload = b"devices/d1/telemetry", b'{"v":1}'
    packet = struct.pack("!H", len(topic)) + topic + struct.pack("!H", 7) + b"\x00" + payload
    expected = PAHO_DECODE(0x32, packet, MQTTProtocolVersion.MQTTv5)
    with internals.publish_fast_path():
        got = _packet.decode_publish(0x32, packet, MQTTProtocolVersion.MQTTv5)
    assert (got.topic, got.mid, got.qos, got.payload) == (topic, 7, 1, payload)
    assert got._replace(properties=None) == expected._replace(properties=None)
    assert got.properties is not None and expected.properties is not None
    assert got.properties.json() == expected.properties.json()  # type: ignore[no-untyped-call]


def _service(tmp_path: Path, **overrides: object) -> GatewayService:
    settings = Settings(data_dir=tmp_path, mqtt_url="mqtt://127.0.0.1:1",
                        database_url="postgresql://127.0.0.1:1/none",
                        **overrides)  # type: ignore[arg-type]  # fmt: skip
    return bootstrap.worker(settings, database_url=settings.database_url or "",
                            mqtt_url="mqtt://127.0.0.1:1")  # fmt: skip


def _recording(seen: list[bool]) -> Callable[..., object]:
    async def serve(stop: asyncio.Event, started: object) -> None:
        seen.append(internals.publish_fast_path_installed())

    return serve


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_worker_installs_the_fast_path_for_its_run_only(
    pahos_decoder: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, enabled: bool
) -> None:
    service = _service(tmp_path, mqtt_publish_fast_path=enabled)
    assert _packet.decode_publish is PAHO_DECODE  # constructing the worker installed nothing
    seen: list[bool] = []
    monkeypatch.setattr(service, "_serve", _recording(seen))
    await service.run(asyncio.Event())
    assert seen == [enabled]
    assert _packet.decode_publish is PAHO_DECODE


async def test_the_worker_refuses_to_start_on_an_untested_aiomqtt(
    pahos_decoder: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    service = _service(tmp_path)
    seen: list[bool] = []
    monkeypatch.setattr(service, "_serve", _recording(seen))
    monkeypatch.setattr(aiomqtt, "__version__", "2.6.0")
    with pytest.raises(internals.UntestedVersion, match=r"aiomqtt 2\.6\.0"):
        await service.run(asyncio.Event())
    assert seen == []


#: private names of paho and aiomqtt; only gateway/adapters/mqtt/internals.py (and the fast path it
#: imports) may use them
PRIVATE_ATTRIBUTES = {"_client", "_disconnected", "_packet", "_connected", "_lock"}
#: aiomqtt's private hooks a subclass could override
PRIVATE_HOOKS = {"_misc_loop", "_client_connect", "_on_disconnect", "_on_connect",
                 "_on_message", "_on_subscribe", "_on_publish"}  # fmt: skip
PRIVATE_MODULES = {"paho.mqtt._packet", "gateway.adapters.mqtt.publish_decoder"}
ADAPTER = {
    ROOT / "gateway" / "adapters" / "mqtt" / name for name in ("internals.py", "publish_decoder.py")
}


def _private_uses(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = {ast.unparse(b) for b in node.bases}
            if bases & {"aiomqtt.Client", "Client", "paho_mqtt.Client", "mqtt.Client"}:
                found.append((node.lineno, f"class {node.name}({', '.join(sorted(bases))})"))
            if bases:  # a subclass (of aiomqtt's client, perhaps through another class)
                found += [(item.lineno, f"def {item.name} (an aiomqtt hook)")
                          for item in node.body
                          if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                          and item.name in PRIVATE_HOOKS]  # fmt: skip
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            owner = node.value
            # an object's own attribute of that name is not aiomqtt's
            if not (isinstance(owner, ast.Name) and owner.id in {"self", "cls"}):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
            if names & PRIVATE_MODULES:
                found.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names
                      if a.name in PRIVATE_MODULES]  # fmt: skip
    return found


def test_only_the_adapter_reaches_into_paho_and_aiomqtt() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for package in ("gateway", "api", "device_sims", "bench")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path not in ADAPTER
        for line, text in _private_uses(ast.parse(path.read_text(), str(path)))
    ]
    assert offenders == [], "use gateway.adapters.mqtt.internals instead:\n" + "\n".join(offenders)
    # and the guard does see a use
    assert _private_uses(ast.parse("client._client.disable_logger()"))
    assert _private_uses(ast.parse("from paho.mqtt import _packet"))
    assert _private_uses(ast.parse("class C(aiomqtt.Client):\n    pass"))
    assert _private_uses(ast.parse("class C(Base):\n    def _misc_loop(self): pass"))


@pytest.mark.parametrize("kind", [internals.Client, internals.FleetClient])
async def test_a_socket_closed_before_its_write_watch_is_not_watched(
    kind: type[internals.Client],
) -> None:
    """paho asks (from its thread) for a write watch; the broker refuses the TLS session
    and the socket is closed before the loop gets to it. aiomqtt then made the loop log
    "Exception in callback" (bad file descriptor); the gateway's clients and the
    simulators' skip the closed socket and still watch an open one."""
    import socket

    client = kind("127.0.0.1", 1)
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        closed, open_one = socket.socketpair()
        client._on_socket_register_write(client._client, None, closed)
        closed.close()  # before the loop runs the watch
        client._on_socket_register_write(client._client, None, open_one)
        for _ in range(3):  # the scheduled watches run
            await asyncio.sleep(0)
        assert errors == []
        assert loop.remove_writer(open_one.fileno())  # it was watched
    finally:
        loop.set_exception_handler(None)
        open_one.close()


def test_the_gateway_builds_its_mqtt_clients_from_internals() -> None:
    """Every MQTT client the gateway makes is ``internals.Client`` (the closed-socket
    guard above), not aiomqtt's own."""
    root = Path(__file__).resolve().parents[2]
    found = [f"{p.relative_to(root)}" for folder in ("gateway", "api")
             for p in sorted((root / folder).rglob("*.py"))
             if "aiomqtt.Client(" in p.read_text()]  # fmt: skip
    assert found == []
