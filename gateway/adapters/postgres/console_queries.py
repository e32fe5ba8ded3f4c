"""Read queries of the night-supervision console (role wg_api, tenant set per transaction:
row-level security and the tenant-filtered views apply)."""

from __future__ import annotations

OPEN_ALARMS = """
    select id as alarm_id, tenant_id, kind, severity, state, device_id, person_id, person_ref,
        raised_at, last_at, occurrences, condition, cleared_at, acknowledged_by,
        acknowledged_at, resolved_by, resolved_at, outcome, lat, lon, accuracy_m,
        escalation_level, escalated_at, detail, version
    from alarms
    where state <> 'resolved'
    order by
        case severity when 'critical' then 0 when 'high' then 1 when 'medium' then 2 else 3 end,
        raised_at desc
    limit %(limit)s
"""

ALARM = """
    select id as alarm_id, tenant_id, kind, severity, state, device_id, person_id, person_ref,
        raised_at, last_at, occurrences, condition, cleared_at, acknowledged_by,
        acknowledged_at, resolved_by, resolved_at, outcome, lat, lon, accuracy_m,
        escalation_level, escalated_at, detail, version
    from alarms
    where id = %(alarm_id)s
"""

PERSON = """
    select id, ref, care_notes from persons where id = %(person_id)s
"""

DEVICE = """
    select d.id as device_id, d.model_id, m.device_type, m.heartbeat_interval_s, d.status,
        d.registered_at, s.last_seen, s.battery_percent, s.rssi_dbm, s.online, s.firmware
    from devices d
    join device_models m on m.id = d.model_id
    left join api_device_state s on s.device_id = d.id
    where d.id = %(device_id)s
"""

SAFE_ZONES = """
    select id, name, shape, windows, timezone from safe_zones
    where person_id = %(person_id)s order by created_at, id
"""

# The most recent positions, returned oldest first (the order the track is drawn in).
TRACK = """
    select ts, lat, lon, accuracy_m from (
        select ts, lat, lon, accuracy_m from api_positions
        where person_id = %(person_id)s and ts >= %(since)s
        order by ts desc
        limit %(limit)s
    ) recent
    order by ts
"""

# Devices in service (in stock or handed out) with their last known state and holder.
# ``silent``: not heard from for the model's heartbeat interval times the factor plus the
# grace period, or reported offline; ``never_seen``: no message since registration.
FLEET = """
    select d.id as device_id, d.model_id, m.device_type, m.heartbeat_interval_s, d.status,
        d.registered_at, p.ref as person_ref, s.last_seen, s.battery_percent, s.online,
        s.device_id is null as never_seen,
        s.device_id is not null and (
            s.online is false
            or s.last_seen < now() - make_interval(
                secs => m.heartbeat_interval_s * %(factor)s + %(grace_s)s)
        ) as silent,
        coalesce(s.battery_percent <= %(battery_low)s, false) as low_battery
    from devices d
    join device_models m on m.id = d.model_id
    left join assignments a on a.device_id = d.id
        and (a.valid_to is null or a.valid_to > now())  -- ends ahead: a move (#19.2)
    left join persons p on p.id = a.person_id
    left join api_device_state s on s.device_id = d.id
    where d.status in ('in_stock', 'active')
    order by d.id
"""
