"""The standard metadata and checks every family's batch asset reports."""

from decimal import Decimal

import dagster as dg
import pytest

from batch_pipelines.metadata import (
    NOTHING_FAILED_CHECK,
    PROCESSED_CHECK,
    RECONCILED_CHECK,
    STANDARD_CHECKS,
    STANDARD_KEYS,
    BatchOutcome,
    checks_line,
    standard_check_results,
    standard_check_specs,
    standard_metadata,
    units_line,
)


def assert_standard_metadata(metadata) -> None:
    """Shared by every family's test: the standard keys are there, ids and statuses are
    text (never a number the UI would plot) and the figures are numbers or empty."""
    missing = [k for k in STANDARD_KEYS if k not in metadata]
    assert not missing, f"standard metadata keys missing: {missing}"
    for key in ("batch_id", "batch_status"):
        value = metadata[key]
        assert isinstance(value, dg.TextMetadataValue | str), (key, value)
    for key in ("units_total", "units_succeeded", "units_failed", "units_skipped", "tokens"):
        raw = getattr(metadata[key], "value", metadata[key])
        assert isinstance(raw, int) and not isinstance(raw, bool), (key, raw)
    for key in ("cost", "duration_seconds"):
        raw = getattr(metadata[key], "value", metadata[key])
        assert isinstance(raw, float | int), (key, raw)
    for old in ("jobs_total", "items_total", "requests_total"):
        assert old not in metadata, f"{old} is reported as units_total now"


def _checks(outcome: BatchOutcome, partition: str = "p1") -> dict[str, dg.AssetCheckResult]:
    return {r.check_name: r for r in standard_check_results(outcome, partition)}


def test_the_standard_metadata_has_every_key_with_ids_as_text_and_links_as_urls():
    outcome = BatchOutcome(
        units_total=10,
        units_succeeded=7,
        units_failed=2,
        units_skipped=1,
        cost=Decimal("0.125"),
        tokens=300,
        duration_seconds=1.23456,
        batch_id=42,
        batch_status="FAILED",
        p95_latency_ms=812.34,
        links={"dashboard_url": "http://localhost:3000/roles/r1"},
    )
    metadata = standard_metadata(outcome)
    assert_standard_metadata(metadata)
    assert metadata["batch_id"] == dg.MetadataValue.text("42")
    assert metadata["success_rate"] == pytest.approx(7 / 9, abs=1e-4)
    assert (metadata["cost"], metadata["tokens"], metadata["duration_seconds"]) == (
        0.125,
        300,
        1.235,
    )
    assert metadata["p95_latency_ms"] == 812.3
    assert metadata["dashboard_url"] == dg.MetadataValue.url("http://localhost:3000/roles/r1")


def test_latency_is_left_out_where_it_is_not_measured_and_the_rate_of_nothing_is_empty():
    metadata = standard_metadata(BatchOutcome(0, 0, 0, batch_id=None))
    assert "p95_latency_ms" not in metadata
    assert metadata["success_rate"] is None  # not 100% of nothing
    assert metadata["batch_id"] == dg.MetadataValue.text("")


def test_counts_that_do_not_add_up_are_refused():
    with pytest.raises(ValueError, match="inconsistent unit counts"):
        BatchOutcome(units_total=2, units_succeeded=2, units_failed=1)


def test_a_batch_that_processed_nothing_warns_and_does_not_pass_as_nothing_failed():
    checks = _checks(BatchOutcome(0, 0, 0, batch_status="COMPLETED", reason="no users"))
    processed = checks[PROCESSED_CHECK]
    assert not processed.passed and processed.severity == dg.AssetCheckSeverity.WARN
    nothing_failed = checks[NOTHING_FAILED_CHECK]
    assert not nothing_failed.passed and nothing_failed.severity == dg.AssetCheckSeverity.WARN
    assert nothing_failed.metadata["units_processed"].value == 0
    assert nothing_failed.metadata["reason"].value == "no users"


def test_a_batch_whose_units_were_all_skipped_processed_nothing():
    checks = _checks(BatchOutcome(3, 0, 0, units_skipped=3, batch_status="COMPLETED"))
    assert not checks[PROCESSED_CHECK].passed and not checks[NOTHING_FAILED_CHECK].passed


def test_failed_units_fail_nothing_failed_with_their_number():
    checks = _checks(BatchOutcome(10, 7, 3, batch_id=5, batch_status="FAILED"))
    failed = checks[NOTHING_FAILED_CHECK]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.metadata["units_failed"].value == 3
    assert failed.metadata["success_rate"].value == pytest.approx(0.7)
    assert "3 of 10 units failed" in (failed.description or "")
    assert not checks[RECONCILED_CHECK].passed and checks[PROCESSED_CHECK].passed


def test_a_completed_batch_passes_every_check_and_each_names_its_partition():
    checks = _checks(BatchOutcome(4, 4, 0, batch_id=9, batch_status="COMPLETED"), "2025Q1")
    assert set(checks) == set(STANDARD_CHECKS)
    for result in checks.values():
        assert result.passed
        assert result.metadata["partition"] == dg.MetadataValue.text("2025Q1")
        assert result.metadata["batch_id"] == dg.MetadataValue.text("9")
        assert result.metadata["units_total"].value == 4


def test_reconciliation_can_be_given_instead_of_derived_from_the_status():
    outcome = BatchOutcome(1, 1, 0, batch_status="running", reconciled=False)
    assert not _checks(outcome)[RECONCILED_CHECK].passed


def test_the_standard_check_specs_name_the_standard_checks_on_the_asset():
    specs = standard_check_specs(dg.AssetKey(["fam", "a"]), reconciled_blocking=True)
    assert [s.name for s in specs] == list(STANDARD_CHECKS)
    assert {s.asset_key for s in specs} == {dg.AssetKey(["fam", "a"])}
    assert [s.blocking for s in specs] == [True, False, False]


def test_the_console_lines_count_checks_and_show_the_standard_figures():
    ok = BatchOutcome(4, 4, 0, cost=0.5, tokens=10, duration_seconds=2.0, batch_status="COMPLETED")
    bad = BatchOutcome(4, 3, 1, batch_status="FAILED")
    line = checks_line([*standard_check_results(ok, "a"), *standard_check_results(bad, "b")])
    assert line == (
        "checks: reconciled_completed 1/2 passed (1 ERROR), nothing_failed 1/2 passed (1 ERROR), "
        "processed_something 2/2 passed"
    )
    assert checks_line([]) == "checks: none evaluated"
    assert units_line(standard_metadata(ok)) == (
        "units 4: 4 succeeded, 0 failed, 0 skipped (success rate 100%); "
        "cost 0.500000, 10 tokens, 2.0 s"
    )
