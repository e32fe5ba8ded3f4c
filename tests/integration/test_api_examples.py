"""docs/api.md's examples, run (issue #18): every ```http example is sent, in the order
the document gives them, over real HTTP to the API of a running gateway (real Mosquitto
and PostgreSQL), and its answer is checked against the documented status, headers and
body; every ```mqtt block is published as a device would and waited for until the
gateway has handled it. A second test fails when an operation of the OpenAPI document
has no example in docs/api.md, or an example names no operation.

The notation (docs/api.md, "Examples"): ``<token role=R tenant=T org=O sub=S>`` is a
minted token; ``{{name}}`` in an answer names the value found there (and must equal it
where already named), in a request it is replaced by that value; ``{{now}}``,
``{{now-2h}}``, ``{{now+25m}}`` are times, ``{{today+1d}}`` a local date (Europe/Stockholm);
``"<uuid>"``, ``"<datetime>"``, ``"<int>"``, ``"<number>"``, ``"<string>"``, ``"<list>"``,
``"<object>"``, ``"<any>"`` accept any value
of that kind; ``"...": "..."`` allows further fields, a final ``"..."`` further items, a
line ``...`` further lines (or, in an event stream, further events).

What the examples need that they do not show (the other devices registered and
assigned, the region's tenant, the lock's firmware answering its command) is done here,
before the example that needs it; every wait is for a condition, with a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import aiomqtt
import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from api.auth import Role, mint
from firmware_contracts.topics import Channel, device_topic
from gateway.bootstrap import api_app
from gateway.config.settings import Settings
from gateway.worker.service import GatewayService
from tests.integration.harness import gateway_with_api, scalar, settings_for, wait_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
SECRET = "api-examples-secret-api-examples-secret"
PII_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes, base64; tests only
TIMEOUT_S = 20.0

# --- the document ---------------------------------------------------------------------------


@dataclass
class HttpExample:
    line: int
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: str
    status: int
    response_headers: list[tuple[str, str]]
    response_body: str

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def __str__(self) -> str:
        return f"docs/api.md line {self.line}: {self.method} {self.target}"


@dataclass
class MqttExample:
    line: int
    topic: str
    payload: str


def _blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(language, line number of the first content line, lines) of every fenced block."""
    blocks: list[tuple[str, int, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.fullmatch(r"```(\w*)\s*", lines[i])
        if m:
            end = i + 1
            while not lines[end].startswith("```"):
                end += 1
            blocks.append((m.group(1), i + 2, lines[i + 1 : end]))
            i = end
        i += 1
    return blocks


def _message(lines: list[str]) -> tuple[str, list[tuple[str, str]], str]:
    """First line, headers and body of an HTTP message as written."""
    first, rest = lines[0], lines[1:]
    headers: list[tuple[str, str]] = []
    while rest and rest[0].strip():
        name, _, value = rest.pop(0).partition(":")
        headers.append((name.strip(), value.strip()))
    return first, headers, "\n".join(rest).strip()


def parse(text: str) -> list[HttpExample | MqttExample]:
    steps: list[HttpExample | MqttExample] = []
    request: tuple[int, list[str]] | None = None
    for language, line, lines in _blocks(text):
        if language == "mqtt":
            topic = lines[0].removeprefix("PUBLISH ").strip()
            steps.append(MqttExample(line, topic, "\n".join(lines[1:]).strip()))
        elif language == "http" and lines[0].startswith("HTTP/1.1 "):
            assert request is not None, f"docs/api.md line {line}: an answer without a request"
            first, headers, body = _message(request[1])
            method, target = first.split()[:2]
            status_line, response_headers, response_body = _message(lines)
            steps.append(HttpExample(request[0], method, target, headers, body,
                                     int(status_line.split()[1]), response_headers,
                                     response_body))  # fmt: skip
            request = None
        elif language == "http":
            assert request is None, f"docs/api.md line {request[0]}: a request without answer"
            request = (line, lines)
    assert request is None, f"docs/api.md line {request[0]}: a request without an answer"
    return steps


def operation(openapi: dict[str, Any], method: str, path: str) -> str | None:
    """The OpenAPI operation ("GET /api/v1/persons/{person_id}") a request path is for."""
    for template, operations in sorted(openapi["paths"].items(), key=lambda kv: "{" in kv[0]):
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if method.lower() in operations and re.match(pattern, path):
            return f"{method} {template}"
    return None


# --- matching -------------------------------------------------------------------------------

_KINDS: dict[str, Callable[[Any], bool]] = {
    "any": lambda v: True,
    "string": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "uuid": lambda v: isinstance(v, str) and _is_uuid(v),
    "datetime": lambda v: isinstance(v, str) and _is_datetime(v),
}
_TEXT = {"any": ".*", "string": ".+", "int": r"-?\d+", "number": r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?",
         "uuid": r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}", "datetime": r"\S+"}  # fmt: skip
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}|<(any|string|int|number|uuid|datetime)>")


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


class Mismatch(AssertionError):
    pass


def match_text(expected: str, actual: str, names: dict[str, Any], where: str) -> None:
    """A string with placeholders inside (``"Patient/{{resident}}"``)."""
    pattern, groups, pos = "", [], 0
    for m in _PLACEHOLDER.finditer(expected):
        pattern += re.escape(expected[pos : m.start()])
        if m.group(1) and m.group(1) in names:
            pattern += re.escape(str(names[m.group(1)]))
        elif m.group(1):
            groups.append(m.group(1))
            pattern += f"(?P<{m.group(1)}>.+?)"
        else:
            pattern += f"(?:{_TEXT[m.group(2)]})"
        pos = m.end()
    pattern += re.escape(expected[pos:])
    found = re.fullmatch(pattern, actual, re.DOTALL)
    if not found:
        raise Mismatch(f"{where}: expected {expected!r}, got {actual!r}")
    for name in groups:
        names[name] = found.group(name)


def match(expected: Any, actual: Any, names: dict[str, Any], where: str = "body") -> None:
    if isinstance(expected, str):
        whole = re.fullmatch(r"\{\{(\w+)\}\}|<(\w+)>", expected)
        if whole and whole.group(1):
            name = whole.group(1)
            if name not in names:
                names[name] = actual
            elif names[name] != actual:
                raise Mismatch(f"{where}: expected {name} = {names[name]!r}, got {actual!r}")
        elif whole and whole.group(2) in _KINDS:
            if not _KINDS[whole.group(2)](actual):
                raise Mismatch(f"{where}: expected any {whole.group(2)}, got {actual!r}")
        elif _PLACEHOLDER.search(expected) and isinstance(actual, str):
            match_text(expected, actual, names, where)
        elif expected != actual:
            raise Mismatch(f"{where}: expected {expected!r}, got {actual!r}")
    elif isinstance(expected, dict):
        if not isinstance(actual, dict):
            raise Mismatch(f"{where}: expected an object, got {actual!r}")
        keys = [k for k in expected if k != "..."]
        missing = [k for k in keys if k not in actual]
        extra = [k for k in actual if k not in expected] if "..." not in expected else []
        if missing or extra:
            raise Mismatch(f"{where}: fields missing {missing}, not documented {extra}")
        for key in keys:
            match(expected[key], actual[key], names, f"{where}.{key}")
    elif isinstance(expected, list):
        open_end = bool(expected) and expected[-1] == "..."
        items = expected[:-1] if open_end else expected
        if not isinstance(actual, list) or (
            len(actual) < len(items) if open_end else len(actual) != len(items)
        ):
            raise Mismatch(f"{where}: expected {len(items)} items, got {actual!r}")
        for n, item in enumerate(items):
            match(item, actual[n], names, f"{where}[{n}]")
    elif isinstance(expected, bool) or expected is None:
        if expected is not actual:
            raise Mismatch(f"{where}: expected {expected!r}, got {actual!r}")
    elif expected != actual or isinstance(actual, bool):
        raise Mismatch(f"{where}: expected {expected!r}, got {actual!r}")


def match_lines(expected: str, actual: str, names: dict[str, Any]) -> None:
    """Documented lines, in order, among the actual ones (``...``: any lines between)."""
    lines = actual.splitlines()
    pos = 0
    for want in expected.splitlines():
        if want.strip() == "...":
            continue
        for n in range(pos, len(lines)):
            try:
                match_text(want, lines[n], names, "line")
            except Mismatch:
                continue
            pos = n + 1
            break
        else:
            raise Mismatch(f"line {want!r} not found in order in:\n{actual[:3000]}")


def _events(text: str) -> list[list[str]]:
    return [b.splitlines() for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]


def match_event(expected: list[str], actual: list[str], names: dict[str, Any]) -> None:
    if len(expected) != len(actual):
        raise Mismatch(f"event {expected} against {actual}")
    for want, got in zip(expected, actual, strict=True):
        field_, _, value = want.partition(": ")
        got_field, _, got_value = got.partition(": ")
        if field_ != got_field:
            raise Mismatch(f"event field {field_} against {got_field}")
        if field_ == "data":
            match(orjson.loads(value), orjson.loads(got_value), names, "data")
        else:
            match_text(value, got_value, names, field_)


def match_events(expected: list[list[str]], actual: list[list[str]], names: dict[str, Any]) -> bool:
    """Whether the documented events (``...``: any events between) are all found."""

    def go(i: int, j: int, bound: dict[str, Any]) -> dict[str, Any] | None:
        if i == len(expected):
            return bound
        if expected[i] == ["..."]:
            for k in range(j, len(actual) + 1):
                found = go(i + 1, k, bound)
                if found is not None:
                    return found
            return None
        if j >= len(actual):
            return None
        trial = dict(bound)
        try:
            match_event(expected[i], actual[j], trial)
        except Mismatch:
            return None
        return go(i + 1, j + 1, trial)

    found = go(0, 0, names)
    if found is not None:
        names.update(found)
    return found is not None


# --- running --------------------------------------------------------------------------------


def now_plus(expression: str) -> str:
    m = re.fullmatch(r"now(?:([-+])(\d+)([smhd]))?", expression)
    assert m, expression
    delta = timedelta(0)
    if m.group(1):
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(3)]
        delta = timedelta(**{unit: int(m.group(2))}) * (-1 if m.group(1) == "-" else 1)
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


