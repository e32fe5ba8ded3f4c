"""The full export of one tenant (issue #19.6, docs/export.md): what is in it, and how a
value is written and read back. Pure, no I/O.

:data:`TABLES` is the one list of what a tenant owns: table, columns in file order, the
order of rows and whose rows they are (:class:`Owner`). The export, the restore, the JSON
Schemas and the test that no tenant-owned table is forgotten all read it. A table that is
deliberately left out is in :data:`EXCLUDED`, with the reason. Adding a table is one
entry here (and, for a new kind of owner, its filter in ``export_queries.OWNER_FILTERS``).

Files are CSV (RFC 4180, UTF-8, header row, CRLF line ends). An empty unquoted cell is
null; an empty string is written ``""``. Timestamps are ISO 8601 in UTC (``Z``), dates
``YYYY-MM-DD``, times ``HH:MM:SS``, booleans ``true``/``false``, JSON and arrays are JSON
text in the cell, bytes are lowercase hex.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

import orjson

_F32 = struct.Struct("<f")
FORMAT = "welfare-gateway-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FHIR_DIR = "fhir"
#: Observations per FHIR collection Bundle file
FHIR_BUNDLE_SIZE = 5000


class Kind(StrEnum):
    """A column's type in the files (and in its JSON Schema)."""

    TEXT = "text"
    UUID = "uuid"
    INTEGER = "integer"
    NUMBER = "number"
    REAL = "real"  # single precision: written as the shortest text that reads back to it
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    DATE = "date"
    TIME = "time"
    JSON = "json"
    TEXT_ARRAY = "text[]"
    INTEGER_ARRAY = "integer[]"
    BYTES = "bytes"


class Owner(StrEnum):
    """Whose rows a table's are (the filter is in ``export_queries.OWNER_FILTERS``)."""

    TENANT_ID = "tenant_id"  # tenant_id = the tenant
    TENANT_ROW = "tenant_row"  # the tenant's own row of tenants
    MODELS_IN_USE = "models_in_use"  # catalogue rows the tenant's devices refer to
    REGION_ID = "region_id"  # a region's own rows (payer rules)
    OWNER_TENANT = "owner_tenant"  # access log: reads of the tenant's residents' data
    MOVE_PARTY = "move_party"  # a move from or to the tenant (both municipalities')
    AGREEMENT_PARTY = "agreement_party"  # a stay agreement the tenant is a party to


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    description: str
    nullable: bool = False
    #: the stored columns this one is made from, when not the column itself (the personal
    #: identity number: stored encrypted, exported in clear; see docs/export.md)
    stored: tuple[str, ...] = ()
    #: names a row of this table that may be another tenant's (not in the export): a
    #: restore keeps the reference only if that row is in the database, else null
    elsewhere: str | None = None


@dataclass(frozen=True)
class ExportTable:
    name: str  # the table, and the file <name>.csv
    description: str
    columns: tuple[Column, ...]
    order_by: tuple[str, ...]
    owner: Owner = Owner.TENANT_ID
    #: what the API role reads it through, when not the table (a tenant-filtered view)
    source: str | None = None
    #: identity column whose sequence a restore moves past the loaded rows
    identity: str | None = None
    #: time-partitioned by this column (a restore makes the partitions its rows need)
    partitioned_by: str | None = None
    #: reference data, not the tenant's own: loaded only where not present already
    reference: bool = False
    #: why a restore does not load it (None: it does); the file is in the export all the same
    not_restored: str | None = None

    @property
    def file(self) -> str:
        return f"{self.name}.csv"

    @property
    def schema_file(self) -> str:
        return f"{self.name}.schema.json"

    @property
    def read_from(self) -> str:
        return self.source or self.name

    def stored_columns(self) -> list[str]:
        """The columns to select, in file order (a derived column: its stored ones)."""
        return [s for c in self.columns for s in (c.stored or (c.name,))]


def _c(name: str, kind: Kind, description: str, nullable: bool = False) -> Column:
    return Column(name, kind, description, nullable)


def _n(name: str, kind: Kind, description: str) -> Column:
    return Column(name, kind, description, nullable=True)


T, U, INT, N, B = Kind.TEXT, Kind.UUID, Kind.INTEGER, Kind.NUMBER, Kind.BOOLEAN
TS, D, J = Kind.TIMESTAMP, Kind.DATE, Kind.JSON

TENANT = _c("tenant_id", T, "The tenant (huvudman) the row belongs to.")
PERSON = _c("person_id", U, "The resident (persons.id).")
DEVICE = _c("device_id", T, "The device (devices.id).")
MSG = _c("msg_id", T, "The device's message id (with device_id and ts: the message).")
DEVICE_TS = _c("ts", TS, "The device's own time of the message.")
RECEIVED = _c("received_at", TS, "When the gateway received the message.")
SERIES = (TENANT, PERSON, DEVICE, MSG, DEVICE_TS, RECEIVED)
#: a shared device's door events and own alarms are the unit's: no person
SHARED_SERIES = (
    TENANT,
    _n("person_id", U, "The resident (null: the unit's)."),
    *SERIES[2:],
)
SERIES_ORDER = ("person_id", "ts", "device_id", "msg_id")

#: why moves and stays are exported but not restored
PARTIES = (
    "they bind another municipality, which is not in the restored database; the two"
    " municipalities agree them again in the new installation"
)

