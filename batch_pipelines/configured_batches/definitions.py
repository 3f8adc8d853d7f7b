"""The configured batches family's part of the code location."""

import dagster as dg


def configured_batches_definitions() -> dg.Definitions:
    """Assets, jobs, sensors, schedules and family-only resources of this family.

    Shared resources (batch_store, models, teams, risk_modeler) come from the top-level
    definitions; resources added here must have names no other family uses.
    """
    return dg.Definitions()
