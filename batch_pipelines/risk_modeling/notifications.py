"""Teams notification of a batch that ended FAILED, ERROR or CANCELLED.

A notification that cannot be delivered is logged and never fails the batch (see
``clients.teams.notify_batch``): the batch's state is the truth, the card only points
people at it.
"""

from __future__ import annotations

from batch_pipelines.clients.teams import adaptive_card
from batch_pipelines.core.statuses import BatchStatus

NOTIFY_ON = frozenset({BatchStatus.FAILED, BatchStatus.ERROR, BatchStatus.CANCELLED})


def batch_card(
    *,
    cycle: str,
    batch_type: str,
    batch_id: int,
    status: BatchStatus,
    counts: dict[str, int],
    run_url: str | None,
) -> dict:
    facts = [
        ("Cycle", cycle),
        ("Batch type", batch_type),
        ("Batch", str(batch_id)),
        ("Status", status.value),
        *((f"Jobs {s}", str(n)) for s, n in sorted(counts.items())),
    ]
    return adaptive_card(
        f"{batch_type} batch {status.value} ({cycle})",
        facts,
        link=("Open the Dagster run", run_url) if run_url else None,
    )
