"""The API's read queries over the tenant-filtered views (role wg_api)."""

from __future__ import annotations

from gateway.domain.consent import DataCategory

_PAGE = """
    where person_id = %(person)s
      and (%(from)s::timestamptz is null or ts >= %(from)s)
      and (%(to)s::timestamptz is null or ts < %(to)s)
      and (%(after_ts)s::timestamptz is null
           or (ts, device_id, msg_id) > (%(after_ts)s, %(after_device)s, %(after_msg)s))
    order by ts, device_id, msg_id
    limit %(limit)s
"""

#: per data category: the query, and the ``readings.kind`` it selects (None: its own table)
READING_QUERIES: dict[str, tuple[str, str | None]] = {
    DataCategory.WEIGHT: (
        "select ts, device_id, msg_id, weight_kg from api_readings"
        + _PAGE.replace("where person_id", "where kind = %(kind)s and person_id"),
        "weight",
    ),
    DataCategory.BLOOD_PRESSURE: (
        "select ts, device_id, msg_id, systolic_mmhg, diastolic_mmhg, pulse_bpm from api_readings"
        + _PAGE.replace("where person_id", "where kind = %(kind)s and person_id"),
        "blood_pressure",
    ),
    DataCategory.POSITION: (
        "select ts, device_id, msg_id, lat, lon, accuracy_m from api_positions" + _PAGE,
        None,
    ),
    DataCategory.LOCK_EVENTS: (
        "select ts, device_id, msg_id, action, key_id, method from api_lock_events" + _PAGE,
        None,
    ),
    DataCategory.ALARMS: (
        "select ts, device_id, msg_id, kind, lat, lon, accuracy_m from api_device_alarms" + _PAGE,
        None,
    ),
}

LIST_ALARMS = """
    select id, tenant_id, kind, severity, state, device_id, person_id, person_ref, raised_at,
        last_at, occurrences, condition, cleared_at, acknowledged_by, acknowledged_at,
        resolved_by, resolved_at, outcome, lat, lon, accuracy_m, escalation_level, detail
    from alarms
    where (%(state)s::text is null
           or (%(state)s = 'open' and state <> 'resolved')
           or state = %(state)s)
    order by (state = 'resolved'),
        case severity when 'critical' then 0 when 'high' then 1 when 'medium' then 2 else 3 end,
        raised_at desc
    limit %(limit)s
"""

ALARM_STATS = """
    with a as (
        select kind, state, condition,
            extract(epoch from now() - raised_at) as age,
            extract(epoch from acknowledged_at - raised_at) as to_ack,
            extract(epoch from resolved_at - raised_at) as to_resolve
        from alarms
        where raised_at >= %(from)s and raised_at < %(to)s
    )
    select
        count(*) as alarms,
        percentile_cont(0.5) within group (order by to_ack) as ack_p50_s,
        percentile_cont(0.9) within group (order by to_ack) as ack_p90_s,
        percentile_cont(0.5) within group (order by to_resolve) as resolve_p50_s,
        percentile_cont(0.9) within group (order by to_resolve) as resolve_p90_s,
        -- an alarm still unacknowledged counts against the norm only once its time is up
        avg(case when to_ack <= 60 then 1.0 when to_ack is null and age < 60 then null
                 else 0.0 end) as share_ack_60s,
        avg(case when to_ack <= 180 then 1.0 when to_ack is null and age < 180 then null
                 else 0.0 end) as share_ack_180s
    from a
"""

ALARM_STATS_BY_KIND = """
    select kind, count(*) from alarms
    where raised_at >= %(from)s and raised_at < %(to)s group by kind order by kind
"""

CONDITIONS_NOW = """
    select kind, count(*) from alarms
    where state <> 'resolved' and condition and kind in ('device_silent', 'battery_low')
    group by kind
"""

# --- consented reads by another organisation (SECURITY DEFINER functions, 0004 and 0005) ---

PERSON_OWNER = "select person_owner(%(person)s)"

CONSENTS_FOR = """
    select id, person_id, recipient_org, categories, valid_from, valid_to, withdrawn_at, purpose
    from consents_for(%(person)s, %(org)s)
"""

_CONSENTED_ARGS = (
    "(%(person)s, %(org)s, %(from)s, %(to)s, %(after_ts)s, %(after_device)s, %(after_msg)s,"
    " %(limit)s)"
)

CONSENTED_QUERIES: dict[str, str] = {
    DataCategory.WEIGHT: "select ts, device_id, msg_id, weight_kg"
    " from consented_readings(%(person)s, %(org)s, 'weight', %(from)s, %(to)s,"
    " %(after_ts)s, %(after_device)s, %(after_msg)s, %(limit)s)",
    DataCategory.BLOOD_PRESSURE: "select ts, device_id, msg_id, systolic_mmhg, diastolic_mmhg,"
    " pulse_bpm from consented_readings(%(person)s, %(org)s, 'blood_pressure', %(from)s,"
    " %(to)s, %(after_ts)s, %(after_device)s, %(after_msg)s, %(limit)s)",
    DataCategory.POSITION: "select ts, device_id, msg_id, lat, lon, accuracy_m"
    " from consented_positions" + _CONSENTED_ARGS,
    DataCategory.LOCK_EVENTS: "select ts, device_id, msg_id, action, key_id, method"
    " from consented_lock_events" + _CONSENTED_ARGS,
    DataCategory.ALARMS: "select ts, device_id, msg_id, kind, lat, lon, accuracy_m"
    " from consented_device_alarms" + _CONSENTED_ARGS,
}

# --- FHIR R4 ---

