"""How API processes ask gateway workers to act, over the broker (docs/operations.md).

The alarm book and the lock commands live in the worker that ingests a device's messages;
the API is stateless and may run as several replicas. An API process publishes a
``Request`` on ``gateway/control/requests`` (every worker subscribes) with the topic to
answer on; each worker answers with a ``Reply``:

- ``held`` says whether that worker holds what the request is about (the alarm is in its
  book). A request is answered when a worker that holds it replies, or when every worker
  that is online has said it does not.
- a request with ``to`` set is for that worker only (the unlock it prepared).

Workers announce themselves on ``gateway/workers/{worker_id}`` (retained; their last will
says offline), so an API process knows whose answers to wait for. Payloads are JSON and
carry the reply topic and correlation id themselves, so this works over MQTT 3.1.1 (the
embedded demo broker) as well as MQTT 5. Only gateway processes may use these topics
(the broker's ``wg-gateway`` role; devices and operators are denied).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

REQUESTS_TOPIC = "gateway/control/requests"
REPLIES_PREFIX = "gateway/control/replies/"
WORKERS_PREFIX = "gateway/workers/"
WORKERS_FILTER = WORKERS_PREFIX + "+"
#: what an API process hears about alarms (the workers publish every state change here)
ALARMS_FILTER = "tenants/+/alarms"

ACKNOWLEDGE = "acknowledge"
RESOLVE = "resolve"
OPEN_ALARMS = "open_alarms"
ALARM = "alarm"
UNLOCK_PREPARE = "unlock_prepare"
UNLOCK_SEND = "unlock_send"
ACCESS_LOG = "access_log"
OPS = frozenset({ACKNOWLEDGE, RESOLVE, OPEN_ALARMS, ALARM, UNLOCK_PREPARE, UNLOCK_SEND,
                 ACCESS_LOG})  # fmt: skip


class ProtocolError(ValueError):
    """A control message that cannot be understood (it is dropped and counted)."""


@dataclass(frozen=True)
class Request:
    id: str
    reply_to: str
    op: str
    tenant: str
    args: dict[str, Any] = field(default_factory=dict)
    to: str | None = None


@dataclass(frozen=True)
class Reply:
    id: str
    worker: str
    held: bool
    status: int = 200
    body: Any = None
    error: str | None = None


def replies_topic(link_id: str) -> str:
    return REPLIES_PREFIX + link_id


def worker_topic(worker_id: str) -> str:
    return WORKERS_PREFIX + worker_id


def tenant_of_alarms_topic(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "tenants" and parts[2] == "alarms" and parts[1]:
        return parts[1]
    return None


def encode_request(r: Request) -> bytes:
    return orjson.dumps({"v": 1, "id": r.id, "reply_to": r.reply_to, "op": r.op,
                         "tenant": r.tenant, "args": r.args, "to": r.to})  # fmt: skip


def encode_reply(r: Reply) -> bytes:
    return orjson.dumps({"v": 1, "id": r.id, "worker": r.worker, "held": r.held,
                         "status": r.status, "body": r.body, "error": r.error})  # fmt: skip


def presence(worker_id: str, online: bool, since_us: int | None = None) -> bytes:
    """A worker's presence; ``since_us`` (its start, microseconds since the epoch) orders
    the workers for the choice of the active alarm engine (:mod:`gateway.control.roles`)."""
    body: dict[str, Any] = {"v": 1, "worker": worker_id, "online": online}
    if since_us is not None:
        body["since"] = since_us
    return orjson.dumps(body)


def _object(payload: bytes) -> dict[str, Any]:
    try:
        d = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("not JSON") from exc
    if not isinstance(d, dict) or d.get("v") != 1:
        raise ProtocolError("not a version 1 control message")
    return d


def _str(d: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    value = d.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{name} must be a non-empty string")
    return value


def decode_request(payload: bytes) -> Request:
    d = _object(payload)
    op = _str(d, "op")
    if op not in OPS:
        raise ProtocolError(f"unknown op {op!r}")
    reply_to = _str(d, "reply_to")
    if not reply_to.startswith(REPLIES_PREFIX):
        raise ProtocolError("reply_to must be a control reply topic")
    args = d.get("args") or {}
    if not isinstance(args, dict):
        raise ProtocolError("args must be an object")
    return Request(
        _str(d, "id"), reply_to, op, _str(d, "tenant"), args, _str(d, "to", optional=True)
    )


def decode_reply(payload: bytes) -> Reply:
    d = _object(payload)
    status = d.get("status", 200)
    if not isinstance(status, int) or not isinstance(d.get("held"), bool):
        raise ProtocolError("held must be a boolean and status an integer")
    error = d.get("error")
    return Reply(_str(d, "id"), _str(d, "worker"), d["held"], status, d.get("body"),
                 error if isinstance(error, str) else None)  # fmt: skip


def decode_presence(payload: bytes) -> bool:
    """True when the worker says it is online; an empty (cleared) message is offline."""
    return presence_since(payload) is not None


def presence_since(payload: bytes) -> int | None:
    """When an online worker started (0 when it does not say); None when it is offline
    (its last will, a graceful goodbye, or a cleared retained message)."""
    if not payload:
        return None
    d = _object(payload)
    if d.get("online") is not True:
        return None
    since = d.get("since", 0)
    if not isinstance(since, int) or isinstance(since, bool):
        raise ProtocolError("since must be an integer")
    return since
