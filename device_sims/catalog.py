"""Which simulator class plays which device type."""

from __future__ import annotations

from device_sims.blood_pressure import BloodPressureSim
from device_sims.clock import SimClock
from device_sims.device import DeviceSim
from device_sims.door_lock import DoorLockSim
from device_sims.gps_alarm import GpsAlarmSim
from device_sims.params import DeviceType
from device_sims.scale import ScaleSim
from device_sims.scenario import DeviceSpec
from device_sims.sensors import BedSensorSim, DoorSensorSim, FloorMatSim, MotionSensorSim

SIMULATORS: dict[DeviceType, type[DeviceSim]] = {
    "gps_alarm": GpsAlarmSim,
    "scale": ScaleSim,
    "blood_pressure_monitor": BloodPressureSim,
    "door_lock": DoorLockSim,
    # passive sensors (issue #20): one routine, seen by each type's sensor
    "door_sensor": DoorSensorSim,
    "motion_sensor": MotionSensorSim,
    "bed_sensor": BedSensorSim,
    "floor_mat": FloorMatSim,
}


def build_simulator(spec: DeviceSpec, *, seed: int, clock: SimClock) -> DeviceSim:
    return SIMULATORS[spec.device_type](spec, seed=seed, clock=clock)
