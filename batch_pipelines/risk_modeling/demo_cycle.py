"""The risk-modeling part of `make demo`: a whole cycle from a generated workbook.

The workbook is generated, validated and loaded as the active cycle; a sample exposure
warehouse is generated for Data Extraction; then the twelve batch-type assets are
materialized for the cycle through Dagster, on the project's Dagster instance, so the runs
can be browsed afterwards with `make dev`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from batch_pipelines.demo import QUIET
from batch_pipelines.metadata import checks_line
from batch_pipelines.resources import BatchStoreResource, RiskModelerResource, TeamsResource
from batch_pipelines.risk_modeling.assets import risk_modeling_assets
from batch_pipelines.risk_modeling.batch_types import BATCH_TYPE_ORDER
from batch_pipelines.risk_modeling.cycle_batches import FAMILY, store_cycle_configuration
from batch_pipelines.risk_modeling.partitions import CYCLES
from batch_pipelines.risk_modeling.resources import RiskModelingSettings
from batch_pipelines.risk_modeling.sample_source import create_sample_source
from batch_pipelines.risk_modeling.sample_workbook import valid_workbook
from batch_pipelines.risk_modeling.workbook import validate_workbook
from batch_pipelines.store.batch_store import BatchStore


def cycle_resources(directory: Path, store_url: str, *, workflow_seconds: float = 0.2) -> dict:
    data_dir = directory / "risk_modeling"
    return {
        "batch_store": BatchStoreResource(database_url=store_url),
        "risk_modeler": RiskModelerResource(
            simulator_db=str(directory / "risk_modeler_simulator.db"),
            simulator_workflow_seconds=workflow_seconds,
        ),
        "teams": TeamsResource(),
        "risk_modeling": RiskModelingSettings(
            data_dir=str(data_dir),
            drop_folder=str(data_dir / "incoming"),
            source_database_url=f"sqlite:///{data_dir / 'exposure_source.db'}",
            concurrency=20,
            poll_interval_seconds=0.1,
        ),
    }


def run_cycle_demo(
    echo: Callable[[str], None],
    directory: Path,
    instance: dg.DagsterInstance,
    store_url: str | None = None,
) -> int:
    """The cycle on ``store_url`` (the project's store in `make demo`; by default a new one
    in ``directory``), with its files and simulator in ``directory``."""
    store_url = store_url or f"sqlite:///{directory / 'batch_store.db'}"
    incoming = directory / "risk_modeling" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    workbook = valid_workbook().write(incoming / "demo_cycle.xlsx")
    validation = validate_workbook(workbook)
    if not validation.valid:
        for issue in validation.issues:
            echo(f"  {issue}")
        return 1
    echo(f"  workbook {workbook} is valid: {sum(validation.job_counts.values())} jobs")
    store = BatchStore(store_url)
    cycle, _ = store_cycle_configuration(store, validation.configuration, source=str(workbook))
    resources = cycle_resources(directory, store_url)
    create_sample_source(resources["risk_modeling"].source_url(), validation.configuration)
    instance.add_dynamic_partitions(CYCLES.name, [cycle])
    echo(f"  cycle {cycle} registered; materializing the 12 batch-type assets through Dagster...")
    result = dg.materialize(
        risk_modeling_assets,
        partition_key=cycle,
        instance=instance,
        resources=resources,
        raise_on_error=False,
        run_config=QUIET,
    )
    echo(f"  Dagster run {result.run_id}: {'success' if result.success else 'FAILED'}")
    echo(f"  {'batch type':<28} {'jobs':>5}  reconciliation")
    all_completed = True
    for batch_type in BATCH_TYPE_ORDER:
        batches = store.find_batches(
            family=FAMILY, batch_type=batch_type.value, partition_key=cycle
        )
        if not batches:
            echo(f"  {batch_type.value:<28} {'-':>5}  not run")
            all_completed = False
            continue
        log = store.recon_log(batches[-1].id)
        status = log[-1]["status"] if log else batches[-1].status.value
        reason = log[-1]["summary"].get("reason", "") if log else ""
        all_completed &= status == "COMPLETED"
        jobs = sum(n for s, n in store.job_status_counts(batches[-1].id).items() if s != "SKIPPED")
        echo(f"  {batch_type.value:<28} {jobs:>5}  {status} - {reason}")
    echo(f"  {checks_line(result.get_asset_check_evaluations())}")
    store.dispose()
    return 0 if result.success and all_completed else 1
