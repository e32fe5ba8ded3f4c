"""The PKI of ``welfare-gateway pki``: files, modes, identities, revocation (no broker)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.entrypoints.cli import main
from gateway.support.pki import CertificateAuthority, PkiError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_server_and_device_certificates(tmp_path: Path) -> None:
    d = tmp_path / "ca"
    assert main(["pki", "init-ca", "--dir", str(d), "--tenant", "kommun-a"]) == 0
    hosts = ["broker.example", "10.0.0.5"]
    assert main(["pki", "server-cert", "--dir", str(d), "--host", *hosts]) == 0
    assert main(["pki", "device-cert", "--dir", str(d), "--device", "gps-1"]) == 0
    for key in (d / "ca.key", d / "server" / "broker.example.key", d / "devices" / "gps-1.key"):
        assert mode(key) == 0o600, key
    ca = load(d / "ca.crt")
    assert "kommun-a" in ca.subject.rfc4514_string()
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server = load(d / "server" / "broker.example.crt")
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["broker.example"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    device = load(d / "devices" / "gps-1.crt")
    assert device.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gps-1"
    usage = device.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    device.verify_directly_issued_by(ca)


def test_revocation_lists_the_devices_certificates(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    ca.init()
    one, two = ca.device_cert("gps-1"), ca.device_cert("gps-2")
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert len(list(crl)) == 0
    assert main(["pki", "revoke", "--dir", str(ca.dir), "--device", "gps-1"]) == 0
    crl = x509.load_pem_x509_crl(ca.crl_path.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(one.serial) is not None
    assert crl.get_revoked_certificate_by_serial_number(two.serial) is None
    assert crl.is_signature_valid(load(ca.cert_path).public_key())  # type: ignore[arg-type]


def test_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    with pytest.raises(PkiError, match="no CA"):
        ca.device_cert("gps-1")
    ca.init()
    with pytest.raises(PkiError, match="refusing to replace"):
        ca.init()
    ca.device_cert("gps-1")
    with pytest.raises(PkiError, match="exists"):
        ca.device_cert("gps-1")
    with pytest.raises(PkiError, match="invalid device id"):
        ca.device_cert("a/b")
    assert main(["pki", "revoke", "--dir", str(ca.dir), "--device", "never-issued"]) == 1
    assert "no certificate was issued" in capsys.readouterr().err


def test_no_device_certificate_for_a_service_username(tmp_path: Path) -> None:
    """CN = broker username: a device certificate named like the gateway or the admin
    would log in as them (and the gateway may publish unlock commands)."""
    ca = CertificateAuthority(tmp_path / "ca")
    ca.init()
    for name in ("wg-gateway", "wg-admin"):
        with pytest.raises(PkiError, match="service"):
            ca.device_cert(name)
    with pytest.raises(PkiError, match="service"):
        ca.device_cert("gw-ingest", reserved={"gw-ingest"})
    assert ca.device_cert("gps-1", reserved={"gw-ingest"}).cert.exists()


def test_cli_reserves_the_configured_gateway_username(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WG_MQTT_URL", "mqtt://gw-ingest:secret@broker.internal:1883")
    assert main(["pki", "init-ca", "--dir", str(tmp_path / "ca")]) == 0
    assert main(["pki", "device-cert", "--dir", str(tmp_path / "ca"), "--device",
                 "gw-ingest"]) == 1  # fmt: skip
    assert "service" in capsys.readouterr().err
