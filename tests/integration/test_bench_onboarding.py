"""The bulk-onboarding benchmark's smoke mode runs end to end: a dry run, an apply and an
idempotent second apply of one file through the API, and a worker's registry cache that
follows the import. The one-minute target is judged by the full run
(``python -m bench.onboarding``), never by a timed test."""

from __future__ import annotations

from bench import onboarding


def test_onboarding_bench_smoke_imports_and_reimports() -> None:
    result = onboarding.main(["--smoke"])
    rows = result["rows"]
    assert result["devices"] == 200 and rows == 600
    assert result["dry_run_summary"] == {"create": rows, "unchanged": 0, "error": 0}
    assert result["apply_summary"] == {"create": rows, "unchanged": 0, "error": 0}
    assert result["reapply_summary"] == {"create": 0, "unchanged": rows, "error": 0}
    assert result["assignments_stored"] == 200
    assert result["dry_run_s"] > 0 and result["apply_s"] > 0
    assert result["registry_cache_caught_up_s"] is not None
