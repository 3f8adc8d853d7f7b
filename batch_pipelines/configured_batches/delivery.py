"""Results delivered to their recipients: the seed's *Distribution* step.

A batch's results reach people, not only the store: the job's distribution recipients get a
card with the batch's outcome and its results, and each member of a preference batch gets
their own result. Cards go through the Teams Workflows webhook (``clients.teams``, the
``teams`` resource): one Adaptive Card per recipient, which @mentions the recipient when
their e-mail is known, so Teams notifies them.

Three rules:

- **A delivery never fails the batch.** The results are stored whatever happens; a card
  that cannot be delivered (after the client's retries of 429 and 5xx) is recorded as
  failed, with the reason, and the batch settles as its requests say.
- **Idempotent.** Each delivery is recorded (context kind ``result_delivery``, key
  ``recipient/batch key``) right after its card is accepted; a rerun of the batch's tick
  sends only what was not delivered yet (failed or new). Teams has no idempotency key, so a
  process killed between the webhook's answer and the record re-sends that one card.
- **What is sent is decided by pure functions** (``plan_deliveries``, ``result_card``);
  sending and recording is ``deliver``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batch_pipelines.clients.teams import adaptive_card
from batch_pipelines.configured_batches.contexts import DELIVERY, ContextStore
from batch_pipelines.core.concurrency import map_bounded

DELIVERED = "delivered"
FAILED = "failed"
# What one card carries: result excerpts are cut so a card stays well under Teams' 28 KB.
EXCERPT_CHARS = 1500
EXCERPTS_PER_CARD = 8
# Cards in flight at once: a webhook rate-limits a burst long before the batch is done.
DELIVERY_CONCURRENCY = 4


@dataclass(frozen=True)
class Delivery:
    """One card for one recipient about one batch."""

    recipient: str
    batch_key: str
    card: dict[str, Any]
    kind: str  # "batch" (a distribution recipient) or "own_result" (a preference member)

    @property
    def key(self) -> str:
        return f"{self.recipient}/{self.batch_key}"


@dataclass(frozen=True)
class DeliveryReport:
    """What delivering a batch's results did, for run metadata."""

    sent: int = 0
    failed: int = 0
    already_delivered: int = 0
    failures: tuple[tuple[str, str], ...] = ()  # (recipient, reason)


@dataclass(frozen=True)
class BatchOutcome:
    """What a card says about the batch."""

    job_id: str
    title: str
    batch_key: str
    tick: str
    status: str
    succeeded: int
    total: int


def _excerpt(text: str | None) -> str:
    text = (text or "").strip()
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _mention(card: dict[str, Any], user: Mapping[str, Any] | None) -> dict[str, Any]:
    """``card`` opening with an @mention of ``user`` (by e-mail, as Teams identifies people),
    when the user's e-mail is known; unchanged otherwise."""
    email = (user or {}).get("email")
    if not email:
        return card
    name = str((user or {}).get("name") or email)
    tag = f"<at>{name}</at>"
    body = [{"type": "TextBlock", "text": f"For {tag}", "wrap": True}, *card["body"]]
    entity = {"type": "mention", "text": tag, "mentioned": {"id": str(email), "name": name}}
    return {**card, "body": body, "msteams": {"entities": [entity]}}


