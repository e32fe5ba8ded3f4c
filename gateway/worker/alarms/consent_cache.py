"""Consents in memory for the alarm path, and the access-log rows of alarms disclosed to
another organisation (security review #17.7; the rule: :mod:`gateway.domain.disclosure`).

:class:`ConsentCache` holds the consents in force (not withdrawn, not expired) by person,
and every tenant's organisation number; loaded at start with the other caches and kept
current by ``LISTEN wg_consents`` (migration 0014: a consent recorded or withdrawn, a
tenant added), so that the alarm path decides without the database. A consent that runs
out in the meantime is refused by the decision itself (its ``valid_to``).

:class:`AlarmDisclosure` is what the alarm service asks:

* :meth:`AlarmDisclosure.withheld` on the alarm path (memory only): the groups whose
  receiver is another organisation that may not have this event now; the routing leaves
  them out (the escalation chain skips them, or the alarm goes to the fallback group).
* :meth:`AlarmDisclosure.gate` in a webhook receiver's delivery loop (off the alarm path)
  before each attempt: decides again (a consent withdrawn while the event waited in the
  outbox stops it), and before the first attempt of an allowed event appends the
  access-log row and waits for its commit; the disclosure waits while the database is
  away, the municipality's own receivers do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg

from gateway.adapters.postgres import access_log, listen, queries
from gateway.adapters.postgres.access_log import AccessEntry
from gateway.domain.alarms import Alarm, AlarmKind
from gateway.domain.consent import Consent
from gateway.domain.disclosure import Disclosure, decide
from gateway.worker.webhooks import WebhookTarget

log = logging.getLogger(__name__)

CHANNEL = "wg_consents"
_CONSENTS = """
    select id, person_id, recipient_org, categories, valid_from, valid_to, withdrawn_at, purpose
    from consents
    where withdrawn_at is null and (valid_to is null or valid_to > now())
