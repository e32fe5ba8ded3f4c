"""Signed webhooks for alarm state changes, delivered at least once, with retries.

Each delivery is a ``POST`` of the event's JSON body to the target's URL with::

    Content-Type: application/json
    X-WG-Event-Id: <event id>
    X-WG-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

Signing (``sign``): ``hex(HMAC-SHA256(secret, f"{t}.".encode() + body))`` where ``t`` is
the unix time in whole seconds when the attempt was made; every attempt, including a retry,
is signed afresh. Verifying (``verify``), on the receiver's side: take ``t`` and every
``v1`` from the header, recompute the HMAC over the raw request body as received (before
any JSON parsing), compare in constant time, and reject the request when ``t`` is more
than ``tolerance_s`` (default five minutes) away from the receiver's clock, so a captured
request cannot be replayed later. Several ``v1`` values are accepted, so a sender may sign
with an old and a new secret while the secret is rotated.

Delivery is at least once: a receiver that answered 2xx but whose answer was lost sees the
same event again, so receivers must deduplicate on ``X-WG-Event-Id``.

``WebhookDispatcher.submit`` is called on the alarm fast path and never waits: it appends
to an in-memory queue and returns. ``run`` posts with bounded concurrency. Connection
errors, timeouts, 408, 429 and 5xx are retried with exponential backoff and jitter (a
numeric ``Retry-After`` is honoured up to ``max_backoff_s``); a delivery waiting for its
next attempt does not hold a connection slot, so one receiver that is down does not delay
deliveries to the others. Any other answer (other 4xx, 3xx: redirects are not followed) is
counted as rejected and not retried: the receiver will not accept it however often it is
sent, and the error log says which event and target.

Nothing is ever dropped silently, but the queue is in memory and bounded: at most
``max_queue`` deliveries may be outstanding (queued, in flight or waiting for a retry).
Beyond that ``submit`` counts the delivery in ``stats.dropped`` and logs an error with the
event id; it does not raise, so the alarm path is not disturbed. With the default bound a
single receiver that is down for the whole retry window would need a sustained rate of
about a hundred events a second to reach it. Deliveries still outstanding when ``run``
stops (after its grace period) or when the process dies are lost; the former are counted
in ``stats.abandoned`` and logged with their event ids. The alarm itself is durable in the
database; this queue is not.

Logs carry the event id, target name, attempt, status code and error class, never the
body (it may contain personal references) nor the URL (it may contain a token).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-WG-Signature"
EVENT_ID_HEADER = "X-WG-Event-Id"

_RETRYABLE_STATUS = frozenset({408, 429})
_MAX_EVENT_ID_LEN = 200


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body`` under ``secret``."""
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    """The value of ``X-WG-Signature``: ``t=<timestamp>,v1=<sign(...)>``."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify(
    secret: bytes, header_value: str, body: bytes, *, now: int, tolerance_s: int = 300
) -> bool:
    """True when ``header_value`` signs ``body`` under ``secret`` and is fresh.

    ``now`` is the receiver's unix time in seconds; a timestamp more than ``tolerance_s``
    before or after it is rejected. Malformed headers give False, never an exception.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header_value.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                return False
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).encode()
    matched = False
    for candidate in candidates:
        # no early exit, so the time taken does not depend on which candidate matched
        matched |= hmac.compare_digest(expected, candidate.encode())
    return matched


@dataclass(frozen=True)
class WebhookTarget:
    """One receiver; ``name`` is the recipient group used in ``submit`` (e.g. ``"arc"``)."""

    name: str
    url: str = field(repr=False)  # may carry a token
    secret: bytes = field(repr=False)
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("webhook target name must not be empty")
        if not self.url.startswith(("https://", "http://")):
            raise ValueError(f"webhook target {self.name!r}: url must be http(s)")
        if not self.secret:
            raise ValueError(f"webhook target {self.name!r}: secret must not be empty")
        if self.timeout_s <= 0:
            raise ValueError(f"webhook target {self.name!r}: timeout_s must be positive")


