"""Observation ids: stable, opaque, and useless to anyone guessing across tenants.

A stored reading has no surrogate key (it is identified by device, message id and time), and
one blood-pressure reading yields two observations (the panel and the heart rate). The id
carries what is needed to find the row again - person, time, which observation, and a short
digest of device and message id - encrypted and authenticated with AES-SIV (deterministic,
so the same observation always has the same id). A forged or altered id fails authentication
and reads as "not found"; an id reveals neither the person nor the time.

45 bytes of ciphertext in base64 over the FHIR id alphabet ``[A-Za-z0-9-.]`` give 60
characters (FHIR allows 64).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

OBS_KINDS = ("weight", "bp", "hr")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LAYOUT = struct.Struct(">16sqB4s")  # person, microseconds since epoch, obs, digest
_ALT = b"-."


@dataclass(frozen=True, slots=True)
class ObservationRef:
    """What an id decodes to: enough to look the row up (digest checked after)."""

    person_id: UUID
    ts: datetime
    obs: str
    digest: bytes

    def matches(self, device_id: str, msg_id: str) -> bool:
        return _digest(device_id, msg_id) == self.digest


class IdCodec:
    def __init__(self, secret: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"welfare-gateway fhir observation id v1",
        ).derive(secret.encode())
        self._siv = AESSIV(key)

    def encode(self, person_id: UUID, ts: datetime, obs: str, device_id: str, msg_id: str) -> str:
        micros = (ts - _EPOCH) // timedelta(microseconds=1)
        plain = _LAYOUT.pack(
            person_id.bytes, micros, OBS_KINDS.index(obs), _digest(device_id, msg_id)
        )
        return base64.b64encode(self._siv.encrypt(plain, None), altchars=_ALT).decode()

    def decode(self, observation_id: str) -> ObservationRef | None:
        """None for anything that is not an id this deployment issued."""
        if len(observation_id) != 60:
            return None
        try:
            raw = base64.b64decode(observation_id.encode(), altchars=_ALT, validate=True)
            person, micros, obs, digest = _LAYOUT.unpack(self._siv.decrypt(raw, None))
            return ObservationRef(
                UUID(bytes=person),
                _EPOCH + timedelta(microseconds=micros),
                OBS_KINDS[obs],
                digest,
            )
        except (ValueError, InvalidTag, IndexError, OverflowError, struct.error):
            return None


def _digest(device_id: str, msg_id: str) -> bytes:
    return hashlib.sha256(f"{device_id}\x1f{msg_id}".encode()).digest()[:4]
