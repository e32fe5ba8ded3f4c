"""JSON Schema export of contract v1: one schema per channel (``{channel}.json``), and
(:func:`export_all`) the alarm message of ``tenants/{tenant_id}/alarms``
(``alarm-message.json``, :mod:`firmware_contracts.alarm_message`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from firmware_contracts.alarm_message import export_alarm_message
from firmware_contracts.decode import CHANNEL_TYPES
from firmware_contracts.topics import DEVICE_ID_PATTERN, Channel

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def channel_adapter(channel: Channel) -> TypeAdapter[Any]:
    models = tuple(CHANNEL_TYPES[channel].values())
    if len(models) == 1:
        return TypeAdapter(models[0])
    union = Annotated[Union[models], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
    return TypeAdapter(union)


def channel_schema(channel: Channel) -> dict[str, Any]:
    schema = channel_adapter(channel).json_schema()
    schema["$schema"] = SCHEMA_DIALECT
    schema["$id"] = f"welfare-gateway/contract/v1/{channel.value}.json"
    schema["title"] = f"devices/{{device_id}}/{channel.value}"
    schema["x-topic"] = f"devices/{{device_id}}/{channel.value}"
    schema["x-device-id-pattern"] = DEVICE_ID_PATTERN
    return schema


def export(directory: Path) -> list[Path]:
    """Write ``{channel}.json`` for every channel; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for channel in Channel:
        path = directory / f"{channel.value}.json"
        path.write_text(json.dumps(channel_schema(channel), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


def export_all(directory: Path) -> list[Path]:
    """Every schema of contract v1: the channels' (:func:`export`) and the alarm
    message's (``alarm-message.json``); returns the files written."""
    return [*export(directory), export_alarm_message(directory)]
