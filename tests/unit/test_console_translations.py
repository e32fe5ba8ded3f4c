"""Every code the gateway can send the console has a Swedish and an English text.

The lists come from the Python code itself (enums, the routing's recipient groups, the
device types of the contract, and the ``reason`` strings the alarm engine writes into an
alarm's detail; the quarantine reasons of the decoder, the registry and the ingest, shown in
the fleet view's refused messages), so a new alarm kind or reason without its translations
fails here. The
console's dictionaries are read from ``api/console/js/i18n.js``, where they are written as
JSON (quoted keys, double-quoted strings) apart from trailing commas.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from firmware_contracts.decode import Reason as DecodeReason
from firmware_contracts.device_types import MESSAGE_TYPES
from gateway.domain.alarms import AlarmKind, AlarmState, Severity
from gateway.domain.lock_access import Reason
from gateway.domain.registry import DeviceStatus, Refusal
from gateway.domain.routing import DEFAULT_ROUTES, RoutingPolicy
from gateway.domain.vitals import BloodPressureCode

ROOT = Path(__file__).resolve().parents[2]
I18N = ROOT / "api" / "console" / "js" / "i18n.js"
ALARM_CODE = sorted((ROOT / "gateway" / "worker" / "alarms").glob("*.py"))
INGEST = ROOT / "gateway" / "worker" / "ingest.py"
LANGUAGES = ("sv", "en")
PLURAL_FORMS = {"one", "other"}


def dictionaries() -> dict[str, dict[str, Any]]:
    source = I18N.read_text(encoding="utf-8")
    out: dict[str, dict[str, Any]] = {}
    for lang in LANGUAGES:
        match = re.search(rf"^const {lang} = (\{{.*?^\}});$", source, re.MULTILINE | re.DOTALL)
        assert match, f"const {lang} = {{...}}; not found in {I18N}"
        text = re.sub(r",(\s*[}\]])", r"\1", match.group(1))  # trailing commas
        out[lang] = json.loads(text)
    return out


def engine_reasons() -> set[str]:
    """The ``reason`` values the alarm code writes into an alarm's detail: a dict literal's
    ``"reason": "<code>"``, and ``reason="<code>"`` passed to a call (detail keywords)."""
    found: set[str] = set()
    for path in ALARM_CODE:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant) and key.value == "reason"
                        and isinstance(value, ast.Constant) and isinstance(value.value, str)
                    ):  # fmt: skip
                        found.add(value.value)
            elif isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if (
                        keyword.arg == "reason" and isinstance(keyword.value, ast.Constant)
                        and isinstance(keyword.value.value, str)
                    ):  # fmt: skip
                        found.add(keyword.value.value)
    return found


def ingest_reasons() -> set[str]:
    """The reasons the ingest itself writes: the string given to ``self._quarantine(msg,
    device, tenant, "<reason>", detail)``."""
    found: set[str] = set()
    tree = ast.parse(INGEST.read_text(encoding="utf-8"), str(INGEST))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "_quarantine" and len(node.args) >= 4
            and isinstance(node.args[3], ast.Constant) and isinstance(node.args[3].value, str)
        ):  # fmt: skip
            found.add(node.args[3].value)
    return found


def recipient_groups() -> set[str]:
    groups = {g for route in DEFAULT_ROUTES for g in route.chain}
    return groups | set(RoutingPolicy().fallback)


VOCABULARIES: dict[str, set[str]] = {
    "kind": {k.value for k in AlarmKind},
    "severity": {s.value for s in Severity},
    "state": {s.value for s in AlarmState},
    "reason": {r.value for r in Reason} | engine_reasons(),
    "breach": {c.value for c in BloodPressureCode},
    "status": {s.value for s in DeviceStatus},
    "device_type": set(MESSAGE_TYPES),
    "group": recipient_groups(),
    # the fleet view's refused messages (issue #19.7)
    "quarantine": {r.value for r in DecodeReason} | {r.value for r in Refusal} | ingest_reasons(),
}


def test_the_scan_finds_the_engine_reasons() -> None:
    # If this fails, the engine writes its reasons differently: fix engine_reasons().
    assert {"offline", "no_message", "zone_inactive"} <= engine_reasons()


def test_the_scan_finds_the_ingest_reasons() -> None:
    # If this fails, the ingest writes its reasons differently: fix ingest_reasons().
    assert {"unknown_topic", "older_than_retention", "rate_limited"} <= ingest_reasons()


@pytest.mark.parametrize("prefix", sorted(VOCABULARIES))
def test_every_code_has_both_languages(prefix: str) -> None:
    messages = dictionaries()
    missing = {
        lang: sorted(
            code for code in VOCABULARIES[prefix]
            if not isinstance(messages[lang].get(f"{prefix}.{code}"), str)
            or not messages[lang][f"{prefix}.{code}"].strip()
        )
        for lang in LANGUAGES
    }  # fmt: skip
    assert missing == {lang: [] for lang in LANGUAGES}, f"untranslated {prefix} codes"


def test_both_languages_have_the_same_keys_and_plural_forms() -> None:
    sv, en = dictionaries()["sv"], dictionaries()["en"]
    assert sorted(set(sv) ^ set(en)) == []
    for key, text in sv.items():
        other = en[key]
        if isinstance(text, dict) or isinstance(other, dict):
            assert isinstance(text, dict) and isinstance(other, dict), key
            assert set(text) == PLURAL_FORMS and set(other) == PLURAL_FORMS, key
            if key.startswith("count."):
                assert all("{n}" in v for v in (*text.values(), *other.values())), key
        else:
            assert isinstance(text, str) and isinstance(other, str) and text and other, key


def test_counted_nouns_have_plural_forms() -> None:
    """A text that counts ({n} beside a noun) is a plural entry, not one fixed form."""
    sv = dictionaries()["sv"]
    for key in ("count.open_alarms", "count.unacknowledged", "count.positions",
                "count.safe_zones", "count.hours", "count.devices_in_service",
                "count.refusing_devices", "count.refused_messages"):  # fmt: skip
        assert isinstance(sv[key], dict), key
    assert sv["count.safe_zones"] == {"one": "{n} säker zon", "other": "{n} säkra zoner"}
    fixed_counts = [k for k, v in sv.items() if isinstance(v, str) and "{n}" in v]
    assert fixed_counts == ["escalation.level"]  # "Nivå 2": a number, not a counted noun