TABLES: tuple[ExportTable, ...] = (
    ExportTable(
        "tenants",
        "The tenant itself.",
        (
            _c("id", T, "Tenant id."),
            _c("name", T, "Name of the municipality or region."),
            _c("kind", T, "municipality or region."),
            _c("org_number", T, "Organisation number (NNNNNN-NNNN)."),
            _c("created_at", TS, "When the tenant was created."),
            _n("region_id", T, "The region a municipality belongs to (a tenant id)."),
        ),
        ("id",),
        Owner.TENANT_ROW,
    ),
    ExportTable(
        "device_models",
        "The platform's device models the tenant's devices are of (reference data).",
        (
            _c("id", T, "Model id."),
            _c("vendor", T, "Manufacturer."),
            _c("model", T, "Model name."),
            _c("device_type", T, "gps_alarm, scale, blood_pressure_monitor or door_lock."),
            _c("heartbeat_interval_s", INT, "Seconds between heartbeats the device promises."),
        ),
        ("id",),
        Owner.MODELS_IN_USE,
        reference=True,
    ),
    ExportTable(
        "persons",
        "Residents (brukare).",
        (
            _c("id", U, "Person id."),
            TENANT,
            _c("ref", T, "Pseudonymous reference shown to staff and sent with alarms."),
            Column(
                "personal_identity_number",
                T,
                "Personal identity number (personnummer,"
                " YYYYMMDDNNNN), decrypted for the export: SENSITIVE.",
                nullable=True,
                stored=("pin_ciphertext", "pin_key_id"),
            ),
            _c("care_notes", T, "Free-text care notes."),
            _c("created_at", TS, "When the person was registered."),
        ),
        ("id",),
    ),
    ExportTable(
        "devices",
        "Devices of the tenant.",
        (
            _c("id", T, "Device id (MQTT topic, broker user name)."),
            TENANT,
            _c("model_id", T, "device_models.id."),
            _n("serial", T, "Serial number."),
            _c("status", T, "in_stock, active, returned or retired."),
            _c("registered_at", TS, "When the device was registered."),
            _c("status_changed_at", TS, "When the status last changed."),
        ),
        ("id",),
    ),
    ExportTable(
        "units",
        "Residential units and wards (holders of shared devices).",
        (
            _c("id", U, "Unit id."),
            TENANT,
            _c("name", T, "Name."),
            _c("kind", T, "residential_unit or ward."),
            _c("created_at", TS, "When created."),
        ),
        ("id",),
    ),
    ExportTable(
        "assignments",
        "Which resident (or unit) held which device when.",
        (
            _c("id", INT, "Assignment id."),
            TENANT,
            DEVICE,
            _n("person_id", U, "The resident holding it (or unit_id)."),
            _c("valid_from", TS, "Held from."),
            _n("valid_to", TS, "Held until (exclusive); null: still held."),
            Column(
                "continues_id",
                INT,
                "The assignment (of the municipality moved from) this one continues after a move.",
                nullable=True,
                elsewhere="assignments",
            ),
            _n("unit_id", U, "The unit holding it (or person_id)."),
        ),
        ("id",),
        identity="id",
    ),
    ExportTable(
        "resident_tags",
        "Residents' tags, read by shared devices, over time.",
        (
            _c("id", INT, "Row id."),
            TENANT,
            _c("tag", T, "The tag (RFID/NFC id or code)."),
            PERSON,
            _c("valid_from", TS, "From."),
            _n("valid_to", TS, "Until (exclusive)."),
            _c("created_by", T, "Who registered it."),
            _c("created_at", TS, "When registered."),
        ),
        ("id",),
        identity="id",
    ),
    ExportTable(
        "housing_periods",
        "A resident's housing form from a date.",
        (
            _c("id", INT, "Row id."),
            TENANT,
            PERSON,
            _c("form", T, "own_home, residential_care or short_term_stay."),
            _c("valid_from", D, "Local date (Europe/Stockholm) the form holds from."),
            _c("recorded_at", TS, "When it was recorded."),
            _c("recorded_by", T, "Who recorded it."),
        ),
        ("id",),
        identity="id",
    ),
    ExportTable(
        "consents",
        "Residents' consents to disclosure to other organisations.",
        (
            _c("id", U, "Consent id."),
            TENANT,
            PERSON,
            _c("recipient_org", T, "Organisation number of the recipient."),
            _c("purpose", T, "Purpose of the disclosure."),
            _c("categories", Kind.TEXT_ARRAY, "Data categories covered."),
            _c("valid_from", TS, "Valid from."),
            _n("valid_to", TS, "Valid until (exclusive)."),
            _c("legal_basis", T, "Legal basis."),
            _c("recorded_by", T, "Who recorded it."),
            _c("recorded_at", TS, "When it was recorded."),
            _n("withdrawn_at", TS, "When it was withdrawn."),
            _n("withdrawn_by", T, "Who withdrew it."),
        ),
        ("id",),
    ),
    ExportTable(
        "safe_zones",
        "Geofences per resident.",
        (
            _c("id", U, "Zone id."),
            TENANT,
            PERSON,
            _c("name", T, "Name."),
            _c("shape", J, "The zone's shape (circle or polygon)."),
            _c("windows", J, "Time windows the zone applies in (empty: always)."),
            _c("timezone", T, "Time zone of the windows."),
            _c("created_at", TS, "When it was created."),
        ),
        ("id",),
    ),
    ExportTable(
        "person_limits",
        "Vital-sign alarm limits per resident.",
        (
            PERSON,
            TENANT,
            _n("blood_pressure", J, "Blood-pressure limits."),
            _n("weight_gain", J, "Weight-gain limit."),
            _c("updated_at", TS, "When last changed."),
        ),
        ("person_id",),
    ),
    ExportTable(
        "staff_members",
        "Staff with keys to residents' door locks.",
        (
            _c("id", U, "Staff member id."),
            TENANT,
            _c("subject", T, "Login subject (e.g. HSA-id)."),
            _c("display_name", T, "Name shown."),
            _c("teams", Kind.TEXT_ARRAY, "Teams the staff member belongs to."),
            _c("active", B, "Active."),
            _c("created_at", TS, "When added."),
        ),
        ("id",),
    ),
    ExportTable(
        "staff_keys",
        "Staff members' lock keys.",
        (
            _c("key_id", T, "The key id a lock reports."),
            TENANT,
            _c("staff_id", U, "staff_members.id."),
            _c("valid_from", TS, "Valid from."),
            _n("valid_to", TS, "Valid until."),
            _n("revoked_at", TS, "When revoked."),
            _n("revoked_by", T, "Who revoked it."),
            _c("created_at", TS, "When issued."),
        ),
        ("key_id",),
    ),
    ExportTable(
        "visits",
        "Planned home-care visits (lock access).",
        (
            _c("id", U, "Visit id."),
            TENANT,
            PERSON,
            _n("staff_id", U, "The staff member visiting (or team)."),
            _n("team", T, "The team visiting (or staff_id)."),
            _c("starts_at", TS, "Start."),
            _c("ends_at", TS, "End."),
            _c("created_by", T, "Who planned it."),
            _c("created_at", TS, "When planned."),
        ),
        ("id",),
    ),
    ExportTable(
        "visit_slots",
        "Recurring weekly visits in local time.",
        (
            _c("id", U, "Slot id."),
            TENANT,
            PERSON,
            _n("staff_id", U, "The staff member visiting (or team)."),
            _n("team", T, "The team visiting (or staff_id)."),
            _c("weekdays", Kind.INTEGER_ARRAY, "Weekdays, 0 = Monday."),
            _c("start_time", Kind.TIME, "Local start time."),
            _c("end_time", Kind.TIME, "Local end time."),
            _c("timezone", T, "Time zone."),
            _n("first_day", D, "First day."),
            _n("last_day", D, "Last day."),
            _c("created_by", T, "Who planned it."),
            _c("created_at", TS, "When planned."),
        ),
        ("id",),
    ),
    ExportTable(
        "readings",
        "Weight and blood-pressure readings.",
        (
            *SERIES,
            _c("kind", T, "weight or blood_pressure."),
            _n("weight_kg", Kind.REAL, "Weight, kg."),
            _n("systolic_mmhg", INT, "Systolic pressure, mmHg."),
            _n("diastolic_mmhg", INT, "Diastolic pressure, mmHg."),
            _n("pulse_bpm", INT, "Pulse, beats per minute."),
            _n("unit_id", U, "The unit the device was the unit's at the time, if any."),
        ),
        ("person_id", "kind", "ts", "device_id", "msg_id"),
        source="api_readings",
        partitioned_by="ts",
    ),
    ExportTable(
        "positions",
        "GPS positions.",
        (
            *SERIES,
            _c("lat", N, "Latitude, WGS 84."),
            _c("lon", N, "Longitude, WGS 84."),
            _c("accuracy_m", Kind.REAL, "Accuracy, metres."),
            _n("unit_id", U, "The unit the device was the unit's at the time, if any."),
        ),
        SERIES_ORDER,
        source="api_positions",
        partitioned_by="ts",
    ),
    ExportTable(
        "lock_events",
        "Door-lock events.",
        (
            *SHARED_SERIES,
            _c("action", T, "What the lock did (unlocked, locked, ...)."),
            _n("key_id", T, "The key used."),
            _c("method", T, "How (key, remote, manual, ...)."),
            _n("unit_id", U, "The unit the device was the unit's at the time, if any."),
        ),
        SERIES_ORDER,
        source="api_lock_events",
        partitioned_by="ts",
    ),
    ExportTable(
        "device_alarms",
        "Alarm messages as devices sent them.",
        (
            *SHARED_SERIES,
            _c("kind", T, "Alarm kind (button, fall, ...)."),
            _n("lat", N, "Latitude."),
            _n("lon", N, "Longitude."),
            _n("accuracy_m", Kind.REAL, "Accuracy, metres."),
            _n("unit_id", U, "The unit the device was the unit's at the time, if any."),
        ),
        SERIES_ORDER,
        source="api_device_alarms",
        partitioned_by="ts",
    ),
    ExportTable(
        "device_health",
        "Heartbeats, battery and status messages.",
        (
            TENANT,
            _n("person_id", U, "The holder at the time, if any."),
            DEVICE,
            _n("msg_id", T, "Message id (null: a last-will status)."),
            DEVICE_TS,
            RECEIVED,
            _c("kind", T, "heartbeat, battery, battery_low or status."),
            _n("battery_percent", INT, "Battery, %."),
            _n("rssi_dbm", INT, "Signal, dBm."),
            _n("state", T, "Status state."),
            _n("firmware", T, "Firmware version."),
            _n("unit_id", U, "The unit the device was the unit's at the time, if any."),
        ),
        ("device_id", "ts", "msg_id", "received_at", "kind"),
        source="api_device_health",
        partitioned_by="ts",
    ),
    ExportTable(
        "command_replies",
        "Devices' replies to remote commands.",
        (
            TENANT,
            _n("person_id", U, "The holder at the time, if any."),
            DEVICE,
            MSG,
            DEVICE_TS,
            RECEIVED,
            _c("command_id", T, "The command replied to."),
            _c("ok", B, "Whether the device carried it out."),
            _n("detail", T, "The device's detail."),
            _n("unit_id", U, "The unit the device was the unit's at the time, if any."),
        ),
        ("device_id", "ts", "msg_id"),
        source="api_command_replies",
        partitioned_by="ts",
    ),
    ExportTable(
        "device_state",
        "Latest known state per device.",
        (
            DEVICE,
            TENANT,
            _c("last_seen", TS, "Last message received."),
            _n("last_ts", TS, "Device time of the last message."),
            _n("battery_percent", INT, "Battery, %."),
            _n("rssi_dbm", INT, "Signal, dBm."),
            _n("firmware", T, "Firmware version."),
            _n("online", B, "Online per its last status."),
        ),
        ("device_id",),
        source="api_device_state",
    ),
    ExportTable(
        "alarms",
        "Alarms (current state of each).",
        (
            _c("id", U, "Alarm id."),
            TENANT,
            _c("kind", T, "Alarm kind."),
            _c("severity", T, "critical, high, medium or low."),
            DEVICE,
            _n("person_id", U, "The resident."),
            _n("person_ref", T, "The resident's reference at the time."),
            _c("subject", T, "What the alarm is about (one open alarm per subject and kind)."),
            _c("state", T, "raised, acknowledged or resolved."),
            _c("raised_at", TS, "Raised."),
            _c("last_at", TS, "Last occurrence."),
            _c("occurrences", INT, "Occurrences."),
            _n("condition", B, "Whether the condition still holds."),
            _n("cleared_at", TS, "When the condition cleared."),
            _n("acknowledged_by", T, "Who acknowledged."),
            _n("acknowledged_at", TS, "When acknowledged."),
            _n("resolved_by", T, "Who resolved."),
            _n("resolved_at", TS, "When resolved."),
            _n("outcome", T, "Outcome given at resolution."),
            _n("lat", N, "Latitude."),
            _n("lon", N, "Longitude."),
            _n("accuracy_m", Kind.REAL, "Accuracy, metres."),
            _c("escalation_level", INT, "Escalation level reached."),
            _n("escalated_at", TS, "When last escalated."),
            _c("detail", J, "Details of the alarm."),
            _c("version", INT, "Version (transitions so far)."),
        ),
        ("raised_at", "id"),
    ),
    ExportTable(
        "alarm_events",
        "Every transition of every alarm (its history).",
        (
            _c("id", U, "Event id."),
            _c("alarm_id", U, "alarms.id."),
            TENANT,
            _c("seq", INT, "Sequence number within the alarm."),
            _c("type", T, "raised, occurred, acknowledged, escalated, cleared, resolved, ..."),
            _c("at", TS, "When."),
            _n("actor", T, "Who (staff), if anyone."),
            _c("snapshot", J, "The alarm as it was after the transition."),
        ),
        ("alarm_id", "seq"),
    ),
    ExportTable(
        "payer_changes",
        "Payer changes emitted for the tenant's assignments.",
        (
            _c("assignment_id", INT, "assignments.id."),
            _c("effective_date", D, "Local date the change takes effect."),
            TENANT,
            _n("region_id", T, "The region named (a tenant id)."),
            DEVICE,
            PERSON,
            _c("from_form", T, "Housing form before."),
            _c("to_form", T, "Housing form after."),
            _c("from_payer", T, "region or municipality."),
            _c("to_payer", T, "region or municipality."),
            _c("recorded_at", TS, "When the housing form was recorded."),
            _c("late", B, "Recorded after it took effect."),
            _c("emitted_at", TS, "When emitted."),
            _c("emitted_by", T, "Which worker emitted it."),
        ),
        ("assignment_id", "effective_date"),
    ),
    ExportTable(
        "payer_rules",
        "A region's payer per housing form (regions only).",
        (
            _c("region_id", T, "The region (a tenant id)."),
            _c("form", T, "Housing form."),
            _c("payer", T, "region or municipality."),
            _c("changed_at", TS, "When last changed."),
            _c("changed_by", T, "Who changed it."),
        ),
        ("region_id", "form"),
        Owner.REGION_ID,
    ),
    ExportTable(
        "person_moves",
        "Residents' moves to or from another municipality.",
        (
            _c("id", INT, "Move id."),
            _c("from_tenant", T, "The municipality moved from."),
            _c("person_id", U, "The resident, in the municipality moved from."),
            _c("to_tenant", T, "The municipality moved to."),
            _c("effective_at", TS, "When the move takes effect."),
            _c("device_ids", Kind.TEXT_ARRAY, "Devices moving with the resident."),
            _c("status", T, "proposed, accepted, applied or cancelled."),
            _c("proposed_at", TS, "When proposed."),
            _c("proposed_by", T, "Who proposed it."),
            _n("accepted_at", TS, "When accepted."),
            _n("accepted_by", T, "Who accepted it."),
            _n("to_person_id", U, "The resident, in the municipality moved to."),
            _n("applied_at", TS, "When applied."),
            _n("cancelled_at", TS, "When cancelled."),
            _n("cancelled_by", T, "Who cancelled it."),
        ),
        ("id",),
        Owner.MOVE_PARTY,
        not_restored=PARTIES,
    ),
    ExportTable(
        "stay_agreements",
        "Agreements on stays with another municipality.",
        (
            _c("id", U, "Agreement id."),
            _c("home_tenant", T, "The residents' home municipality."),
            _c("host_tenant", T, "The municipality hosting the stays."),
            _c("proposed_at", TS, "When proposed."),
            _c("proposed_by", T, "Who proposed it."),
            _n("accepted_at", TS, "When accepted."),
            _n("accepted_by", T, "Who accepted it."),
            _n("ended_at", TS, "When ended."),
            _n("ended_by", T, "Who ended it."),
            _n("ended_tenant", T, "Which side ended it."),
        ),
        ("id",),
        Owner.AGREEMENT_PARTY,
        not_restored=PARTIES,
    ),
    ExportTable(
        "stays",
        "The tenant's residents' stays in another municipality.",
        (
            _c("id", U, "Stay id."),
            TENANT,
            PERSON,
            _c("host_tenant", T, "The hosting municipality."),
            _c("agreement_id", U, "stay_agreements.id."),
            _c("starts_at", TS, "Start."),
            _c("ends_at", TS, "End."),
            _c("recorded_at", TS, "When recorded."),
            _c("recorded_by", T, "Who recorded it."),
            _n("cut_at", TS, "When cut short."),
            _n("cut_by", T, "Who cut it short."),
        ),
        ("id",),
        not_restored=PARTIES,
    ),
    # digital supervision and passive alarms (issue #20, docs/supervision.md)
    ExportTable(
        "supervision_decisions",
        "A person's decisions for each supervision service, with consent.",
        (
            _c("id", U, "Decision id."),
            TENANT,
            PERSON,
            _c("service", T, "gps_positioning, night_supervision or passive_alarms."),
            _c("valid_from", TS, "Valid from."),
            _n("valid_to", TS, "Valid to (null: until withdrawn)."),
            _c("person_consent_at", TS, "When the person consented."),
            _c("has_cohabitant", B, "The person lives with someone."),
            _n("cohabitant_consent_at", TS, "When the cohabitant consented."),
            _c("recorded_at", TS, "When recorded."),
            _c("recorded_by", T, "Who recorded it."),
            _n("withdrawn_at", TS, "When withdrawn."),
            _n("withdrawn_by", T, "Who recorded the withdrawal."),
            _n("withdrawn_reason", T, "Why withdrawn."),
        ),
        ("id",),
    ),
    ExportTable(
        "supervision_plans",
        "Night supervision plans: agreed local check times, what counts as seen, retry, team.",
        (
            _c("id", U, "Plan id."),
            TENANT,
            PERSON,
            _c("check_times", Kind.TEXT_ARRAY, "Local check times, HH:MM[:SS]."),
            _c("timezone", T, "The time zone of the check times."),
            _c("seen", T, "in_bed, motion or door_closed."),
            _n("motion_minutes", INT, "Motion within this many minutes (seen = motion)."),
            _c("retry_after_s", INT, "Retry interval, seconds."),
            _c("team", T, "Who acts."),
            _c("created_at", TS, "When created."),
            _c("created_by", T, "Who created it."),
            _n("ended_at", TS, "When ended."),
            _n("ended_by", T, "Who ended it."),
        ),
        ("id",),
    ),
    ExportTable(
        "passive_rules",
        "Passive-alarm rules per person and local time window.",
        (
            _c("id", U, "Rule id."),
            TENANT,
            PERSON,
            _c("kind", T, "door_opened_at_night, out_of_bed, no_movement or floor_mat."),
            _c("window_start", Kind.TIME, "Local window start."),
            _c("window_end", Kind.TIME, "Local window end."),
            _n("minutes", INT, "Minutes (out_of_bed, no_movement)."),
            _c("timezone", T, "The window's time zone."),
            _c("created_at", TS, "When created."),
            _c("created_by", T, "Who created it."),
            _n("ended_at", TS, "When ended."),
            _n("ended_by", T, "Who ended it."),
        ),
        ("id",),
    ),
    ExportTable(
        "supervision_checks",
        "Every planned supervision check and its result (states only).",
        (
            _c("id", INT, "Check id."),
            TENANT,
            PERSON,
            _c("plan_id", U, "supervision_plans.id."),
            _c("planned_at", TS, "The agreed check instant."),
            _c("local_time", T, "The agreed local time."),
            _c("attempt", INT, "1 at the agreed time, 2 the retry."),
            _c("result", T, "ok, retried, not_ok or failed."),
            _c("evaluated_at", TS, "When evaluated."),
            _c("seen", J, "What the sensors showed (states and times)."),
            _n("reason", T, "Why failed."),
            _n("alarm_id", U, "The alarm it raised."),
        ),
        ("id",),
        identity="id",
    ),
    ExportTable(
        "sensor_events",
        "Passive sensors' states (door, motion, bed, floor mat).",
        (
            *SHARED_SERIES,
            _c("kind", T, "door, motion, bed or floor_mat."),
            _c("state", T, "open/closed (door), true/false (the others)."),
            _n("unit_id", U, "The unit whose shared sensor it was."),
        ),
        SERIES_ORDER,
        source="api_sensor_events",
    ),
    # the follow-up report (issue #21.1, docs/report.md)
    ExportTable(
        "report_targets",
        "The municipality's own answering target for the follow-up report.",
        (
            TENANT,
            _c("ack_within_s", INT, "Acknowledged within this many seconds..."),
            _c("ack_share", N, "...in this share of the alarms (0 to 1)."),
            _c("changed_at", TS, "When last changed."),
            _c("changed_by", T, "Who changed it."),
        ),
        ("tenant_id",),
    ),
    ExportTable(
        "report_device_days",
        "Each device's use per local day (kept after the raw rows' retention).",
        (
            TENANT,
            _c("day", D, "Local day (Europe/Stockholm)."),
            DEVICE,
            _c("positions", INT, "Positions that day."),
            _c("device_alarms", INT, "Device alarms that day."),
            _c("readings", INT, "Readings that day."),
            _c("lock_events", INT, "Lock events that day."),
            _c("health", INT, "Health messages that day."),
        ),
        ("day", "device_id"),
    ),
    # the access log's review (issue #21.3, docs/log-review.md)
    ExportTable(
        "log_review_settings",
        "What the access log's review flags, per tenant.",
        (
            TENANT,
            _c("many_residents", INT, "Residents read by one person within the window."),
            _c("many_window_minutes", INT, "The window, minutes."),
            _c("grace_minutes", INT, "Grace around working hours, minutes."),
            _c("consent_near_end_hours", INT, "Reads this close to a consent's end."),
            _c("work_weekdays", Kind.INTEGER_ARRAY, "Working weekdays, 0 = Monday."),
            _c("work_start", Kind.TIME, "Working hours start (local)."),
            _c("work_end", Kind.TIME, "Working hours end (local)."),
            _c("changed_at", TS, "When last changed."),
            _c("changed_by", T, "Who changed it."),
        ),
        ("tenant_id",),
    ),
    ExportTable(
        "staff_working_hours",
        "Staff members' working hours (for the access log's review).",
        (
            _c("staff_id", U, "staff_members.id."),
            TENANT,
            _c("weekdays", Kind.INTEGER_ARRAY, "Weekdays, 0 = Monday."),
            _c("start_time", Kind.TIME, "Start (local)."),
            _c("end_time", Kind.TIME, "End (local)."),
            _c("changed_at", TS, "When last changed."),
            _c("changed_by", T, "Who changed it."),
        ),
        ("staff_id",),
    ),
    ExportTable(
        "log_review_marks",
        "Flags of the access log's review marked as reviewed, with the comment.",
        (
            _c("id", INT, "Row id."),
            TENANT,
            _c("flag_key", T, "The flag reviewed."),
            _c("rule", T, "The rule that flagged it."),
            _c("reviewed_at", TS, "When reviewed."),
            _c("reviewed_by", T, "Who reviewed it."),
            _c("comment", T, "The reviewer's comment."),
        ),
        ("id",),
        identity="id",
    ),
    ExportTable(
        "access_log",
        "Every logged read of the tenant's residents' data.",
        (
            _c("id", INT, "Row id (in the exporting installation's log)."),
            _c("at", TS, "When."),
            _c("actor", T, "Who read."),
            _n("actor_org", T, "The reader's organisation number."),
            _c("actor_role", T, "The reader's role."),
            _c("actor_tenant", T, "The reader's tenant."),
            _n("owner_tenant", T, "The tenant whose data it was."),
            _n("person_id", U, "The resident."),
            _c("categories", Kind.TEXT_ARRAY, "Data categories."),
            _n("purpose", T, "Stated purpose."),
            _c("outcome", T, "allowed or denied."),
            _c("reason", T, "Why."),
            _c("request", T, "The request."),
            _c("prev_hash", Kind.BYTES, "Hash chain in the exporting installation: previous."),
            _c("hash", Kind.BYTES, "Hash chain in the exporting installation: this row."),
        ),
        ("id",),
        Owner.OWNER_TENANT,
        identity="id",
    ),
)

