"""Status, per-item results and analytics of a document job, from the store.

The same dictionaries feed the CLI (table or ``--json``), the Dagster metadata and the
exports, so a number means the same thing everywhere.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from decimal import Decimal
from typing import Any

from batch_pipelines.core.aggregate import ItemState, aggregate_counts
from batch_pipelines.document_ai.batch_jobs import DocJobStatus, allowed_actions
from batch_pipelines.document_ai.pipelines import PipelineTemplate
from batch_pipelines.document_ai.store import COMPLETED, FAILED, DocumentJob, DocumentJobStore


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.000001")))


def _item_state_counts(job: DocumentJob, item_statuses: dict[str, int]) -> dict[ItemState, int]:
    counts = {
        ItemState.COMPLETED: item_statuses.get(COMPLETED, 0),
        ItemState.FAILED: item_statuses.get(FAILED, 0),
        ItemState.IN_PROGRESS: item_statuses.get("IN_PROGRESS", 0),
    }
    counts[ItemState.QUEUED] = max(0, job.item_count - sum(counts.values()))
    return counts


def job_status(
    jobs: DocumentJobStore, job: DocumentJob, template: PipelineTemplate
) -> dict[str, Any]:
    """Progress (items settled across the whole pipeline), phase, cost, tokens and ETA."""
    item_statuses = jobs.item_status_counts(job.batch_id)
    phase_counts = jobs.phase_counts(job.batch_id)
    # The ETA needs the mean time an item has spent in the pipeline so far, and a rate to
    # base it on: until one item has gone through (done or failed) there is none - the time
    # items spent in the first phase only says nothing of the whole pipeline.
    settled = item_statuses.get(COMPLETED, 0) + item_statuses.get(FAILED, 0)
    mean_item_seconds = jobs.item_latency_mean(job.batch_id) if settled else None
    view = aggregate_counts(
        _item_state_counts(job, item_statuses),
        durations_seconds=[mean_item_seconds] if mean_item_seconds is not None else [],
        concurrency=job.options.concurrency,
    )
    total_cost, total_tokens = jobs.store.ledger_total(job.batch_id)
    # Who works a RUNNING job, or that its worker died (then resume it at once).
    claim = jobs.claim_state(job) if job.status == DocJobStatus.RUNNING else None
    return {
        **job.to_dict(),
        "worker": claim.why if claim is not None else None,
        "worker_died": bool(claim and claim.dead),
        "progress": {
            "total": view.total,
            "completed": view.completed,
            "failed": view.failed,
            "percent": view.progress_percent,
        },
        "phases": [
            {
                "phase": p.name,
                "completed": phase_counts.get(p.name, {}).get(COMPLETED, 0),
                "failed": phase_counts.get(p.name, {}).get(FAILED, 0),
            }
            for p in template.phases
        ],
        "cost": _money(total_cost),
        "tokens": total_tokens,
        "eta_seconds": view.eta_seconds,
        # A job whose worker died can be resumed (it is failed with the reason first).
        "allowed_actions": sorted(
            allowed_actions(job.status) | ({"resume"} if claim and claim.dead else set())
        ),
    }


def item_results(
    jobs: DocumentJobStore,
    job: DocumentJob,
    template: PipelineTemplate,
    *,
    offset: int = 0,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Per item: input, final output, every phase's output, cost, status, errors, scores."""
    items = jobs.items(job.batch_id, offset=offset, limit=limit)
    ids = {i["id"] for i in items}
    # Only this page's rows and costs: an export pages through 10,000 items.
    rows = jobs.phase_rows(job.batch_id, item_ids=ids)
    by_item: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        by_item[r["item_id"]][r["phase"]] = r
    cost_by_item = jobs.cost_by_item(job.batch_id, ids)
    order = [p.name for p in template.phases]
    results = []
    for item in items:
        phases = by_item.get(item["id"], {})
        outputs, passages = {}, {}
        for name in order:
            if name in phases:
                value = phases[name]["output"]
                if isinstance(value, dict) and "passages" in value:
                    passages[name] = value["passages"]
                    value = value["value"]
                outputs[name] = value
        last_done = next((outputs[n] for n in reversed(order) if n in outputs), None)
        results.append(
            {
                "index": item["item_index"],
                "item_id": item["id"],
                "status": item["status"],
                "input": item["input"]["content"],
                "metadata": item["input"].get("metadata") or {},
                "output": last_done,
                "phase_outputs": outputs,
                "passages": passages,
                "validation_scores": {
                    n: phases[n]["score"]
                    for n in order
                    if n in phases and phases[n]["score"] is not None
                },
                "errors": {
                    n: phases[n]["error"] for n in order if n in phases and phases[n]["error"]
                },
                "cost": _money(cost_by_item.get(item["id"], Decimal(0))),
            }
        )
    return results


def analytics(
    jobs: DocumentJobStore, job: DocumentJob, template: PipelineTemplate
) -> dict[str, Any]:
    """Cost total / by phase / per item, processing time per item and by phase, success
    rate (so far) and the failed items."""
    totals = jobs.cost_totals(job.batch_id)
    rows = jobs.phase_rows(job.batch_id)
    per_item_time: dict[int, float] = defaultdict(float)
    per_phase_time: dict[str, list[float]] = defaultdict(list)
    failed: list[dict[str, Any]] = []
    index_of = {i["id"]: i["item_index"] for i in jobs.items(job.batch_id)}
    for r in rows:
        latency = r["latency_seconds"] or 0.0
        per_item_time[r["item_id"]] += latency
        per_phase_time[r["phase"]].append(latency)
        if r["status"] == FAILED:
            failed.append(
                {
                    "index": index_of.get(r["item_id"]),
                    "phase": r["phase"],
                    "error": r["error"],
                    "score": r["score"],
                }
            )
    item_statuses = jobs.item_status_counts(job.batch_id)
    # Success rate so far: of the items that have been worked on (done, failed, or through
    # some phases of a job that is paused or still running), the share not failed - a
    # number as soon as one item has a result, not only once items finish the pipeline.
    failed_items = item_statuses.get(FAILED, 0)
    worked = item_statuses.get(COMPLETED, 0) + failed_items + item_statuses.get("IN_PROGRESS", 0)
    item_costs = [c for k, c in totals.by_item.items() if k != "(none)"]
    return {
        "job": job.key,
        "cost_total": _money(totals.total_cost),
        "cost_by_phase": {
            p.name: _money(totals.by_phase.get(p.name, Decimal(0))) for p in template.phases
        },
        "cost_by_kind": {k: _money(v) for k, v in totals.by_kind.items()},
        "cost_per_item_mean": _money(sum(item_costs, Decimal(0)) / len(item_costs))
        if item_costs
        else None,
        "tokens": totals.total_tokens,
        "estimated_calls": totals.estimated_calls,
        "processing_seconds_per_item_mean": round(statistics.fmean(per_item_time.values()), 6)
        if per_item_time
        else None,
        "processing_seconds_by_phase_mean": {
            p.name: round(statistics.fmean(per_phase_time[p.name]), 6)
            if per_phase_time.get(p.name)
            else None
            for p in template.phases
        },
        "success_rate": round(100.0 * (worked - failed_items) / worked, 2) if worked else None,
        "failed_items": failed,
    }