@dataclass
class WebhookStats:
    """Counters since start; plain ints so they can be exported as Prometheus counters.

    ``delivered``: answered 2xx. ``retried``: attempts after the first (so a delivery that
    succeeded on its third attempt adds 2). ``failed``: gave up after ``max_attempts`` or on
    an unexpected error. ``rejected``: answered with a status that is not retried.
    ``dropped``: refused by ``submit`` (queue full, or an event id that cannot be a
    header). ``unknown_target``: target names passed to ``submit`` that are not
    configured. ``abandoned``: still outstanding when ``run`` stopped.
    """

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    rejected: int = 0
    dropped: int = 0
    unknown_target: int = 0
    abandoned: int = 0


@dataclass(frozen=True, slots=True)
class _Delivery:
    target: WebhookTarget
    event_id: str
    body: bytes


_Outcome = Literal["delivered", "retry", "rejected", "error"]


class WebhookDispatcher:
    """Queue signed webhook deliveries (``submit``) and post them (``run``).

    Use from one event loop: ``submit`` is not thread-safe.
    """

    def __init__(
        self,
        targets: Sequence[WebhookTarget],
        *,
        max_queue: int = 10_000,
        max_attempts: int = 8,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        client: httpx.AsyncClient | None = None,
        concurrency: int = 8,
        stop_grace_s: float = 5.0,
    ) -> None:
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise ValueError("webhook target names must be unique")
        if max_queue < 1 or max_attempts < 1 or concurrency < 1:
            raise ValueError("max_queue, max_attempts and concurrency must be at least 1")
        if base_backoff_s < 0 or max_backoff_s < base_backoff_s or stop_grace_s < 0:
            raise ValueError("need 0 <= base_backoff_s <= max_backoff_s and stop_grace_s >= 0")
        self._targets = {t.name: t for t in targets}
        self._max_queue = max_queue
        self._max_attempts = max_attempts
        self._base_backoff = base_backoff_s
        self._max_backoff = max_backoff_s
        self._client = client
        self._concurrency = concurrency
        self._grace = stop_grace_s
        self._queue: collections.deque[_Delivery] = collections.deque()
        self._wakeup = asyncio.Event()
        self._tasks: dict[asyncio.Task[None], _Delivery] = {}
        self._running = False
        self.stats = WebhookStats()

    def pending(self) -> int:
        """Deliveries queued, in flight or waiting for a retry."""
        return len(self._queue) + len(self._tasks)

    def submit(self, target_names: Sequence[str], event_id: str, body: bytes) -> None:
        """Queue one delivery of ``body`` per named target; never waits, never raises."""
        if not (0 < len(event_id) <= _MAX_EVENT_ID_LEN and event_id.isascii()) or (
            not event_id.isprintable()
        ):
            self.stats.dropped += len(target_names)
            log.error("webhook event id is not a valid header value; not queued")
            return
        for name in dict.fromkeys(target_names):
            target = self._targets.get(name)
            if target is None:
                self.stats.unknown_target += 1
                log.error(
                    "webhook target is not configured; skipped",
                    extra={"event_id": event_id, "target": name},
                )
                continue
            if self.pending() >= self._max_queue:
                self.stats.dropped += 1
                log.error(
                    "webhook queue full; delivery dropped",
                    extra={"event_id": event_id, "target": name, "max_queue": self._max_queue},
                )
                continue
            self._queue.append(_Delivery(target, event_id, body))
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then drain for up to ``stop_grace_s`` and return."""
        if self._running:
            raise RuntimeError("WebhookDispatcher.run is already running")
        self._running = True
        if not self._targets:
            await stop.wait()  # nothing can be queued: no client, no HTTP library loaded
            return
        import httpx  # here, not at the top: a gateway without webhooks never loads it

        client = self._client or httpx.AsyncClient(
            follow_redirects=False,
            headers={"User-Agent": "welfare-gateway-webhook"},
            limits=httpx.Limits(max_connections=self._concurrency * 2),
        )
        slots = asyncio.Semaphore(self._concurrency)
        feeder = asyncio.create_task(self._feed(client, slots, stop))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([feeder, stopped], return_when=asyncio.FIRST_COMPLETED)
            if feeder.done():  # only on a bug: surface it rather than stall silently
                feeder.result()
            self._wakeup.set()
            deadline = asyncio.get_running_loop().time() + self._grace
            await asyncio.wait([feeder], timeout=self._grace)
            remaining = deadline - asyncio.get_running_loop().time()
            if self._tasks and remaining > 0:
                await asyncio.wait(set(self._tasks), timeout=remaining)
        finally:
            leftover = dict(self._tasks)
            for task in (feeder, stopped, *leftover):
                task.cancel()
            await asyncio.gather(feeder, stopped, *leftover, return_exceptions=True)
            for task, delivery in leftover.items():
                if task.cancelled():
                    self._abandon(delivery)
            while self._queue:
                self._abandon(self._queue.popleft())
            if self._client is None:
                await client.aclose()
            self._running = False

    async def _feed(
        self, client: httpx.AsyncClient, slots: asyncio.Semaphore, stop: asyncio.Event
    ) -> None:
        while True:
            if not self._queue:
                if stop.is_set():
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await slots.acquire()  # only this coroutine pops, so the queue is still non-empty
            delivery = self._queue.popleft()
            task = asyncio.create_task(self._deliver(client, slots, delivery))
            self._tasks[task] = delivery
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def _deliver(
        self, client: httpx.AsyncClient, slots: asyncio.Semaphore, delivery: _Delivery
    ) -> None:
        """Called holding one slot; holds it only while an attempt is in flight."""
        attempt = 1
        while True:
            try:
                outcome, retry_after = await self._attempt(client, delivery, attempt)
            finally:
                slots.release()
            if outcome != "retry":
                return
            if attempt >= self._max_attempts:
                self.stats.failed += 1
                log.error(
                    "webhook delivery failed; giving up",
                    extra={
                        "event_id": delivery.event_id,
                        "target": delivery.target.name,
                        "attempt": attempt,
                    },
                )
                return
            await asyncio.sleep(self._backoff(attempt, retry_after))
            await slots.acquire()
            attempt += 1
            self.stats.retried += 1

    async def _attempt(
        self, client: httpx.AsyncClient, delivery: _Delivery, attempt: int
    ) -> tuple[_Outcome, float | None]:
        target = delivery.target
        fields: dict[str, object] = {
            "event_id": delivery.event_id,
            "target": target.name,
            "attempt": attempt,
        }
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: delivery.event_id,
            SIGNATURE_HEADER: signature_header(target.secret, int(time.time()), delivery.body),
        }
        import httpx

        try:
            async with asyncio.timeout(target.timeout_s):
                response = await client.post(
                    target.url, content=delivery.body, headers=headers, timeout=target.timeout_s
                )
        except (httpx.TransportError, TimeoutError) as exc:
            log.warning("webhook attempt failed", extra={**fields, "error": type(exc).__name__})
            return "retry", None
        except Exception as exc:
            self.stats.failed += 1
            log.error(
                "webhook delivery failed on an unexpected error; not retried",
                extra={**fields, "error": type(exc).__name__},
            )
            return "error", None
        status = response.status_code
        fields["status"] = status
        if 200 <= status < 300:
            self.stats.delivered += 1
            log.info("webhook delivered", extra=fields)
            return "delivered", None
        if status >= 500 or status in _RETRYABLE_STATUS:
            log.warning("webhook attempt answered with a retryable status", extra=fields)
            return "retry", _retry_after(response)
        self.stats.rejected += 1
        log.error("webhook delivery rejected by receiver; not retried", extra=fields)
        return "rejected", None

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self._max_backoff, self._base_backoff * 2 ** (attempt - 1))
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self._max_backoff)

    def _abandon(self, delivery: _Delivery) -> None:
        self.stats.abandoned += 1
        log.error(
            "webhook delivery abandoned at shutdown",
            extra={"event_id": delivery.event_id, "target": delivery.target.name},
        )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isascii() and value.isdigit() else None