#: Tables deliberately not exported, each with the reason (docs/export.md).
EXCLUDED: dict[str, str] = {
    "quarantine": "refused device messages: operational evidence kept 30 days, reviewed "
    "in the API before the change; released messages are in the time series",
    "quarantine_releases": "which quarantined messages were released (with quarantine); "
    "the released rows themselves are in the time series and the access log",
    "consents_rejected": "consents naming another tenant's resident, set aside by review "
    "#17.4 as evidence for the data-protection officer; no application role reads them",
    "access_log_seals": "the platform's HMAC seals of the whole access log, over every "
    "tenant's rows; meaningless for one tenant's part of the log",
    "partition_plan": "the installation's retention settings, not data",
    "report_days_done": "the report rollup's bookkeeping (which days are final), not "
    "readable by the API role; a restore marks the days of report_device_days rolled up",
    "schema_migrations": "the installation's schema version (the manifest names it)",
}

BY_NAME: dict[str, ExportTable] = {t.name: t for t in TABLES}


# --- values -------------------------------------------------------------------------


def _utc(value: datetime) -> str:
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def _real(value: float) -> str:
    """A single-precision value (PostgreSQL ``real``) as the shortest decimal that reads
    back to it: 81.9, not 81.9000015258789."""
    for digits in (6, 7, 8, 9):
        text = f"{value:.{digits}g}"
        if _F32.unpack(_F32.pack(float(text)))[0] == value:
            return text
    return repr(value)


