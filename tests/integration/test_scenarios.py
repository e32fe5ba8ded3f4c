"""The shipped scenarios, run by the simulators against the real gateway, raise the alarms
they are meant to show. Each scenario's clock is sped up (its text is edited) so a few
simulated days pass in seconds; nothing else is changed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from device_sims.runner import run_fleet
from device_sims.scenario import parse_scenario
from gateway.config.settings import AlarmSettings
from gateway.entrypoints.demo import DEMO_TENANT, seed
from tests.integration.harness import operator, running_gateway, settings_for

SCENARIOS = Path(__file__).resolve().parents[2] / "device_sims" / "scenarios"


async def run_until_alarm(
    mosquitto, database_url: str, text: str, kind: str, alarms: AlarmSettings | None = None
) -> dict:
    scenario = parse_scenario(text)
    specs = scenario.device_specs()
    await seed(database_url, specs)
    settings = settings_for(mosquitto.url, database_url, alarms=alarms or AlarmSettings())
    stop = asyncio.Event()
    async with running_gateway(settings), operator(mosquitto.url, DEMO_TENANT) as op:
        fleet = asyncio.create_task(run_fleet(
            specs, host="127.0.0.1", port=mosquitto.port, duration_s=60, stop=stop,
            seed=scenario.seed,
        ))  # fmt: skip
        try:
            return await op.wait(
                lambda m: m["kind"] == kind and m["event"] == "raised", kind, timeout=45
            )
        finally:
            stop.set()
            await fleet


async def test_heart_failure_scenario_raises_weight_gain(mosquitto, database_url) -> None:
    text = (
        (SCENARIOS / "heart_failure.toml").read_text().replace("speedup = 7200", "speedup = 400000")
    )
    alarm = await run_until_alarm(mosquitto, database_url, text, "weight_gain")
    assert alarm["device_id"] == "sim-scale-00001"  # the worsening person, not the stable one
    assert alarm["detail"]["gain_kg"] > 2.0


async def test_wandering_scenario_raises_geofence_exit(mosquitto, database_url) -> None:
    text = (SCENARIOS / "wandering.toml").read_text().replace("speedup = 60", "speedup = 3000")
    alarm = await run_until_alarm(mosquitto, database_url, text, "geofence_exit")
    assert alarm["severity"] == "critical" and alarm["position"] is not None


async def test_dead_battery_scenario_raises_device_silent(mosquitto, database_url) -> None:
    text = (SCENARIOS / "dead_battery.toml").read_text()
    text = text.replace("drain_percent_per_day = 1152", "drain_percent_per_day = 100000")
    text = text.replace("drain_percent_per_day = 864", "drain_percent_per_day = 100000")
    # heartbeat 30 s x 0.05 + 0.5 s: silent after 2 s without a message
    alarms = AlarmSettings(silence_factor=0.05, silence_grace_s=0.5, tick_ms=50)
    alarm = await run_until_alarm(mosquitto, database_url, text, "device_silent", alarms)
    assert alarm["device_id"] in ("sim-gps-00001", "sim-lock-00001")
