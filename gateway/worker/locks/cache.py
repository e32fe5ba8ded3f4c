"""Staff, keys and planned visits in memory, so the lock rule is judged without the
database. Loaded at start and kept current by ``LISTEN wg_locks`` (migration 0006): a
``staff`` notification reloads staff and keys, ``person:<uuid>`` that person's visits;
a periodic full reload also moves the window of single visits kept forward."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import psycopg

from gateway.adapters.postgres import listen, lock_queries
from gateway.domain.lock_access import PlannedVisits, StaffKey, StaffMember, Visit, WeeklySlot

FULL_RELOAD_S = 300.0


class LockAccessCache:
    def __init__(self, url: str) -> None:
        self._url = url
        self._staff: dict[UUID, StaffMember] = {}
        self._keys: dict[tuple[str, str], StaffKey] = {}  # by (tenant id, key id)
        self._any_tenant: dict[str, StaffKey] = {}  # by key id: one of some tenant
        self._visits: dict[UUID, PlannedVisits] = {}
        self.changes = 0  # notifications applied (tests wait on it)
        self._changes = listen.Subscription(
            url, "wg_locks", self._reload, full_reload_s=FULL_RELOAD_S
        )

    def key(self, key_id: str, tenant_id: str | None = None) -> StaffKey | None:
        """The key ``key_id`` of ``tenant_id`` (key ids are unique per tenant, migration
        0011); without a tenant, a key of that id of some tenant."""
        if tenant_id is None:
            return self._any_tenant.get(key_id)
        return self._keys.get((tenant_id, key_id))

    def _set_staff(
        self, loaded: tuple[dict[UUID, StaffMember], dict[tuple[str, str], StaffKey]]
    ) -> None:
        self._staff, self._keys = loaded
        self._any_tenant = {key_id: k for (_, key_id), k in self._keys.items()}

    def staff(self, staff_id: UUID) -> StaffMember | None:
        return self._staff.get(staff_id)

    def keys_of_subject(self, tenant_id: str, subject: str) -> list[str]:
        staff = {
            s.staff_id for s in self._staff.values()
            if s.tenant_id == tenant_id and s.subject == subject
        }  # fmt: skip
        return sorted(k.key_id for k in self._keys.values() if k.staff_id in staff)

    def visits(self, person_id: UUID) -> list[Visit | WeeklySlot]:
        held = self._visits.get(person_id)
        return held.entries() if held is not None else []

    async def _reload(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._set_staff(await lock_queries.load_staff(conn))
        self._visits = await lock_queries.load_visits(conn)

    async def load(self) -> None:
        """Read staff, keys and visits and listen for changes; ``follow`` goes on from there."""
        await self._changes.load()

    async def follow(self, stop: asyncio.Event) -> None:
        async def changed(payload: str) -> None:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                if payload == "staff":
                    self._set_staff(await lock_queries.load_staff(conn))
                elif payload.startswith("person:"):
                    person_id = UUID(payload.removeprefix("person:"))
                    found = await lock_queries.load_visits(conn, person_id)
                    if person_id in found:
                        self._visits[person_id] = found[person_id]
                    else:
                        self._visits.pop(person_id, None)
            self.changes += 1

        await self._changes.follow(changed, stop)
