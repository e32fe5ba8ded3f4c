"""Signed webhook delivery against a real HTTP receiver (uvicorn on loopback), from a
durable outbox per receiver (a local file: survives a restart of the gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.worker.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookDispatcher,
    WebhookTarget,
    sign,
    signature_header,
    verify,
)
from tests.services import free_port

SECRET = b"test-webhook-secret"
BODY = b'{"alarm_id":"a-1","state":"raised","person_ref":"PERSON-REF-MARKER"}'


class Backoff(TypedDict):
    base_backoff_s: float
    max_backoff_s: float


FAST: Backoff = {"base_backoff_s": 0.01, "max_backoff_s": 0.05}


@dataclass
class Recorded:
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every request; answers ``fail_status`` to the first ``fail_first`` of them and
    holds the first ``hang_first`` until ``release`` is set (or the test ends)."""

    fail_first: int = 0
    fail_status: int = 500
    hang_first: int = 0
    requests: list[Recorded] = field(default_factory=list)
    ok: list[Recorded] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def hook(self, request: Request) -> Response:
        seen = len(self.requests)
        record = Recorded(request.path_params["name"], dict(request.headers), await request.body())
        self.requests.append(record)
        if seen < self.hang_first:
            await self.release.wait()
        if seen < self.fail_first:
            return Response(status_code=self.fail_status)
        self.ok.append(record)
        return Response(status_code=204)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook/{name}", self.hook, methods=["POST"])])


@contextlib.asynccontextmanager
async def serve(receiver: Receiver, port: int | None = None) -> AsyncIterator[str]:
    port = port or free_port()
    config = uvicorn.Config(
        receiver.app(),
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started or task.done(), what="uvicorn start")
        if task.done():
            task.result()
            raise RuntimeError("uvicorn exited before starting")
        yield f"http://127.0.0.1:{port}"
    finally:
        receiver.release.set()
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def wait_for(condition: Callable[[], bool], *, what: str, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(dispatcher: WebhookDispatcher) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def dispatcher_in(outbox: Path, targets: list[WebhookTarget], **kw: Any) -> WebhookDispatcher:
    return WebhookDispatcher(targets, outbox_dir=outbox, **{**FAST, **kw})


def target(base: str, name: str = "arc", timeout_s: float = 2.0) -> WebhookTarget:
    return WebhookTarget(name=name, url=f"{base}/hook/{name}", secret=SECRET, timeout_s=timeout_s)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
async def base(receiver: Receiver) -> AsyncIterator[str]:
    async with serve(receiver) as url:
        yield url


# --- signing, no network ----------------------------------------------------------------


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET, b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1_700_000_000, BODY) == expected
    assert signature_header(SECRET, 1_700_000_000, BODY) == f"t=1700000000,v1={expected}"


@pytest.mark.parametrize(
    "header",
    ["", "garbage", "t=,v1=ab", "v1=ab", "t=1700000000", "t=abc,v1=ab", "t=1700000000,v1=ab"],
)
def test_verify_rejects_malformed_headers(header: str) -> None:
    assert not verify(SECRET, header, BODY, now=1_700_000_000)


def test_verify_accepts_any_of_several_signatures_during_rotation() -> None:
    good = sign(SECRET, 1_700_000_000, BODY)
    header = f"t=1700000000,v1={sign(b'old-secret', 1_700_000_000, BODY)},v1={good}"
    assert verify(SECRET, header, BODY, now=1_700_000_000)


def test_target_repr_hides_secret_and_url() -> None:
    t = WebhookTarget("arc", "https://arc.example/hook?token=TOKEN-MARKER", b"SECRET-MARKER")
    assert "SECRET-MARKER" not in repr(t)
    assert "TOKEN-MARKER" not in repr(t)


# --- delivery over real HTTP ------------------------------------------------------------


