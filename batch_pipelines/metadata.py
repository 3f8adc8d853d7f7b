"""Metadata shapes and asset checks shared by every family's assets and jobs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import dagster as dg

# Error texts in a table cell: enough to recognise the error, short enough to scan.
ERROR_CHARS = 300


def metadata_table(
    columns: Sequence[tuple[str, str]], rows: Iterable[Mapping[str, Any]]
) -> dg.TableMetadataValue:
    """A table for the UI from ``(name, type)`` columns and one mapping per row (the caller
    limits the rows: the event log keeps every materialization's metadata)."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns])
    names = [name for name, _ in columns]
    return dg.MetadataValue.table(
        [dg.TableRecord({n: row[n] for n in names}) for row in rows], schema=schema
    )


# The standard figures every family's batch asset reports, under these names, so the UI's
# plots and a reader compare families without a dictionary. Family-specific metadata goes
# beside them under its own names.
STANDARD_KEYS = (
    "units_total",
    "units_succeeded",
    "units_failed",
    "units_skipped",
    "success_rate",
    "cost",
    "tokens",
    "duration_seconds",
    "batch_id",
    "batch_status",
)
# Only where the family measures it (calls to a model service, say).
P95_LATENCY_KEY = "p95_latency_ms"

RECONCILED_CHECK = "reconciled_completed"
NOTHING_FAILED_CHECK = "nothing_failed"
PROCESSED_CHECK = "processed_something"
STANDARD_CHECKS = (RECONCILED_CHECK, NOTHING_FAILED_CHECK, PROCESSED_CHECK)


@dataclass(frozen=True)
class BatchOutcome:
    """What one materialization of a batch asset did, in the shared vocabulary.

    A unit is the family's unit of work (a risk job, a document item in a phase, a configured
    request, a role). ``units_total`` counts every unit of the batch (or phase), including
    those done by earlier runs and those skipped; ``units_succeeded`` and ``units_failed``
    count them as they stand now; ``units_skipped`` counts units deliberately not worked (a
    skipped job, a role already ready). ``reconciled`` says whether the batch reconciled
    COMPLETED (``None``: ``batch_status == "COMPLETED"``); ``reason`` says why it stands
    where it does (the reconciliation's sentence, why there was nothing to do).
    """

    units_total: int
    units_succeeded: int
    units_failed: int
    units_skipped: int = 0
    cost: Decimal | float = 0.0
    tokens: int = 0
    duration_seconds: float = 0.0
    batch_id: str | int | None = None
    batch_status: str = ""
    reconciled: bool | None = None
    reason: str = ""
    p95_latency_ms: float | None = None
    links: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        counts = (self.units_total, self.units_succeeded, self.units_failed, self.units_skipped)
        if min(counts) < 0 or sum(counts[1:]) > self.units_total:
            raise ValueError(
                f"inconsistent unit counts: total {self.units_total}, succeeded "
                f"{self.units_succeeded}, failed {self.units_failed}, skipped {self.units_skipped}"
            )

    @property
    def units_processed(self) -> int:
        """Units the batch had to work (not skipped), done now or by an earlier run."""
        return self.units_total - self.units_skipped

    @property
    def success_rate(self) -> float | None:
        """Succeeded over processed units; ``None`` when none were processed (not 100%)."""
        if self.units_processed <= 0:
            return None
        return round(self.units_succeeded / self.units_processed, 4)

    @property
    def is_reconciled(self) -> bool:
        if self.reconciled is not None:
            return self.reconciled
        return self.batch_status == "COMPLETED"


def _text(value: object) -> dg.TextMetadataValue:
    # Ids are labels: as text the UI lists them instead of plotting them as a number series.
    return dg.MetadataValue.text("" if value is None else str(value))


def standard_metadata(outcome: BatchOutcome) -> dict[str, dg.RawMetadataValue]:
    """The standard metadata of a batch asset's materialization (``STANDARD_KEYS``, plus
    ``p95_latency_ms`` when measured and one URL entry per link)."""
    metadata: dict[str, dg.RawMetadataValue] = {
        "units_total": outcome.units_total,
        "units_succeeded": outcome.units_succeeded,
        "units_failed": outcome.units_failed,
        "units_skipped": outcome.units_skipped,
        "success_rate": outcome.success_rate,
        "cost": float(outcome.cost),
        "tokens": int(outcome.tokens),
        "duration_seconds": round(float(outcome.duration_seconds), 3),
        "batch_id": _text(outcome.batch_id),
        "batch_status": _text(outcome.batch_status),
    }
    if outcome.p95_latency_ms is not None:
        metadata[P95_LATENCY_KEY] = round(float(outcome.p95_latency_ms), 1)
    for name, url in outcome.links.items():
        metadata[name] = dg.MetadataValue.url(url)
    return metadata


def standard_check_specs(
    asset: dg.AssetKey | str, *, reconciled_blocking: bool = False
) -> list[dg.AssetCheckSpec]:
    """The standard checks of a batch asset. ``reconciled_blocking``: downstream assets of
    the run wait for ``reconciled_completed`` and do not start when it fails."""
    return [
        dg.AssetCheckSpec(
            RECONCILED_CHECK,
            asset=asset,
            blocking=reconciled_blocking,
            description="The batch reconciled COMPLETED.",
        ),
        dg.AssetCheckSpec(
            NOTHING_FAILED_CHECK,
            asset=asset,
            description="No unit failed (does not pass on a batch that processed no unit).",
        ),
        dg.AssetCheckSpec(
            PROCESSED_CHECK,
            asset=asset,
            description="The batch processed at least one unit: warns when it had nothing to do.",
        ),
    ]


def standard_check_results(
    outcome: BatchOutcome, partition: str | None, *, asset_key: dg.AssetKey | None = None
) -> list[dg.AssetCheckResult]:
    """The standard checks' results, each with the counts and rate as numbers (for the
    UI's check plots) and the partition it is about (checks of a partitioned asset are not
    partitioned in Dagster 1.13 unless declared with a preview feature, so the partition is
    named in the metadata).

    A batch that processed no unit is not "nothing failed": that check does not pass (WARN),
    nor does ``processed_something``; a failed unit fails ``nothing_failed`` (ERROR).
    """
    processed = outcome.units_processed
    numbers: dict[str, dg.RawMetadataValue] = {
        "partition": _text(partition),
        "batch_id": _text(outcome.batch_id),
        "units_total": outcome.units_total,
        "units_processed": processed,
        "units_succeeded": outcome.units_succeeded,
        "units_failed": outcome.units_failed,
        "units_skipped": outcome.units_skipped,
        "success_rate": outcome.success_rate,
    }
    reason = {"reason": _text(outcome.reason)} if outcome.reason else {}
    if processed <= 0:
        failed_text = "no unit was processed, so none is known not to have failed"
    elif outcome.units_failed:
        failed_text = f"{outcome.units_failed} of {processed} units failed"
    else:
        failed_text = f"none of {processed} units failed"
    return [
        dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=RECONCILED_CHECK,
            passed=outcome.is_reconciled,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"batch {outcome.batch_status or '(no status)'}",
            metadata={**numbers, "batch_status": _text(outcome.batch_status), **reason},
        ),
        dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=NOTHING_FAILED_CHECK,
            passed=processed > 0 and outcome.units_failed == 0,
            severity=(
                dg.AssetCheckSeverity.ERROR if outcome.units_failed else dg.AssetCheckSeverity.WARN
            ),
            description=failed_text,
            metadata={**numbers, **reason},
        ),
        dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=PROCESSED_CHECK,
            passed=processed > 0,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{processed} units processed",
            metadata={**numbers, **reason},
        ),
    ]


