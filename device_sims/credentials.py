"""Per-device broker credentials for a simulated fleet: a JSON file, device id -> login.

The format (``welfare-gateway simulate --register`` writes it; ``--credentials`` reads it)::

    {
      "sim-scale-00001": {"username": "sim-scale-00001", "password": "Xk3..."},
      "sim-bp-00001": {"username": "sim-bp-00001", "password": "q9V..."}
    }

The passwords are the ones the API hands out once when a device is registered with
broker access on; the file is written with mode 0600 and replaced atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class CredentialsError(ValueError):
    """The credentials file cannot be read or written; the message names the file."""


@dataclass(frozen=True, slots=True)
class Credential:
    username: str
    password: str


def load_credentials(path: Path) -> dict[str, Credential]:
    """The file's logins by device id; a missing file is an empty mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read credentials: {exc.strerror}") from None
    try:
        raw = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise CredentialsError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CredentialsError(f"{path}: expected an object of device id -> login")
    found: dict[str, Credential] = {}
    for device_id, entry in raw.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("username"), str)
            and isinstance(entry.get("password"), str)
        ):
            raise CredentialsError(
                f'{path}: {device_id}: expected {{"username": "...", "password": "..."}}'
            )
        found[device_id] = Credential(entry["username"], entry["password"])
    return found


def save_credentials(path: Path, credentials: Mapping[str, Credential]) -> None:
    """Write the whole mapping (mode 0600), replacing the file atomically."""
    body = {
        device_id: {"username": c.username, "password": c.password}
        for device_id, c in sorted(credentials.items())
    }
    directory = path.parent if str(path.parent) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(body, f, indent=2)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot write credentials: {exc.strerror}") from None
