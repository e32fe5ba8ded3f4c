"""Schemathesis against the running API and its own OpenAPI document: no input, from any
role, gets a server error, and every answer matches what the document says (status,
content type, body schema). Real HTTP, real PostgreSQL as role wg_api.

The SSE stream never ends, so it is left out here; it has its own tests.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from api.auth import Role, mint
from tests.integration.harness import gateway_with_api, seed, settings_for

SECRET = "fuzz-secret-fuzz-secret-fuzz-secret"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES = int(os.environ.get("WG_FUZZ_EXAMPLES", "25"))
# No server error, and the OpenAPI document is accurate: every status, content type and
# response body the API answers with is the one it documents.
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")  # fmt: skip


@pytest.mark.timeout(600)
@pytest.mark.parametrize("role", [Role.TENANT_ADMIN, Role.CLINICIAN, Role.PLATFORM_ADMIN])
async def test_no_server_errors_for_any_input(mosquitto, database_url, tmp_path, role) -> None:
    await seed(database_url)
    settings = settings_for(
        mosquitto.url,
        database_url,
        jwt_secret=SECRET,
        limits={"api_requests_per_minute": 1_000_000, "api_burst": 1_000_000},
    )
    token = mint(SECRET, tenant="kommun-a", role=role, subject="fuzzer", org="232100-0172",
                 ttl_s=3600)  # fmt: skip
    report = tmp_path / "schemathesis.txt"
    async with gateway_with_api(settings) as (base, _):
        code = await _schemathesis(base, token, report)
    text = report.read_text()
    assert code == 0, text[-6000:]


async def _schemathesis(base: str, token: str, report: Path) -> int:
    with report.open("w") as out:
        proc = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS), "run", f"{base}/openapi.json",
            "--checks", CHECKS,
            "--max-examples", str(EXAMPLES),
            "--exclude-path-regex", "/stream$",
            "--header", f"Authorization: Bearer {token}",
            "--generation-deterministic",
            "--workers", "1", "--request-timeout", "20", "--no-color",
            stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=report.parent,
        )  # fmt: skip
        return await proc.wait()