# Vital-sign observations of a person in the caller's tenant, one row per observation:
# obs = weight | bp (blood-pressure panel) | hr (heart rate from a blood-pressure reading).
# Keyset paging on (ts, device_id, msg_id, obs); same columns as consented_vitals().
FHIR_VITALS = """
    with r as (
        select * from api_readings
        where person_id = %(person)s
          and (%(from)s::timestamptz is null or ts >= %(from)s)
          and (%(to)s::timestamptz is null or ts < %(to)s)
          and (%(after_ts)s::timestamptz is null
               or (ts, device_id, msg_id) >= (%(after_ts)s, %(after_device)s::text,
                                              %(after_msg)s::text))
          and ((kind = 'weight' and 'weight' = any (%(obs)s::text[]))
               or (kind = 'blood_pressure' and ('bp' = any (%(obs)s::text[])
                   or ('hr' = any (%(obs)s::text[]) and pulse_bpm is not null))))
        order by ts, device_id, msg_id
        -- every reading read here yields at least one observation, except the page's
        -- boundary reading, which may be half consumed: one page needs limit + 1 readings
        limit %(limit)s + 1
    ), o as (
        select ts, device_id, msg_id, 'weight'::text as obs, weight_kg,
               null::smallint as systolic_mmhg, null::smallint as diastolic_mmhg,
               null::smallint as pulse_bpm
        from r where 'weight' = any (%(obs)s::text[]) and kind = 'weight'
        union all
        select ts, device_id, msg_id, 'bp', null, systolic_mmhg, diastolic_mmhg, null
        from r where 'bp' = any (%(obs)s::text[]) and kind = 'blood_pressure'
        union all
        select ts, device_id, msg_id, 'hr', null, null, null, pulse_bpm
        from r where 'hr' = any (%(obs)s::text[]) and kind = 'blood_pressure'
          and pulse_bpm is not null
    )
    select * from o
    where %(after_ts)s::timestamptz is null
       or (ts, device_id, msg_id, obs)
          > (%(after_ts)s, %(after_device)s::text, %(after_msg)s::text, %(after_obs)s::text)
    order by ts, device_id, msg_id, obs
    limit %(limit)s
"""

CONSENTED_VITALS = """
    select ts, device_id, msg_id, obs, weight_kg, systolic_mmhg, diastolic_mmhg, pulse_bpm
    from consented_vitals(%(person)s, %(org)s, %(obs)s::text[], %(from)s, %(to)s,
        %(after_ts)s, %(after_device)s, %(after_msg)s, %(after_obs)s, %(limit)s)
"""

OWNER_PATIENT = """
    select p.id, p.ref, t.id as tenant_id, t.name as tenant_name, t.org_number as tenant_org
    from persons p join tenants t on t.id = p.tenant_id
    where p.id = %(person)s
"""

CONSENTED_PATIENT = """
    select id, ref, tenant_id, tenant_name, tenant_org from consented_patient(%(person)s, %(org)s)
"""

OWNER_DEVICE = """
    select d.id, d.tenant_id, m.vendor, m.model, m.device_type, d.serial, d.status
    from devices d join device_models m on m.id = d.model_id
    where d.id = %(device)s
"""

CONSENTED_DEVICE = """
    select id, tenant_id, vendor, model, device_type, serial, status, person_id
    from consented_device(%(device)s, %(org)s)
"""

# --- quarantine: review and release (review #17.2; migration 0013) ---

QUARANTINE_LIST = """
    select q.id, q.received_at, q.topic, q.device_id, q.reason, q.detail, q.payload_size,
        r.person_id as released_to, r.category as released_category,
        r.released_at, r.released_by
    from api_quarantine q
    left join api_quarantine_releases r on r.quarantine_id = q.id
    where (%(reason)s::text is null or q.reason = %(reason)s)
      and (%(device)s::text is null or q.device_id = %(device)s)
      and (%(released)s::boolean is null or (r.quarantine_id is not null) = %(released)s)
      and (%(since)s::timestamptz is null or q.received_at >= %(since)s)
      and (%(until)s::timestamptz is null or q.received_at < %(until)s)
      and (%(before)s::bigint is null or q.id < %(before)s)
    order by q.id desc
    limit %(limit)s
"""

# Per device and reason, for the console's fleet view (issue #19.7): what the tenant's devices
# had refused in a period, with each device's model (many devices of one model refused for
# one reason: the vendor's firmware). The devices of the caller's tenant only (row-level
# security; a device id since handed to another tenant shows without its model).
QUARANTINE_BY_DEVICE = """
    with r as (
        select device_id, reason, count(*) as refused, min(received_at) as first_at,
            max(received_at) as last_at
        from api_quarantine
        where device_id is not null
          and received_at >= %(since)s
          and (%(until)s::timestamptz is null or received_at < %(until)s)
        group by device_id, reason
    )
    select r.device_id, r.reason, r.refused, r.first_at, r.last_at, d.model_id, m.vendor,
        m.model, m.device_type, d.status
    from r
    left join devices d on d.id = r.device_id
    left join device_models m on m.id = d.model_id
    order by r.device_id, r.reason
"""

# Stores one row on the holder at its time (SECURITY DEFINER; the caller's tenant only);
# a reading of a unit's shared device refused for want of a resident (#19.4) on the person
# the admin names (migration 0018: release_quarantined_resident, which hands every other
# reason to release_quarantined of 0013).
RELEASE_QUARANTINED = """
    select person_id, category, table_name, stored, released_at, released_by, already
    from release_quarantined_resident(%(id)s, %(person)s, %(actor)s)
"""
