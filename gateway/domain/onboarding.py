"""Bulk onboarding (issue #19.5): read one import file, judge each row, plan the changes.

Pure: bytes in, rows and errors out (``parse``); the registry's stored state in, a plan
out (``plan``). The adapter (``gateway/adapters/postgres/onboarding.py``) reads the state,
writes the plan in one transaction and asks ``Report`` to describe it. The formats are
described, with examples, in docs/onboarding.md:

- **CSV**: a header row, then one object per row; the column ``kind`` says which
  (``device_model``, ``person``, ``device``, ``assignment``), the other columns are the
  fields of the kinds the file holds. A cell of a column that is not a field of the row's
  kind stays empty. Comma or semicolon separated (Excel with Swedish settings writes
  semicolons), UTF-8 with or without a byte-order mark.
- **JSON**: an object of lists (``{"device_models": [...], "persons": [...],
  "devices": [...], "assignments": [...]}``), or one list of objects that each carry
  ``kind``.

Every error names the row (``line 7`` of a CSV file, counting the header as line 1;
``devices[3]`` or ``[12]`` in JSON, counting from 0) and the column or field. Error
messages never repeat a cell's value: the caller has the file, and an identity number or
another tenant's device id has no business in a report or a log.

Units (residential units and wards holding shared devices, issue #19.4, docs/units.md)
are a kind of their own (``unit``: ``name``, ``unit_kind``); an assignment names a person
(``person_ref``) or a unit (``unit_name``); ``resident_tag`` rows register residents'
tags for shared devices.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar, cast
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.domain import registry_fields as f
from gateway.domain.units import TAG_PATTERN

MAX_ROWS = 200_000


class Kind(StrEnum):
    DEVICE_MODEL = "device_model"
    PERSON = "person"
    UNIT = "unit"
    DEVICE = "device"
    ASSIGNMENT = "assignment"
    RESIDENT_TAG = "resident_tag"


class Format(StrEnum):
    CSV = "csv"
    JSON = "json"


#: JSON's object of lists: key -> kind (also the order in which kinds are applied)
LISTS: dict[str, Kind] = {
    "device_models": Kind.DEVICE_MODEL,
    "persons": Kind.PERSON,
    "units": Kind.UNIT,
    "devices": Kind.DEVICE,
    "assignments": Kind.ASSIGNMENT,
    "resident_tags": Kind.RESIDENT_TAG,
}


BROKER_IDENTITIES = (
    "with broker_access on, a device is registered and assigned through the API one at a"
    " time (POST /api/v1/devices answers its broker password once); the import does not"
    " make broker identities"
)


class Action(StrEnum):
    CREATE = "create"
    UNCHANGED = "unchanged"
    ERROR = "error"


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class DeviceModelRow(_Row):
    id: f.DeviceModelId
    vendor: f.Vendor
    model: f.ModelName
    device_type: f.DeviceType
    heartbeat_interval_s: f.HeartbeatSeconds


class PersonRow(_Row):
    ref: f.PersonRef
    personal_identity_number: f.IdentityNumberText | None = None
    care_notes: f.CareNotes | None = None  # None: not given (a new person gets "")


class DeviceRow(_Row):
    id: f.DeviceId
    model_id: f.DeviceModelRef
    serial: f.Serial | None = None


UnitName = Annotated[str, Field(min_length=1, max_length=200)]


class UnitRow(_Row):
    """A residential unit or ward (docs/units.md); ``unit_kind``, as ``kind`` names the
    row's kind."""

    name: UnitName
    unit_kind: Literal["residential_unit", "ward"]


class AssignmentRow(_Row):
    """A device to a person (``person_ref``) or to a unit (``unit_name``), never both."""

    device_id: f.DeviceId
    person_ref: f.PersonRef | None = None
    unit_name: UnitName | None = None
    valid_from: AwareDatetime | None = None  # None: when the file is applied

    @model_validator(mode="after")
    def _one_holder(self) -> AssignmentRow:
        if (self.person_ref is None) == (self.unit_name is None):
            raise ValueError("give person_ref or unit_name (one of them)")
        return self


class ResidentTagRow(_Row):
    """A resident's tag for units' shared devices (docs/units.md)."""

    tag: Annotated[str, Field(pattern=TAG_PATTERN)]
    person_ref: f.PersonRef
    valid_from: AwareDatetime | None = None  # None: when the file is applied