def cell(value: Any, kind: Kind) -> str | None:
    """A stored value as the text of its cell; None for null."""
    if value is None:
        return None
    if kind is Kind.TIMESTAMP:
        return _utc(value)
    if kind is Kind.REAL:
        return _real(float(value))
    if kind is Kind.BOOLEAN:
        return "true" if value else "false"
    if kind is Kind.JSON:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if kind in (Kind.TEXT_ARRAY, Kind.INTEGER_ARRAY):
        return json.dumps(list(value), ensure_ascii=False, separators=(",", ":"))
    if kind is Kind.BYTES:
        return bytes(value).hex()
    if kind is Kind.NUMBER:
        return repr(float(value)) if not isinstance(value, Decimal) else str(value)
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


class CellError(ValueError):
    """A cell that does not read as its column's type."""


def parse(text: str | None, kind: Kind) -> Any:
    """A cell's text back to a value (the inverse of :func:`cell`)."""
    if text is None:
        return None
    try:
        if kind in (Kind.TEXT,):
            return text
        if kind is Kind.UUID:
            return UUID(text)
        if kind is Kind.INTEGER:
            return int(text)
        if kind in (Kind.NUMBER, Kind.REAL):
            return float(text)
        if kind is Kind.BOOLEAN:
            if text not in ("true", "false"):
                raise ValueError("not true or false")
            return text == "true"
        if kind is Kind.TIMESTAMP:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if value.tzinfo is None:
                raise ValueError("no time zone")
            return value
        if kind is Kind.DATE:
            return date.fromisoformat(text)
        if kind is Kind.TIME:
            return time.fromisoformat(text)
        if kind is Kind.BYTES:
            return bytes.fromhex(text)
        value = json.loads(text)
        if kind is Kind.TEXT_ARRAY and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise ValueError("not a JSON array of strings")
        if kind is Kind.INTEGER_ARRAY and not (
            isinstance(value, list) and all(isinstance(v, int) for v in value)
        ):
            raise ValueError("not a JSON array of integers")
        return value
    except (ValueError, binascii.Error) as exc:
        raise CellError(f"not a {kind.value}: {exc}") from None


