"""`batch-pipelines jobs ...`: check the job file, list its jobs, run one now, and see batch
status by user, tenant or feature type (read from the contexts every batch run writes)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from batch_pipelines.cli_options import (
    PAGE_SIZE,
    cli_error,
    cli_group,
    dagster_instance,
    database_url_option,
    json_option,
    open_store,
)
from batch_pipelines.configured_batches.job_config import SAMPLE_JOBS_FILE, load_job_configuration
from batch_pipelines.core.errors import BatchPipelinesError, ConfigurationError
from batch_pipelines.metadata import checks_line, units_line

_jobs_file = click.option(
    "--file",
    "jobs_file",
    envvar="CONFIGURED_JOBS_FILE",
    default="",
    show_envvar=True,
    help="The JSON job file; empty: the shipped sample.",
)


@cli_group()
def jobs() -> None:
    """Configured and preference-driven batches: status by user, tenant or feature type."""


@jobs.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def validate(file: Path, as_json: bool) -> None:
    """Validate a job FILE; every problem names the job and the field. Exit 1 on problems."""
    found, problems = load_job_configuration(file)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "valid_jobs": [j.job_id for j in found],
                    "problems": [p.to_dict() for p in problems],
                },
                indent=2,
            )
        )
    else:
        for p in problems:
            click.echo(f"ERROR {p}", err=True)
        click.echo(f"{file.name}: {len(found)} valid jobs, {len(problems)} problems")
    if problems:
        raise SystemExit(1)


@jobs.command("list")
@_jobs_file
@json_option
def list_jobs(jobs_file: str, as_json: bool) -> None:
    """The jobs of the job file: type, schedule or feature type, priority."""
    from batch_pipelines.configured_batches.schedules import cron_for

    path = Path(jobs_file) if jobs_file else SAMPLE_JOBS_FILE
    found, problems = load_job_configuration(path)
    rows = [
        {
            "job_id": j.job_id,
            "type": j.type.value,
            "schedule": f"{cron_for(j.schedule)} {j.schedule.timezone}"
            if j.schedule
            else f"preferences of {j.feature_type}",
            "priority": j.priority,
        }
        for j in found
    ]
    if as_json:
        click.echo(
            json.dumps({"jobs": rows, "problems": [p.to_dict() for p in problems]}, indent=2)
        )
        return
    for r in rows:
        click.echo(
            f"{r['job_id']:<32} {r['type']:<34} {r['schedule']:<40} priority {r['priority']}"
        )
    for p in problems:
        click.echo(f"ERROR {p}", err=True)


@jobs.command()
@database_url_option
@click.option("--user", "user_id", default=None, help="Results of one user.")
@click.option("--tenant", "tenant_id", default=None, help="Results per batch of one tenant.")
@click.option("--feature-type", default=None, help="Preference batches of one feature type.")
@click.option(
    "--limit", type=PAGE_SIZE, default=20, show_default=True, help="Newest entries shown (1-100)."
)
@json_option
def status(
    database_url: str,
    user_id: str | None,
    tenant_id: str | None,
    feature_type: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Status of configured batches by --user, --tenant or --feature-type (exactly one)."""
    chosen = [
        name
        for name, value in (
            ("user", user_id),
            ("tenant", tenant_id),
            ("feature-type", feature_type),
        )
        if value
    ]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --user, --tenant and --feature-type")
    from batch_pipelines.configured_batches.contexts import ContextStore

    store = open_store(database_url)
    contexts = ContextStore(store.engine)
    try:
        if user_id:
            rows = contexts.status_by_user(user_id, limit)
            references = contexts.batch_references(user_id, limit)
        elif tenant_id:
            rows, references = contexts.status_by_tenant(tenant_id, limit), []
        else:
            rows, references = contexts.status_by_feature_type(str(feature_type), limit), []
    finally:
        store.dispose()
    if as_json:
        payload: dict = {chosen[0]: user_id or tenant_id or feature_type, "results": rows}
        if user_id:
            payload["batch_references"] = references
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    if not rows and not references:
        click.echo(
            f"no configured batch results for {chosen[0]} {user_id or tenant_id or feature_type}"
        )
        return
    for r in rows:
        if user_id:
            click.echo(
                f"{r['tick']:<26} {r['job_id']:<28} {r['status']:<10} {r['request_key']}  {(r.get('error') or '')[:80]}"
            )
        else:
            click.echo(
                f"{r['tick']:<26} {r['job_id']:<28} users {r['users']:>5}  succeeded {r['succeeded']:>5}  failed {r['failed']:>5}"
            )
    for ref in references:
        s = ref["summary"]
        click.echo(
            f"reference: {ref['batch_key']} ({ref['job_id']}) {s['status']} {s['succeeded']}/{s['total']} requests"
        )


MANUAL_TRIGGER_TAG = "batch_pipelines/trigger"


