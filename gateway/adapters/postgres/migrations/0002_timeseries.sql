-- Time series written by the gateway's batch writer. Range-partitioned by device time;
-- partitions are created ahead and dropped after retention by gateway.storage.partitions.
-- Uniqueness on (device_id, msg_id, ts) makes redelivery idempotent: the same message
-- carries the same id and ts, so it lands in the same partition and conflicts there.
--
-- Tenant isolation: these tables have no row-level security (TimescaleDB compression
-- refuses RLS, and we keep one mechanism for both backends). The API role gets no
-- privilege on them and reads only through the security-barrier views below, which
-- filter by the transaction's tenant.

create table readings (
    tenant_id       text not null,
    person_id       uuid not null,
    device_id       text not null,
    msg_id          text not null,
    ts              timestamptz not null,
    received_at     timestamptz not null,
    kind            text not null check (kind in ('weight', 'blood_pressure')),
    weight_kg       real,
    systolic_mmhg   smallint,
    diastolic_mmhg  smallint,
    pulse_bpm       smallint
) partition by range (ts);
create unique index readings_dedup on readings (device_id, msg_id, ts);
create index readings_person_time on readings (tenant_id, person_id, kind, ts);

create table positions (
    tenant_id    text not null,
    person_id    uuid not null,
    device_id    text not null,
    msg_id       text not null,
    ts           timestamptz not null,
    received_at  timestamptz not null,
    lat          double precision not null,
    lon          double precision not null,
    accuracy_m   real not null
) partition by range (ts);
create unique index positions_dedup on positions (device_id, msg_id, ts);
create index positions_person_time on positions (tenant_id, person_id, ts);

create table lock_events (
    tenant_id    text not null,
    person_id    uuid not null,
    device_id    text not null,
    msg_id       text not null,
    ts           timestamptz not null,
    received_at  timestamptz not null,
    action       text not null,
    key_id       text,
    method       text not null
) partition by range (ts);
create unique index lock_events_dedup on lock_events (device_id, msg_id, ts);
create index lock_events_person_time on lock_events (tenant_id, person_id, ts);

create table device_alarms (
    tenant_id    text not null,
    person_id    uuid not null,
    device_id    text not null,
    msg_id       text not null,
    ts           timestamptz not null,
    received_at  timestamptz not null,
    kind         text not null,
    lat          double precision,
    lon          double precision,
    accuracy_m   real
) partition by range (ts);
create unique index device_alarms_dedup on device_alarms (device_id, msg_id, ts);
create index device_alarms_person_time on device_alarms (tenant_id, person_id, ts);

-- Heartbeats, battery, battery_low and status. A last-will status has no id: msg_id is
-- then null and such rows are not deduplicated (each delivery is a fact of its own).
create table device_health (
    tenant_id        text not null,
    person_id        uuid,
    device_id        text not null,
    msg_id           text,
    ts               timestamptz not null,
    received_at      timestamptz not null,
    kind             text not null check (kind in ('heartbeat', 'battery', 'battery_low', 'status')),
    battery_percent  smallint,
    rssi_dbm         smallint,
    state            text,
    firmware         text
) partition by range (ts);
create unique index device_health_dedup on device_health (device_id, msg_id, ts);
create index device_health_device_time on device_health (tenant_id, device_id, ts);

create table command_replies (
    tenant_id    text not null,
    person_id    uuid,
    device_id    text not null,
    msg_id       text not null,
    ts           timestamptz not null,
    received_at  timestamptz not null,
    command_id   text not null,
    ok           boolean not null,
    detail       text
) partition by range (ts);
create unique index command_replies_dedup on command_replies (device_id, msg_id, ts);
create index command_replies_command on command_replies (device_id, command_id);

-- Refused messages, with the reason. Payload is size-capped by the gateway.
create table quarantine (
    id            bigint generated always as identity primary key,
    received_at   timestamptz not null,
    topic         text not null,
    device_id     text,
    tenant_id     text,
    reason        text not null,
    detail        text not null,
    payload       bytea not null,
    payload_size  integer not null
);
create index quarantine_received on quarantine (received_at);
create index quarantine_tenant on quarantine (tenant_id, received_at);

-- Latest known state per device, upserted once per batch from the gateway's memory.
create table device_state (
    device_id        text primary key references devices(id),
    tenant_id        text not null,
    last_seen        timestamptz not null,
    last_ts          timestamptz,
    battery_percent  smallint,
    rssi_dbm         smallint,
    firmware         text,
    online           boolean
);

-- Tenant-filtered read surface for the API role.
create view api_readings with (security_barrier) as
    select * from readings where tenant_id = current_setting('wg.tenant_id', true);
create view api_positions with (security_barrier) as
    select * from positions where tenant_id = current_setting('wg.tenant_id', true);
create view api_lock_events with (security_barrier) as
    select * from lock_events where tenant_id = current_setting('wg.tenant_id', true);
create view api_device_alarms with (security_barrier) as
    select * from device_alarms where tenant_id = current_setting('wg.tenant_id', true);
create view api_device_health with (security_barrier) as
    select * from device_health where tenant_id = current_setting('wg.tenant_id', true);
create view api_device_state with (security_barrier) as
    select * from device_state where tenant_id = current_setting('wg.tenant_id', true);
create view api_quarantine with (security_barrier) as
    select id, received_at, topic, device_id, tenant_id, reason, detail, payload_size
    from quarantine where tenant_id = current_setting('wg.tenant_id', true);

grant select on api_readings, api_positions, api_lock_events, api_device_alarms,
    api_device_health, api_device_state, api_quarantine to wg_api;
