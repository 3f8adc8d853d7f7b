"""Teams notification of a batch that ended FAILED, ERROR or CANCELLED.

A batch reaches such a state in its asset's run (its jobs failed) or outside any asset run:
cancelled from the CLI or the ``batch_control`` job, reconciled by another run. So the card
is not sent by whoever moved the batch but by one function, ``notify_failed_batch``: the
asset calls it right after its run (the card then links that run) and the
``failed_batch_notifications`` sensor calls it for every failed batch it finds, whatever put
it there. Both may notice the same failure, so the function first claims it in the store
(``add_batch_event_once``, keyed by the status and the moment the batch settled): one card
per failure, however many callers, and a new card when the batch fails again after a
resubmission.

The card carries what the predecessor system's card showed: the cycle, the stage (the batch
type's place among the cycle's twelve) and the step (the Dagster asset that runs it), the
batch type, the job counts, and links to the asset and, when known, the run.

A notification that cannot be delivered is logged and recorded, never fails the batch (see
``clients.teams.notify_batch``) and is not sent again: the batch's state is the truth, the
card only points people at it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta

from batch_pipelines.clients.teams import TeamsClient, adaptive_card, notify_batch
from batch_pipelines.core.statuses import BatchStatus
from batch_pipelines.risk_modeling.batch_types import BATCH_TYPE_ORDER, BatchType
from batch_pipelines.risk_modeling.cycle_batches import FAMILY
from batch_pipelines.store.batch_store import BatchRecord, BatchStore

NOTIFY_ON = frozenset({BatchStatus.FAILED, BatchStatus.ERROR, BatchStatus.CANCELLED})

# The batch event that claims a failure's card (its data["key"] is ``failure_key``).
CLAIM_MESSAGE = "Teams notification claimed"

# How far back of its last tick the sensor looks again: a batch whose settling committed
# after that tick had begun still has its settle time before the tick's, so it would be
# missed without the overlap. Claims make looking twice harmless.
SENSOR_OVERLAP = timedelta(minutes=10)


def stage_of(batch_type: BatchType | str) -> str:
    """The batch type's place in the cycle, numbered like the seed's stages: ``09 of 12``."""
    number = BATCH_TYPE_ORDER.index(BatchType(batch_type)) + 1
    return f"{number:02d} of {len(BATCH_TYPE_ORDER)}"


def step_of(batch_type: BatchType | str) -> str:
    """The step that runs the batch: its asset's key path (the asset group is the family)."""
    return f"{FAMILY}/{BatchType(batch_type).asset_name}"


def failure_key(status: BatchStatus, settled_at: datetime | None) -> str | None:
    """What identifies one failure of a batch (None when the status needs no card): the
    failed status and when the batch settled in it, so a later failure has a new key."""
    if status not in NOTIFY_ON:
        return None
    return f"{status.value}@{settled_at.isoformat() if settled_at else '-'}"


def batches_to_notify(batches: Iterable[BatchRecord], since: datetime) -> list[BatchRecord]:
    """The batches in a failed state that settled at ``since`` or later."""
    return [
        b
        for b in batches
        if b.status in NOTIFY_ON and b.settled_at is not None and b.settled_at >= since
    ]


def sensor_window_start(cursor: str | None, now: datetime) -> datetime:
    """Where the sensor starts looking: its last tick (the cursor), or now on its first tick
    (failures from before the sensor existed were notified by their runs), less the overlap."""
    try:
        last = datetime.fromisoformat(cursor) if cursor else now
    except ValueError:
        last = now
    return last - SENSOR_OVERLAP


def batch_card(
    *,
    cycle: str,
    batch_type: BatchType | str,
    batch_id: int,
    status: BatchStatus,
    counts: dict[str, int],
    run_url: str | None,
    asset_url: str | None = None,
) -> dict:
    facts = [
        ("Cycle", cycle),
        ("Stage", stage_of(batch_type)),
        ("Step", step_of(batch_type)),
        ("Batch type", str(batch_type)),
        ("Batch", str(batch_id)),
        ("Status", status.value),
        *((f"Jobs {s}", str(n)) for s, n in sorted(counts.items())),
    ]
    links = [("Open the Dagster run", run_url)] if run_url else []
    if asset_url:
        links.append(("Open the batch's asset", asset_url))
    return adaptive_card(f"{batch_type} batch {status.value} ({cycle})", facts, links=links)


def notify_failed_batch(
    store: BatchStore,
    teams: TeamsClient,
    batch_id: int,
    *,
    dagster_url: str,
    run_id: str | None = None,
) -> bool | None:
    """Send the card of the batch's current failure, once. None when nothing was sent (the
    batch is not a failed risk-modeling batch, or this failure's card was claimed already);
    otherwise whether the card was delivered. Blocking: call it from synchronous code."""
    batch = store.get_batch(batch_id)
    key = failure_key(batch.status, batch.settled_at)
    if key is None or batch.family != FAMILY:
        return None
    if not store.add_batch_event_once(batch_id, CLAIM_MESSAGE, key=key, data={"run_id": run_id}):
        return None
    base = dagster_url.rstrip("/")
    card = batch_card(
        cycle=batch.partition_key or "-",
        batch_type=batch.batch_type,
        batch_id=batch.id,
        status=batch.status,
        counts=store.job_status_counts(batch_id),
        run_url=f"{base}/runs/{run_id}" if run_id else None,
        asset_url=f"{base}/assets/{step_of(batch.batch_type)}",
    )
    delivered = asyncio.run(notify_batch(teams, card))
    store.add_batch_event(
        batch_id,
        "Teams notification " + ("sent" if delivered else "NOT delivered"),
        level="WARNING",
        data={"card": card, "delivered": delivered, "key": key},
    )
    return delivered
