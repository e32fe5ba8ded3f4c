"""The registry's field rules, in one place: the API's request models
(``api/routes/registry.py``) and the bulk import (``gateway/domain/onboarding.py``) both
build on these, so a device id, a model or a person's reference is judged the same way
whichever door it comes in by. The database's CHECK constraints (migration 0001) say the
same again."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from firmware_contracts.topics import DEVICE_ID_PATTERN

DEVICE_MODEL_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"

DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
DeviceModelId = Annotated[str, Field(pattern=DEVICE_MODEL_ID_PATTERN)]
DeviceModelRef = Annotated[str, Field(min_length=1, max_length=64)]
Serial = Annotated[str, Field(max_length=100)]
Vendor = Annotated[str, Field(min_length=1, max_length=100)]
ModelName = Annotated[str, Field(min_length=1, max_length=100)]
DeviceType = Literal[
    "gps_alarm", "scale", "blood_pressure_monitor", "door_lock",
    # passive sensors (issue #20, docs/supervision.md)
    "door_sensor", "motion_sensor", "bed_sensor", "floor_mat",
]  # fmt: skip
HeartbeatSeconds = Annotated[int, Field(ge=5, le=86_400)]
PersonRef = Annotated[
    str, Field(min_length=1, max_length=64, description="Pseudonymous reference.")
]
IdentityNumberText = Annotated[str, Field(max_length=13)]
CareNotes = Annotated[str, Field(max_length=2000)]
