"""A small PKI for mutual TLS between devices and the broker (``welfare-gateway pki``).

One directory is one CA (per deployment, or per tenant with ``--tenant``)::

    D/ca.key  ca.crt  crl.pem  index.json      the CA, its revocation list, what it issued
    D/server/{name}.key  {name}.crt             broker server certificates (SANs)
    D/devices/{id}.key   {id}.crt               device client certificates, CN = device id

Private keys are written with mode 0600 (and never overwritten); EC P-256 keys. Mosquitto
maps a client certificate to the identity of its CN (``use_identity_as_username true``),
so the dynamic-security ACLs of device ``{id}`` apply to the holder of ``{id}.crt``.
Revoking adds the device's certificates to ``crl.pem`` (``crlfile`` in Mosquitto).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from firmware_contracts.topics import is_valid_device_id

CA_DAYS = 3650
SERVER_DAYS = 825
DEVICE_DAYS = 1825
CRL_DAYS = 30
#: The default broker usernames of the admin and the gateway (deploy/mosquitto/README.md).
SERVICE_USERNAMES = frozenset({"wg-admin", "wg-gateway"})


class PkiError(Exception):
    """Refused: e.g. the CA exists already, or there is no CA in the directory."""


@dataclass(frozen=True)
class Issued:
    key: Path
    cert: Path
    serial: int


def _now() -> datetime:
    return datetime.now(UTC)


def _write_private(path: Path, data: bytes) -> None:
    """A new file only readable by its owner (refuses to overwrite a key)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise PkiError(f"{path} exists; refusing to overwrite a private key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
         "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
        False,
    )  # fmt: skip
    flags.update(allowed)
    return x509.KeyUsage(**flags)


class CertificateAuthority:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def key_path(self) -> Path:
        return self.dir / "ca.key"

    @property
    def cert_path(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def crl_path(self) -> Path:
        return self.dir / "crl.pem"

    @property
    def index_path(self) -> Path:
        return self.dir / "index.json"

    # --- state ----------------------------------------------------------------------------
    def _load(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        if not self.key_path.exists() or not self.cert_path.exists():
            raise PkiError(f"no CA in {self.dir}: run 'welfare-gateway pki init-ca' first")
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{self.key_path} is not an EC key")
        return key, x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def _index(self) -> dict[str, Any]:
        if not self.index_path.exists():
            return {"issued": []}
        data: dict[str, Any] = json.loads(self.index_path.read_text())
        return data

    def _save_index(self, index: dict[str, Any]) -> None:
        _write_public(self.index_path, json.dumps(index, indent=2).encode())

    # --- operations -----------------------------------------------------------------------
    def init(self, tenant: str | None = None, days: int = CA_DAYS) -> Path:
        """A new self-signed CA (and an empty CRL, so the broker can load ``crlfile``)."""
        if self.key_path.exists() or self.cert_path.exists():
            raise PkiError(f"a CA exists in {self.dir}; refusing to replace it")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "welfare-gateway")]
        if tenant:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, tenant))
        cn = f"welfare-gateway CA {tenant}" if tenant else "welfare-gateway CA"
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        name = x509.Name(attrs)
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.key_path, _key_pem(key))
        _write_public(self.cert_path, _cert_pem(cert))
        self._save_index({"tenant": tenant, "issued": []})
        self.write_crl()
        return self.cert_path

    def _issue(
        self, subject_cn: str, key_path: Path, cert_path: Path, days: int,
        sans: list[x509.GeneralName], usage: x509.ObjectIdentifier, kind: str,
    ) -> Issued:  # fmt: skip
        ca_key, ca_cert = self._load()
        if key_path.exists():
            raise PkiError(f"{key_path} exists; revoke it and remove the files to re-issue")
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(min(now + timedelta(days=days), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True, key_agreement=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_private(key_path, _key_pem(key))
        _write_public(cert_path, _cert_pem(cert))
        index = self._index()
        index["issued"].append(
            {"serial": str(serial), "kind": kind, "cn": subject_cn, "issued_at": now.isoformat(),
             "not_after": cert.not_valid_after_utc.isoformat(), "revoked_at": None}
        )  # fmt: skip
        self._save_index(index)
        return Issued(key_path, cert_path, serial)

    def server_cert(self, hosts: list[str], days: int = SERVER_DAYS) -> Issued:
        """The broker's certificate: CN = first host, every host a SAN (DNS or IP)."""
        if not hosts:
            raise PkiError("at least one --host is needed")
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        name = hosts[0].replace("/", "_")
        return self._issue(
            hosts[0], self.dir / "server" / f"{name}.key", self.dir / "server" / f"{name}.crt",
            days, sans, ExtendedKeyUsageOID.SERVER_AUTH, "server",
        )  # fmt: skip

    def device_cert(
        self, device_id: str, days: int = DEVICE_DAYS, *, reserved: Iterable[str] = ()
    ) -> Issued:
        """A device's client certificate, CN = device id (its broker username). ``reserved``
        are the broker usernames of the gateway, the admin and operators: a certificate
        with such a CN would log in *as* them, so it is never issued."""
        if not is_valid_device_id(device_id):
            raise PkiError(f"invalid device id {device_id!r}")
        if device_id in set(reserved) | SERVICE_USERNAMES:
            raise PkiError(f"{device_id!r} is the broker username of a service, not a device")
        return self._issue(
            device_id, self.dir / "devices" / f"{device_id}.key",
            self.dir / "devices" / f"{device_id}.crt", days, [],
            ExtendedKeyUsageOID.CLIENT_AUTH, "device",
        )  # fmt: skip

    def revoke(self, device_id: str) -> int:
        """Revoke every unrevoked certificate of the device; rewrite the CRL. Returns how
        many were revoked (0 if none were outstanding: the CRL is re-signed anyway)."""
        index = self._index()
        now = _now().isoformat()
        count = 0
        for entry in index["issued"]:
            if entry["kind"] == "device" and entry["cn"] == device_id and not entry["revoked_at"]:
                entry["revoked_at"] = now
                count += 1
        if count == 0 and not any(
            e["kind"] == "device" and e["cn"] == device_id for e in index["issued"]
        ):
            raise PkiError(f"no certificate was issued to device {device_id!r} by this CA")
        self._save_index(index)
        self.write_crl()
        return count

    def write_crl(self, days: int = CRL_DAYS) -> Path:
        """(Re-)sign the CRL from the index. Re-run before it expires (``next_update``)."""
        ca_key, ca_cert = self._load()
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - timedelta(minutes=5))
            .next_update(now + timedelta(days=days))
        )
        for entry in self._index()["issued"]:
            if entry["revoked_at"]:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(int(entry["serial"]))
                    .revocation_date(datetime.fromisoformat(entry["revoked_at"]))
                    .build()
                )
        crl = builder.sign(ca_key, hashes.SHA256())
        _write_public(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))
        return self.crl_path