def today_plus(expression: str) -> str:
    from zoneinfo import ZoneInfo

    m = re.fullmatch(r"today(?:([-+])(\d+)d)?", expression)
    assert m, expression
    days = int(m.group(2) or 0) * (-1 if m.group(1) == "-" else 1)
    today = datetime.now(ZoneInfo("Europe/Stockholm")).date()
    return (today + timedelta(days=days)).isoformat()


def fill(text: str, names: dict[str, Any]) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("now"):
            return now_plus(name)
        if name.startswith("today"):  # a local date (Europe/Stockholm), e.g. {{today+1d}}
            return today_plus(name)
        assert name in names, f"{{{{{name}}}}} is used before an example names it"
        return str(names[name])

    return re.sub(r"\{\{([\w+-]+)\}\}", value, text)


def token(spec: str) -> str:
    claims = dict(part.split("=", 1) for part in spec.split())
    return mint(SECRET, tenant=claims["tenant"], role=Role(claims["role"]),
                subject=claims.get("sub", f"{claims['tenant']}-{claims['role']}"),
                org=claims.get("org"), ttl_s=900)  # fmt: skip


def request_headers(example: HttpExample, names: dict[str, Any]) -> dict[str, str]:
    headers = {}
    for name, value in example.headers:
        headers[name] = re.sub(r"<token ([^>]*)>", lambda m: token(m.group(1)), fill(value, names))
    return headers


