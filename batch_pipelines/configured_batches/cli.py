"""`batch-pipelines jobs ...`: check the job file, list its jobs, and see batch status by
user, tenant or feature type (read from the contexts every batch run writes)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from batch_pipelines.cli_options import (
    PAGE_SIZE,
    cli_group,
    database_url_option,
    json_option,
    open_store,
)
from batch_pipelines.configured_batches.job_config import SAMPLE_JOBS_FILE, load_job_configuration

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
