"""The one Definitions object of the batch_pipelines code location."""

from __future__ import annotations

import dagster as dg

from batch_pipelines.batch_actions.jobs import batch_control, resubmit_jobs
from batch_pipelines.resources import default_resources


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(jobs=[batch_control, resubmit_jobs], resources=default_resources())