async def run_example(http: httpx.AsyncClient, example: HttpExample, names: dict[str, Any]) -> None:
    body = fill(example.body, names).encode() if example.body else None
    target = fill(example.target, names)
    headers = request_headers(example, names)
    if example.response_body and any(
        v.startswith("text/event-stream") for k, v in example.response_headers
        if k.lower() == "content-type"
    ):  # fmt: skip
        await _run_stream(http, example, target, headers, names)
        return
    r = await http.request(example.method, target, headers=headers, content=body)
    assert r.status_code == example.status, f"{example}: {r.status_code} {r.text}"
    _check_headers(example, r.headers)
    try:
        if not example.response_body:
            assert not r.content, f"{example}: a body that is not documented: {r.text}"
        elif r.headers.get("content-type", "").split(";")[0].endswith("json"):
            match(orjson.loads(example.response_body), r.json(), names)
        else:
            match_lines(example.response_body, r.text, names)
    except Mismatch as exc:
        raise AssertionError(f"{example}: {exc}\nthe answer: {r.text[:4000]}") from None


def _check_headers(example: HttpExample, actual: httpx.Headers) -> None:
    for name, value in example.response_headers:
        got = actual.get(name, "")
        assert got.startswith(value), f"{example}: {name} is {got!r}, documented {value!r}"


async def _run_stream(
    http: httpx.AsyncClient, example: HttpExample, target: str, headers: dict[str, str],
    names: dict[str, Any],
) -> None:  # fmt: skip
    expected = _events(example.response_body)
    seen: list[list[str]] = []

    async def read() -> None:
        async with http.stream(example.method, target, headers=headers) as r:
            assert r.status_code == example.status, f"{example}: {r.status_code}"
            _check_headers(example, r.headers)
            block: list[str] = []
            async for line in r.aiter_lines():
                if line:
                    block.append(line)
                    continue
                if block and not block[0].startswith(":"):  # a comment is a keepalive
                    seen.append(block)
                    if match_events(expected, seen, names):
                        return
                block = []

    try:
        await asyncio.wait_for(read(), TIMEOUT_S)
    except TimeoutError:
        raise AssertionError(f"{example}: documented events not seen; got {seen}") from None


