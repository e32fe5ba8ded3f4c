"""Realistic simulators of welfare-technology devices speaking the open MQTT contract.

The package imports only :mod:`firmware_contracts` (plus third-party libraries): like a
vendor's firmware, it knows nothing of the gateway's internals.

Layers, pure first:

* :mod:`~device_sims.scenario` / :mod:`~device_sims.params`: TOML scenario files,
  validated; :meth:`Scenario.device_specs` gives one :class:`DeviceSpec` per device.
* :mod:`~device_sims.clock`: simulated time that starts ``history`` before now and runs
  ``speedup`` times faster until it has caught up with real time, so it never runs ahead
  of real time (the gateway refuses future timestamps) yet days pass in seconds.
* :mod:`~device_sims.device` and one module per device type (:mod:`gps_alarm`,
  :mod:`scale`, :mod:`blood_pressure`, :mod:`door_lock`): what a device does next, as a
  deterministic function of seed and clock; contract models in, encoded bytes out.
* :mod:`~device_sims.session` / :mod:`~device_sims.outbox`: offline buffering and
  replay, link intent; :mod:`~device_sims.dry_run` runs a fleet with no broker.
* :mod:`~device_sims.malformed`: payloads the gateway must refuse, one per reason.
* Adapters: :mod:`~device_sims.connection` (one aiomqtt connection per device, TLS and
  mutual TLS, why an attempt failed), :mod:`~device_sims.ramp`, :mod:`~device_sims.runner`
  (:func:`run_fleet`); :mod:`~device_sims.registration` (a scenario's devices registered
  through the gateway's HTTP API) and :mod:`~device_sims.credentials` (per-device broker
  logins, a JSON file); :mod:`~device_sims.command` is ``welfare-gateway simulate``.
"""

from device_sims.dry_run import Published, dry_run
from device_sims.malformed import Malformed, malformed_messages
from device_sims.params import DEVICE_TYPES, DeviceType
from device_sims.report import FleetReport
from device_sims.runner import run_fleet
from device_sims.scenario import (
    DeviceSpec,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
)

__all__ = [
    "DEVICE_TYPES",
    "DeviceSpec",
    "DeviceType",
    "FleetReport",
    "Malformed",
    "Published",
    "Scenario",
    "ScenarioError",
    "dry_run",
    "load_scenario",
    "malformed_messages",
    "parse_scenario",
    "run_fleet",
    "shipped_scenarios",
]
