"""Workbooks dropped in the drop folder become cycles: registered, loaded, and run."""

from pathlib import Path

import dagster as dg

from batch_pipelines.core.errors import BatchPipelinesError
from batch_pipelines.resources import BatchStoreResource
from batch_pipelines.risk_modeling.assets import risk_modeling_cycle_job
from batch_pipelines.risk_modeling.cycle_batches import (
    configuration_checksum,
    store_cycle_configuration,
)
from batch_pipelines.risk_modeling.drop_folder import workbook_changes
from batch_pipelines.risk_modeling.partitions import CYCLES
from batch_pipelines.risk_modeling.resources import RiskModelingSettings
from batch_pipelines.risk_modeling.workbook import validate_workbook

MAX_ISSUES_LOGGED = 50


@dg.sensor(
    job=risk_modeling_cycle_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Loads new or changed master configuration workbooks from the drop folder.",
)
def workbook_drop_sensor(
    context: dg.SensorEvaluationContext, batch_store: BatchStoreResource, risk_modeling: RiskModelingSettings
) -> dg.SensorResult | dg.SkipReason:
    folder = Path(risk_modeling.drop_folder)
    if not folder.is_dir():
        return dg.SkipReason(f"drop folder {folder} does not exist yet")
    current = {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.glob("*.xlsx"))}
    changed, cursor = workbook_changes(context.cursor, current)
    if not changed:
        return dg.SkipReason("no new or changed workbook")

    store = batch_store.get_store()
    run_requests, new_cycles, problems = [], [], []
    for path in changed:
        validation = validate_workbook(path)
        if not validation.valid:
            for issue in validation.issues[:MAX_ISSUES_LOGGED]:
                context.log.error(f"{Path(path).name}: {issue}")
            problems.append(f"{Path(path).name}: {len(validation.issues)} errors")
            continue
        try:
            cycle, _ = store_cycle_configuration(store, validation.configuration, source=path)
        except BatchPipelinesError as exc:
            context.log.error(f"{Path(path).name}: {exc}")
            problems.append(f"{Path(path).name}: {exc.message}")
            continue
        new_cycles.append(cycle)
        run_requests.append(
            dg.RunRequest(
                run_key=f"{cycle}:{configuration_checksum(validation.configuration)[:16]}",
                partition_key=cycle,
                tags={"batch_pipelines/workbook": Path(path).name},
            )
        )
        context.log.info(f"{Path(path).name}: cycle {cycle} loaded ({validation.job_counts})")
    if problems and not run_requests:
        return dg.SensorResult(skip_reason="; ".join(problems), cursor=cursor)
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[CYCLES.build_add_request(sorted(set(new_cycles)))] if new_cycles else [],
        cursor=cursor,
    )