# --- the stack and what the examples need besides themselves --------------------------------


class LockFirmware:
    """vas-lock-0013's firmware: answers every command it is sent with ok."""

    def __init__(self, mqtt_url: str, device_id: str) -> None:
        self.host, port = mqtt_url.removeprefix("mqtt://").split(":")
        self.port = int(port)
        self.device_id = device_id

    @contextlib.asynccontextmanager
    async def online(self) -> AsyncIterator[None]:
        async with aiomqtt.Client(self.host, self.port, identifier=f"fw-{self.device_id}") as c:
            await c.subscribe(device_topic(self.device_id, Channel.COMMANDS), qos=1)
            task = asyncio.create_task(self._obey(c))
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await task

    async def _obey(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            command = orjson.loads(message.payload)
            reply = {"v": 1, "type": "reply", "id": f"re-{command['id']}",
                     "ts": now_plus("now"), "command_id": command["id"], "ok": True}  # fmt: skip
            await client.publish(device_topic(self.device_id, Channel.REPLIES),
                                 orjson.dumps(reply), qos=1)  # fmt: skip


@dataclass
class Stack:
    http: httpx.AsyncClient
    gw: GatewayService
    database_url: str
    mqtt_url: str
    names: dict[str, Any] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)

    async def api(self, method: str, path: str, role: Role, json: Any = None) -> None:
        headers = {
            "Authorization": "Bearer "
            + mint(SECRET, tenant="vasteras", role=role, subject="lena.ek", org=None, ttl_s=600)
        }
        r = await self.http.request(method, path, headers=headers, json=json)
        assert r.status_code in (201, 204), f"{method} {path}: {r.status_code} {r.text}"


async def before(stack: Stack, op: str) -> None:
    """What an example needs done first, once per operation."""
    if op in stack.done:
        return
    stack.done.add(op)
    if op == "POST /api/v1/devices/{device_id}/retire":
        await stack.api("POST", "/api/v1/devices", Role.INSTALLER,
                        {"id": "vas-scale-0001", "model_id": "demo-scale"})  # fmt: skip
    elif op == "GET /api/v1/devices":
        resident = stack.names["resident"]
        for device, model in (("vas-gps-0101", "demo-gps"), ("vas-bp-0007", "demo-bp"),
                              ("vas-lock-0013", "demo-lock")):  # fmt: skip
            await stack.api("POST", "/api/v1/devices", Role.INSTALLER,
                            {"id": device, "model_id": model})  # fmt: skip
            await stack.api("POST", f"/api/v1/devices/{device}/assign", Role.INSTALLER,
                            {"person_id": resident, "valid_from": now_plus("now-1h")})  # fmt: skip
    elif op == "POST /api/v1/devices/{device_id}/unlock":
        resident = UUID(stack.names["resident"])
        cache = stack.gw.locks.cache

        async def known() -> bool:
            return cache.key("tag-4711") is not None and len(cache.visits(resident)) >= 1

        await wait_for(known, TIMEOUT_S, "the staff key and the visit in the gateway")


async def publish(stack: Stack, example: MqttExample) -> None:
    payload = orjson.loads(fill(example.payload, stack.names))
    device = example.topic.split("/")[1]

    async def holder_known() -> bool:  # the gateway's registry follows the database
        record = stack.gw.registry.get(device)
        held = await scalar(stack.database_url, "select person_id from assignments where"
                            " device_id = %s and valid_to is null", (device,))  # fmt: skip
        tag = payload.get("resident_tag")  # a unit's shared device (docs/units.md)
        tag_known = tag is None or stack.gw.registry.units.tags().person_at(
            "vasteras", tag, datetime.now(UTC)) is not None  # fmt: skip
        return record is not None and record.current_holder() == held and tag_known

    await wait_for(holder_known, TIMEOUT_S, f"{device}'s holder in the gateway's registry")
    host, port = stack.mqtt_url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), identifier=f"dev-{device}") as client:
        await client.publish(example.topic, orjson.dumps(payload), qos=1)

    async def handled() -> bool:
        found = await scalar(stack.database_url, _HANDLED, (device, payload["id"]) * 5)
        if payload["type"] == "alarm":
            found = found and await scalar(
                stack.database_url, "select count(*) from alarms where device_id = %s", (device,)
            )
        return bool(found)

    await wait_for(handled, TIMEOUT_S, f"{payload['id']} stored by the gateway")


