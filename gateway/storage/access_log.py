"""The access log: every read of personal data, allowed or denied, appended through the
database's hash-chaining function (the API role cannot insert, update or delete rows
directly), and its verification."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import AsyncConnectionPool


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


async def record(pool: AsyncConnectionPool, entry: AccessEntry) -> None:
    """Append in a transaction of its own, committed before the data (or the refusal)
    leaves the API: a denied read is logged even though the request then fails."""
    async with pool.connection(timeout=5) as conn, conn.transaction():
        await conn.execute(
            "select append_access_log(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (entry.actor, entry.actor_org, entry.actor_role, entry.actor_tenant,
             entry.owner_tenant, entry.person_id, entry.categories, entry.purpose,
             entry.outcome, entry.reason, entry.request),
        )  # fmt: skip


VERIFY = """
    select id,
        prev_hash = coalesce(lag(hash) over (order by id), '\\x'::bytea) as linked,
        hash = sha256(prev_hash || access_log_row_bytes(a)) as intact
    from access_log a order by id
"""


@dataclass(frozen=True)
class Verification:
    rows: int
    first_bad_id: int | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.first_bad_id is None


def verify(url: str) -> Verification:
    """Recompute the chain (as the owner role: sees every row)."""
    with psycopg.connect(url) as conn:
        rows: list[Any] = conn.execute(VERIFY).fetchall()
    for row_id, linked, intact in rows:
        if not intact:
            return Verification(len(rows), row_id, "row content does not match its hash")
        if not linked:
            return Verification(len(rows), row_id, "chain broken: a row was removed or moved")
    return Verification(len(rows), None, None)
