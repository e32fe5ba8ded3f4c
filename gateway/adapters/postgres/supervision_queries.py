"""SQL of digital supervision (issue #20, migration 0023, docs/supervision.md).

The worker's loads (decisions, plans, passive rules: small tables, read whole on every
change), its writes (checks) and reads at engine activation (the sensors' last states,
the last check per plan), and the API's queries (under the tenant's row policies).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import psycopg

from gateway.domain.passive_alarms import PassiveKind, PassiveRule
from gateway.domain.supervision import CheckRecord, Plan, Seen, parse_check_time
from gateway.domain.supervision_consent import Decision, Service

# --- the worker ------------------------------------------------------------------------

_DECISIONS = """
    select id, tenant_id, person_id, service, valid_from, valid_to, person_consent_at,
           has_cohabitant, cohabitant_consent_at, withdrawn_at
    from supervision_decisions
    where withdrawn_at is null and (valid_to is null or valid_to > now())
"""
_PLANS = """
    select id, tenant_id, person_id, check_times, seen, retry_after_s, team, motion_minutes,
           timezone
    from supervision_plans where ended_at is null
"""
_RULES = """
    select id, tenant_id, person_id, kind, window_start, window_end, minutes, timezone
    from passive_rules where ended_at is null
"""
#: the last check stored per plan (a worker taking over the engine goes on from there)
LAST_CHECKS = """
    select plan_id, max(planned_at) from supervision_checks group by plan_id
"""
#: first attempts retried whose retry was not made (an engine taken over meanwhile)
PENDING_RETRIES = """
    select c.plan_id, c.planned_at, c.local_time, c.evaluated_at
    from supervision_checks c
    where c.attempt = 1 and c.result = 'retried' and c.planned_at > now() - interval '1 hour'
      and not exists (select 1 from supervision_checks r
                      where r.plan_id = c.plan_id and r.planned_at = c.planned_at
                        and r.attempt = 2)
"""
#: the sensors' last state each (a worker taking over the engine starts from them)
LAST_SENSOR_STATES = """
    select distinct on (device_id) device_id, tenant_id, person_id, kind, state, ts,
           received_at
    from sensor_events
    where ts > now() - interval '2 days'
    order by device_id, ts desc
"""
#: motion seen lately, per device (the motion rule's "within N minutes")
LAST_MOTION = """
    select device_id, max(ts) from sensor_events
    where kind = 'motion' and state = 'true' and ts > now() - interval '1 day'
    group by device_id
"""
INSERT_CHECK = """
    insert into supervision_checks (tenant_id, person_id, plan_id, planned_at, local_time,
                                    attempt, result, evaluated_at, seen, reason, alarm_id)
    values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    on conflict (plan_id, planned_at, attempt) do nothing
"""


def decision_from_row(row: Any) -> Decision:
    (did, tenant, person, service, valid_from, valid_to, consent_at, cohabitant,
     cohabitant_at, withdrawn_at) = row  # fmt: skip
    return Decision(did, tenant, person, Service(service), valid_from, valid_to, consent_at,
                    cohabitant, cohabitant_at, withdrawn_at)  # fmt: skip


def plan_from_row(row: Any) -> Plan:
    pid, tenant, person, times, seen, retry_s, team, motion_minutes, zone = row
    return Plan(pid, tenant, person, tuple(parse_check_time(t) for t in times), Seen(seen),
                timedelta(seconds=retry_s), team, motion_minutes, zone)  # fmt: skip


def rule_from_row(row: Any) -> PassiveRule:
    rid, tenant, person, kind, start, end, minutes, zone = row
    return PassiveRule(rid, tenant, person, PassiveKind(kind), start, end, minutes, zone)


async def load_decisions(conn: psycopg.AsyncConnection[Any]) -> list[Decision]:
    return [decision_from_row(r) for r in await (await conn.execute(_DECISIONS)).fetchall()]


async def load_plans(conn: psycopg.AsyncConnection[Any]) -> list[Plan]:
    return [plan_from_row(r) for r in await (await conn.execute(_PLANS)).fetchall()]


async def load_rules(conn: psycopg.AsyncConnection[Any]) -> list[PassiveRule]:
    return [rule_from_row(r) for r in await (await conn.execute(_RULES)).fetchall()]


def check_params(record: CheckRecord) -> tuple[Any, ...]:
    return (
        record.tenant_id, record.person_id, record.plan_id, record.planned_at,
        record.local_time, record.attempt, record.result.value, record.evaluated_at,
        orjson.dumps(dict(record.seen)).decode(), record.reason, record.alarm_id,
    )  # fmt: skip


# --- the API (wg_api, wg.tenant_id set: the row policies keep it to the tenant) ---------

INSERT_DECISION = """
    insert into supervision_decisions (tenant_id, person_id, service, valid_from, valid_to,
        person_consent_at, has_cohabitant, cohabitant_consent_at, recorded_by)
    values (current_setting('wg.tenant_id', true), %s, %s, %s, %s, %s, %s, %s, %s)
    returning id
