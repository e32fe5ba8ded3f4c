"""Parsing ``GET /fhir/r4/Observation`` search parameters. Pure, no I/O.

Supported: ``patient`` (required, once), ``code`` (token, ``system|code`` or bare code,
comma = OR, repeated = AND), ``category`` (token; only ``vital-signs`` matches), ``date``
(prefixes eq, ge, gt, le, lt; repeated = AND; a date without time is a day in
Europe/Stockholm), ``_count`` (1..500, default 50) and ``_cursor`` (the opaque position
from a ``next`` link). Anything else is rejected (strict handling) unless the client sent
``Prefer: handling=lenient``, when it is ignored and left out of the ``self`` link.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson

from api.fhir.ids import OBS_KINDS

LOCAL_TZ = ZoneInfo("Europe/Stockholm")
DEFAULT_COUNT = 50
MAX_COUNT = 500
LOINC = "http://loinc.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
SUPPORTED = ("patient", "code", "category", "date", "_count", "_cursor")

# LOINC code -> observation kind (see api.fhir.resources)
CODE_TO_OBS = {"29463-7": "weight", "85354-9": "bp", "8867-4": "hr"}
# observation kind -> consent category
OBS_CATEGORY = {"weight": "weight", "bp": "blood_pressure", "hr": "blood_pressure"}


class SearchError(Exception):
    """A bad request: status 400, FHIR issue code, message for the OperationOutcome."""

    def __init__(self, message: str, code: str = "invalid", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class Cursor:
    ts: datetime
    device_id: str
    msg_id: str
    obs: str

    def encode(self) -> str:
        raw = orjson.dumps([self.ts.isoformat(), self.device_id, self.msg_id, self.obs])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            ts, device_id, msg_id, obs = orjson.loads(raw)
            at = datetime.fromisoformat(ts)
            if at.tzinfo is None or obs not in OBS_KINDS:
                raise ValueError(obs)
            return cls(at, str(device_id), str(msg_id), obs)
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise SearchError("_cursor is not a cursor this server issued") from None


@dataclass(frozen=True)
class ObservationSearch:
    person_id: UUID
    obs: frozenset[str]  # which observations may match (empty: none can)
    explicit_code: bool  # the client asked for specific codes
    start: datetime | None  # inclusive
    end: datetime | None  # exclusive
    count: int
    after: Cursor | None
    params: list[tuple[str, str]] = field(default_factory=list)  # honoured, for links

    @property
    def categories(self) -> list[str]:
        return sorted({OBS_CATEGORY[o] for o in self.obs})


def parse_observation_search(
    items: Iterable[tuple[str, str]], *, lenient: bool = False
) -> ObservationSearch:
    params: list[tuple[str, str]] = []
    for name, value in items:
        if name in SUPPORTED:
            params.append((name, value))
        elif not lenient:
            raise SearchError(
                f"unknown search parameter {name!r} (supported: {', '.join(SUPPORTED)})",
                code="not-supported",
            )
    patients = [v for k, v in params if k == "patient"]
    if len(patients) != 1:
        raise SearchError("patient is required, exactly once (Patient/{id} or {id})", "required")
    person_id = _patient(patients[0])
    obs = frozenset(OBS_KINDS)
    codes = [v for k, v in params if k == "code"]
    for value in codes:
        obs &= _codes(value)
    for value in (v for k, v in params if k == "category"):
        if not _vital_signs(value):
            obs = frozenset()
    start: datetime | None = None
    end: datetime | None = None
    for value in (v for k, v in params if k == "date"):
        lo, hi = _date_bound(value)
        if lo is not None:
            start = lo if start is None else max(start, lo)
        if hi is not None:
            end = hi if end is None else min(end, hi)
    counts = [v for k, v in params if k == "_count"]
    count = _count(counts[-1]) if counts else DEFAULT_COUNT
    cursors = [v for k, v in params if k == "_cursor"]
    if len(cursors) > 1:
        raise SearchError("_cursor given more than once")
    after = Cursor.decode(cursors[0]) if cursors else None
    kept = [(k, v) for k, v in params if k != "_cursor"]
    return ObservationSearch(person_id, obs, bool(codes), start, end, count, after, kept)


def _patient(value: str) -> UUID:
    ident = value.removeprefix("Patient/")
    try:
        return UUID(ident)
    except ValueError:
        raise SearchError("patient must be a Patient id (Patient/{id} or {id})") from None


def _codes(value: str) -> frozenset[str]:
    found: set[str] = set()
    for token in value.split(","):
        system, bar, code = token.rpartition("|")
        if not code:
            raise SearchError(f"code {token!r} has no code")
        if bar and system not in ("", LOINC):
            continue  # another code system: matches nothing here
        if code in CODE_TO_OBS:
            found.add(CODE_TO_OBS[code])
    return frozenset(found)


def _vital_signs(value: str) -> bool:
    for token in value.split(","):
        system, bar, code = token.rpartition("|")
        if code == "vital-signs" and (not bar or system in ("", CATEGORY_SYSTEM)):
            return True
    return False


def _count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise SearchError("_count must be an integer") from None
    if not 1 <= count <= MAX_COUNT:
        raise SearchError(f"_count must be between 1 and {MAX_COUNT}")
    return count


_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2}))?)?)?$"
)
_PREFIXES = ("eq", "ge", "gt", "le", "lt")
_UNSUPPORTED_PREFIXES = ("ne", "sa", "eb", "ap")


def _date_bound(value: str) -> tuple[datetime | None, datetime | None]:
    """The (inclusive lower, exclusive upper) bound one ``date`` parameter sets on
    effectiveDateTime. A value covers the period its precision implies."""
    prefix = value[:2]
    if prefix in _PREFIXES:
        value = value[2:]
    elif prefix in _UNSUPPORTED_PREFIXES:
        raise SearchError(f"date prefix {prefix!r} is not supported", "not-supported")
    else:
        prefix = "eq"
    if "," in value:
        raise SearchError("date does not take a list (repeat the parameter for AND)")
    start, end = _period(value)
    return {
        "eq": (start, end),
        "ge": (start, None),
        "gt": (end, None),
        "le": (None, end),
        "lt": (None, start),
    }[prefix]


def _period(value: str) -> tuple[datetime, datetime]:
    match = _DATE_RE.match(value)
    if not match:
        raise SearchError(
            f"date {value!r} is not a FHIR date or dateTime (with a time, a zone is required)"
        )
    g = match.groupdict()
    try:
        if g["H"] is None:
            y, m, d = int(g["y"]), int(g["m"] or 1), int(g["d"] or 1)
            first = datetime(y, m, d, tzinfo=LOCAL_TZ)
            if g["d"]:
                after = first.date() + timedelta(days=1)
            elif g["m"]:
                after = (first.replace(day=28) + timedelta(days=4)).replace(day=1).date()
            else:
                after = first.replace(year=y + 1).date()
            last = datetime(after.year, after.month, after.day, tzinfo=LOCAL_TZ)
            return first.astimezone(UTC), last.astimezone(UTC)
        tz = UTC if g["tz"] == "Z" else _offset(g["tz"])
        micros = int((g["f"] or "0")[:6].ljust(6, "0"))
        at = datetime(
            int(g["y"]),
            int(g["m"]),
            int(g["d"]),
            int(g["H"]),
            int(g["M"]),
            int(g["S"] or 0),
            micros,
            tzinfo=tz,
        )
        if g["S"] is None:
            step = timedelta(minutes=1)
        elif g["f"] is None:
            step = timedelta(seconds=1)
        else:
            step = timedelta(microseconds=10 ** (6 - min(len(g["f"]), 6)))
        return at.astimezone(UTC), (at + step).astimezone(UTC)
    except (ValueError, OverflowError):
        raise SearchError(f"date {value!r} is not a valid date") from None


def _offset(text: str) -> timezone:
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 14 or minutes > 59:
        raise ValueError(text)
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if text[0] == "-" else delta)
