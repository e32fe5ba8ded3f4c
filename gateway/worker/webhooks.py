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

**A durable outbox per receiver.** ``submit`` is called on the alarm fast path and never
waits: it appends the event to the receiver's outbox, a local file
(:class:`gateway.adapters.durable_log.DurableLog`, in the operating system before it returns), and
returns. Each receiver is served by its own loop, one event at a time and in the order
submitted (so a receiver sees an alarm's events in order, and one receiver that is down
never delays another); an event leaves the outbox only when the receiver answered 2xx, or
refused it for good. Connection errors, timeouts, 408, 429 and 5xx are retried with
exponential backoff and jitter, capped at ``max_backoff_s`` (a numeric ``Retry-After`` is
honoured up to that), without giving up while the event's alarm is open and for
``keep_after_resolved_s`` after it was resolved; then it is given up, counted and logged.
Any other answer (other 4xx, 3xx: redirects are not followed) is counted as rejected and
not retried. What is outstanding when the process stops or dies is in the outbox and is
delivered after the restart.

A receiver failing for longer than ``unreachable_after_s`` is reported (``on_unreachable``:
the alarm service raises a ``receiver_unreachable`` technical alarm) and cleared once it
takes an event again; ``wg_webhook_backlog`` and ``wg_webhook_failing_seconds`` show it.