@jobs.command("run")
@click.argument("job_id")
@click.option(
    "--tick",
    default="",
    help="The tick to run (ISO time); default: now. A tick that ran before is resumed: "
    "only its failed requests are sent again.",
)
@click.option(
    "--group",
    "group_key",
    default=None,
    help="Preference jobs: the preference group (partition key) to run, as `jobs status` or the UI shows it.",
)
def run_now(job_id: str, tick: str, group_key: str | None) -> None:
    """Run job JOB_ID of the job file now, as its schedule would (the seed's manual trigger).

    The run goes through Dagster on the project's instance (DAGSTER_HOME), with the code
    location's resources (the same environment variables), so it shows in the UI like a
    scheduled one; it prints the run, the batch and where to look. Exit 1 when the run fails.
    """

    import dagster as dg

    from batch_pipelines.configured_batches.assets import resolve_tick
    from batch_pipelines.configured_batches.configured_jobs import configured_jobs_resource
    from batch_pipelines.configured_batches.definitions import configured_batches_definitions
    from batch_pipelines.configured_batches.groups import TICK_TAG as PREFERENCE_TICK_TAG
    from batch_pipelines.configured_batches.groups import GroupKey
    from batch_pipelines.configured_batches.partitions import PREFERENCE_GROUPS
    from batch_pipelines.configured_batches.runner import batch_key_for
    from batch_pipelines.resources import default_resources, resolved

    try:
        job = resolved(configured_jobs_resource()).job(job_id)
        if job.type.is_preference:
            if not group_key:
                raise ConfigurationError(
                    f"job {job_id} is a {job.type} job: it runs per preference group; give --group KEY "
                    f"(its groups are the preference_group partitions of feature type {job.feature_type})"
                )
            if GroupKey.parse(group_key).feature_type != job.feature_type:
                raise ConfigurationError(
                    f"preference group {group_key!r} is not of job {job_id}'s feature type {job.feature_type!r}"
                )
        elif group_key:
            raise ConfigurationError(
                f"job {job_id} is a static {job.type} job: --group does not apply"
            )
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    tick = resolve_tick(tick, {}, "")
    defs = dg.Definitions.merge(
        dg.Definitions(resources=default_resources()), configured_batches_definitions()
    )
    tags = {MANUAL_TRIGGER_TAG: "manual"}
    with dagster_instance() as instance:
        if job.type.is_preference:
            if not instance.has_dynamic_partition(PREFERENCE_GROUPS.name, str(group_key)):
                raise cli_error(
                    ConfigurationError(
                        f"preference group {group_key!r} is not a partition on this instance "
                        "(the preference_change_sensor adds groups as preferences arrive)"
                    )
                )
            partition, dagster_job = str(group_key), "preference_batch_job"
            tags[PREFERENCE_TICK_TAG] = tick
            run_config: dict = {}
        else:
            partition, dagster_job = job_id, "configured_batch_job"
            run_config = {"ops": {"configured_batch": {"config": {"tick": tick}}}}
        # The console shows the run's warnings (nothing to do, failed deliveries), not its
        # debug stream; the whole log is on the run's page.
        run_config["loggers"] = {"console": {"config": {"log_level": "WARNING"}}}
        click.echo(f"running {job_id} ({job.type.value}) for tick {tick} ...")
        result = defs.resolve_job_def(dagster_job).execute_in_process(
            instance=instance,
            partition_key=partition,
            run_config=run_config,
            tags=tags,
            raise_on_error=False,
        )
    metadata = {}
    for event in result.all_events:
        if event.is_step_materialization:
            metadata = {
                k: v.value
                for k, v in event.step_materialization_data.materialization.metadata.items()
            }
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    batch_key = metadata.get("batch_key") or batch_key_for(
        job, tick, group_key if job.type.is_preference else None
    )
    click.echo(f"run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
    if metadata:
        click.echo(
            f"batch {metadata['batch_id']} ({batch_key}): {metadata['batch_status']}, "
            f"{metadata['units_succeeded']}/{metadata['units_total']} requests succeeded, "
            f"{metadata.get('deliveries_sent', 0)} result cards delivered, "
            f"{metadata.get('deliveries_failed', 0)} failed"
        )
        if metadata.get("nothing_to_do_reason"):
            click.echo(f"nothing to do: {metadata['nothing_to_do_reason']}")
        click.echo(units_line(metadata))
        click.echo(checks_line(checks.values()))
    else:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        if failure is not None and failure.step_failure_data.error is not None:
            click.echo(f"error: {failure.step_failure_data.error.message.strip()}", err=True)
    asset = "preference_batch" if job.type.is_preference else "configured_batch"
    click.echo("where to look:")
    click.echo(
        f"  the run:        make dev, then Runs > {result.run_id} (tag {MANUAL_TRIGGER_TAG}=manual)"
    )
    click.echo(f"  the asset:      {asset}, partition {partition} (metadata, checks)")
    if metadata:
        click.echo(
            f"  the batch:      .venv/bin/batch-pipelines batch status {metadata['batch_id']}"
        )
    click.echo(
        "  results:        .venv/bin/batch-pipelines jobs status --user USER | --tenant TENANT"
    )
    if not result.success:
        raise SystemExit(1)


@jobs.command("seed-demo-data")
@database_url_option
@click.option("--users", default=300, show_default=True, help="How many users to create.")
def seed_demo(database_url: str, users: int) -> None:
    """Fill the store with the demo tenants, users, categories and preferences (rows that
    exist are kept), so the sample jobs have data to work on in `make dev`."""
    from batch_pipelines.configured_batches.demo_data import seed_demo_data

    store = open_store(database_url)
    try:
        data = seed_demo_data(store.engine, users=users)
    finally:
        store.dispose()
    click.echo(
        f"{data.users} users ({data.added_users} new, {data.inactive_users} inactive) in {data.tenants} tenants, "
        f"{data.categories} categories with {data.category_items} items, {data.preferences} preferences"
    )
