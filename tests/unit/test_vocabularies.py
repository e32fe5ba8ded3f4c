"""Each vocabulary (alarm kinds, severities, data categories, roles) is one enum in
``gateway.domain``; settings, the API, the CLI and storage take it from there, and what
cannot import it (SQL CHECK constraints of checksummed migrations, a route module another
change owns, the documentation) is held to it here (issue #24)."""

from __future__ import annotations

import re
import typing
from enum import StrEnum
from pathlib import Path

import pytest
from pydantic import ValidationError

from firmware_contracts.decode import ALL_TYPES
from firmware_contracts.messages import Command, DeviceMessage
from gateway.config.settings import AlarmSettings, LockSettings, RouteSetting
from gateway.domain.alarms import AlarmKind, AlarmState, Severity
from gateway.domain.consent import CATEGORIES, DataCategory
from gateway.domain.lock_access import OPENING_ALARM_KINDS, AccessPolicy
from gateway.domain.roles import Role

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "gateway" / "adapters" / "postgres" / "migrations"


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def _sql_list(migration: str, pattern: str) -> list[str]:
    """The quoted strings of the first SQL list matching ``pattern`` (one group)."""
    text = (MIGRATIONS / migration).read_text()
    found = re.search(pattern, text)
    assert found is not None, f"{pattern} not in {migration}"
    return re.findall(r"'([^']*)'", found.group(1))


# --- storage: the CHECK constraints --------------------------------------------------------


def test_consent_categories_check_is_the_enum() -> None:
    listed = _sql_list("0004_consent_access_log.sql", r"categories <@ array\[([^\]]*)\]")
    assert listed == _values(DataCategory)
    assert list(CATEGORIES) == _values(DataCategory)


def test_alarm_severity_and_state_checks_are_the_enums() -> None:
    check = r"{0}\s+text not null check \({0} in \(([^)]*)\)"
    assert _sql_list("0003_alarms.sql", check.format("severity")) == _values(Severity)
    assert _sql_list("0003_alarms.sql", check.format("state")) == _values(AlarmState)


def test_no_later_migration_changes_those_checks() -> None:
    """Should a later migration redefine a check, the tests above read the wrong file."""
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if path.name[:4] <= "0004":
            continue
        text = path.read_text()
        assert "categories <@" not in text, path.name
        assert "check (severity in" not in text, path.name


# --- settings -----------------------------------------------------------------------------


def test_settings_take_alarm_kinds_and_severities_from_the_domain() -> None:
    route = RouteSetting.model_validate(
        {"chain": ["night"], "kinds": _values(AlarmKind), "severities": _values(Severity)}
    )
    assert route.kinds == list(AlarmKind)
    assert route.severities == list(Severity)
    with pytest.raises(ValidationError, match="receiver_unreachable"):
        RouteSetting.model_validate({"chain": ["night"], "kinds": ["buton"]})
    alarms = AlarmSettings.model_validate({"severity": {"*": {"fall": "low"}}})
    assert alarms.severity == {"*": {AlarmKind.FALL: Severity.LOW}}
    assert set(AlarmSettings().escalation_s) == set(Severity)


def test_opening_alarm_kinds_have_one_default() -> None:
    assert LockSettings().alarm_kinds == list(OPENING_ALARM_KINDS)
    assert AccessPolicy().alarm_kinds == frozenset(OPENING_ALARM_KINDS)
    assert _values(AlarmKind)[:2] == ["button", "fall"] == [k.value for k in OPENING_ALARM_KINDS]


# --- API, CLI, docs: roles and categories --------------------------------------------------


def test_api_roles_are_the_domain_roles() -> None:
    from api.auth import Role as ApiRole

    assert ApiRole is Role


def test_token_role_choices_are_the_roles() -> None:
    from gateway.entrypoints.cli import build_parser

    parser = build_parser()
    for role in Role:
        args = parser.parse_args(["token", "--tenant", "t", "--role", role.value])
        assert Role(args.role) is role
    with pytest.raises(SystemExit):
        parser.parse_args(["token", "--tenant", "t", "--role", "admin"])


def test_docs_list_the_roles() -> None:
    line = next(
        line for line in (ROOT / "docs" / "api.md").read_text().splitlines()
        if line.startswith("Roles:")
    )  # fmt: skip
    assert re.findall(r"`([a-z_]+)`", line) == _values(Role)


def test_api_categories_are_the_enum() -> None:
    from api.routes.consents import ConsentIn
    from gateway.adapters.postgres.api_queries import CONSENTED_QUERIES, READING_QUERIES

    assert ConsentIn.model_fields["categories"].annotation == list[DataCategory]
    from api.routes.readings import readings

    assert typing.get_type_hints(readings)["category"] is DataCategory
    assert list(READING_QUERIES) == list(DataCategory)
    assert list(CONSENTED_QUERIES) == list(DataCategory)


# --- the hot path's message type -----------------------------------------------------------


def test_device_message_is_every_decoded_model() -> None:
    members = set(typing.get_args(DeviceMessage))
    assert set(ALL_TYPES.values()) | {Command} == members
