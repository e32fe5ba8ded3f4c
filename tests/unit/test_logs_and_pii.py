from __future__ import annotations

import base64
import logging
import os

import pytest
from cryptography.exceptions import InvalidTag

from gateway.support.logs import JsonFormatter, mask
from gateway.support.pii import PinCipher, PinError, normalise_pin


def test_personal_identity_numbers_never_reach_a_log_line() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "person 19121212-1212 seen", (), None)
    record.detail = "pin=191212121212"
    line = JsonFormatter().format(record)
    assert "1212" not in line.replace("[redacted]", "")
    assert mask("device sim-scale-00001 ok") == "device sim-scale-00001 ok"


def test_a_uuid_with_a_run_of_digits_is_an_id_not_an_identity_number() -> None:
    event = "a5de55ad-250f-4b1e-befa-1912121212ce"  # ten digits in its last group
    assert mask(f"event_id={event}") == f"event_id={event}"
    # a number next to a UUID is still masked
    assert mask(f"{event} 19121212-1212") == f"{event} [redacted]"
    assert mask("19121212-1212-4b1e") == "[redacted]-4b1e"


def test_pin_validation() -> None:
    assert normalise_pin("19121212-1212") == "191212121212"
    with pytest.raises(PinError):
        normalise_pin("19121212-1213")  # wrong check digit
    with pytest.raises(PinError):
        normalise_pin("1212121212")


def test_pin_encryption_rotates_and_binds_to_person() -> None:
    k1, k2 = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    old = PinCipher.from_settings({"k1": k1}, "k1")
    assert old is not None
    blob, kid = old.encrypt("191212121212", "person-a")
    rotated = PinCipher.from_settings({"k1": k1, "k2": k2}, "k2")
    assert rotated is not None
    assert rotated.decrypt(blob, kid, "person-a") == "191212121212"
    assert rotated.encrypt("191212121212", "person-a")[1] == "k2"
    with pytest.raises(InvalidTag):  # ciphertext moved to another person's row
        rotated.decrypt(blob, kid, "person-b")