def _raw(value: Any) -> Any:
    return getattr(value, "value", value)


def checks_line(evaluations: Iterable[Any]) -> str:
    """The checks of one or more materializations on one console line, for the demo and
    the CLI: each check with how many of its evaluations passed, and the severity of those
    that did not (``evaluations``: Dagster's ``AssetCheckEvaluation``s, or anything with a
    ``check_name``, ``passed`` and ``severity``)."""
    by_name: dict[str, list[Any]] = {}
    for evaluation in evaluations:
        by_name.setdefault(evaluation.check_name, []).append(evaluation)
    if not by_name:
        return "checks: none evaluated"
    parts = []
    for name, results in by_name.items():
        passed = sum(1 for r in results if r.passed)
        part = f"{name} {passed}/{len(results)} passed"
        failed: dict[str, int] = {}
        for r in results:
            if not r.passed:
                failed[r.severity.value] = failed.get(r.severity.value, 0) + 1
        if failed:
            part += " (" + ", ".join(f"{n} {sev}" for sev, n in sorted(failed.items())) + ")"
        parts.append(part)
    return "checks: " + ", ".join(parts)


def units_line(metadata: Mapping[str, Any]) -> str:
    """The standard figures of one materialization on one console line (``metadata`` as
    ``standard_metadata`` returns it or as Dagster stores it)."""
    m = {k: _raw(v) for k, v in metadata.items()}
    rate = m.get("success_rate")
    line = (
        f"units {m['units_total']}: {m['units_succeeded']} succeeded, {m['units_failed']} failed, "
        f"{m['units_skipped']} skipped (success rate {'-' if rate is None else f'{rate:.0%}'}); "
        f"cost {m['cost']:.6f}, {m['tokens']} tokens, {m['duration_seconds']:.1f} s"
    )
    if m.get(P95_LATENCY_KEY) is not None:
        line += f", p95 latency {m[P95_LATENCY_KEY]:.0f} ms"
    return line
