"""Payer changes emitted on their date (issue #19.1; docs/payer.md).

Every ``payer.interval_s`` the worker looks for payer changes in effect (local midnight of
their date has passed, Europe/Stockholm) and not yet emitted, from housing records
effective in the last ``payer.lookback_days``, and emits each once:

1. inserts its row into ``payer_changes`` (primary key: assignment and date), in one
   transaction for the run; a row there already means it was emitted: skipped;
2. publishes it on ``tenants/{t}/payer-changes`` (QoS 1, waiting for the broker's ack);
3. queues it for the aids centre's signed webhook (the group ``payer.webhook_group`` of
   ``alarms.webhooks``, delivered by the same :class:`WebhookDispatcher` as alarms, from
   its own durable outbox), first writing the disclosure (the resident's housing form
   leaves the municipality) to the access log in the same transaction (#21.3);
4. commits.

**Any worker may run it.** The row is the guard, in the database: a second worker's
insert of the same change waits for the first's transaction and then finds the row, so
it publishes nothing; a restart finds the rows. No alarm-engine role is needed, and a
deployment whose engine is handing over still emits. A worker that dies between
publishing and committing leaves no row: the change is emitted again by the next run (the
same ``event_id``: receivers deduplicate on it), so it is at least once, and exactly once
in every run that commits.

A change recorded after its date (late) is emitted by the next run and marked ``late``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import aiomqtt
import orjson
import psycopg

from gateway.adapters.mqtt import internals
from gateway.adapters.mqtt.connection import BrokerAddress
from gateway.adapters.postgres import payer_queries as q
from gateway.adapters.postgres.access_log import AccessEntry
from gateway.adapters.postgres.access_log import append as append_access
from gateway.domain.payer import PayerChange, due_changes, local_date, payer_changes
from gateway.worker.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)


def payer_topic(tenant_id: str) -> str:
    return f"tenants/{tenant_id}/payer-changes"


def event_id(change: PayerChange) -> str:
    return f"payer-{change.assignment_id}-{change.effective_date.isoformat()}"


#: actor_role of the access-log row of a payer change sent to the aids centre
RECEIVER_ROLE = "payer_receiver"


def disclosure_entry(
    change: PayerChange, tenant_id: str, region_id: str | None, group: str, org: str | None
) -> AccessEntry:
    """The municipality's access-log row of a payer change sent to the aids centre's
    webhook: the resident's id and housing form to (usually) the region (#21.3)."""
    return AccessEntry(
        actor=f"webhook:{group}", actor_org=org, actor_role=RECEIVER_ROLE,
        actor_tenant=region_id or tenant_id, owner_tenant=tenant_id,
        person_id=UUID(str(change.person_id)), categories=["housing"],
        purpose="payer change", outcome="allowed",
        reason=f"payer change {event_id(change)} ({change.from_form.value} -> "
               f"{change.to_form.value}) to the aids centre",
        request=f"payer change {event_id(change)} to webhook {group}",
    )  # fmt: skip


def message(
    change: PayerChange, tenant_id: str, region_id: str | None, emitted_at: datetime, late: bool
) -> dict[str, Any]:
    """The event (docs/contract.md, "Payer changes")."""
    return {
        "v": 1,
        "event": "payer_change",
        "event_id": event_id(change),
        "tenant_id": tenant_id,
        "region_id": region_id,
        "assignment_id": change.assignment_id,
        "device_id": change.device_id,
        "person_id": change.person_id,
        "effective_date": change.effective_date.isoformat(),
        "effective_at": change.effective_at.isoformat().replace("+00:00", "Z"),
        "from_form": change.from_form.value,
        "to_form": change.to_form.value,
        "from_payer": change.from_payer.value,
        "to_payer": change.to_payer.value,
        "recorded_at": change.recorded_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "late": late,
        "at": emitted_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


class PayerEmitter:
    """Emits due payer changes once (module docstring). Built by gateway.bootstrap."""

    def __init__(
        self,
        *,
        database_url: str,
        mqtt_url: str,
        client_id: str,
        webhooks: WebhookDispatcher,
        webhook_group: str | None,
        interval_s: float,
        lookback_days: int,
        webhook_org: str | None = None,
    ) -> None:
        self.database_url = database_url
        self.address = BrokerAddress.parse(mqtt_url)
        self.client_id = f"{client_id}-payer"
        self.webhooks = webhooks
        self.webhook_group = webhook_group
        #: the receiver's organisation: when set, the dispatcher withholds every change
        self.webhook_org = webhook_org
        self.interval_s = interval_s
        self.lookback_days = lookback_days
        self.emitted = 0
        self.runs = 0  # emission runs completed (tests wait on it)

    async def run(self, stop: asyncio.Event) -> None:
        done = asyncio.Event()
        delivery = asyncio.create_task(self.webhooks.run(done), name="payer-webhooks")
        try:
            while not stop.is_set():
                try:
                    await self.emit_due()
                except (psycopg.Error, aiomqtt.MqttError, OSError) as exc:
                    log.warning("payer changes not emitted this time; retried",
                                extra={"error": type(exc).__name__})  # fmt: skip
                except Exception:  # a bug must not end emission for good
                    log.exception("payer changes not emitted this time (unexpected error)")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval_s)
        finally:
            done.set()
            await delivery

    async def emit_due(self, now: datetime | None = None) -> int:
        """Emit what is due at ``now``; how many changes this call emitted."""
        now = now or datetime.now(UTC)
        today = local_date(now)
        since = today - timedelta(days=self.lookback_days)
        count = 0
        async with await psycopg.AsyncConnection.connect(
            self.database_url, connect_timeout=10
        ) as conn, contextlib.AsyncExitStack() as stack:
            client: aiomqtt.Client | None = None
            async with conn.transaction():
                tenants, rules = await q.due_inputs(conn, since, today)
                for tenant_id, (region_id, housing, assignments) in sorted(tenants.items()):
                    region_rules = rules.get(region_id, {}) if region_id else {}
                    changes = payer_changes(housing, assignments, region_rules)
                    for change in due_changes(changes, now, since=since):
                        late = change.late or change.effective_date < today
                        emitted_at = await q.claim(conn, change, tenant_id, region_id,
                                                   self.client_id, late=late)  # fmt: skip
                        if emitted_at is None:
                            continue  # emitted before
                        if client is None:
                            client = await stack.enter_async_context(internals.Client(
                                **self.address.client_kwargs(), identifier=self.client_id,
                                timeout=10))  # fmt: skip
                            internals.disable_paho_logger(client)
                        body = orjson.dumps(message(change, tenant_id, region_id, emitted_at, late))
                        await client.publish(payer_topic(tenant_id), body, qos=1)
                        if self.webhook_group is not None:
                            # in the access log (this transaction) before it is queued; a
                            # receiver naming an organisation gets nothing (no consent
                            # gate for payer changes: the dispatcher withholds them)
                            if self.webhook_org is None:
                                await append_access(conn, disclosure_entry(
                                    change, tenant_id, region_id, self.webhook_group,
                                    None))  # fmt: skip
                            self.webhooks.submit([self.webhook_group], event_id(change), body)
                        count += 1
                        log.info("payer change emitted",
                                 extra={"event_id": event_id(change), "tenant": tenant_id,
                                        "late": late})  # fmt: skip
        self.emitted += count
        self.runs += 1
        return count

