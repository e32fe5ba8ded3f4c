"""The export benchmark's smoke mode runs end to end: a synthetic registry bulk-loaded,
exported by ``welfare-gateway export`` in a process of its own, its manifest's row counts
equal to the database's, and restored into a new database holding every row. The figures
are judged by the full run (``python -m bench.export``, docs/export.md), never by a timed
test."""

from __future__ import annotations

from bench import export


def test_export_bench_smoke_exports_every_row() -> None:
    result = export.main(["--smoke"])
    assert result["devices"] == 400
    assert result["rows_match_database"], result["rows_per_table"]
    assert result["rows_per_table"]["devices"] == 400
    assert result["rows_per_table"]["persons"] == 400
    assert result["fhir_observations"] == 3 * 4 * 100  # weights; panels and heart rates
    assert result["rows_per_s"] > 0 and result["peak_rss_mb"] > 0
    # restored into a new database by welfare-gateway restore: every row there
    assert result["restored_rows_match"] and result["restore_s"] > 0