Fields = DeviceModelRow | PersonRow | UnitRow | DeviceRow | AssignmentRow | ResidentTagRow
F = TypeVar("F", DeviceModelRow, PersonRow, UnitRow, DeviceRow, AssignmentRow, ResidentTagRow)
MODELS: dict[Kind, type[_Row]] = {
    Kind.DEVICE_MODEL: DeviceModelRow,
    Kind.PERSON: PersonRow,
    Kind.UNIT: UnitRow,
    Kind.DEVICE: DeviceRow,
    Kind.ASSIGNMENT: AssignmentRow,
    Kind.RESIDENT_TAG: ResidentTagRow,
}
COLUMNS: dict[Kind, tuple[str, ...]] = {k: tuple(m.model_fields) for k, m in MODELS.items()}
ALL_COLUMNS = frozenset(c for cs in COLUMNS.values() for c in cs) | {"kind"}


@dataclass(frozen=True)
class RowError:
    row: str  # "line 7", "devices[3]", or "file"
    column: str | None
    message: str

    def line(self) -> str:
        where = f"{self.row}, column {self.column}" if self.column else self.row
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Row:
    n: int  # position in the file, from 0
    where: str
    kind: Kind
    fields: Fields

    @property
    def key(self) -> str:
        x = self.fields
        if isinstance(x, PersonRow):
            return x.ref
        if isinstance(x, UnitRow):
            return x.name
        if isinstance(x, AssignmentRow):
            return x.device_id
        if isinstance(x, ResidentTagRow):
            return x.tag
        return x.id


