"""Personal identity numbers (personnummer): validated, encrypted at rest, never logged.

AES-256-GCM with a key id stored beside the ciphertext so keys can be rotated: new
values use the active key, old values stay readable while their key is configured. The
person's id is bound as associated data, so a ciphertext copied to another row fails.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PIN_RE = re.compile(r"^(\d{8})-?(\d{4})$")


class PinError(ValueError):
    pass


def normalise_pin(pin: str) -> str:
    """YYYYMMDD-NNNN (12 digits, Luhn-checked on the last 10) -> 'YYYYMMDDNNNN'."""
    match = _PIN_RE.match(pin.strip())
    if not match:
        raise PinError("personal identity number must be YYYYMMDD-NNNN")
    digits = match.group(1) + match.group(2)
    if not _luhn_ok(digits[2:]):
        raise PinError("personal identity number has a wrong check digit")
    return digits


def _luhn_ok(ten: str) -> bool:
    total = 0
    for i, ch in enumerate(ten):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


@dataclass(frozen=True)
class PinCipher:
    keys: dict[str, bytes]
    active: str

    @classmethod
    def from_settings(cls, keys: dict[str, str], active: str | None) -> PinCipher | None:
        if not keys:
            return None
        decoded = {kid: base64.b64decode(value) for kid, value in keys.items()}
        for kid, key in decoded.items():
            if len(key) != 32:
                raise ValueError(f"pii key {kid!r} must be 32 bytes (base64)")
        chosen = active or sorted(decoded)[-1]
        if chosen not in decoded:
            raise ValueError(f"pii_active_key {chosen!r} is not among pii_keys")
        return cls(decoded, chosen)

    def encrypt(self, pin: str, person_id: str) -> tuple[bytes, str]:
        nonce = os.urandom(12)
        ct = AESGCM(self.keys[self.active]).encrypt(nonce, pin.encode(), person_id.encode())
        return nonce + ct, self.active

    def decrypt(self, blob: bytes, key_id: str, person_id: str) -> str:
        key = self.keys.get(key_id)
        if key is None:
            raise KeyError(f"pii key {key_id!r} is not configured")
        return AESGCM(key).decrypt(blob[:12], blob[12:], person_id.encode()).decode()