# --- CSV (RFC 4180) -------------------------------------------------------------------

_SPECIAL = frozenset(',"\r\n')


def _field(text: str | None) -> str:
    if text is None:
        return ""
    if text == "" or not _SPECIAL.isdisjoint(text) or text[0] == " " or text[-1] == " ":
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(cells: Iterable[str | None]) -> str:
    return ",".join(_field(c) for c in cells) + "\r\n"


#: kinds whose text never needs quoting in CSV
_PLAIN = frozenset(
    {Kind.UUID, Kind.INTEGER, Kind.NUMBER, Kind.REAL, Kind.BOOLEAN, Kind.TIMESTAMP,
     Kind.DATE, Kind.TIME}
)  # fmt: skip  (bytes: empty bytes are an empty string, quoted)  # fmt: skip


def _fast_ts(value: datetime) -> str:
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat() + "Z"


def _quoted(text: str) -> str:
    if (
        not text or '"' in text or "," in text or "\n" in text or "\r" in text
        or text[0] == " " or text[-1] == " "
    ):  # fmt: skip
        return '"' + text.replace('"', '""') + '"'
    return text


def _cell_step(kind: Kind, *, quote: bool) -> Callable[[Any], str]:
    def step(value: Any) -> str:
        text = cell(value, kind) or ""
        return _quoted(text) if quote else text

    return step


