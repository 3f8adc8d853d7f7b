"""Workbooks dropped in the drop folder become cycles.

The drop-folder sensor only notices new or changed files (cheap: a directory listing) and
launches the `load_workbook` job for each, with a run key per file version. Validation and
the store writes happen in that run, so an invalid workbook is a failed run whose error
lists every problem, visible in the UI. When a load succeeds, `cycle_after_workbook_load`
launches the cycle's run. `failed_batch_notifications` sends the Teams card of a batch that
ended FAILED, ERROR or CANCELLED outside its asset's run, and sends again a card whose
sender was killed between claiming and sending it (see ``notifications``).
"""

from pathlib import Path

import dagster as dg

from batch_pipelines.drop_folders import scan
from batch_pipelines.resources import BatchStoreResource, TeamsResource
from batch_pipelines.risk_modeling.assets import risk_modeling_cycle_job
from batch_pipelines.risk_modeling.cycle_batches import FAMILY
from batch_pipelines.risk_modeling.jobs import CYCLE_TAG, load_workbook
from batch_pipelines.risk_modeling.notifications import (
    NOTIFY_ON,
    batches_to_notify,
    failure_key,
    notify_failed_batch,
    sensor_window_start,
    stale_claim,
)
from batch_pipelines.risk_modeling.resources import RiskModelingSettings
from batch_pipelines.store.batch_store import utcnow


@dg.sensor(
    job=load_workbook,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches load_workbook for new or changed workbooks in the drop folder.",
)
def workbook_drop_sensor(
    context: dg.SensorEvaluationContext, risk_modeling: RiskModelingSettings
) -> dg.SensorResult | dg.SkipReason:
    found = scan(Path(risk_modeling.drop_folder), "*.xlsx", context.cursor, what="workbook")
    if found.nothing_to_do:
        return dg.SkipReason(found.nothing_to_do)
    changed, current, cursor = found.changed, found.current, found.cursor
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"{Path(path).name}:{current[path][0]}:{current[path][1]}",
                run_config={"ops": {"load_cycle_workbook": {"config": {"workbook_path": path}}}},
                tags={"batch_pipelines/workbook": Path(path).name},
            )
            for path in changed
        ],
        cursor=cursor,
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[load_workbook],
    request_job=risk_modeling_cycle_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs the cycle once its workbook has been loaded.",
)
def cycle_after_workbook_load(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
    cycle = context.dagster_run.tags.get(CYCLE_TAG)
    if not cycle:
        return dg.SkipReason(f"run {context.dagster_run.run_id} loaded no cycle")
    return dg.RunRequest(run_key=f"cycle:{cycle}:{context.dagster_run.run_id}", partition_key=cycle)


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends the Teams card of each risk-modeling batch that ends FAILED, ERROR or "
    "CANCELLED, also outside an asset run (CLI, batch_control); once per failure, again when "
    "its sender was killed before sending.",
)
def failed_batch_notifications(
    context: dg.SensorEvaluationContext,
    batch_store: BatchStoreResource,
    teams: TeamsResource,
    risk_modeling: RiskModelingSettings,
) -> dg.SkipReason:
    store = batch_store.get_store()
    now = utcnow()
    since = sensor_window_start(context.cursor, now)
    batches = store.find_batches(family=FAMILY)
    due = batches_to_notify(batches, since)
    in_window = {batch.id for batch in due}
    # A failure claimed before the window whose sender died before sending: send it now.
    due += [
        batch
        for batch in batches
        if batch.status in NOTIFY_ON
        and batch.id not in in_window
        and stale_claim(
            store.batch_events(batch.id), str(failure_key(batch.status, batch.settled_at)), now
        )
    ]
    notified = [
        batch.id
        for batch in due
        if notify_failed_batch(
            store, teams.client(), batch.id, dagster_url=risk_modeling.dagster_url, now=now
        )
        is not None
    ]
    context.update_cursor(now.isoformat())
    if notified:
        return dg.SkipReason(f"Teams cards sent for batches {notified}")
    return dg.SkipReason("no batch failed since the last tick")
