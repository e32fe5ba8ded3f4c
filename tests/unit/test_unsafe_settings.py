"""Production refuses unsafe settings, naming each (pure)."""

from __future__ import annotations

import base64

from gateway.config.settings import Settings, WebhookSetting
from gateway.config.unsafe_settings import embedded_services, findings

SAFE = {
    "database_url": "postgresql://owner@db.internal/wg",
    "mqtt_url": "mqtts://wg-gateway:pw@broker.internal:8883",
    "jwt_secret": "j" * 48,
    "api_db_password": "api-password-random",
    "worker_db_password": "worker-password-random",
    "fhir_id_key": "f" * 48,
    "access_log": {"keys": {"seal-1": base64.b64encode(bytes(32)).decode()}},
    "supervision": {"gate_positions": True},
}


def names(**changes: object) -> list[str]:
    return [f.setting for f in findings(Settings(**{**SAFE, **changes}))]


def hook(**fields: object) -> WebhookSetting:
    return WebhookSetting(**{"group": "arc", "url": "https://arc.example/in",
                             "secret": "s" * 20, **fields})  # fmt: skip


def test_a_safe_production_configuration_has_no_finding() -> None:
    assert names() == []


def test_positions_without_a_decision_and_consent_are_not_for_production() -> None:
    """#20: GPS positioning is digital supervision; production stores positions only
    under a gps_positioning decision with consent (the gate), never with the gate off."""
    assert names(supervision={"gate_positions": False}) == ["supervision.gate_positions"]


def test_a_municipal_receiver_must_name_its_municipalities() -> None:
    alarms = {"webhooks": [hook()]}
    assert names(alarms=alarms) == ["alarms.webhooks[0] (arc)"]
    assert names(alarms={"webhooks": [hook(tenants=["kommun-a"])]}) == []
    assert names(alarms={"webhooks": [hook(org="232100-0172", purpose="care")]}) == []


def test_plain_http_to_another_host_is_refused_loopback_is_not() -> None:
    alarms = {"webhooks": [hook(tenants=["kommun-a"], url="http://arc.example/in")]}
    assert names(alarms=alarms) == ["alarms.webhooks[0].url"]
    alarms = {"webhooks": [hook(tenants=["kommun-a"], url="http://127.0.0.1:9000/in")]}
    assert names(alarms=alarms) == []
    oidc = {"issuer": "http://idp.example", "jwks_url": "http://idp.example/keys",
            "audience": "wg"}  # fmt: skip
    assert names(oidc=oidc, dev_tokens=False) == ["oidc.issuer", "oidc.jwks_url"]


def test_the_embedded_broker_and_database_are_for_trying_it_out() -> None:
    found = embedded_services(Settings(**{**SAFE, "mqtt_url": None}))
    assert [f.setting for f in found] == ["mqtt_url"]
    assert embedded_services(Settings(**SAFE)) == []
