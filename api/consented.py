"""Reads by another organisation under consent, and the access-log entry for every read of
personal data. The decision itself is the pure ``gateway.domain.consent.decide``; this
module fetches its inputs through the SECURITY DEFINER functions and writes the log
(the one gate every read path goes through is ``api.consent_gate``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import Request

from api.auth import Principal
from gateway.adapters.postgres import access_log
from gateway.adapters.postgres.api_queries import CONSENTS_FOR, PERSON_OWNER
from gateway.domain.consent import Consent, Decision, decide


async def person_owner(conn: Any, person_id: UUID) -> str | None:
    """The owning tenant of any person (None if there is no such person)."""
    cur = await conn.execute(PERSON_OWNER, {"person": person_id})
    row = await cur.fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class Decisions:
    by_category: dict[str, Decision]

    @property
    def allowed(self) -> list[str]:
        return sorted(c for c, d in self.by_category.items() if d.allowed)

    @property
    def refusal(self) -> str:
        """Why, when something was refused (the first refused category's reason)."""
        for category in sorted(self.by_category):
            decision = self.by_category[category]
            if not decision.allowed:
                return decision.reason
        return ""

    @property
    def purpose(self) -> str | None:
        for decision in self.by_category.values():
            if decision.consent is not None:
                return decision.consent.purpose
        return None


async def decide_for(
    conn: Any, who: Principal, person_id: UUID, categories: list[str]
) -> Decisions:
    cur = await conn.execute(CONSENTS_FOR, {"person": person_id, "org": who.org or ""})
    consents = [
        Consent(r[0], r[1], r[2], frozenset(r[3]), r[4], r[5], r[6], r[7])
        for r in await cur.fetchall()
    ]
    now = datetime.now(UTC)
    return Decisions({c: decide(consents, org=who.org, category=c, now=now) for c in categories})


@dataclass(frozen=True, kw_only=True)
class ReadRecord:
    """One access-log entry for a read of personal data, allowed or denied. The actor and
    the request line come from the request itself (:func:`log_read`)."""

    owner: str | None  # the owning tenant, when known
    person_id: UUID | None
    categories: Sequence[str]
    purpose: str | None = None
    outcome: Literal["allowed", "denied"]
    reason: str


def caller_entry(
    request: Request, who: Principal, *, owner: str | None, person_id: UUID | None,
    categories: Sequence[str], purpose: str | None, reason: str,
    outcome: Literal["allowed", "denied"] = "allowed",
) -> access_log.AccessEntry:  # fmt: skip
    """The access-log entry of what the caller of ``request`` does (the actor and the
    request line from the request): for ``access_log.append`` in the request's
    transaction, or ``access_log.record`` in one of its own."""
    return access_log.AccessEntry(
        actor=who.subject, actor_org=who.org, actor_role=who.role.value,
        actor_tenant=who.tenant, owner_tenant=owner, person_id=person_id,
        categories=list(categories), purpose=purpose, outcome=outcome, reason=reason,
        request=f"{request.method} {request.url.path}",
    )  # fmt: skip


async def log_read(request: Request, who: Principal, record: ReadRecord) -> None:
    """Committed in a transaction of its own before the answer leaves the API."""
    await access_log.record(request.app.state.pool, caller_entry(
        request, who, owner=record.owner, person_id=record.person_id,
        categories=record.categories, purpose=record.purpose, reason=record.reason,
        outcome=record.outcome,
    ))  # fmt: skip
