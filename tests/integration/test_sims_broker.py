"""Device simulators against a real Mosquitto: what arrives, commands, last will, reconnect.

No sleeps as synchronisation: every wait is for a condition (a message seen, a task
done), bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import orjson

from device_sims import DeviceSpec, FleetReport, parse_scenario, run_fleet
from device_sims.envelope import LAST_WILL_PAYLOAD
from firmware_contracts.decode import Decoded, decode_payload
from firmware_contracts.topics import Channel, parse_device_topic
from tests.services import Mosquitto

WAIT_S = 30.0


@dataclass(frozen=True)
class Seen:
    device_id: str
    channel: Channel
    payload: bytes
    message: Any  # the decoded contract model


class Recorder:
    """Subscribes to devices/# and keeps every message, decoded; waits for conditions."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.undecodable: list[tuple[str, bytes, str]] = []
        self._changed = asyncio.Condition()

    async def consume(self, client: aiomqtt.Client) -> None:
        async for raw in client.messages:
            topic = parse_device_topic(str(raw.topic))
            assert topic is not None, raw.topic
            payload = raw.payload
            assert isinstance(payload, bytes)
            result = decode_payload(topic.channel, payload, now=datetime.now(UTC))
            if isinstance(result, Decoded):
                self.seen.append(Seen(topic.device_id, topic.channel, payload, result.message))
            else:
                self.undecodable.append((str(raw.topic), payload, result.reason.value))
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(self, what: str, condition: Callable[[list[Seen]], bool]) -> None:
        async def satisfied() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: condition(self.seen))

        try:
            await asyncio.wait_for(satisfied(), WAIT_S)
        except TimeoutError:
            raise AssertionError(f"timed out after {WAIT_S}s waiting for {what}") from None

    async def first(self, what: str, predicate: Callable[[Seen], bool]) -> Seen:
        await self.wait_for(what, lambda seen: any(predicate(s) for s in seen))
        return next(s for s in self.seen if predicate(s))


@contextlib.asynccontextmanager
async def recording(broker: Mosquitto) -> AsyncIterator[tuple[Recorder, aiomqtt.Client]]:
    recorder = Recorder()
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="test-observer") as client:
        await client.subscribe("devices/#", qos=1)
        consumer = asyncio.create_task(recorder.consume(client))
        try:
            yield recorder, client
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await consumer


@contextlib.asynccontextmanager
async def fleet(
    broker: Mosquitto, specs: list[DeviceSpec]
) -> AsyncIterator[asyncio.Task[FleetReport]]:
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_fleet(specs, host="127.0.0.1", port=broker.port, duration_s=None, stop=stop, seed=3)
    )
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.shield(task), WAIT_S)


def is_online(device_id: str) -> Callable[[Seen], bool]:
    return lambda s: (
        s.device_id == device_id and s.message.type == "status" and s.message.state == "online"
    )


def replayed(seen: list[Seen], device_id: str) -> list[Seen]:
    """Readings older than the device's second online status that arrived after it."""
    mine = [s for s in seen if s.device_id == device_id]
    onlines = [i for i, s in enumerate(mine) if is_online(device_id)(s)]
    if len(onlines) < 2:
        return []
    back = onlines[1]
    online_ts = mine[back].message.ts
    return [s for s in mine[back + 1 :] if s.message.type == "weight" and s.message.ts < online_ts]


def command(device_id: str, name: str, command_id: str, **fields: Any) -> tuple[str, bytes]:
    body = {
        "v": 1,
        "type": "command",
        "id": command_id,
        "ts": datetime.now(UTC).isoformat(),
        "name": name,
    }
    body.update(fields)
    return f"devices/{device_id}/commands", orjson.dumps(body)


ALL_TYPES = """
name = "broker-test"

[clock]
history = "2d"
speedup = 200000

[[devices]]
type = "gps_alarm"
home_lat = 59.3293
home_lon = 18.0686
heartbeat_interval_s = 1
position_interval = "10m"
incidents = [{ at = "3h", kind = "button" }, { at = "5h", kind = "wander", duration = "1h" }]

[[devices]]
type = "scale"
heartbeat_interval_s = 1
skip_probability = 0

[[devices]]
type = "blood_pressure_monitor"
heartbeat_interval_s = 1
skip_probability = 0

[[devices]]
type = "door_lock"
heartbeat_interval_s = 1
staff_key_ids = ["staff-anna", "staff-bo"]
"""


