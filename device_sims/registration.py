"""Register a scenario's devices through the gateway's HTTP API, as an installer would.

For every :class:`~device_sims.scenario.DeviceSpec`, with a tenant admin's bearer token:

1. ``POST /api/v1/device-models`` for each device type's model (the caller passes them;
   the CLI uses the demo's models, which every installation has). Already there is fine
   (200); models are curated by the platform, so a tenant admin's 403 is fine if the
   models exist, else registering a device says so.
2. ``POST /api/v1/devices`` for each device the tenant does not have yet
   (``GET /api/v1/devices``). With broker access on, the answer carries the device's
   broker username and password, shown this once: they are returned to the caller.
3. Devices not held by anyone (new, or registered by an earlier run that stopped half
   way): ``POST /api/v1/persons`` (a pseudonymous ``sim-{id}`` resident) and
   ``POST /api/v1/devices/{id}/assign`` from ``history_start`` (a scenario's replayed
   history must be attributed to the holder, or the gateway quarantines it).

Idempotent: a second run finds every device registered and held, and changes nothing.
Rate-limited answers (429) are retried after their ``Retry-After``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from device_sims.credentials import Credential
from device_sims.scenario import DeviceSpec

#: Models by device type: the body of ``POST /api/v1/device-models``
#: (``id``, ``vendor``, ``model``, ``device_type``, ``heartbeat_interval_s``).
Models = Mapping[str, Mapping[str, Any]]

MAX_RETRIES_429 = 20


class RegistrationError(Exception):
    """The API refused or could not be reached; the message says what and why."""


@dataclass
class Registered:
    registered: list[str] = field(default_factory=list)  # new in this run
    already: list[str] = field(default_factory=list)  # registered before
    assigned: list[str] = field(default_factory=list)  # handed to a new resident now
    credentials: dict[str, Credential] = field(default_factory=dict)  # from new devices

    def summary(self) -> str:
        text = (
            f"registered {len(self.registered)} devices "
            f"({len(self.already)} already registered), assigned {len(self.assigned)}"
        )
        if self.credentials:
            text += f", broker credentials for {len(self.credentials)}"
        return text


def register_fleet(
    api_url: str,
    token: str,
    specs: Iterable[DeviceSpec],
    models: Models,
    *,
    history_start: datetime,
    timeout_s: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> Registered:
    specs = list(specs)
    result = Registered()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(
        base_url=api_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
    ) as http:
        api = _Api(http, api_url)
        existing = {d["id"]: d for d in api.call("GET", "/api/v1/devices", ok=(200,)).json()}
        for device_type in sorted({spec.device_type for spec in specs}):
            if device_type not in models:
                raise RegistrationError(f"no device model for type {device_type!r}")
            api.call("POST", "/api/v1/device-models", json=dict(models[device_type]),
                     ok=(200, 201, 403))  # fmt: skip
        for spec in specs:
            device = existing.get(spec.device_id)
            if device is None:
                body = {"id": spec.device_id, "model_id": models[spec.device_type]["id"]}
                answer = api.call("POST", "/api/v1/devices", json=body, ok=(201,)).json()
                result.registered.append(spec.device_id)
                if answer.get("mqtt_password"):
                    result.credentials[spec.device_id] = Credential(
                        answer.get("mqtt_username") or spec.device_id, answer["mqtt_password"]
                    )
                device = {"id": spec.device_id, "status": "in_stock", "person_id": None}
            else:
                result.already.append(spec.device_id)
            if device["status"] == "retired":
                raise RegistrationError(
                    f"device {spec.device_id} is retired and cannot be used again; "
                    "choose another id_prefix in the scenario"
                )
            if device.get("person_id") is None:
                _assign(api, spec.device_id, history_start)
                result.assigned.append(spec.device_id)
    return result


def _assign(api: _Api, device_id: str, since: datetime) -> None:
    person = api.call("POST", "/api/v1/persons", json={"ref": f"sim-{device_id}"},
                      ok=(201, 409))  # fmt: skip
    if person.status_code == 409:  # an earlier run made the resident, then stopped
        ref = f"sim-{device_id}-{secrets.token_hex(4)}"
        person = api.call("POST", "/api/v1/persons", json={"ref": ref}, ok=(201,))
    person_id = person.json()["id"]
    path = f"/api/v1/devices/{device_id}/assign"
    answer = api.call("POST", path, json={"person_id": person_id, "valid_from": since.isoformat()},
                      ok=(204, 409))  # fmt: skip
    if answer.status_code == 409:  # held by someone else back then (a returned device)
        api.call("POST", path, json={"person_id": person_id}, ok=(204,))


class _Api:
    def __init__(self, http: httpx.Client, base: str) -> None:
        self._http = http
        self._base = base

    def call(
        self, method: str, path: str, *, ok: tuple[int, ...], json: Any = None
    ) -> httpx.Response:
        for _ in range(MAX_RETRIES_429):
            try:
                response = self._http.request(method, path, json=json)
            except httpx.HTTPError as exc:
                raise RegistrationError(f"cannot reach the API at {self._base}: {exc}") from None
            if response.status_code != 429:
                break
            time.sleep(_retry_after(response))  # the API's rate limit, not synchronisation
        if response.status_code in ok:
            return response
        raise RegistrationError(f"{method} {path}: {response.status_code} {_detail(response)}"
                                f"{_hint(response.status_code)}")  # fmt: skip


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.1, min(float(response.headers.get("Retry-After", "1")), 60.0))
    except ValueError:
        return 1.0


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)
    return str(body)[:200]


def _hint(status: int) -> str:
    if status == 401:
        return " (mint a token with 'welfare-gateway token --tenant T --role tenant_admin')"
    if status == 403:
        return " (registering a fleet needs a tenant_admin token of the devices' tenant)"
    return ""
