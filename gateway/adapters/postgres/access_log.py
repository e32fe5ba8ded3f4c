"""The access log: every read of personal data, allowed or denied, appended through the
database's hash-chaining function (the API role cannot insert, update or delete rows
directly), and its verification: the hash chain, and the seals that hold it against a
rewrite by the database owner (gateway/adapters/postgres/access_log_seal.py, review #17.6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import AsyncConnectionPool

from gateway.adapters.postgres.access_log_seal import Seal, SealKeys


@dataclass(frozen=True)
class AccessEntry:
    actor: str
    actor_org: str | None
    actor_role: str
    actor_tenant: str
    owner_tenant: str | None
    person_id: UUID | None
    categories: list[str]
    purpose: str | None
    outcome: str  # allowed | denied
    reason: str
    request: str


def entry_to_dict(entry: AccessEntry) -> dict[str, Any]:
    """JSON-ready (for the control channel: an API process hands a worker an entry to
    append once the database is back)."""
    return {**entry.__dict__, "person_id": str(entry.person_id) if entry.person_id else None}


def entry_from_dict(d: dict[str, Any]) -> AccessEntry:
    person = d.get("person_id")
    return AccessEntry(**{**d, "person_id": UUID(person) if person else None})


async def append(conn: psycopg.AsyncConnection[Any], entry: AccessEntry) -> None:
    """One row through ``append_access_log`` (the hash-chaining function, the log's one
    way in), in ``conn``'s transaction: every writer of the access log calls this."""
    await conn.execute(
        "select append_access_log(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (entry.actor, entry.actor_org, entry.actor_role, entry.actor_tenant,
         entry.owner_tenant, entry.person_id, entry.categories, entry.purpose,
         entry.outcome, entry.reason, entry.request),
    )  # fmt: skip


async def record(pool: AsyncConnectionPool, entry: AccessEntry) -> None:
    """Append in a transaction of its own, committed before the data (or the refusal)
    leaves the API: a denied read is logged even though the request then fails."""
    async with pool.connection(timeout=5) as conn, conn.transaction():
        await append(conn, entry)


VERIFY = """
    select id,
        prev_hash = coalesce(lag(hash) over (order by id), '\\x'::bytea) as linked,
        hash = sha256(prev_hash || access_log_row_bytes(a)) as intact
    from access_log a order by id
"""


_SEALED_ROWS = """
    with numbered as (select id, hash, row_number() over (order by id) as n from access_log)
    select id, hash, n from numbered where id = any(%s)
"""
_SEALS = """
    select sealed_at, last_id, row_count, head_hash, key_id, mac, id from access_log_seals
    order by id
"""


@dataclass(frozen=True)
class Verification:
    rows: int
    first_bad_id: int | None
    problem: str | None
    #: False when the log could not be checked (a seal's key is not configured)
    tampered: bool = True
    seals: int = 0  # seals in access_log_seals, each checked
    anchors: int = 0  # seals read from outside the database, each checked
    last_sealed: Seal | None = None  # the newest row any checked seal covers

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def unsealed_rows(self) -> int:
        """Rows after the last seal: only as safe as the database until the next one."""
        return self.rows - (self.last_sealed.row_count if self.last_sealed else 0)


def verify(url: str, keys: SealKeys | None = None, anchors: Sequence[Seal] = ()) -> Verification:
    """Recompute the chain (as the owner role: sees every row), then check every seal in
    ``access_log_seals`` and every anchor (seals kept outside the database) with ``keys``:
    its HMAC, and that the chain up to its row still hashes to its head. A rewrite of rows
    up to the last seal is found even with every later hash recomputed; with anchors, even
    if the seals in the database were removed or rewritten too."""
    with psycopg.connect(url) as conn:
        rows: list[Any] = conn.execute(VERIFY).fetchall()
        stored = [
            Seal(at.astimezone(UTC), last_id, count, bytes(head), key_id, bytes(mac),
                 f"seal #{seal_id}")
            for at, last_id, count, head, key_id, mac, seal_id in conn.execute(_SEALS)
        ]  # fmt: skip
        wanted = sorted({s.last_id for s in (*stored, *anchors)})
        sealed_rows = {row[0]: (bytes(row[1]), row[2])
                       for row in conn.execute(_SEALED_ROWS, (wanted,))}  # fmt: skip

    def bad(row_id: int | None, problem: str, tampered: bool = True) -> Verification:
        return Verification(len(rows), row_id, problem, tampered, len(stored), len(anchors))

    for row_id, linked, intact in rows:
        if not intact:
            return bad(row_id, "row content does not match its hash")
        if not linked:
            return bad(row_id, "chain broken: a row was removed or moved")
    seals = sorted((*stored, *anchors), key=lambda s: (s.last_id, s.sealed_at))
    if seals and keys is None:
        return bad(None, f"{len(seals)} seals, but no access_log.keys to check them with",
                   tampered=False)  # fmt: skip
    matched = 0  # the newest row a seal checked so far vouches for
    for seal in seals:
        assert keys is not None
        problem = keys.problem(seal)
        if problem is not None:
            return bad(None, problem, tampered=seal.key_id in keys.keys)
        found = sealed_rows.get(seal.last_id)
        if found is None:
            return bad(seal.last_id, f"row {seal.last_id}, sealed by the {seal.describe()}, "
                       "is missing: rows were removed")  # fmt: skip
        head_hash, position = found
        if head_hash != seal.head_hash:
            return bad(seal.last_id, f"the log up to row {seal.last_id} no longer matches the "
                       f"{seal.describe()}: a row in {matched + 1}..{seal.last_id} was changed and "
                       "the later hashes recomputed")  # fmt: skip
        if position != seal.row_count:
            return bad(seal.last_id, f"{seal.row_count} rows up to row {seal.last_id} were "
                       f"sealed, {position} are there ({seal.describe()})")  # fmt: skip
        matched = seal.last_id
    in_table = {s.mac for s in stored}
    for anchor in anchors:
        if anchor.mac not in in_table:
            return bad(anchor.last_id, f"the {anchor.describe()} is missing from "
                       "access_log_seals: seals were removed")  # fmt: skip
    last = seals[-1] if seals else None
    return Verification(len(rows), None, None, True, len(stored), len(anchors), last)
