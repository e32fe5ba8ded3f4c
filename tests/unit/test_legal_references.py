"""Legal references in product text and docs are current (issue #21.4).

The Social Services Act (2025:400) replaced SoL (2001:453) from 2025-07-01; social-services
data (positions, lock events, supervision) falls under SoLPuL and secrecy under OSL 26
kap., the Patient Data Act only under health care. This test fails when an obsolete or
wrong reference reappears anywhere in the docs, the product's code, its console, its
examples or the tests; the few sentences that explain the change are allowed by name."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("README.md", "docs", "api", "gateway", "firmware_contracts", "device_sims", "deploy",
           "bench", "scripts", "tests")  # fmt: skip
SUFFIXES = {".py", ".md", ".js", ".html", ".json", ".toml", ".sql", ".yaml", ".yml", ".txt",
            ".css", ".conf"}  # fmt: skip

#: (what, pattern): the old Social Services Act, and the Patient Data Act cited for
#: social-services data (every mention is suspect; the right ones are allowed below)
FORBIDDEN = (
    ("the old Social Services Act's number", re.compile(r"2001\s*:\s*453")),
    ("SoL as a current act", re.compile(r"\bSoL\b(?!PuL)")),
    ("the Patient Data Act (PDL)", re.compile(r"\bPDL\b")),
    ("the Patient Data Act", re.compile(r"patientdatalag|patient data act", re.IGNORECASE)),
)

#: (file, a phrase of the allowed line): sentences that explain the change
ALLOWED = (
    ("docs/log-review.md", "replaced SoL (2001:453)"),
    ("docs/log-review.md", "not the Patient Data Act"),
    ("docs/log-review.md", "The Patient Data Act only for health care"),
)


def _files() -> list[Path]:
    out: list[Path] = []
    for name in SCANNED:
        top = ROOT / name
        if top.is_file():
            out.append(top)
        elif top.is_dir():
            out.extend(p for p in top.rglob("*") if p.is_file() and p.suffix in SUFFIXES
                       and "__pycache__" not in p.parts)  # fmt: skip
    return sorted(out)


def _allowed(path: str, line: str) -> bool:
    return any(path == f and phrase in line for f, phrase in ALLOWED)


def test_no_obsolete_or_wrong_legal_reference() -> None:
    me = Path(__file__).resolve()
    found: list[str] = []
    for path in _files():
        if path.resolve() == me:
            continue
        rel = path.relative_to(ROOT).as_posix()
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(),
                                 start=1):  # fmt: skip
            for what, pattern in FORBIDDEN:
                if pattern.search(line) and not _allowed(rel, line):
                    found.append(f"{rel}:{n}: {what}: {line.strip()[:160]}")
    assert not found, "obsolete or wrong legal references:\n" + "\n".join(found)


def test_the_allowed_sentences_are_still_there() -> None:
    """An allow-list entry that no longer matches anything is removed, not kept."""
    for path, phrase in ALLOWED:
        assert phrase in (ROOT / path).read_text(encoding="utf-8"), (path, phrase)


def test_the_consent_example_cites_the_current_ground() -> None:
    from api.routes.consents import ConsentIn

    examples = ConsentIn.model_fields["legal_basis"].examples or []
    assert examples == ["samtycke (OSL 12 kap. 2 §)"]