_HANDLED = """
    select (select count(*) from readings where device_id = %s and msg_id = %s)
         + (select count(*) from positions where device_id = %s and msg_id = %s)
         + (select count(*) from device_alarms where device_id = %s and msg_id = %s)
         + (select count(*) from lock_events where device_id = %s and msg_id = %s)
         + (select count(*) from quarantine where device_id = %s
            and position(convert_to(%s, 'UTF8') in payload) > 0)
"""


@contextlib.asynccontextmanager
async def stack(mqtt_url: str, database_url: str) -> AsyncIterator[Stack]:
    settings = settings_for(mqtt_url, database_url, jwt_secret=SECRET,
                            pii_keys={"k1": PII_KEY}, pii_active_key="k1")  # fmt: skip
    async with gateway_with_api(settings) as (base, gw):
        await asyncio.wait_for(gw.locks.commands.connected.wait(), TIMEOUT_S)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http, \
                LockFirmware(mqtt_url, "vas-lock-0013").online():  # fmt: skip
            s = Stack(http, gw, database_url, mqtt_url)

            async def worker_heard() -> bool:
                return bool((await http.get("/healthz")).json().get("workers_online") == 1)

            await wait_for(worker_heard, TIMEOUT_S, "the API hearing the gateway worker")
            platform = {"Authorization": "Bearer " + mint(SECRET, tenant="platform",
                        role=Role.PLATFORM_ADMIN, subject="plattform.admin", org=None,
                        ttl_s=600)}  # fmt: skip
            r = await http.post("/api/v1/tenants", headers=platform, json={
                "id": "region-vastmanland", "name": "Region Västmanland", "kind": "region",
                "org_number": "232100-0172"})  # fmt: skip
            assert r.status_code == 201, r.text
            yield s


# --- the tests ------------------------------------------------------------------------------


def _openapi() -> dict[str, Any]:
    app = api_app(Settings(mode="development", jwt_secret=SECRET),
                     api_database_url="postgresql://unused@127.0.0.1/unused",
                     metrics_registry=CollectorRegistry())  # fmt: skip
    return app.openapi()


def test_every_operation_of_the_openapi_document_has_an_example() -> None:
    openapi = _openapi()
    examples = [s for s in parse(DOC.read_text(encoding="utf-8")) if isinstance(s, HttpExample)]
    covered: set[str] = set()
    for example in examples:
        op = operation(openapi, example.method, example.path)
        assert op is not None, f"{example}: no such operation in the OpenAPI document"
        covered.add(op)
    every = {f"{m.upper()} {p}" for p, ops in openapi["paths"].items() for m in ops}
    missing = sorted(every - covered)
    assert not missing, f"operations without an example in docs/api.md: {missing}"


async def test_the_examples_in_docs_api_md_answer_as_documented(
    mosquitto: Any, database_url: str
) -> None:
    openapi = _openapi()
    steps = parse(DOC.read_text(encoding="utf-8"))
    assert len(steps) > 40
    async with stack(mosquitto.url, database_url) as s:
        for step in steps:
            if isinstance(step, MqttExample):
                await publish(s, step)
                continue
            op = operation(openapi, step.method, step.path)
            assert op is not None, str(step)
            await before(s, op)
            await run_example(s.http, step, s.names)


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ({"id": "<uuid>"}, {"id": "8c1f4b7e-6a51-4a5e-9a39-2f4f8d0c2b11"}, True),
        ({"id": "<uuid>"}, {"id": "nope"}, False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": 1, "...": "..."}, {"a": 1, "b": 2}, True),
        ([1, "..."], [1, 2, 3], True),
        ([1], [1, 2], False),
        ({"n": "<int>"}, {"n": True}, False),
        ({"t": "<datetime>"}, {"t": "2025-01-14T02:41:00+01:00"}, True),
        ({"t": "<datetime>"}, {"t": "2025-01-14T02:41:00"}, False),
        ({"r": "Patient/{{p}}"}, {"r": "Patient/42"}, True),
        ({"f": False}, {"f": 0}, False),
    ],
)
def test_the_matcher(expected: Any, actual: Any, ok: bool) -> None:
    try:
        match(expected, actual, {})
    except Mismatch:
        assert not ok
    else:
        assert ok