def line_writer(kinds: Sequence[Kind]) -> Callable[[Sequence[Any]], str]:
    """Stored values (one per kind) -> their CSV line; the same text as
    ``csv_line(cell(v, k) ...)``, made faster for the export's millions of rows."""
    steps: list[Callable[[Any], str]] = []
    for kind in kinds:
        if kind is Kind.TEXT:
            steps.append(_quoted)
        elif kind is Kind.TIMESTAMP:
            steps.append(_fast_ts)
        elif kind in (Kind.UUID, Kind.INTEGER, Kind.DATE, Kind.TIME):
            steps.append(str)
        else:
            steps.append(_cell_step(kind, quote=kind not in _PLAIN))

    def line(row: Sequence[Any]) -> str:
        return ",".join(
            "" if v is None else f(v) for v, f in zip(row, steps, strict=True)
        ) + "\r\n"  # fmt: skip

    return line


def header(table: ExportTable) -> str:
    return csv_line(c.name for c in table.columns)


def read_csv(chunks: Iterable[str]) -> Iterator[tuple[int, list[str | None]]]:
    """Records of RFC 4180 text, each with its first line number; an unquoted empty field
    is None, a quoted one ``""``. ``chunks`` may split anywhere."""
    record: list[str | None] = []
    buf: list[str] = []
    quoted = False  # the current field was quoted
    in_quotes = False
    pending_quote = False  # saw a quote inside quotes: an escaped one or the end
    line = 1
    start = 1
    started = False  # anything of the current record seen
    for chunk in chunks:
        for ch in chunk:
            if in_quotes:
                if pending_quote:
                    pending_quote = False
                    if ch == '"':
                        buf.append('"')
                        continue
                    in_quotes = False  # fall through: ch after the closing quote
                elif ch == '"':
                    pending_quote = True
                    continue
                else:
                    if ch == "\n":
                        line += 1
                    buf.append(ch)
                    continue
            if ch == '"' and not buf and not quoted:
                in_quotes = quoted = started = True
            elif ch == ",":
                record.append("".join(buf) if (buf or quoted) else None)
                buf, quoted, started = [], False, True
            elif ch == "\n":
                record.append("".join(buf) if (buf or quoted) else None)
                yield start, record
                record, buf, quoted, started = [], [], False, False
                line += 1
                start = line
            elif ch == "\r":
                continue
            else:
                buf.append(ch)
                started = True
    if in_quotes and not pending_quote:
        raise CellError(f"line {start}: a quoted field is not closed")
    if started or buf or quoted:
        record.append("".join(buf) if (buf or quoted) else None)
        yield start, record


