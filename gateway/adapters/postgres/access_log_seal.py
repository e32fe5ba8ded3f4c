"""Seals of the access log: its chain's head, signed with a key the database never sees.

The chain in ``access_log`` is an unkeyed SHA-256 computed by ``append_access_log`` (the
one writer). It shows an edited or removed row, but not a rewrite by the database owner
who also recomputes every later hash (security review #17.6). So, at an interval
(``access_log.seal_interval_s``), a worker *seals* the head: an HMAC-SHA256 under a key
from its settings (``access_log.keys``, never stored in the database) over the newest
row's id and hash, the number of rows and the time. The seal is written to
``access_log_seals`` and outside the database: a JSON line in the structured log, a line
appended to ``access_log.anchor_file``, a POST to ``access_log.anchor_webhook``.
``welfare-gateway access-log verify`` checks each seal's HMAC and that the chain still
hashes to every sealed head (:func:`gateway.adapters.postgres.access_log.verify`): the owner can
neither forge a seal without the key nor change the copies kept elsewhere. Rows appended
after the last seal are only as safe as the database until the next seal.

Keys rotate: a seal names its key id; verify accepts every configured key id, so a
retired key stays in ``access_log.keys`` while its seals are kept (``active_key`` signs).

Any number of workers run the sealer: an advisory lock and the last seal's age keep it
to about one seal an interval, and a seal is made only when rows were appended.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

if TYPE_CHECKING:
    from gateway.config.settings import AccessLogSettings

log = logging.getLogger(__name__)

#: advisory lock of one sealing transaction ("WGAS")
SEAL_LOCK = 0x57_47_41_53
#: what an anchor line (file, webhook body, the log's ``seal``) says it is, and its version
ANCHOR_TAG = "wg_access_log_seal"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WEBHOOK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Seal:
    """The chain up to row ``last_id`` (``row_count`` rows) had head ``head_hash`` at
    ``sealed_at``, signed with key ``key_id``. ``where`` says where it was read."""

    sealed_at: datetime
    last_id: int
    row_count: int
    head_hash: bytes
    key_id: str
    mac: bytes
    where: str = field(default="", compare=False)

    def message(self) -> bytes:
        return seal_message(self.key_id, self.last_id, self.row_count, self.head_hash,
                            self.sealed_at)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The anchor: one JSON object (a line of the anchor file, the webhook's body, the
        ``seal`` of the log record). Hash and MAC in base64: the log masks long digit runs."""
        return {
            ANCHOR_TAG: 1,
            "sealed_at": self.sealed_at.astimezone(UTC).isoformat(),
            "last_id": self.last_id,
            "row_count": self.row_count,
            "head_hash": base64.b64encode(self.head_hash).decode(),
            "key_id": self.key_id,
            "mac": base64.b64encode(self.mac).decode(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "") -> Seal:
        if data.get(ANCHOR_TAG) != 1:
            raise ValueError(f"not a version 1 access-log seal ({ANCHOR_TAG}: 1)")
        try:
            sealed_at = datetime.fromisoformat(data["sealed_at"])
            if sealed_at.tzinfo is None:
                raise ValueError("sealed_at has no time zone")
            seal = cls(
                sealed_at, int(data["last_id"]), int(data["row_count"]),
                base64.b64decode(data["head_hash"], validate=True), str(data["key_id"]),
                base64.b64decode(data["mac"], validate=True), where,
            )  # fmt: skip
        except (KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"not an access-log seal: {type(exc).__name__} {exc}") from None
        return seal

    def describe(self) -> str:
        at = self.sealed_at.astimezone(UTC).isoformat(timespec="seconds")
        return f"{self.where or 'seal'} of {at} (row {self.last_id}, key {self.key_id})"


def seal_message(
    key_id: str, last_id: int, row_count: int, head_hash: bytes, sealed_at: datetime
) -> bytes:
    """The bytes a seal's HMAC covers (the time to the microsecond, as the database
    keeps it)."""
    micros = (sealed_at - _EPOCH) // timedelta(microseconds=1)
    text = f"welfare-gateway access-log seal v1\n{key_id}\n{last_id}\n{row_count}\n" \
        f"{head_hash.hex()}\n{micros}"  # fmt: skip
    return text.encode()


@dataclass(frozen=True)
class SealKeys:
    """Key id -> HMAC key; ``active`` signs new seals, every one verifies."""

    keys: dict[str, bytes]
    active: str

    @classmethod
    def from_settings(cls, settings: AccessLogSettings) -> SealKeys | None:
        if not settings.keys:
            return None
        decoded = {kid: decode_key(value.get_secret_value()) for kid, value in
                   settings.keys.items()}  # fmt: skip
        chosen = settings.active_key or sorted(decoded)[-1]
        if chosen not in decoded:
            raise ValueError(f"access_log.active_key {chosen!r} is not among access_log.keys")
        return cls(decoded, chosen)

    def sign(self, sealed_at: datetime, last_id: int, row_count: int, head_hash: bytes) -> Seal:
        mac = hmac.new(self.keys[self.active],
                       seal_message(self.active, last_id, row_count, head_hash, sealed_at),
                       hashlib.sha256).digest()  # fmt: skip
        return Seal(sealed_at, last_id, row_count, head_hash, self.active, mac)

    def problem(self, seal: Seal) -> str | None:
        """Why ``seal`` cannot be trusted (None: its HMAC is right)."""
        key = self.keys.get(seal.key_id)
        if key is None:
            return (f"{seal.describe()}: key id {seal.key_id!r} is not configured (keep "
                    "retired keys in access_log.keys while their seals are kept)")  # fmt: skip
        expected = hmac.new(key, seal.message(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, seal.mac):
            return f"{seal.describe()}: its HMAC does not match: the seal was forged or altered"
        return None


MIN_KEY_BYTES = 32


def decode_key(value: str) -> bytes:
    """A base64 key of at least 32 bytes (``openssl rand -base64 32``)."""
    try:
        key = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("must be base64 (openssl rand -base64 32)") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"must be at least {MIN_KEY_BYTES} bytes (openssl rand -base64 32)")
    return key


# --- sealing ------------------------------------------------------------------------------

_LAST_SEAL = """
    select last_id, head_hash, clock_timestamp() - sealed_at < make_interval(secs => %s)
    from access_log_seals order by id desc limit 1
"""
_INSERT = """
    insert into access_log_seals (sealed_at, last_id, row_count, head_hash, key_id, mac)
    values (%s, %s, %s, %s, %s, %s)
"""


def seal_once(conn: psycopg.Connection[Any], keys: SealKeys, min_gap_s: float = 0.0) -> Seal | None:
    """Seal the head now, in one transaction on ``conn`` (role wg_worker or the owner).
    None when another process is sealing, the last seal is younger than ``min_gap_s``,
    or nothing was appended since it (or the log is empty)."""
    with conn.transaction():
        locked = conn.execute("select pg_try_advisory_xact_lock(%s)", (SEAL_LOCK,)).fetchone()
        if not locked or not locked[0]:
            return None
        last = conn.execute(_LAST_SEAL, (min_gap_s,)).fetchone()
        head = conn.execute(
            "select clock_timestamp(), last_id, row_count, head_hash from access_log_head()"
        ).fetchone()
        assert head is not None
        now, last_id, row_count, head_hash = head
        if last_id is None:
            return None
        recent = last is not None and last[2]
        unchanged = last is not None and last[0] == last_id and bytes(last[1]) == head_hash
        if recent or unchanged:
            return None
        seal = keys.sign(now.astimezone(UTC), last_id, row_count, bytes(head_hash))
        conn.execute(_INSERT, (seal.sealed_at, seal.last_id, seal.row_count, seal.head_hash,
                               seal.key_id, seal.mac))  # fmt: skip
    return seal


def read_anchors(path: Path) -> list[Seal]:
    """The seals in an anchor file (JSON lines): lines the sealer appended, or a whole
    JSON log whose ``access log sealed`` records carry them (other lines are skipped)."""
    seals = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(data, dict) and isinstance(data.get("seal"), dict):
                data = data["seal"]
            if not isinstance(data, dict) or ANCHOR_TAG not in data:
                continue
            try:
                seals.append(Seal.from_json(data, where=f"anchor {path}:{number}"))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    return seals


class AccessLogSealer:
    """Seals the access log every ``seal_interval_s`` while the worker runs, and writes
    each seal outside the database (log line, anchor file, webhook)."""

    def __init__(self, settings: AccessLogSettings, keys: SealKeys, database_url: str) -> None:
        self.settings = settings
        self.keys = keys
        self.database_url = database_url

    @classmethod
    def from_settings(
        cls, settings: AccessLogSettings, database_url: str
    ) -> AccessLogSealer | None:
        keys = SealKeys.from_settings(settings)
        if keys is None:
            log.info("access log not sealed: no access_log.keys (a rewrite by the database "
                     "owner would not be detected)")  # fmt: skip
            return None
        return cls(settings, keys, database_url)

    async def seal(self) -> Seal | None:
        """Seal now if due (see :func:`seal_once`) and anchor the seal outside the database."""

        def work() -> Seal | None:
            with psycopg.connect(self.database_url, autocommit=True, connect_timeout=10) as conn:
                return seal_once(conn, self.keys, self.settings.seal_interval_s / 2)

        seal = await asyncio.to_thread(work)
        if seal is not None:
            await self.anchor(seal)
        return seal

    async def anchor(self, seal: Seal) -> None:
        anchor = seal.to_json()
        log.info("access log sealed", extra={"seal": anchor})
        line = orjson.dumps(anchor) + b"\n"
        if self.settings.anchor_file is not None:
            try:
                await asyncio.to_thread(_append, self.settings.anchor_file, line)
            except OSError as exc:
                log.error("access-log anchor file not written",
                          extra={"path": str(self.settings.anchor_file),
                                 "error": exc.strerror or type(exc).__name__})  # fmt: skip
        if self.settings.anchor_webhook is not None:
            await self._post(line)

    async def _post(self, body: bytes) -> None:
        import httpx  # here: a worker without an anchor webhook never loads it

        url = self.settings.anchor_webhook
        assert url is not None
        try:
            async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False) as c:
                response = await c.post(url, content=body, headers={
                    "Content-Type": "application/json",
                    "User-Agent": "welfare-gateway-access-log-anchor"})  # fmt: skip
            if response.status_code >= 300:
                log.error("access-log anchor webhook refused the seal",
                          extra={"status": response.status_code})  # fmt: skip
        except httpx.HTTPError as exc:
            log.error("access-log anchor webhook unreachable",
                      extra={"error": type(exc).__name__})  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        """Seal at once (when due) and then every ``seal_interval_s`` until ``stop``."""
        while not stop.is_set():
            try:
                await self.seal()
            except (psycopg.Error, OSError) as exc:
                log.warning("access log not sealed this time", extra={"error": type(exc).__name__})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.seal_interval_s)


def _append(path: Path, line: bytes) -> None:
    with path.open("ab") as out:
        out.write(line)
        out.flush()
        os.fsync(out.fileno())
