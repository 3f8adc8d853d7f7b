"""How an op or asset fails for good, and where transient faults are retried.

Transient faults are retried where they happen: the client per request (backoff,
Retry-After), the engine per unit of work, an op's ``TRANSIENT_FAULT_RETRIES`` policy. The
instance's run retries (``run_retries`` in deploy/*/dagster.yaml) redo only runs that died (a
killed worker or daemon), never a failed step (``retry_on_asset_or_op_failure: false``): a
step that already retried its transient faults would only fail the same way twice more.

A validation error or a refused user action is final. Such failures go through
``final_failure``, which skips the op's retry policy (``allow_retries=False``) and puts the
errors in the failure's metadata, where the UI shows them, not only in its text. Run retries
ignore ``allow_retries``; jobs whose ops end a user's error this way also carry
``NO_RUN_RETRY_ON_STEP_FAILURE``, so they stay final on an instance configured to retry failed
steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dagster as dg

from batch_pipelines.core.errors import (
    BatchError,
    BatchPipelinesError,
    ConfigurationError,
    IllegalTransition,
    JobError,
    NotFound,
)

# Errors listed in a failure's metadata: the UI shows them all, the event log keeps them.
MAX_LISTED_ERRORS = 100


def final_failure(error: BatchPipelinesError | str, errors: Sequence[str] = ()) -> dg.Failure:
    """A ``dg.Failure`` that run retries leave alone, with the error code (when there is one),
    the number of errors and the first ``MAX_LISTED_ERRORS`` of them as metadata."""
    description = str(error)
    metadata: dict[str, dg.RawMetadataValue] = {"retryable": False}
    if isinstance(error, BatchPipelinesError):
        metadata["error_code"] = error.code
    listed = list(errors)
    if listed:
        metadata["errors_total"] = len(listed)
        metadata["errors"] = dg.MetadataValue.md(
            "\n".join(f"- {e}" for e in listed[:MAX_LISTED_ERRORS])
        )
    return dg.Failure(description=description, metadata=metadata, allow_retries=False)


# Errors a user causes (bad input, a refused action, a name that does not exist): final.
# Anything else (a store or service that cannot be reached) may pass and is retried.
USER_ERRORS: tuple[type[BatchPipelinesError], ...] = (
    ConfigurationError,
    BatchError,
    JobError,
    NotFound,
    IllegalTransition,
)

# Tags of a job whose ops end a user's error with ``final_failure`` and retry transient
# faults themselves (``TRANSIENT_FAULT_RETRIES``): run retries then redo only runs that died
# (a lost worker), never a failed step, which would fail the same way twice more.
NO_RUN_RETRY_ON_STEP_FAILURE = {"dagster/retry_on_asset_or_op_failure": "false"}
# An op's retries of transient faults; a ``final_failure`` (allow_retries=False) skips them.
TRANSIENT_FAULT_RETRIES = dg.RetryPolicy(max_retries=2, delay=2.0, backoff=dg.Backoff.EXPONENTIAL)


@contextmanager
def user_errors_are_final() -> Iterator[None]:
    """Turn a user's error raised inside the block (``USER_ERRORS``) into a ``final_failure``
    listing it; other exceptions (transient faults) pass unchanged, to be retried."""
    try:
        yield
    except USER_ERRORS as exc:
        raise final_failure(exc, [exc.message]) from None


def refuse_run_retries(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> None:
    """Mark the current run so run retries leave it alone, before raising a final failure
    from a step whose job does not carry ``NO_RUN_RETRY_ON_STEP_FAILURE`` (an asset
    materialized from the UI runs in an ad-hoc asset job). Run retries read the run's tags
    when it fails, and ignore a failure's ``allow_retries``."""
    context.instance.add_run_tags(context.run_id, NO_RUN_RETRY_ON_STEP_FAILURE)