async def test_delivery_is_signed_and_verifiable(
    receiver: Receiver, base: str, outbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.worker.webhooks")
    dispatcher = dispatcher_in(outbox, [target(base)])
    async with running(dispatcher):
        dispatcher.submit(["arc"], "evt-1", BODY)
        await wait_for(lambda: dispatcher.stats.delivered == 1, what="delivery")

    [request] = receiver.requests
    assert request.body == BODY
    assert request.headers["content-type"] == "application/json"
    assert request.headers[EVENT_ID_HEADER.lower()] == "evt-1"
    header = request.headers[SIGNATURE_HEADER.lower()]
    now = int(time.time())
    assert verify(SECRET, header, BODY, now=now)
    assert not verify(SECRET, header, BODY.replace(b"raised", b"closed"), now=now)
    assert not verify(b"another-secret", header, BODY, now=now)
    t = int(header.split(",")[0].removeprefix("t="))
    assert not verify(SECRET, header, BODY, now=t + 301)
    assert not verify(SECRET, header, BODY, now=t - 301)
    assert verify(SECRET, header, BODY, now=t + 300)

    # the body (it may hold personal references) is never logged, nor is the secret
    assert caplog.records
    for record in caplog.records:
        text = repr(record.__dict__)
        assert "PERSON-REF-MARKER" not in text
        assert SECRET.decode() not in text
    assert any(getattr(r, "event_id", None) == "evt-1" for r in caplog.records)


async def test_500_twice_then_200_is_delivered_once_after_two_retries(
    receiver: Receiver, base: str, outbox: Path
) -> None:
    receiver.fail_first = 2
    dispatcher = dispatcher_in(outbox, [target(base)])
    async with running(dispatcher):
        dispatcher.submit(["arc"], "evt-500", BODY)
        await wait_for(lambda: dispatcher.stats.delivered == 1, what="delivery")

    assert len(receiver.requests) == 3
    assert len(receiver.ok) == 1
    assert {r.headers[EVENT_ID_HEADER.lower()] for r in receiver.requests} == {"evt-500"}
    assert dispatcher.stats.retried == 2
    assert (dispatcher.stats.failed, dispatcher.stats.rejected) == (0, 0)


async def test_429_is_retried(receiver: Receiver, base: str, outbox: Path) -> None:
    receiver.fail_first, receiver.fail_status = 1, 429
    dispatcher = dispatcher_in(outbox, [target(base)])
    async with running(dispatcher):
        dispatcher.submit(["arc"], "evt-429", BODY)
        await wait_for(lambda: dispatcher.stats.delivered == 1, what="delivery")
    assert dispatcher.stats.retried == 1


async def test_400_is_rejected_and_not_retried(receiver: Receiver, base: str, outbox: Path) -> None:
    receiver.fail_first, receiver.fail_status = 100, 400
    dispatcher = dispatcher_in(outbox, [target(base)])
    async with running(dispatcher):
        dispatcher.submit(["arc"], "evt-400", BODY)
        await wait_for(lambda: dispatcher.stats.rejected == 1, what="rejection")
        # a second, later event shows the first was not retried in the meantime
        receiver.fail_first = 0
        dispatcher.submit(["arc"], "evt-after", BODY)
        await wait_for(lambda: dispatcher.stats.delivered == 1, what="second delivery")

    assert [r.headers[EVENT_ID_HEADER.lower()] for r in receiver.requests] == [
        "evt-400",
        "evt-after",
    ]
    assert dispatcher.stats.retried == 0
    assert dispatcher.stats.failed == 0


def alarm_body(alarm_id: str, event: str, at: str) -> bytes:
    return orjson.dumps({"alarm_id": alarm_id, "tenant_id": "kommun-a", "event": event,
                         "at": at, "person_ref": "PERSON-REF-MARKER"})  # fmt: skip


async def test_never_gives_up_while_the_alarm_is_open(
    receiver: Receiver, base: str, outbox: Path
) -> None:
    """The old sender gave up after 8 attempts (31-62 s): a receiving centre down for 90 s
    never got the alarm. Now an event is retried while its alarm is open, and for
    ``keep_after_resolved_s`` after it was resolved."""
    receiver.fail_first = 10**6
    open_alarms = {"a-open"}
    dispatcher = dispatcher_in(outbox, [target(base)], keep_after_resolved_s=0,
                               is_open=lambda a: a in open_alarms)  # fmt: skip
    long_ago = "2020-01-01T00:00:00+00:00"
    async with running(dispatcher):
        dispatcher.submit(["arc"], "evt-open", alarm_body("a-open", "raised", long_ago))
        await wait_for(lambda: dispatcher.stats.retried >= 20, what="many retries")
        assert dispatcher.stats.failed == 0 and dispatcher.pending() == 1
        open_alarms.clear()  # resolved, long enough ago: given up
        dispatcher.submit(["arc"], "evt-res", alarm_body("a-open", "resolved", long_ago))
        await wait_for(lambda: dispatcher.stats.failed == 2, what="both given up")
    assert dispatcher.pending() == 0
    assert dispatcher.stats.delivered == 0


async def test_receiver_down_at_first_then_started(receiver: Receiver, outbox: Path) -> None:
    port = free_port()
    dispatcher = dispatcher_in(outbox, [target(f"http://127.0.0.1:{port}")])
    async with running(dispatcher):
        dispatcher.submit(["arc"], "evt-refused", BODY)
        await wait_for(lambda: dispatcher.stats.retried >= 2, what="retries on refused")
        assert not receiver.requests
        async with serve(receiver, port):
            await wait_for(lambda: dispatcher.stats.delivered == 1, what="delivery")
    assert len(receiver.ok) == 1
    assert dispatcher.stats.failed == 0


async def test_in_order_per_receiver_and_an_unreachable_one_is_reported(
    receiver: Receiver, outbox: Path
) -> None:
    """Raised before acknowledged, always (the old sender delivered 'acknowledged' first
    after a short outage); a receiver failing too long is reported once, and cleared."""
    port = free_port()
    reports: list[tuple[str, str, bool]] = []
    dispatcher = dispatcher_in(
        outbox, [target(f"http://127.0.0.1:{port}")], unreachable_after_s=0.3,
        on_unreachable=lambda t, tenant, down, _since: reports.append((t.name, tenant, down)),
    )  # fmt: skip
    now = datetime.now(UTC).isoformat()  # inside the retry window (a fixed date expires)
    async with running(dispatcher):
        for n, event in enumerate(["raised", "occurred", "acknowledged", "resolved"]):
            dispatcher.submit(["arc"], f"evt-{n}", alarm_body("a-1", event, now))
        await wait_for(lambda: reports == [("arc", "kommun-a", True)], what="reported")
        async with serve(receiver, port):
            await wait_for(lambda: dispatcher.stats.delivered == 4, what="all four")
        assert reports == [("arc", "kommun-a", True), ("arc", "kommun-a", False)]
    assert [r.headers[EVENT_ID_HEADER.lower()] for r in receiver.ok] == [
        "evt-0", "evt-1", "evt-2", "evt-3"]  # fmt: skip


async def test_outbox_survives_a_restart(receiver: Receiver, base: str, outbox: Path) -> None:
    first = dispatcher_in(outbox, [target(base)])
    for n in range(3):
        first.submit(["arc"], f"evt-{n}", BODY)  # the process then dies: never run
    second = dispatcher_in(outbox, [target(base)])
    assert second.pending() == 3
    async with running(second):
        await wait_for(lambda: second.stats.delivered == 3, what="delivered after restart")
    assert [r.headers[EVENT_ID_HEADER.lower()] for r in receiver.ok] == [
        "evt-0", "evt-1", "evt-2"]  # fmt: skip
    assert dispatcher_in(outbox, [target(base)]).pending() == 0


async def test_standby_skips_what_the_engine_delivered(
    receiver: Receiver, base: str, outbox: Path
) -> None:
    standby = dispatcher_in(outbox, [target(base)], delivering=False)
    async with running(standby):
        for n in range(4):
            standby.submit(["arc"], f"evt-{n}", BODY)
        standby.delivered_elsewhere("arc", "evt-2")  # the engine got this far
        standby.delivered_elsewhere("arc", "evt-9")  # not mirrored yet: skipped on arrival
        assert standby.pending() == 1 and not receiver.requests
        standby.deliver(True)  # it takes over
        await wait_for(lambda: standby.stats.delivered == 1, what="the rest")
        standby.deliver(False)
        for n in range(8, 11):
            standby.submit(["arc"], f"evt-{n}", BODY)
    assert [r.headers[EVENT_ID_HEADER.lower()] for r in receiver.ok] == ["evt-3"]
    assert standby.pending() == 1  # evt-10


async def test_timeout_is_retried(receiver: Receiver, base: str, outbox: Path) -> None:
    receiver.hang_first = 1  # the first request is held past the client's timeout
    dispatcher = dispatcher_in(outbox, [target(base, timeout_s=0.2)])
    async with running(dispatcher):
        dispatcher.submit(["arc"], "evt-slow", BODY)
        await wait_for(lambda: dispatcher.stats.delivered == 1, what="delivery after timeout")
    assert dispatcher.stats.retried == 1
    assert len(receiver.requests) == 2
    assert [r.headers[EVENT_ID_HEADER.lower()] for r in receiver.ok] == ["evt-slow"]


async def test_each_named_target_receives_and_unknown_names_are_skipped(
    receiver: Receiver, base: str, outbox: Path
) -> None:
    targets = [target(base, "arc"), target(base, "night-team"), target(base, "unused")]
    dispatcher = dispatcher_in(outbox, targets)
    async with running(dispatcher):
        dispatcher.submit(["arc", "night-team", "nobody", "arc"], "evt-multi", BODY)
        await wait_for(lambda: dispatcher.stats.delivered == 2, what="both deliveries")
    assert sorted(r.target for r in receiver.requests) == ["arc", "night-team"]
    assert dispatcher.stats.unknown_target == 1
    for r in receiver.requests:
        assert verify(SECRET, r.headers[SIGNATURE_HEADER.lower()], r.body, now=int(time.time()))


async def test_a_down_target_does_not_hold_up_the_others(
    receiver: Receiver, base: str, outbox: Path
) -> None:
    down = WebhookTarget("down", f"http://127.0.0.1:{free_port()}/hook/down", SECRET)
    dispatcher = dispatcher_in(outbox, [down, target(base, "arc")], base_backoff_s=5,
                               max_backoff_s=5, stop_grace_s=0.1)  # fmt: skip
    async with running(dispatcher):
        for i in range(20):
            dispatcher.submit(["down"], f"evt-down-{i}", BODY)
        dispatcher.submit(["arc"], "evt-up", BODY)
        await wait_for(
            lambda: dispatcher.stats.delivered == 1, what="healthy delivery", timeout_s=2.5
        )
    assert dispatcher.pending() == 20  # kept for the receiver, after a restart too


async def test_submit_never_blocks(receiver: Receiver, base: str, outbox: Path) -> None:
    receiver.hang_first = 10**6  # every request hangs: the dispatcher is saturated
    dispatcher = dispatcher_in(outbox, [target(base, timeout_s=30)], stop_grace_s=0.1)
    async with running(dispatcher):
        dispatcher.submit(["arc"], "evt-first", BODY)
        await wait_for(lambda: len(receiver.requests) >= 1, what="first request in flight")
        for i in range(1000):
            dispatcher.submit(["arc"], f"evt-{i}", BODY)
        # submit is synchronous (it cannot await): all 1,000 are queued although the
        # receiver answers nothing
        assert dispatcher.pending() == 1001
    assert dispatcher.stats.dropped == 0
    assert dispatcher.pending() == 1001


def test_invalid_event_id_is_dropped_not_raised(outbox: Path) -> None:
    dispatcher = dispatcher_in(outbox, [target("http://127.0.0.1:9")])
    dispatcher.submit(["arc"], "evt\r\nX-Injected: 1", BODY)
    dispatcher.submit(["arc"], "", BODY)
    assert dispatcher.pending() == 0
    assert dispatcher.stats.dropped == 2


async def test_stop_finishes_in_flight_delivery(
    receiver: Receiver, base: str, outbox: Path
) -> None:
    receiver.hang_first = 1
    dispatcher = dispatcher_in(outbox, [target(base)], stop_grace_s=5)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    dispatcher.submit(["arc"], "evt-inflight", BODY)
    await wait_for(lambda: len(receiver.requests) == 1, what="request in flight")
    stop.set()
    receiver.release.set()
    await asyncio.wait_for(task, 10)
    assert dispatcher.stats.delivered == 1
    assert dispatcher.pending() == 0


async def test_stop_keeps_the_in_flight_event_for_after_the_restart(
    receiver: Receiver, base: str, outbox: Path
) -> None:
    receiver.hang_first = 1
    dispatcher = dispatcher_in(outbox, [target(base, timeout_s=30)], stop_grace_s=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    dispatcher.submit(["arc"], "evt-stuck", BODY)
    await wait_for(lambda: len(receiver.requests) == 1, what="request in flight")
    stop.set()
    await asyncio.wait_for(task, 10)  # returns after the grace period, not the 30 s timeout
    again = dispatcher_in(outbox, [target(base)])
    assert again.pending() == 1
    async with running(again):
        await wait_for(lambda: again.stats.delivered == 1, what="delivered after restart")


def test_config_is_validated(outbox: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        dispatcher_in(outbox, [target("http://x"), target("http://y")])
    with pytest.raises(ValueError, match="http"):
        WebhookTarget("arc", "ftp://x", SECRET)
    with pytest.raises(ValueError, match="secret"):
        WebhookTarget("arc", "https://x", b"")


async def test_a_receiver_gets_only_its_municipalities_alarms(
    receiver: Receiver, base: str, outbox: Path
) -> None:
    """Review: webhooks had no tenant scope, so one municipality's alarm centre got every
    municipality's alarms (residents, positions). ``tenants`` names whose it gets."""
    own = WebhookTarget(name="arc", url=f"{base}/hook/arc", secret=SECRET,
                        tenants=frozenset({"kommun-a"}))  # fmt: skip
    other = WebhookTarget(name="arc-b", url=f"{base}/hook/arc-b", secret=SECRET,
                          tenants=frozenset({"kommun-b"}))  # fmt: skip
    dispatcher = dispatcher_in(outbox, [own, other])
    now = datetime.now(UTC).isoformat()
    async with running(dispatcher):
        dispatcher.submit(["arc", "arc-b"], "evt-a", alarm_body("a-1", "raised", now))
        await wait_for(lambda: dispatcher.stats.delivered == 1, what="delivered")
    assert [r.target for r in receiver.ok] == ["arc"]
    assert dispatcher.pending() == 0
