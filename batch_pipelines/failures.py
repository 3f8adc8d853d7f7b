"""How an op or asset fails for good.

The instance retries failed runs (``run_retries`` in dagster.yaml) because transient faults
deserve another try. A validation error or a refused user action is final: a retry would fail
the same way and only add failed runs. Such failures go through ``final_failure``, which
turns off run retries and puts the errors in the failure's metadata, where the UI shows them,
not only in its text.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from batch_pipelines.core.errors import BatchPipelinesError

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