def result_card(
    outcome: BatchOutcome,
    results: Sequence[str],
    user: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of one recipient: the batch's outcome, and up to ``EXCERPTS_PER_CARD``
    results (each cut to ``EXCERPT_CHARS``)."""
    shown = [_excerpt(r) for r in results if (r or "").strip()][:EXCERPTS_PER_CARD]
    more = len([r for r in results if (r or "").strip()]) - len(shown)
    text = "\n\n".join(shown) if shown else "No results in this batch."
    if more > 0:
        text += f"\n\n…and {more} more results in the batch context {outcome.batch_key}."
    card = adaptive_card(
        outcome.title,
        [
            ("Job", outcome.job_id),
            ("Tick", outcome.tick),
            ("Status", outcome.status),
            ("Requests", f"{outcome.succeeded}/{outcome.total} succeeded"),
            ("Batch", outcome.batch_key),
        ],
        text=text,
    )
    return _mention(card, user)


def plan_deliveries(
    outcome: BatchOutcome,
    *,
    recipients: Sequence[str],
    batch_results: Sequence[str],
    own_results: Mapping[str, Sequence[str]],
    users: Mapping[str, Mapping[str, Any]],
    already_delivered: set[str],
) -> tuple[list[Delivery], int]:
    """The cards still to send, and how many were delivered by an earlier run.

    ``recipients`` (the job's valid distribution recipients) get the batch's results;
    each user of ``own_results`` (preference members with a succeeded result) gets their
    own. A recipient who is both gets one card, the batch's. A recipient whose delivery of
    this batch is in ``already_delivered`` is skipped."""
    planned: dict[str, Delivery] = {}
    for uid in recipients:
        planned[uid] = Delivery(
            uid, outcome.batch_key, result_card(outcome, batch_results, users.get(uid)), "batch"
        )
    for uid, results in own_results.items():
        if uid not in planned and results:
            planned[uid] = Delivery(
                uid, outcome.batch_key, result_card(outcome, results, users.get(uid)), "own_result"
            )
    done = [d for d in planned.values() if d.key in already_delivered]
    return [d for d in planned.values() if d.key not in already_delivered], len(done)


def delivered_keys(contexts: ContextStore, recipients: Sequence[str], batch_key: str) -> set[str]:
    """The recipients of ``batch_key`` whose card an earlier run delivered (their keys)."""
    keys = [f"{uid}/{batch_key}" for uid in recipients]
    return {
        key
        for key, data in contexts.get_many(DELIVERY, keys).items()
        if data.get("status") == DELIVERED
    }


def _reason(exc: Exception) -> str:
    """Why a card failed, for the record (the project's client errors never carry the
    webhook URL; the type says whether it was the service, the card or the setting)."""
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def deliver(
    client_factory: Callable[[], Any],
    deliveries: Sequence[Delivery],
    contexts: ContextStore,
    *,
    batch_id: int,
    job_id: str,
    tick: str,
) -> DeliveryReport:
    """Send ``deliveries`` (a few at a time) and record each right after its answer.

    The client retries 429 and 5xx itself; what still fails is recorded as failed with its
    reason (the client's errors never carry the webhook URL) and never raised."""
    if not deliveries:
        return DeliveryReport()

    def record(delivery: Delivery, error: str | None) -> tuple[Delivery, str | None]:
        contexts.put(
            DELIVERY,
            delivery.key,
            {
                "recipient": delivery.recipient,
                "job_id": job_id,
                "batch_key": delivery.batch_key,
                "tick": tick,
                "kind": delivery.kind,
                "channel": "teams",
                "status": FAILED if error else DELIVERED,
                "error": error,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            batch_id,
        )
        return delivery, error

    async def run() -> list[tuple[Delivery, str | None]]:
        try:
            client = client_factory()
        except Exception as exc:  # noqa: BLE001 - a delivery never fails the batch
            # No client (a malformed webhook setting): every card fails, for that reason.
            return [record(d, _reason(exc)) for d in deliveries]

        async def one(delivery: Delivery) -> tuple[Delivery, str | None]:
            try:
                await client.send_card(delivery.card)
            except Exception as exc:  # noqa: BLE001 - a delivery never fails the batch
                return record(delivery, _reason(exc))
            return record(delivery, None)

        try:
            return await map_bounded(one, list(deliveries), DELIVERY_CONCURRENCY)
        finally:
            if hasattr(client, "aclose"):
                await client.aclose()

    outcomes = asyncio.run(run())
    failures = tuple((d.recipient, error) for d, error in outcomes if error)
    return DeliveryReport(
        sent=len(outcomes) - len(failures), failed=len(failures), failures=failures
    )
