"""The one consent gate for every read of a resident's personal data (issue #24).

The REST readings and the FHIR Observation search, Observation read, Patient and Device
routes all go through :class:`ConsentGate`; each request writes exactly one access-log
entry for the gate's decision:

- not the owner (no such person, or a person outside the caller's tenant): 404;
- another organisation's clinician without a consent valid now: 403;
- allowed, by role (the owning municipality's staff) or under consent.

The decision itself is pure (``gateway.domain.consent.decide``, through
``api.consented.decide_for``); the gate is the I/O around it: the look-ups, the log entry,
and the exception the route raises (its own kind: a problem document or an
OperationOutcome).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from fastapi import Request

from api import consented
from api.auth import Principal, Role
from api.consented import ReadRecord
from gateway.adapters.postgres import api_queries as q

#: builds the exception a route raises for a refusal: (status, detail)
Refuse = Callable[[int, str], Exception]


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """A consent step's answer for another organisation's clinician."""

    allowed: bool
    reason: str
    categories: list[str]  # logged when allowed (what may be read)
    purpose: str | None = None  # the consent's purpose, logged when allowed
    row: tuple[Any, ...] | None = None  # what the step read, if anything


@dataclass(frozen=True, kw_only=True)
class Granted:
    """What an allowed read may return."""

    owner: str  # the owning tenant
    categories: list[str]  # the categories allowed (and logged)
    by_consent: bool  # False: by role, in the owning municipality
    row: tuple[Any, ...] | None = None  # the person's pseudonymous patient row, if read


#: the consent step: given the owning tenant, may the clinician read?
ConsentStep = Callable[[str], Awaitable[Verdict]]


class ConsentGate:
    """One request's gate. ``not_found`` is the detail of every 404 (the same whether the
    person does not exist or is another tenant's); a 403's detail is the reason logged.
    ``purpose`` is the caller's stated purpose, logged with every entry."""

    def __init__(
        self,
        request: Request,
        conn: Any,
        who: Principal,
        *,
        refuse: Refuse,
        not_found: str,
        purpose: str | None = None,
        log_unseen_person: bool = True,
    ) -> None:
        self.request = request
        self.conn = conn
        self.who = who
        self.refuse = refuse
        self.not_found = not_found
        self.purpose = purpose
        #: False: a person the caller's tenant does not see is logged without its id (as
        #: the REST readings always have; the FHIR routes log the id asked for)
        self.log_unseen_person = log_unseen_person

    async def deny(
        self,
        status: int,
        reason: str,
        *,
        categories: Sequence[str],
        person_id: UUID | None = None,
        owner: str | None = None,
    ) -> Exception:
        """Log one denied entry; the exception to raise (404: ``not_found``, else the
        reason)."""
        await self._log(owner, person_id, categories, self.purpose, "denied", reason)
        return self.refuse(status, self.not_found if status == 404 else reason)

    async def allow(
        self,
        *,
        owner: str | None,
        person_id: UUID | None,
        categories: Sequence[str],
        reason: str,
        purpose: str | None = None,
    ) -> None:
        """Log one allowed entry (for a read whose check is a single look-up: a device)."""
        await self._log(owner, person_id, categories, self.purpose or purpose, "allowed", reason)

    async def require_role(
        self, roles: Sequence[Role], person_id: UUID | None, categories: Sequence[str]
    ) -> None:
        """403 (logged) unless the caller's role may read personal data at all."""
        if self.who.role not in roles:
            reason = f"role {self.who.role.value} may not read personal data"
            raise await self.deny(403, reason, categories=categories, person_id=person_id)

    async def categories(
        self, person_id: UUID, wanted: list[str], *, require_all: bool = True
    ) -> Granted:
        """Data categories of a person: by role in the owning tenant, or under a consent
        ``decide()`` finds valid now; with ``require_all`` False a clinician is allowed the
        categories a consent covers as long as one is (the rest are not returned)."""

        async def consent(_owner: str) -> Verdict:
            decisions = await consented.decide_for(self.conn, self.who, person_id, wanted)
            allowed = decisions.allowed
            refused = allowed != wanted if require_all else not allowed
            if refused:
                return Verdict(allowed=False, reason=decisions.refusal, categories=wanted)
            return Verdict(allowed=True, reason="consent valid", categories=allowed,
                           purpose=decisions.purpose)  # fmt: skip

        return await self._open(person_id, wanted, consent, by_role="by role")

    async def patient(self, person_id: UUID) -> Granted:
        """The pseudonymous patient (``Granted.row``): by role, or for a clinician while
        any consent of the person to the clinician's organisation is valid now (decided by
        ``consented_patient`` in the database; the reason for a refusal by ``decide()``)."""

        async def consent(_owner: str) -> Verdict:
            cur = await self.conn.execute(
                q.CONSENTED_PATIENT, {"person": person_id, "org": self.who.org or ""}
            )
            row: tuple[Any, ...] | None = await cur.fetchone()
            if row is None:
                vitals = ["blood_pressure", "weight"]
                decisions = await consented.decide_for(self.conn, self.who, person_id, vitals)
                reason = decisions.refusal or "no consent valid now"
                return Verdict(allowed=False, reason=reason, categories=["patient"])
            return Verdict(allowed=True, reason="consent valid (pseudonymous patient)",
                           categories=["patient"], row=row)  # fmt: skip

        return await self._open(person_id, ["patient"], consent,
                                by_role="by role (pseudonymous patient)")  # fmt: skip

    async def _open(
        self, person_id: UUID, wanted: list[str], consent: ConsentStep, *, by_role: str
    ) -> Granted:
        """The owner check, then (another organisation) the consent step: one entry."""
        if self.who.role is Role.CLINICIAN:
            owner = await consented.person_owner(self.conn, person_id)
            if owner is None:
                raise await self.deny(404, "no such person", categories=wanted,
                                      person_id=person_id)  # fmt: skip
            verdict = await consent(owner)
            if not verdict.allowed:
                raise await self.deny(403, verdict.reason, categories=wanted,
                                      person_id=person_id, owner=owner)  # fmt: skip
            await self.allow(owner=owner, person_id=person_id, categories=verdict.categories,
                             reason=verdict.reason, purpose=verdict.purpose)  # fmt: skip
            return Granted(owner=owner, categories=verdict.categories, by_consent=True,
                           row=verdict.row)  # fmt: skip
        cur = await self.conn.execute(q.OWNER_PATIENT, {"person": person_id})
        row: tuple[Any, ...] | None = await cur.fetchone()  # row-level security: own tenant
        if row is None:
            seen = person_id if self.log_unseen_person else None
            raise await self.deny(404, "not found", categories=wanted, person_id=seen)
        tenant = self.who.tenant
        await self.allow(owner=tenant, person_id=person_id, categories=wanted, reason=by_role)
        return Granted(owner=tenant, categories=wanted, by_consent=False, row=row)

    async def _log(
        self,
        owner: str | None,
        person_id: UUID | None,
        categories: Sequence[str],
        purpose: str | None,
        outcome: Literal["allowed", "denied"],
        reason: str,
    ) -> None:
        record = ReadRecord(owner=owner, person_id=person_id, categories=list(categories),
                            purpose=purpose, outcome=outcome, reason=reason)  # fmt: skip
        await consented.log_read(self.request, self.who, record)