async def test_fleet_publishes_every_type_that_decodes_and_obeys_commands(
    mosquitto: Mosquitto,
) -> None:
    specs = parse_scenario(ALL_TYPES).device_specs()
    expected = {
        ("sim-gps-00001", "position"),
        ("sim-gps-00001", "alarm"),
        ("sim-scale-00001", "weight"),
        ("sim-bp-00001", "blood_pressure"),
        ("sim-lock-00001", "lock"),
        ("sim-lock-00001", "battery"),
    } | {(spec.device_id, kind) for spec in specs for kind in ("status", "heartbeat")}

    async with recording(mosquitto) as (recorder, observer), fleet(mosquitto, specs) as run:
        await recorder.wait_for(
            "every message type from every device",
            lambda seen: expected <= {(s.device_id, s.message.type) for s in seen},
        )
        # Commands: the lock subscribed before it announced itself online.
        await recorder.first("lock online", is_online("sim-lock-00001"))
        now = datetime.now(UTC)
        for topic, payload in (
            command(
                "sim-lock-00001",
                "unlock",
                "cmd-expired",
                expires_at=(now - timedelta(minutes=1)).isoformat(),
            ),
            command(
                "sim-lock-00001",
                "unlock",
                "cmd-valid",
                expires_at=(now + timedelta(minutes=1)).isoformat(),
                args={"key_id": "staff-anna"},
            ),
            command("sim-gps-00001", "locate", "cmd-locate"),
            command(
                "sim-scale-00001", "configure", "cmd-configure", args={"heartbeat_interval_s": 30}
            ),
        ):
            await observer.publish(topic, payload, qos=1)

        def reply(command_id: str) -> Callable[[Seen], bool]:
            return lambda s: s.channel == Channel.REPLIES and s.message.command_id == command_id

        expired = await recorder.first("reply to the expired unlock", reply("cmd-expired"))
        assert (expired.device_id, expired.message.ok, expired.message.detail) == (
            "sim-lock-00001",
            False,
            "expired",
        )
        valid = await recorder.first("reply to the valid unlock", reply("cmd-valid"))
        assert valid.message.ok is True
        remote = await recorder.first(
            "remote unlock event",
            lambda s: (
                s.message.type == "lock"
                and s.message.method == "remote"
                and s.message.action == "unlocked"
            ),
        )
        assert (remote.device_id, remote.message.key_id) == ("sim-lock-00001", "staff-anna")
        located = await recorder.first("reply to locate", reply("cmd-locate"))
        assert (located.device_id, located.message.ok) == ("sim-gps-00001", True)
        configured = await recorder.first("reply to configure", reply("cmd-configure"))
        assert configured.message.ok is True
        assert not run.done()

    report = run.result()
    assert report.failed_devices == 0
    assert report.connected_devices == len(specs)
    assert report.commands == 4
    assert {
        "status",
        "heartbeat",
        "position",
        "alarm",
        "weight",
        "blood_pressure",
        "lock",
        "reply",
    } <= set(report.published)
    assert recorder.undecodable == []  # devices' messages and our commands alike
    ids = [(s.device_id, s.message.id) for s in recorder.seen if s.message.id is not None]
    assert len(ids) == len(set(ids)), "message ids must be unique per device"


LINK_LOSS = """
name = "link-loss"

[[devices]]
name = "crashes"
type = "scale"
telemetry_interval = "200ms"
heartbeat_interval_s = 1
faults = [{ at = "1s", duration = "2s", mode = "abrupt" }]

[[devices]]
name = "disconnects"
type = "scale"
telemetry_interval = "200ms"
heartbeat_interval_s = 1
faults = [{ at = "1s", duration = "2s", mode = "clean" }]
"""


async def test_abrupt_loss_delivers_the_last_will_clean_loss_does_not(mosquitto: Mosquitto) -> None:
    crashes, disconnects = parse_scenario(LINK_LOSS).device_specs()
    async with (
        recording(mosquitto) as (recorder, _),
        fleet(mosquitto, [crashes, disconnects]) as run,
    ):
        will = await recorder.first(
            "the last will of the device that lost its connection abruptly",
            lambda s: s.device_id == crashes.device_id and s.payload == LAST_WILL_PAYLOAD,
        )
        assert (will.message.state, will.message.id, will.message.ts) == ("offline", None, None)
        # Readings taken while offline are replayed after the second online status,
        # with their original (older) timestamps: 2 s offline, a reading every 200 ms.
        for spec in (crashes, disconnects):
            await recorder.wait_for(
                f"{spec.device_id} back online, replaying its buffered readings",
                lambda seen, device_id=spec.device_id: len(replayed(seen, device_id)) >= 8,
            )
        assert not any(
            s.device_id == disconnects.device_id and s.payload == LAST_WILL_PAYLOAD
            for s in recorder.seen
        )
        assert not run.done()
    assert run.result().failed_devices == 0


async def test_devices_reconnect_with_backoff_when_the_broker_restarts(
    mosquitto: Mosquitto,
) -> None:
    specs = parse_scenario(ALL_TYPES).device_specs()
    async with fleet(mosquitto, specs) as run:
        async with recording(mosquitto) as (recorder, _):
            for spec in specs:
                await recorder.first(f"{spec.device_id} online", is_online(spec.device_id))
        mosquitto.restart()  # same port, no persistence: nothing retained survives
        async with recording(mosquitto) as (recorder, _):
            for spec in specs:
                await recorder.first(f"{spec.device_id} online again", is_online(spec.device_id))
            await recorder.wait_for(
                "heartbeats after the restart",
                lambda seen: (
                    {s.device_id for s in seen if s.message.type == "heartbeat"}
                    == {spec.device_id for spec in specs}
                ),
            )
    report = run.result()
    assert report.failed_devices == 0
    assert report.connection_losses >= len(specs)
    assert report.connections >= 2 * len(specs)


async def test_run_stops_by_itself_after_its_duration(mosquitto: Mosquitto) -> None:
    specs = parse_scenario(ALL_TYPES).device_specs()
    async with recording(mosquitto) as (recorder, _):
        report = await asyncio.wait_for(
            run_fleet(specs, host="127.0.0.1", port=mosquitto.port, duration_s=1.5), WAIT_S
        )
        offline = await recorder.first(
            "a graceful offline status",
            lambda s: s.message.type == "status" and s.message.state == "offline",
        )
        assert offline.message.id is not None  # published by the device, not the will
    assert report.failed_devices == 0
    assert report.connected_devices == len(specs)
    assert report.published["status"] == 2 * len(specs)  # online, then offline


async def test_an_empty_fleet_returns_at_once() -> None:
    report = await asyncio.wait_for(
        run_fleet([], host="127.0.0.1", port=1, duration_s=None), WAIT_S
    )
    assert (report.devices, report.total_published) == (0, 0)