# --- JSON Schema --------------------------------------------------------------------

_SCHEMA_TYPES: dict[Kind, dict[str, Any]] = {
    Kind.TEXT: {"type": "string"},
    Kind.UUID: {"type": "string", "format": "uuid"},
    Kind.INTEGER: {"type": "integer"},
    Kind.NUMBER: {"type": "number"},
    Kind.REAL: {"type": "number"},
    Kind.BOOLEAN: {"type": "boolean"},
    Kind.TIMESTAMP: {"type": "string", "format": "date-time"},
    Kind.DATE: {"type": "string", "format": "date"},
    Kind.TIME: {"type": "string", "format": "time"},
    Kind.JSON: {},
    Kind.TEXT_ARRAY: {"type": "array", "items": {"type": "string"}},
    Kind.INTEGER_ARRAY: {"type": "array", "items": {"type": "integer"}},
    Kind.BYTES: {"type": "string", "pattern": "^([0-9a-f]{2})*$",
                 "contentEncoding": "base16"},
}  # fmt: skip


def json_schema(table: ExportTable) -> dict[str, Any]:
    """The JSON Schema of one row of ``table``'s CSV, read as an object (column -> value,
    typed as :func:`parse` reads the cell)."""
    properties: dict[str, Any] = {}
    for column in table.columns:
        prop = dict(_SCHEMA_TYPES[column.kind])
        if column.nullable and "type" in prop:
            prop["type"] = [prop["type"], "null"]
        prop["description"] = column.description
        prop["x-kind"] = column.kind.value
        properties[column.name] = prop
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:welfare-gateway:export:v{FORMAT_VERSION}:{table.name}",
        "title": table.name,
        "description": table.description + " One CSV row read as an object: "
        "an empty unquoted cell is null, JSON and arrays are JSON text in the cell, "
        "timestamps ISO 8601 UTC, bytes lowercase hex.",
        "type": "object",
        "properties": properties,
        "required": [c.name for c in table.columns],
        "additionalProperties": False,
        "x-csv-file": table.file,
        "x-column-order": [c.name for c in table.columns],
        "x-primary-order": list(table.order_by),
    }