"""
DECISION_COLUMNS = """
    id, person_id, service, valid_from, valid_to, person_consent_at, has_cohabitant,
    cohabitant_consent_at, recorded_at, recorded_by, withdrawn_at, withdrawn_by,
    withdrawn_reason
"""
LIST_DECISIONS = f"""
    select {DECISION_COLUMNS} from supervision_decisions
    where person_id = %s order by recorded_at, id
"""
GET_DECISION = f"select {DECISION_COLUMNS} from supervision_decisions where id = %s"
WITHDRAW_DECISION = """
    update supervision_decisions
       set withdrawn_at = now(), withdrawn_by = %s, withdrawn_reason = %s
     where id = %s and withdrawn_at is null
    returning id
"""
COHABITANT_CONSENT = """
    update supervision_decisions set cohabitant_consent_at = %s
     where id = %s and withdrawn_at is null and has_cohabitant
       and cohabitant_consent_at is null
    returning id
"""
PERSON_EXISTS = "select 1 from persons where id = %s"

INSERT_PLAN = """
    insert into supervision_plans (tenant_id, person_id, check_times, timezone, seen,
        motion_minutes, retry_after_s, team, created_by)
    values (current_setting('wg.tenant_id', true), %s, %s, %s, %s, %s, %s, %s, %s)
    returning id, created_at
"""
END_OPEN_PLAN = """
    update supervision_plans set ended_at = now(), ended_by = %s
     where person_id = %s and ended_at is null
"""
PLAN_COLUMNS = """
    id, person_id, check_times, timezone, seen, motion_minutes, retry_after_s, team,
    created_at, created_by, ended_at
"""
LIST_PLANS = f"""
    select {PLAN_COLUMNS} from supervision_plans where person_id = %s order by created_at, id
"""
END_PLAN = """
    update supervision_plans set ended_at = now(), ended_by = %s
     where id = %s and ended_at is null returning id
"""
INSERT_RULE = """
    insert into passive_rules (tenant_id, person_id, kind, window_start, window_end, minutes,
        timezone, created_by)
    values (current_setting('wg.tenant_id', true), %s, %s, %s, %s, %s, %s, %s)
    returning id, created_at
"""
RULE_COLUMNS = """
    id, person_id, kind, window_start, window_end, minutes, timezone, created_at,
    created_by, ended_at
"""
LIST_RULES = f"""
    select {RULE_COLUMNS} from passive_rules where person_id = %s order by created_at, id
"""
END_RULE = """
    update passive_rules set ended_at = now(), ended_by = %s
     where id = %s and ended_at is null returning id
"""
#: the night view: every open plan of the tenant with its person, and the checks of
#: [start, end) (each attempt), with the alarm each raised
NIGHT_PLANS = """
    select p.id, p.person_id, pe.ref, p.check_times, p.timezone, p.seen, p.motion_minutes,
           p.retry_after_s, p.team
    from supervision_plans p join persons pe on pe.id = p.person_id
    where p.ended_at is null or p.ended_at > %s
    order by pe.ref, p.id
"""
NIGHT_CHECKS = """
    select plan_id, person_id, planned_at, local_time, attempt, result, evaluated_at, seen,
           reason, alarm_id
    from supervision_checks
    where planned_at >= %s and planned_at < %s
    order by planned_at, plan_id, attempt
"""
#: alarms raised by the night's checks and passive rules (kinds of issue #20)
NIGHT_ALARMS = """
    select id, person_id, kind, state, raised_at, severity
    from alarms
    where kind = any(%s) and raised_at >= %s and raised_at < %s
    order by raised_at
"""

# --- the follow-up report (#21.1): supervision check counts ----------------------------

#: checks per result (the final result of each planned check: its last attempt) in
#: [start, end), for the caller's tenant (wg_api under its row policy, or the owner with
#: the tenant given). See docs/supervision.md, "For the follow-up report".
CHECK_COUNTS = """
    select result, count(*)::bigint
    from (select distinct on (plan_id, planned_at) result
            from supervision_checks
           where tenant_id = %s and planned_at >= %s and planned_at < %s
           order by plan_id, planned_at, attempt desc) last_attempt
    group by result
"""


async def check_counts(
    conn: psycopg.AsyncConnection[Any], tenant_id: str, start: datetime, end: datetime
) -> Mapping[str, int]:
    """Planned checks of ``tenant_id`` in [start, end) by final result (``ok``, ``not_ok``,
    ``failed``; ``retried`` while a retry is still to come), and ``persons``: persons with
    at least one check. For the follow-up report (#21.1)."""
    rows = await (await conn.execute(CHECK_COUNTS, (tenant_id, start, end))).fetchall()
    counts = {result: 0 for result in ("ok", "retried", "not_ok", "failed")}
    counts.update({result: int(n) for result, n in rows})
    persons = await (await conn.execute(
        "select count(distinct person_id) from supervision_checks "
        "where tenant_id = %s and planned_at >= %s and planned_at < %s",
        (tenant_id, start, end),
    )).fetchone()  # fmt: skip
    counts["persons"] = int(persons[0]) if persons else 0
    return counts


def as_uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