"""
_TENANTS = "select id, org_number from tenants"
#: actor_role of a disclosure's access-log row
RECEIVER_ROLE = "alarm_receiver"


def _consent(row: Any) -> Consent:
    cid, person, org, categories, valid_from, valid_to, withdrawn_at, purpose = row
    return Consent(cid, person, org, frozenset(categories), valid_from, valid_to, withdrawn_at,
                   purpose)  # fmt: skip


class ConsentCache:
    def __init__(self, url: str) -> None:
        self._url = url
        self._by_person: dict[UUID, tuple[Consent, ...]] = {}
        #: set when following the changes failed for good: the consents held may be
        #: withdrawn since, so nothing goes to another organisation (fail closed)
        self.stale = False
        self._orgs: dict[str, str] = {}  # tenant -> organisation number
        self._tenants: dict[str, str] = {}  # organisation number -> tenant
        self._changes = listen.Subscription(url, CHANNEL, self._reload)

    def consents(self, person_id: UUID) -> tuple[Consent, ...]:
        return self._by_person.get(person_id, ())

    def tenant_org(self, tenant_id: str) -> str | None:
        return self._orgs.get(tenant_id)

    def tenant_of(self, org: str) -> str | None:
        return self._tenants.get(org)

    async def _load_tenants(self, conn: psycopg.AsyncConnection[Any]) -> None:
        rows = await (await conn.execute(_TENANTS)).fetchall()
        self._orgs = {tenant: org for tenant, org in rows}
        self._tenants = {org: tenant for tenant, org in rows}

    async def _reload(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await self._load_tenants(conn)
        by_person: dict[UUID, list[Consent]] = defaultdict(list)
        async for row in queries.stream(conn, _CONSENTS):
            by_person[row[1]].append(_consent(row))
        self._by_person = {person: tuple(found) for person, found in by_person.items()}

    async def load(self) -> None:
        """Read the consents and tenants and listen for changes; ``follow`` goes on."""
        await self._changes.load()

    async def follow(self, stop: asyncio.Event) -> None:
        async def changed(payload: str) -> None:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                if payload == "tenants":
                    await self._load_tenants(conn)
                    return
                try:
                    person = UUID(payload)
                except ValueError:
                    log.warning("consent notification not understood; ignored")
                    return
                rows = await (
                    await conn.execute(_CONSENTS + " and person_id = %s", (person,))
                ).fetchall()
            if rows:
                self._by_person[person] = tuple(_consent(r) for r in rows)
            else:
                self._by_person.pop(person, None)

        await self._changes.follow(changed, stop)

    async def close(self) -> None:
        await self._changes.close()


class AlarmDisclosure:
    """The webhook receivers of other organisations, the consents, and the access log."""

    def __init__(self, url: str, targets: Sequence[WebhookTarget]) -> None:
        self._url = url
        #: receivers that name an organisation (whether it is another one depends on the
        #: alarm's tenant)
        self.external = {t.name: t for t in targets if t.org is not None}
        self.cache = ConsentCache(url)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._logged: dict[str, str] = {}  # receiver -> the event id last logged for it
        self.disclosed = 0
        self.withheld_events = 0

    def decide(
        self, target: WebhookTarget, tenant_id: str, person_id: UUID | None, kind: AlarmKind,
        has_position: bool, at: datetime, now: datetime,
    ) -> Disclosure:  # fmt: skip
        consents = self.cache.consents(person_id) if person_id is not None else ()
        return decide(
            consents, receiver_org=target.org, purpose=target.purpose,
            tenant_org=self.cache.tenant_org(tenant_id), person_id=person_id, kind=kind,
            has_position=has_position, at=at, now=now,
        )  # fmt: skip

    # --- the alarm path: memory only ---------------------------------------------------
    def withheld(self, alarm: Alarm, at: datetime) -> frozenset[str]:
        """Groups whose receiver is another organisation that may not have this event."""
        if not self.external:
            return frozenset()
        if self.cache.stale:
            self.withheld_events += 1
            return frozenset(self.external)
        now = datetime.now(UTC)
        has_position = alarm.position is not None
        out = frozenset(
            name for name, target in self.external.items()
            if not self.decide(target, alarm.tenant_id, alarm.person_id, alarm.kind,
                               has_position, at, now).allowed
        )  # fmt: skip
        self.withheld_events += bool(out)
        return out

    # --- a receiver's delivery loop ----------------------------------------------------
    async def gate(self, target: WebhookTarget, record: dict[str, Any]) -> bool:
        """May the outbox ``record`` go to ``target`` now? An allowed disclosure is in the
        access log (committed) before True; raises while the log cannot be written."""
        if self.cache.stale:
            return False
        event_id = str(record.get("event_id"))
        try:
            body = orjson.loads(record["body"])
            tenant_id = str(body["tenant_id"])
            person_id = UUID(body["person_id"]) if body.get("person_id") else None
            kind = AlarmKind(body["kind"])
            at = datetime.fromisoformat(body["at"])
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
            return False  # not an alarm event this gateway made: nothing goes out
        decision = self.decide(target, tenant_id, person_id, kind,
                               body.get("position") is not None, at, datetime.now(UTC))  # fmt: skip
        if not decision.allowed:
            log.info("alarm not disclosed",
                     extra={"event_id": event_id, "target": target.name,
                            "reason": decision.reason})  # fmt: skip
            return False
        if not decision.external or self._logged.get(target.name) == event_id:
            return True
        assert target.org is not None and decision.category is not None
        consent_id = decision.consent.id if decision.consent is not None else None
        await self._append(AccessEntry(
            actor=f"webhook:{target.name}", actor_org=target.org, actor_role=RECEIVER_ROLE,
            actor_tenant=self.cache.tenant_of(target.org) or target.org,
            owner_tenant=tenant_id, person_id=person_id, categories=[decision.category],
            purpose=decision.purpose, outcome="allowed",
            reason=f"consent {consent_id} valid; alarm disclosed",
            request=f"alarm {body.get('event')} {body.get('alarm_id')} to webhook "
                    f"{target.name} (event {event_id})",
        ))  # fmt: skip
        self._logged[target.name] = event_id
        self.disclosed += 1
        return True

    async def _append(self, entry: AccessEntry) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=5
                )
            async with asyncio.timeout(10):
                await access_log.append(self._conn, entry)
        except BaseException:
            await self._close_conn()
            raise

    async def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    # --- lifecycle -------------------------------------------------------------------
    async def load(self) -> None:
        """The consents, when some receiver names an organisation (else none are read)."""
        if self.external:
            await self.cache.load()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow consent changes until ``stop``; then close the access log's connection."""
        try:
            if self.external:
                try:
                    await self.cache.follow(stop)
                except Exception:  # a consent withdrawn from now on would go unseen
                    self.cache.stale = True
                    log.exception("consents no longer followed: nothing is disclosed to "
                                  "other organisations until this worker restarts")  # fmt: skip
                    await stop.wait()
            else:
                await stop.wait()
        finally:
            await self.cache.close()
            await self._close_conn()
