"""The import and wiring rules of docs/architecture.md, read from the source (AST)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: I/O libraries a pure module must not import
IO_LIBRARIES = {"psycopg", "psycopg_pool", "aiomqtt", "paho", "httpx", "fastapi", "starlette",
                "uvicorn", "amqtt", "pgserver", "socket", "asyncio", "subprocess"}  # fmt: skip
WEB_STACK = {"api", "fastapi", "starlette", "uvicorn"}
#: the collaborators only gateway/bootstrap.py builds (docs/architecture.md, Composition)
WIRED = {
    "GatewayService", "AlarmService", "LockService", "MqttConsumer", "BatchWriter", "Ingest",
    "AlarmIntake", "EngineRole", "ControlResponder", "RegistryCache", "DeviceStates",
    "WebhookDispatcher", "AlarmPublisher", "AlarmJournal", "JournalShipper", "AlarmDisclosure",
    "PersonRulesCache", "WorkerLink", "ApiParts", "StayCache", "MoveApplier", "PayloadDecoder",
}  # fmt: skip


def modules(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module name ``path`` imports, at any depth (function-level imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offenders(
    paths: Iterator[Path], forbidden: set[str] | None, prefixes: tuple[str, ...]
) -> list[str]:
    found = []
    for path in paths:
        for name in sorted(imported(path)):
            top = name.split(".")[0]
            if (forbidden and top in forbidden) or name.startswith(prefixes):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_the_domain_is_pure() -> None:
    outside = ("gateway.adapters", "gateway.worker", "gateway.control", "gateway.entrypoints",
               "gateway.config", "gateway.support", "gateway.bootstrap", "api")  # fmt: skip
    assert offenders(modules("gateway/domain"), IO_LIBRARIES, outside) == []


def test_the_device_contract_depends_on_nothing_of_the_gateway() -> None:
    assert offenders(modules("firmware_contracts"), None, ("gateway", "api")) == []


def test_the_api_never_imports_the_entry_points_or_the_composition_root() -> None:
    found = offenders(modules("api"), None, ("gateway.entrypoints", "gateway.bootstrap"))
    assert found == []


def test_a_worker_loads_no_web_stack() -> None:
    found = offenders(modules("gateway/worker", "gateway/control"), WEB_STACK, ())
    assert found == []


def constructed(path: Path) -> set[str]:
    calls = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in WIRED:
                calls.add(name)
    return calls


def test_only_the_composition_root_builds_the_collaborators() -> None:
    found = {
        str(path.relative_to(ROOT)): sorted(names)
        for path in modules("gateway", "api")
        if path.name != "bootstrap.py" and (names := constructed(path))
    }
    assert found == {}


@pytest.mark.parametrize("rule", [test_the_domain_is_pure, test_a_worker_loads_no_web_stack])
def test_the_rules_would_catch_a_breach(
    rule: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module that breaks a rule is found (the rules cannot pass vacuously)."""
    breach = {
        "test_the_domain_is_pure": ("gateway/domain", "import psycopg\n"),
        "test_a_worker_loads_no_web_stack": ("gateway/worker", "from api import deps\n"),
    }
    folder, text = breach[rule.__name__]  # type: ignore[attr-defined]
    bad = tmp_path / folder / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text(text)
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    with pytest.raises(AssertionError):
        rule()  # type: ignore[operator]
