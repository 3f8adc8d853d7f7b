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

Delivery is at least once: after sending, the sender records the outcome (sent / NOT
delivered) as a second event. A claim with no outcome after it for ``CLAIM_TIMEOUT`` means
its sender was killed between claiming and sending; the sensor then claims the failure
again and sends the card. If the sender was killed after the card went out but before it
recorded so, the card is sent twice: a duplicate card is acceptable, a lost one is not.

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
from batch_pipelines.store.batch_store import BatchRecord, BatchStore, utcnow

NOTIFY_ON = frozenset({BatchStatus.FAILED, BatchStatus.ERROR, BatchStatus.CANCELLED})

# The batch event that claims a failure's card (its data["key"] is ``failure_key``; a claim
# that takes over a stale one has its own key and the failure's in data["failure"]).
CLAIM_MESSAGE = "Teams notification claimed"
# The outcome events, recorded after sending (data["key"] is the failure's key).
SENT_MESSAGE = "Teams notification sent"
NOT_DELIVERED_MESSAGE = "Teams notification NOT delivered"
OUTCOME_MESSAGES = frozenset({SENT_MESSAGE, NOT_DELIVERED_MESSAGE})
SENSOR_SENDER = "the failed_batch_notifications sensor"
# A claim with no outcome after it this long is taken for a sender killed before it sent:
# above the longest a send takes with the Teams client's defaults (6 tries of 30 s, 5 waits of
# at most 120 s Retry-After: 13 minutes), so only a kill, not a slow send, sends it twice.
CLAIM_TIMEOUT = timedelta(minutes=15)

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


def _failure_of(event: dict) -> str | None:
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    return data.get("failure") or data.get("key")


def stale_claim(
    events: Iterable[dict], key: str, now: datetime, timeout: timedelta = CLAIM_TIMEOUT
) -> dict | None:
    """The latest claim of failure ``key`` when it is older than ``timeout`` and no outcome
    of that failure was recorded after it (its sender died before sending), else None."""
    events = list(events)
    claims = [e for e in events if e["message"] == CLAIM_MESSAGE and _failure_of(e) == key]
    if not claims:
        return None
    last = max(claims, key=lambda e: e["id"])
    if any(
        e["message"] in OUTCOME_MESSAGES and _failure_of(e) == key and e["id"] > last["id"]
        for e in events
    ):
        return None
    return last if last["created_at"] <= now - timeout else None


def notification_state(events: Iterable[dict], key: str) -> str:
    """Who sent, or claimed, the card of failure ``key``, for the asset's log: the asset and
    the sensor race for it, so "not sent by me" must not read as "not sent"."""
    events = [e for e in events if _failure_of(e) == key]
    outcomes = [e for e in events if e["message"] in OUTCOME_MESSAGES]
    claims = [e for e in events if e["message"] == CLAIM_MESSAGE]
    if outcomes:
        last = outcomes[-1]
        how = "sent" if last["message"] == SENT_MESSAGE else "NOT delivered"
        return f"{how} by {last['data'].get('by') or 'an earlier sender'}"
    if claims:
        return f"claimed by {claims[-1]['data'].get('by') or 'an earlier sender'}, not sent yet"
    return "not sent"


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


def describe_notification(store: BatchStore, batch_id: int) -> str:
    """``notification_state`` of the batch's current failure, read from the store."""
    batch = store.get_batch(batch_id)
    key = failure_key(batch.status, batch.settled_at)
    return "not needed" if key is None else notification_state(store.batch_events(batch_id), key)


def notify_failed_batch(
    store: BatchStore,
    teams: TeamsClient,
    batch_id: int,
    *,
    dagster_url: str,
    run_id: str | None = None,
    now: datetime | None = None,
) -> bool | None:
    """Send the card of the batch's current failure, at least once. None when nothing was
    sent (the batch is not a failed risk-modeling batch, or this failure's card was claimed
    already by a sender that is not known dead); otherwise whether the card was delivered.
    Blocking: call it from synchronous code."""
    batch = store.get_batch(batch_id)
    key = failure_key(batch.status, batch.settled_at)
    if key is None or batch.family != FAMILY:
        return None
    by = f"run {run_id}" if run_id else SENSOR_SENDER
    claim = {"run_id": run_id, "by": by}
    if not store.add_batch_event_once(batch_id, CLAIM_MESSAGE, key=key, data=claim):
        stale = stale_claim(store.batch_events(batch_id), key, now or utcnow())
        # Taking over a stale claim is itself a claim, once per stale claim.
        if stale is None or not store.add_batch_event_once(
            batch_id,
            CLAIM_MESSAGE,
            key=f"{key} again after claim {stale['id']}",
            data={**claim, "failure": key},
        ):
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
        SENT_MESSAGE if delivered else NOT_DELIVERED_MESSAGE,
        level="WARNING",
        data={"card": card, "delivered": delivered, "key": key, "by": by},
    )
    return delivered