@dataclass
class Parsed:
    format: Format
    rows: list[Row] = field(default_factory=list)
    #: rows that could not be read: (position, where, kind if known)
    unreadable: list[tuple[int, str, Kind | None]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    def of(self, kind: Kind) -> list[Row]:
        return [r for r in self.rows if r.kind is kind]

    def fields(self, cls: type[F]) -> list[F]:
        """The fields of every readable row of one kind (by its row model)."""
        return [r.fields for r in self.rows if isinstance(r.fields, cls)]

    @property
    def size(self) -> int:
        return len(self.rows) + len(self.unreadable)


PinCheck = Callable[[str], str]  # the number as written -> its 12 digits; ValueError if bad


# --- reading -------------------------------------------------------------------------------


def parse(data: bytes, fmt: Format, *, pins: PinCheck | None) -> Parsed:
    """Every row of one file, validated by the registry's field rules. ``pins`` checks and
    normalises a personal identity number; None: no pii keys are configured, so a file
    that carries one is refused (at that row and column)."""
    parsed = Parsed(fmt)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        parsed.errors.append(RowError("file", None, f"not UTF-8 (byte {exc.start})"))
        return parsed
    if fmt is Format.CSV:
        _read_csv(text, parsed, pins)
    else:
        _read_json(text, parsed, pins)
    if not parsed.size and not parsed.errors:
        parsed.errors.append(RowError("file", None, "has no rows"))
    if parsed.size > MAX_ROWS:
        parsed.errors.append(RowError("file", None, f"more than {MAX_ROWS} rows; split it"))
    _duplicates(parsed)
    return parsed


def _read_csv(text: str, parsed: Parsed, pins: PinCheck | None) -> None:
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        parsed.errors.append(RowError("line 1", None, f"not CSV: {exc}"))
        return
    if not header or not any(h.strip() for h in header):
        parsed.errors.append(RowError("line 1", None, "no header row"))
        return
    columns = [h.strip() for h in header]
    bad_header = False
    for i, name in enumerate(columns):
        if not name:  # a trailing separator: fine while the cells below it are empty
            columns[i] = f"#{i + 1}"
        elif name not in ALL_COLUMNS:
            parsed.errors.append(RowError("line 1", name, _unknown_column()))
            bad_header = True
        elif columns.index(name) != i:
            parsed.errors.append(RowError("line 1", name, "appears twice in the header"))
            bad_header = True
    if "kind" not in columns:
        parsed.errors.append(RowError("line 1", "kind", "the header needs a column kind"))
        bad_header = True
    if bad_header:
        return
    n = 0
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            parsed.errors.append(RowError(f"line {line}", None, f"not CSV: {exc}"))
            return
        start, line = line, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue  # a blank line
        where = f"line {start}"
        if len(cells) > len(columns):
            parsed.errors.append(RowError(where, None, "more cells than the header has columns"))
            parsed.unreadable.append((n, where, None))
            n += 1
            continue
        values = {c: v.strip() for c, v in zip(columns, cells, strict=False) if v.strip()}
        _one(parsed, n, where, values, pins, kind_of=lambda v: v.pop("kind", None))
        n += 1


def _read_json(text: str, parsed: Parsed, pins: PinCheck | None) -> None:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        parsed.errors.append(RowError(f"line {exc.lineno}", None, f"not JSON: {exc.msg}"))
        return
    except RecursionError:
        parsed.errors.append(RowError("file", None, "not JSON: nested too deeply"))
        return
    items: list[tuple[str, Any, Kind | None]] = []
    if isinstance(doc, list):
        items = [(f"[{i}]", item, None) for i, item in enumerate(doc)]
    elif isinstance(doc, dict):
        for key, value in doc.items():
            kind = LISTS.get(key)
            if kind is None:
                parsed.errors.append(RowError(key, None, "not one of " + ", ".join(LISTS)))
            elif not isinstance(value, list):
                parsed.errors.append(RowError(key, None, "must be a list of objects"))
            else:
                items += [(f"{key}[{i}]", item, kind) for i, item in enumerate(value)]
    else:
        parsed.errors.append(RowError("file", None, "must be a JSON object of lists or a list"))
        return
    for n, (where, item, kind) in enumerate(items):
        if not isinstance(item, dict):
            parsed.errors.append(RowError(where, None, "must be an object"))
            parsed.unreadable.append((n, where, kind))
            continue
        values = {k: v for k, v in item.items() if v is not None}

        def kind_of(v: dict[str, Any], given: Kind | None = kind) -> Any:
            if given is None:
                return v.pop("kind", None)
            if "kind" in v and v.pop("kind") != given.value:
                return False  # a kind that contradicts its list
            return given.value

        _one(parsed, n, where, values, pins, kind_of=kind_of)


def _one(
    parsed: Parsed, n: int, where: str, values: dict[str, Any], pins: PinCheck | None,
    kind_of: Callable[[dict[str, Any]], Any],
) -> None:  # fmt: skip
    raw_kind = kind_of(values)
    if raw_kind is False:
        parsed.errors.append(RowError(where, "kind", "does not match the list it is in"))
        parsed.unreadable.append((n, where, None))
        return
    try:
        kind = Kind(raw_kind) if isinstance(raw_kind, str) else None
    except ValueError:
        kind = None
    if kind is None:
        what = "is missing; it is one of" if raw_kind is None else "is not one of"
        parsed.errors.append(RowError(where, "kind", f"{what} {', '.join(Kind)}"))
        parsed.unreadable.append((n, where, None))
        return
    errors: list[RowError] = []
    for column in values:
        if column not in COLUMNS[kind]:
            message = (f"is not a field of a {kind.value}" if column in ALL_COLUMNS
                       else _unknown_column())  # fmt: skip
            errors.append(RowError(where, column, message))
    known = {k: v for k, v in values.items() if k in COLUMNS[kind]}
    fields: _Row | None
    try:
        fields = MODELS[kind].model_validate(known)
    except ValidationError as exc:
        for e in exc.errors(include_input=False, include_url=False):
            loc = ".".join(str(p) for p in e["loc"]) or None
            errors.append(RowError(where, loc, _message(e)))
        fields = None
    if isinstance(fields, PersonRow) and fields.personal_identity_number is not None:
        pin = fields.personal_identity_number
        if pins is None:
            errors.append(RowError(where, "personal_identity_number",
                                   "storing personal identity numbers needs pii_keys"
                                   " configured"))  # fmt: skip
        else:
            try:
                fields = fields.model_copy(update={"personal_identity_number": pins(pin)})
            except ValueError as exc:
                errors.append(RowError(where, "personal_identity_number", str(exc)))
    if errors or fields is None:
        parsed.errors += errors
        parsed.unreadable.append((n, where, kind))
        return
    parsed.rows.append(Row(n, where, kind, cast(Fields, fields)))


def _message(e: Mapping[str, Any]) -> str:
    if e["type"] == "missing":
        return "is required"
    if e["type"] == "extra_forbidden":
        return _unknown_column()
    return str(e["msg"])


def _unknown_column() -> str:
    return "not a known column (field); they are kind, " + ", ".join(
        sorted(ALL_COLUMNS - {"kind"})
    )


def _duplicates(parsed: Parsed) -> None:
    """An object twice in one file is an error at its second row (which one is meant?)."""
    seen: dict[tuple[Kind, Any], Row] = {}
    vendor_model: dict[tuple[str, str], Row] = {}
    kept: list[Row] = []
    for row in parsed.rows:
        first = seen.setdefault((row.kind, row.key), row)
        if first is not row:
            what = "device" if row.kind is Kind.ASSIGNMENT else row.kind.value
            column = {Kind.PERSON: "ref", Kind.ASSIGNMENT: "device_id", Kind.UNIT: "name",
                      Kind.RESIDENT_TAG: "tag"}.get(row.kind, "id")  # fmt: skip
            parsed.errors.append(RowError(row.where, column,
                                          f"the same {what} as {first.where}"))  # fmt: skip
            parsed.unreadable.append((row.n, row.where, row.kind))
            continue
        if isinstance(row.fields, DeviceModelRow):
            pair = (row.fields.vendor, row.fields.model)
            other = vendor_model.setdefault(pair, row)
            if other is not row:
                parsed.errors.append(RowError(row.where, "model", "the same vendor and model"
                                              f" as {other.where}"))  # fmt: skip
                parsed.unreadable.append((row.n, row.where, row.kind))
                continue
        kept.append(row)
    parsed.rows = kept


# --- planning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredModel:
    id: str
    vendor: str
    model: str
    device_type: str
    heartbeat_interval_s: int


@dataclass(frozen=True)
class StoredPerson:
    id: UUID
    care_notes: str
    #: the stored identity number's digits when the file gives one to compare with;
    #: None: none stored; "" stored but not readable (its key is not configured)
    pin: str | None


@dataclass(frozen=True)
class StoredDevice:
    model_id: str
    serial: str | None
    status: str


@dataclass(frozen=True)
class Holding:
    person_id: UUID | None  # None: a unit's
    valid_from: datetime
    unit_id: UUID | None = None


@dataclass(frozen=True)
class StoredUnit:
    id: UUID
    kind: str


@dataclass(frozen=True)
class TagHolding:
    person_id: UUID
    valid_from: datetime


@dataclass
class Stored:
    """What the registry holds of the objects a file names (of the caller's tenant, but
    the catalogue of models, which is everyone's)."""

    models: dict[str, StoredModel] = field(default_factory=dict)
    model_ids_by_name: dict[tuple[str, str], str] = field(default_factory=dict)
    persons: dict[str, StoredPerson] = field(default_factory=dict)
    devices: dict[str, StoredDevice] = field(default_factory=dict)
    open: dict[str, Holding] = field(default_factory=dict)  # device -> current holding
    held_until: dict[str, datetime] = field(default_factory=dict)  # latest ended holding
    units: dict[str, StoredUnit] = field(default_factory=dict)  # by name
    tags: dict[str, TagHolding] = field(default_factory=dict)  # tag -> open registration
    tag_until: dict[str, datetime] = field(default_factory=dict)  # latest ended registration


@dataclass
class Plan:
    actions: dict[int, Action] = field(default_factory=dict)  # row position -> action
    errors: list[RowError] = field(default_factory=list)
    models: list[DeviceModelRow] = field(default_factory=list)
    persons: list[PersonRow] = field(default_factory=list)
    devices: list[tuple[Row, DeviceRow]] = field(default_factory=list)
    assignments: list[AssignmentRow] = field(default_factory=list)
    units: list[UnitRow] = field(default_factory=list)
    tags: list[ResidentTagRow] = field(default_factory=list)
    broker_identities: bool = False

    def fail(self, row: Row, column: str | None, message: str) -> None:
        self.actions[row.n] = Action.ERROR
        self.errors.append(RowError(row.where, column, message))


def plan(
    parsed: Parsed, stored: Stored, *, may_add_models: bool, broker_identities: bool = False
) -> Plan:
    """What applying the file would change. A row equal to what is stored is
    ``unchanged``; a row that contradicts it (another model, other care notes, a device
    held by someone else) is an error: an import adds to the registry, it never changes
    or takes away (the API's single-object endpoints do that). ``broker_identities``:
    the deployment manages a broker identity per device (``broker_access``), which the
    import does not make, so it registers and assigns no devices there."""
    p = Plan(broker_identities=broker_identities)
    for n, _, _ in parsed.unreadable:
        p.actions[n] = Action.ERROR
    catalogue = set(stored.models)
    for row in parsed.of(Kind.DEVICE_MODEL):
        _plan_model(p, row, stored, may_add_models, catalogue)
    persons = set(stored.persons)
    for row in parsed.of(Kind.PERSON):
        if _plan_person(p, row, stored):
            persons.add(row.fields.ref)  # type: ignore[union-attr]
    units = set(stored.units)
    for row in parsed.of(Kind.UNIT):
        if _plan_unit(p, row, stored):
            units.add(row.fields.name)  # type: ignore[union-attr]
    devices: dict[str, Row] = {}
    for row in parsed.of(Kind.DEVICE):
        if _plan_device(p, row, stored, catalogue):
            devices[row.fields.id] = row  # type: ignore[union-attr]
    for row in parsed.of(Kind.ASSIGNMENT):
        _plan_assignment(p, row, stored, persons, devices, units)
    for row in parsed.of(Kind.RESIDENT_TAG):
        _plan_tag(p, row, stored, persons)
    return p


def _plan_unit(p: Plan, row: Row, stored: Stored) -> bool:
    u = row.fields
    assert isinstance(u, UnitRow)
    have = stored.units.get(u.name)
    if have is None:
        p.actions[row.n] = Action.CREATE
        p.units.append(u)
        return True
    if have.kind != u.unit_kind:
        p.fail(row, "unit_kind", "this unit is registered with another kind")
        return False
    p.actions[row.n] = Action.UNCHANGED
    return True


def _plan_tag(p: Plan, row: Row, stored: Stored, persons: set[str]) -> None:
    t = row.fields
    assert isinstance(t, ResidentTagRow)
    if t.person_ref not in persons:
        p.fail(row, "person_ref", "no such person in this tenant (add the person in this"
               " file or before)")  # fmt: skip
        return
    have = stored.tags.get(t.tag)
    person = stored.persons.get(t.person_ref)
    if have is not None:
        if person is None or have.person_id != person.id:
            p.fail(row, "tag", "the tag is registered to another person; end that first")
        elif t.valid_from is not None and t.valid_from != have.valid_from:
            p.fail(row, "valid_from", "the tag is registered to this person from another time")
        else:
            p.actions[row.n] = Action.UNCHANGED
        return
    ended = stored.tag_until.get(t.tag)
    if ended is not None and t.valid_from is not None and t.valid_from < ended:
        p.fail(row, "valid_from", "the tag was registered to someone at that time")
        return
    p.actions[row.n] = Action.CREATE
    p.tags.append(t)


def _plan_model(p: Plan, row: Row, stored: Stored, may_add: bool, catalogue: set[str]) -> None:
    m = row.fields
    assert isinstance(m, DeviceModelRow)
    have = stored.models.get(m.id)
    if have is not None:
        differs = [c for c in COLUMNS[Kind.DEVICE_MODEL][1:] if getattr(have, c) != getattr(m, c)]
        if differs:
            p.fail(row, differs[0], "the catalogue has this model with another value; a"
                   " platform administrator changes it with PUT /api/v1/device-models/{id}")
        else:
            p.actions[row.n] = Action.UNCHANGED
        return
    if not may_add:
        p.fail(row, "id", "device models are the platform's catalogue: only a platform"
               " administrator adds one")  # fmt: skip
        return
    if (m.vendor, m.model) in stored.model_ids_by_name:
        p.fail(row, "model", "this vendor and model are in the catalogue under another id")
        return
    p.actions[row.n] = Action.CREATE
    p.models.append(m)
    catalogue.add(m.id)


def _plan_person(p: Plan, row: Row, stored: Stored) -> bool:
    x = row.fields
    assert isinstance(x, PersonRow)
    have = stored.persons.get(x.ref)
    if have is None:
        p.actions[row.n] = Action.CREATE
        p.persons.append(x)
        return True
    if x.care_notes is not None and x.care_notes != have.care_notes:
        p.fail(row, "care_notes", "this person is registered with other care notes")
        return False
    if x.personal_identity_number is not None and have.pin != x.personal_identity_number:
        p.fail(row, "personal_identity_number",
               "this person is registered without an identity number" if have.pin is None
               else "does not match the identity number registered for this person")
        return False
    p.actions[row.n] = Action.UNCHANGED
    return True


def _plan_device(p: Plan, row: Row, stored: Stored, catalogue: set[str]) -> bool:
    d = row.fields
    assert isinstance(d, DeviceRow)
    have = stored.devices.get(d.id)
    if have is not None:
        if have.model_id != d.model_id:
            p.fail(row, "model_id", "this device is registered with another model")
        elif d.serial is not None and d.serial != have.serial:
            p.fail(row, "serial", "this device is registered with another serial number")
        else:
            p.actions[row.n] = Action.UNCHANGED
            return True
        return False
    if d.model_id not in catalogue:
        p.fail(row, "model_id", "no such device model in the catalogue")
        return False
    if p.broker_identities:
        p.fail(row, "id", BROKER_IDENTITIES)
        return False
    p.actions[row.n] = Action.CREATE
    p.devices.append((row, d))
    return True


def _plan_assignment(
    p: Plan, row: Row, stored: Stored, persons: set[str], devices: dict[str, Row],
    units: set[str],
) -> None:  # fmt: skip
    a = row.fields
    assert isinstance(a, AssignmentRow)
    device = stored.devices.get(a.device_id)
    if device is None and a.device_id not in devices:
        p.fail(row, "device_id", "no such device in this tenant (register it in this file"
               " or before)")  # fmt: skip
        return
    if a.person_ref is not None and a.person_ref not in persons:
        p.fail(row, "person_ref", "no such person in this tenant (add the person in this"
               " file or before)")  # fmt: skip
        return
    if a.unit_name is not None and a.unit_name not in units:
        p.fail(row, "unit_name", "no such unit in this tenant (add the unit in this file"
               " or before)")  # fmt: skip
        return
    holding = stored.open.get(a.device_id)
    person = stored.persons.get(a.person_ref) if a.person_ref is not None else None
    unit = stored.units.get(a.unit_name) if a.unit_name is not None else None
    if holding is not None:
        column = "person_ref" if a.person_ref is not None else "unit_name"
        same = (
            person is not None and holding.person_id == person.id if a.person_ref is not None
            else unit is not None and holding.unit_id == unit.id
        )  # fmt: skip
        if not same:
            p.fail(row, column, "the device is assigned to another person or unit; return it"
                   " first")  # fmt: skip
        elif a.valid_from is not None and a.valid_from != holding.valid_from:
            p.fail(row, "valid_from", "the device is assigned to this person from another time")
        else:
            p.actions[row.n] = Action.UNCHANGED
        return
    if device is not None and device.status == "retired":
        p.fail(row, "device_id", "the device is retired")
        return
    if p.broker_identities:
        p.fail(row, "device_id", BROKER_IDENTITIES)
        return
    ended = stored.held_until.get(a.device_id)
    if ended is not None and a.valid_from is not None and a.valid_from < ended:
        p.fail(row, "valid_from", "the device was held by someone else at that time")
        return
    p.actions[row.n] = Action.CREATE
    p.assignments.append(a)


# --- the answer ----------------------------------------------------------------------------


@dataclass
class Report:
    """One answer for the API and the CLI: per row what was (or, in a dry run, would be)
    done, and every error with its row and column."""

    format: Format
    dry_run: bool
    applied: bool
    rows: list[dict[str, Any]]
    errors: list[RowError]

    @classmethod
    def of(cls, parsed: Parsed, p: Plan | None, *, dry_run: bool, extra: Iterable[RowError] = ()
           ) -> Report:  # fmt: skip
        kinds: dict[int, tuple[str, Kind | None]] = {r.n: (r.where, r.kind) for r in parsed.rows}
        kinds.update({n: (where, kind) for n, where, kind in parsed.unreadable})
        position = {where: n for n, (where, _) in kinds.items()}
        errors = sorted([*parsed.errors, *(p.errors if p else ()), *extra],
                        key=lambda e: position.get(e.row, -1))  # fmt: skip
        failed = {e.row for e in errors}
        rows = []
        for n in sorted(kinds):
            where, kind = kinds[n]
            action = p.actions.get(n, Action.ERROR) if p else Action.ERROR
            if where in failed:
                action = Action.ERROR
            rows.append({"row": where, "kind": kind.value if kind else None,
                         "action": action.value})  # fmt: skip
        return cls(parsed.format, dry_run, not dry_run and not errors, rows, errors)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, int]:
        counts = {a.value: 0 for a in Action}
        for row in self.rows:
            counts[row["action"]] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format.value,
            "dry_run": self.dry_run,
            "applied": self.applied,
            "summary": self.summary(),
            "rows": self.rows,
            "errors": [
                {"row": e.row, "column": e.column, "message": e.message} for e in self.errors
            ],
        }