def schema_bytes(table: ExportTable) -> bytes:
    return (json.dumps(json_schema(table), ensure_ascii=False, indent=2) + "\n").encode()


# --- manifest -----------------------------------------------------------------------


@dataclass
class FileEntry:
    """What the manifest says of one file: rows (CSV rows without the header, or
    Observations in a Bundle), bytes, and the SHA-256 of its content."""

    path: str
    rows: int | None = None
    size: int = 0
    sha256: str = ""
    digest: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.digest is None and not self.sha256:
            self.digest = hashlib.sha256()

    def add(self, data: bytes) -> None:
        self.size += len(data)
        self.digest.update(data)

    def close(self) -> None:
        self.sha256 = self.digest.hexdigest()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "bytes": self.size, "sha256": self.sha256}
        if self.rows is not None:
            out["rows"] = self.rows
        return out


def manifest(
    *, tenant: str, exported_at: datetime, schema_version: str, files: Sequence[FileEntry]
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tenant": tenant,
        "exported_at": _utc(exported_at),
        "schema_version": schema_version,
        "sensitive": "personal data; personal identity numbers in clear in persons.csv",
        "tables": [t.name for t in TABLES],
        "excluded": dict(EXCLUDED),
        "files": [f.to_json() for f in files],
    }


def manifest_bytes(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode()


class ManifestError(ValueError):
    """The manifest is missing, unreadable or not of this format."""


def read_manifest(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ManifestError(f"{MANIFEST} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ManifestError(f"{MANIFEST} is not a {FORMAT} manifest")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ManifestError(f"{MANIFEST}: format version {doc.get('format_version')!r};"
                            f" this version reads {FORMAT_VERSION}")  # fmt: skip
    files = doc.get("files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("sha256"), str)
        for f in files
    ):
        raise ManifestError(f"{MANIFEST}: no list of files with their checksums")
    for f in files:
        path = f["path"]
        if path.startswith("/") or ".." in path.split("/") or "\\" in path:
            raise ManifestError(f"{MANIFEST}: unsafe path {path!r}")
    return doc


def unlisted(paths: Iterable[str], doc: Mapping[str, Any]) -> list[str]:
    """Files present but not in the manifest (a restore refuses them: not checksummed)."""
    listed = {f["path"] for f in doc["files"]} | {MANIFEST}
    return sorted(p for p in paths if p not in listed)


def fhir_bundle_head(bundle_id: str, timestamp: datetime) -> bytes:
    """The start of a FHIR R4 ``collection`` Bundle; entries follow, then
    :data:`FHIR_BUNDLE_TAIL`."""
    head = json.dumps({"resourceType": "Bundle", "id": bundle_id, "type": "collection",
                       "timestamp": _utc(timestamp)})  # fmt: skip
    return (head[:-1] + ', "entry": [\n').encode()


FHIR_BUNDLE_TAIL = b"\n]}\n"


def fhir_entry(resource: Mapping[str, Any], first: bool) -> bytes:
    return (b"" if first else b",\n") + orjson.dumps({"resource": resource})