**Another organisation's receiver** (a target with ``org``, security review #17.7): before
each attempt of an event the ``gate`` decides again whether the event may go to it (the
resident's consent may have been withdrawn since the event was queued), and before the
first attempt of an allowed event it writes the access-log row, committed before the body
leaves. An event the gate refuses is withheld: taken out of that receiver's outbox,
counted (``withheld``) and logged without content. While the gate cannot write the log
(the database is away) the receiver's events wait, and the receiver is not counted as
failing. A target with ``org`` and no gate receives nothing (fail closed). The alarm path
already leaves such receivers out of an event's recipients when it may not reach them
(:mod:`gateway.domain.disclosure`); the gate covers what changed while it waited.

With several workers only the alarm engine's worker delivers (``deliver(True)``); a
standby keeps an outbox of the same events (it follows the engine's published events) and
skips what the engine reports delivered (``delivered_elsewhere``), so an engine that takes
over delivers what the dead one had not, and little twice.

Logs carry the event id, target name, attempt, status code and error class, never the
body (it may contain personal references) nor the URL (it may contain a token).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from gateway.adapters.durable_log import DurableLog
from gateway.support.backoff import Backoff

if TYPE_CHECKING:
    import httpx

    from gateway.support.metrics import IngestMetrics

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
    """One receiver; ``name`` is the recipient group used in ``submit`` (e.g. ``"arc"``).
    ``org``: the receiver's organisation number when it is an organisation of its own
    (None: it acts for the municipality whose alarm it is); ``purpose``: why it receives
    alarms (a consent must name it)."""

    name: str
    url: str = field(repr=False)  # may carry a token
    secret: bytes = field(repr=False)
    timeout_s: float = 5.0
    org: str | None = None
    purpose: str | None = None
    #: the tenants whose alarms it receives; empty: every tenant's
    tenants: frozenset[str] = frozenset()

    def serves(self, tenant_id: str | None) -> bool:
        return not self.tenants or tenant_id in self.tenants

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
    succeeded on its third attempt adds 2). ``failed``: given up (alarm resolved longer
    ago than ``keep_after_resolved_s``) or an unexpected error. ``rejected``: answered
    with a status that is not retried. ``dropped``: refused by ``submit`` (an event id that
    cannot be a header). ``unknown_target``: target names passed to ``submit`` that are
    not configured. ``skipped``: delivered by another worker's engine. ``withheld``: not
    sent to another organisation's receiver because the gate refused it (no consent).
    """

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    rejected: int = 0
    dropped: int = 0
    unknown_target: int = 0
    skipped: int = 0
    withheld: int = 0


_Outcome = Literal["delivered", "retry", "rejected", "error"]
Unreachable = Callable[[WebhookTarget, str, bool, datetime], None]
#: May this event (an outbox record) go to this receiver of another organisation now?
#: True once the access log holds the disclosure; raises when the log cannot be written.
Gate = Callable[[WebhookTarget, dict[str, Any]], Awaitable[bool]]


class _Outbox:
    """One receiver's durable queue and its delivery state."""

    def __init__(self, target: WebhookTarget, directory: Path) -> None:
        self.target = target
        self.log = DurableLog(directory / f"{_file_name(target.name)}.jsonl",
                              compact_bytes=1024 * 1024)  # fmt: skip
        self.backlog = len(self.log.pending(limit=10**9))
        self.wake = asyncio.Event()
        self.failing_since: float | None = None  # monotonic, while the head is failing
        self.reported: str | None = None  # tenant of a reported receiver_unreachable
        self.heard_since_start = False
        self.delivered_elsewhere: str | None = None  # the engine's last, not yet seen here

    def skip_through(self, event_id: str) -> int:
        """Consume everything up to and including ``event_id``; how many records (0 when
        it is not in the outbox)."""
        pending = self.log.pending(limit=10**9)
        for n, (record, end) in enumerate(pending, start=1):
            if record.get("event_id") == event_id:
                self.log.consumed(end)
                self.backlog -= n
                return n
        return 0


class WebhookDispatcher:
    """Outboxes of signed webhook deliveries (``submit``), delivered by ``run``.

    Use from one event loop: ``submit`` is not thread-safe.
    """

    def __init__(
        self,
        targets: Sequence[WebhookTarget],
        *,
        outbox_dir: Path,
        base_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        keep_after_resolved_s: float = 24 * 3600.0,
        unreachable_after_s: float = 300.0,
        client: httpx.AsyncClient | None = None,
        stop_grace_s: float = 5.0,
        is_open: Callable[[str], bool] = lambda _alarm_id: False,
        on_unreachable: Unreachable | None = None,
        on_delivered: Callable[[WebhookTarget, str], None] | None = None,
        metrics: IngestMetrics | None = None,
        delivering: bool = True,
        gate: Gate | None = None,
    ) -> None:
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise ValueError("webhook target names must be unique")
        if base_backoff_s < 0 or max_backoff_s < base_backoff_s or stop_grace_s < 0:
            raise ValueError("need 0 <= base_backoff_s <= max_backoff_s and stop_grace_s >= 0")
        if keep_after_resolved_s < 0 or unreachable_after_s <= 0:
            raise ValueError("need keep_after_resolved_s >= 0 and unreachable_after_s > 0")
        if len({_file_name(n) for n in names}) != len(names):
            raise ValueError("webhook target names must differ in more than punctuation")
        self._targets = {t.name: t for t in targets}
        self._outboxes = {t.name: _Outbox(t, outbox_dir) for t in targets}
        # half fixed, half random; the n-th attempt's wait is backoff.delay(n - 1)
        self._backoff = Backoff(base_backoff_s, max_backoff_s, jitter=0.5)
        self._keep = keep_after_resolved_s
        self._unreachable_after = unreachable_after_s
        self._client = client
        self._grace = stop_grace_s
        self._is_open = is_open
        self._on_unreachable = on_unreachable
        self._on_delivered = on_delivered
        self._metrics = metrics
        self._gate = gate
        self._delivering = asyncio.Event()
        if delivering:
            self._delivering.set()
        self._resolved: dict[str, float] = {}  # alarm id -> when resolved (unix seconds)
        for box in self._outboxes.values():
            for record, _ in box.log.pending(limit=10**9):
                self._note(record)
            self._gauges(box)
        self._running = False
        self.stats = WebhookStats()

    def pending(self) -> int:
        """Deliveries in the outboxes (queued, in flight or waiting for a retry)."""
        return sum(box.backlog for box in self._outboxes.values())

    def deliver(self, on: bool) -> None:
        """Deliver (the alarm engine's worker) or only keep the outboxes (a standby)."""
        if on:
            self._delivering.set()
        else:
            self._delivering.clear()

    def submit(self, target_names: Sequence[str], event_id: str, body: bytes) -> None:
        """Put one delivery of ``body`` per named target in its outbox; never waits, never
        raises."""
        if not (0 < len(event_id) <= _MAX_EVENT_ID_LEN and event_id.isascii()) or (
            not event_id.isprintable()
        ):
            self.stats.dropped += len(target_names)
            log.error("webhook event id is not a valid header value; not queued")
            return
        record = {"event_id": event_id, "body": body.decode("utf-8", "replace"),
                  **_about(body)}  # fmt: skip
        self._note(record)
        for name in dict.fromkeys(target_names):
            box = self._outboxes.get(name)
            if box is None:
                self.stats.unknown_target += 1
                log.error(
                    "webhook target is not configured; skipped",
                    extra={"event_id": event_id, "target": name},
                )
                continue
            if not box.target.serves(record.get("tenant_id")):
                continue  # another municipality's receiver
            box.log.append([record])
            box.backlog += 1
            if box.delivered_elsewhere == event_id:  # the engine was quicker than the mirror
                box.delivered_elsewhere = None
                self.stats.skipped += box.skip_through(event_id)
            self._gauges(box)
            box.wake.set()

    def delivered_elsewhere(self, target_name: str, event_id: str) -> None:
        """The active engine delivered ``event_id`` (and everything before it) to this
        receiver; a standby skips them."""
        box = self._outboxes.get(target_name)
        if box is None or self._delivering.is_set():
            return
        skipped = box.skip_through(event_id)
        box.delivered_elsewhere = None if skipped else event_id
        self.stats.skipped += skipped
        self._gauges(box)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; an attempt in flight then has ``stop_grace_s`` to
        finish. Nothing is lost at a stop: the outboxes are delivered after the restart."""
        if self._running:
            raise RuntimeError("WebhookDispatcher.run is already running")
        self._running = True
        if not self._targets:
            await stop.wait()  # nothing can be queued: no client, no HTTP library loaded
            self._running = False
            return
        import httpx  # here, not at the top: a gateway without webhooks never loads it

        client = self._client or httpx.AsyncClient(
            follow_redirects=False, headers={"User-Agent": "welfare-gateway-webhook"}
        )
        loops = [asyncio.create_task(self._serve(box, client, stop))
                 for box in self._outboxes.values()]  # fmt: skip
        try:
            await stop.wait()
            for box in self._outboxes.values():
                box.wake.set()
            _, pending = await asyncio.wait(loops, timeout=self._grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        finally:
            for task in loops:
                task.cancel()
            if self._client is None:
                await client.aclose()
            for box in self._outboxes.values():
                box.log.close()
            self._running = False

    async def _serve(
        self, box: _Outbox, client: httpx.AsyncClient, stop: asyncio.Event
    ) -> None:
        """One receiver: its outbox's head until delivered, in order."""
        attempt = held = 1
        while not stop.is_set():
            if not self._delivering.is_set():
                await _first(self._delivering.wait(), stop.wait())
                continue
            head = box.log.pending(limit=1)
            if not head:
                box.wake.clear()
                await _first(box.wake.wait(), stop.wait())
                continue
            record, end = head[0]
            if self._expired(record):
                self.stats.failed += 1
                log.error("webhook delivery given up: its alarm was resolved long ago",
                          extra={"event_id": record["event_id"], "target": box.target.name,
                                 "attempt": attempt})  # fmt: skip
                self._consumed(box, end)
                attempt = 1
                continue
            if box.target.org is not None:  # another organisation: only under consent
                try:
                    send = self._gate is not None and await self._gate(box.target, record)
                except Exception as exc:
                    log.warning("webhook disclosure waits: the access log cannot be written",
                                extra={"event_id": record["event_id"], "target": box.target.name,
                                       "error": type(exc).__name__})  # fmt: skip
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._backoff.delay(held - 1))
                    held += 1
                    continue
                held = 1
                if not send:
                    self._withheld(box, record, end)
                    attempt = 1
                    continue
            outcome, retry_after = await self._attempt(client, box.target, record, attempt)
            if outcome != "retry":
                self._consumed(box, end)
                if outcome == "delivered":
                    self._reachable(box)
                    if self._on_delivered is not None:
                        self._on_delivered(box.target, record["event_id"])
                attempt = 1
                continue
            self._failing(box, record)
            with contextlib.suppress(TimeoutError):
                wait_s = self._backoff.delay(attempt - 1, at_least=retry_after)
                await asyncio.wait_for(stop.wait(), wait_s)
            attempt += 1
            self.stats.retried += 1

    def _withheld(self, box: _Outbox, record: dict[str, Any], end: int) -> None:
        self.stats.withheld += 1
        log.warning("webhook event withheld: no consent lets it go to this organisation",
                    extra={"event_id": record["event_id"], "target": box.target.name})  # fmt: skip
        self._consumed(box, end)
        if self._on_delivered is not None:  # done with here: a standby skips it too
            self._on_delivered(box.target, record["event_id"])

    def _consumed(self, box: _Outbox, end: int) -> None:
        box.log.consumed(end)
        box.backlog -= 1
        self._gauges(box)

    def _failing(self, box: _Outbox, record: dict[str, Any]) -> None:
        now = time.monotonic()
        if box.failing_since is None:
            box.failing_since = now
        failing_for = now - box.failing_since
        if self._metrics is not None:
            self._metrics.webhook_failing.labels(box.target.name).set(failing_for)
        if box.reported is None and failing_for >= self._unreachable_after:
            box.reported = str(record.get("tenant_id") or "")
            since = datetime.now(UTC).timestamp() - failing_for
            log.error("webhook receiver unreachable",
                      extra={"target": box.target.name, "failing_s": round(failing_for),
                             "backlog": box.backlog})  # fmt: skip
            if self._on_unreachable is not None and box.reported:
                self._on_unreachable(box.target, box.reported, True,
                                     datetime.fromtimestamp(since, UTC))  # fmt: skip

    def _reachable(self, box: _Outbox) -> None:
        box.failing_since = None
        if self._metrics is not None:
            self._metrics.webhook_failing.labels(box.target.name).set(0)
        if box.reported is not None or not box.heard_since_start:
            # reported here, or possibly by this process before a restart: clear it
            if box.reported is not None:
                log.info("webhook receiver reachable again", extra={"target": box.target.name})
            tenant, box.reported = box.reported or "", None
            if self._on_unreachable is not None:
                self._on_unreachable(box.target, tenant, False, datetime.now(UTC))
        box.heard_since_start = True

    def _gauges(self, box: _Outbox) -> None:
        if self._metrics is not None:
            self._metrics.webhook_backlog.labels(box.target.name).set(box.backlog)

    def _note(self, record: dict[str, Any]) -> None:
        if record.get("event") == "resolved" and isinstance(record.get("alarm_id"), str):
            if len(self._resolved) > 100_000:  # forget the long expired
                cutoff = time.time() - self._keep
                self._resolved = {k: v for k, v in self._resolved.items() if v >= cutoff}
            self._resolved[record["alarm_id"]] = _unix(record.get("at")) or time.time()

    def _expired(self, record: dict[str, Any]) -> bool:
        """Retried without end while the alarm is open, and ``keep_after_resolved_s``
        after it was resolved (an event of an alarm no longer open, whose resolution is
        not known here, counts from the event's own time)."""
        alarm_id = record.get("alarm_id")
        if not isinstance(alarm_id, str) or self._is_open(alarm_id):
            return False
        since = self._resolved.get(alarm_id) or _unix(record.get("at"))
        return since is not None and time.time() - since > self._keep

    async def _attempt(
        self, client: httpx.AsyncClient, target: WebhookTarget, record: dict[str, Any],
        attempt: int,
    ) -> tuple[_Outcome, float | None]:  # fmt: skip
        event_id = record["event_id"]
        body = record["body"].encode()
        fields: dict[str, object] = {"event_id": event_id, "target": target.name,
                                     "attempt": attempt}  # fmt: skip
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: event_id,
            SIGNATURE_HEADER: signature_header(target.secret, int(time.time()), body),
        }
        import httpx

        try:
            async with asyncio.timeout(target.timeout_s):
                response = await client.post(
                    target.url, content=body, headers=headers, timeout=target.timeout_s
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


def _about(body: bytes) -> dict[str, Any]:
    """What the outbox needs to know of an alarm event (its alarm, tenant, type, time)."""
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(d, dict):
        return {}
    return {k: d[k] for k in ("alarm_id", "tenant_id", "event", "at") if isinstance(d.get(k), str)}


def _unix(iso: Any) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp() if isinstance(iso, str) else None
    except ValueError:
        return None


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


async def _first(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isascii() and value.isdigit() else None
