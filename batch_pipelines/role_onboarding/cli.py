"""`batch-pipelines roles ...`: submit a batch of roles, follow it, retry what failed.

The commands talk to the same store and Dagster instance as the UI (``DAGSTER_HOME``):
``submit`` stores the batch and the ``role_batch_submissions`` sensor (running in the
daemon) launches its runs; ``status`` computes the batch's view from the run records.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import click

from batch_pipelines.cli_options import (
    cli_error,
    cli_group,
    dagster_instance,
    database_url_option,
    json_option,
)
from batch_pipelines.core.errors import BatchPipelinesError, ConfigurationError
from batch_pipelines.progress import ProgressReporter

# How --watch waits between redraws (a name of its own, so a test can replace it).
pause = time.sleep


def _store(ctx: click.Context, database_url: str):
    from batch_pipelines.role_onboarding.store import RoleOnboardingStore
    from batch_pipelines.store.batch_store import BatchStore

    obj = ctx.find_root().obj or {}
    if "store" in obj:
        return obj["store"]
    return RoleOnboardingStore(BatchStore(database_url or None))


def _instance(ctx: click.Context, *, required: bool = True):
    obj = ctx.find_root().obj or {}
    if "instance" in obj:
        return obj["instance"]
    return dagster_instance(required=required)


@cli_group()
def roles() -> None:
    """Role onboarding batches: submit, status, retry failed roles."""


def read_roles_file(path: Path) -> dict[str, Any]:
    """A submission file: JSON (the seed's push-batch body, or a list of roles) or CSV with
    columns role_name[, draup_role_name]. Errors name the file and row."""
    if not path.is_file():
        raise ConfigurationError(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "role_name" not in reader.fieldnames:
                raise ConfigurationError(f"{path}: the header row must have a role_name column")
            rows = []
            for row in reader:
                rows.append({k: v for k, v in row.items() if k and v not in (None, "")})
            return {"roles": rows}
    from batch_pipelines.role_onboarding.submission import read_json_file

    data = read_json_file(path, str(path))
    if isinstance(data, list):
        return {"roles": data}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: expected an object with roles, or a list of roles")
    return data


def _settings():
    """The family's settings as the code location declares them (ROLE_ONBOARDING_* variables)."""
    from batch_pipelines.resources import resolved
    from batch_pipelines.role_onboarding.resources import default_settings

    return resolved(default_settings())


def _parse_role_option(value: str) -> dict[str, str]:
    name, sep, draup = value.partition("=")
    return {"role_name": name, **({"draup_role_name": draup} if sep and draup.strip() else {})}


@roles.command()
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option(
    "--company", "company_id", default=None, help="Company id (overrides the file's company_id)."
)
@click.option(
    "--role", "role_values", multiple=True, help="A role: 'Role Name' or 'Role Name=Taxonomy Role'."
)
@click.option("--skip-enhancement-workflows", is_flag=True, default=None)
@click.option("--force-rerun", is_flag=True, default=None)
@click.option("--created-by", default=None)
@database_url_option
@json_option
@click.pass_context
def submit(
    ctx: click.Context,
    file: Path | None,
    company_id: str | None,
    role_values: tuple[str, ...],
    skip_enhancement_workflows: bool | None,
    force_rerun: bool | None,
    created_by: str | None,
    database_url: str,
    as_json: bool,
) -> None:
    """Submit FILE's roles, or the --role ones, as one batch; invalid roles are skipped."""
    from batch_pipelines.role_onboarding.service import (
        DEFAULT_ROLE_RUN_LIMIT,
        role_concurrency_of,
        submit_batch,
    )
    from batch_pipelines.role_onboarding.submission import (
        RoleOptions,
        parse_options,
        validate_submission,
    )

    try:
        body: dict[str, Any] = read_roles_file(file) if file else {}
        if file and role_values:
            raise ConfigurationError("give either FILE or --role, not both")
        roles_list = body.get("roles") if file else [_parse_role_option(v) for v in role_values]
        if not roles_list:
            raise ConfigurationError("no roles: give FILE or at least one --role")
        options = parse_options(
            body.get("options"), where=f"{file}: options" if file else "options"
        )
        options = RoleOptions(
            skip_enhancement_workflows=options.skip_enhancement_workflows
            if skip_enhancement_workflows is None
            else skip_enhancement_workflows,
            force_rerun=options.force_rerun if force_rerun is None else force_rerun,
        )
        submission = validate_submission(
            company_id or body.get("company_id"),
            roles_list,
            options=options,
            created_by=created_by or body.get("created_by"),
        )
        instance = _instance(ctx, required=False)
        settings = _settings()
        result = submit_batch(
            _store(ctx, database_url),
            submission,
            enabled=settings.submission_enabled(),
            ttl=settings.ttl(),
            role_seconds=settings.estimated_role_seconds,
            concurrency=role_concurrency_of(instance)
            if instance is not None
            else DEFAULT_ROLE_RUN_LIMIT,
        )
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    response = result.response
    if as_json:
        click.echo(json.dumps(response, indent=2))
        return
    click.echo(f"{response['batch_id']}: {response['message']}")
    click.echo(f"  estimated duration: {_duration(response['estimated_duration_seconds'])}")
    for invalid in response["invalid_roles"]:
        name = f" ({invalid['role_name']!r})" if invalid["role_name"] else ""
        click.echo(
            f"  skipped roles[{invalid['index']}]{name} {invalid['field']}: {invalid['reason']}"
        )
    click.echo(
        f"  follow it: .venv/bin/batch-pipelines roles status {response['batch_id']} --watch"
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def progress_bar(percent: float, width: int = 30) -> str:
    filled = int(width * percent / 100)
    return "[" + "#" * filled + "-" * (width - filled) + f"] {percent:5.1f}%"


def render_status(status: dict[str, Any]) -> list[str]:
    lines = [
        f"{status['batch_id']}  company {status['company_id']}  created {status['created_at']}"
        f"  by {status['created_by'] or '-'}",
        f"state {status['state']}: total {status['total']}, queued {status['queued']}, in_progress "
        f"{status['in_progress']}, completed {status['completed']}, failed {status['failed']}",
        f"progress {progress_bar(status['progress_percent'])}  success rate {status['success_rate']:.1f}%"
        f"  eta {_duration(status['eta_seconds'])}",
        f"cost {status['cost']} ({status['tokens']} tokens, from the cost ledger)",
    ]
    width = max([len(r["role_name"]) for r in status["roles"]] + [9])
    lines.append(f"  {'role':<{width}}  {'status':<8} {'workflow_id':<26} dashboard / error")
    for r in status["roles"]:
        detail = r.get("dashboard_url") or r.get("error") or ""
        lines.append(
            f"  {r['role_name']:<{width}}  {r['status']:<8} {r['workflow_id']:<26} {detail}"
        )
    for invalid in status["invalid_roles"]:
        lines.append(
            f"  skipped at submission: roles[{invalid['index']}] {invalid['field']}: {invalid['reason']}"
        )
    return lines


@roles.command()
@click.argument("batch_id")
@database_url_option
@json_option
@click.option("--watch", is_flag=True, help="Redraw until the batch is completed or partial.")
@click.option(
    "--interval", default=2.0, show_default=True, help="Seconds between redraws under --watch."
)
@click.pass_context
def status(
    ctx: click.Context,
    batch_id: str,
    database_url: str,
    as_json: bool,
    watch: bool,
    interval: float,
) -> None:
    """The batch's counts, state, progress and per-role status."""
    from batch_pipelines.role_onboarding.service import batch_status

    store = _store(ctx, database_url)
    instance = _instance(ctx)
    try:
        base = _settings().dashboard_base_url
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    # Under --watch: a live bar with rate and ETA (plain lines when not a terminal), then
    # the table once the batch settles.
    with ProgressReporter(unit="roles", enabled=watch and not as_json) as progress:
        while True:
            try:
                view = batch_status(instance, store, batch_id, dashboard_base_url=base).to_dict()
            except BatchPipelinesError as exc:
                raise cli_error(exc) from None
            settled = view["state"] in ("completed", "partial")
            if as_json:
                click.echo(json.dumps(view, indent=2) if not watch else json.dumps(view))
            elif watch:
                progress.update(
                    view["batch_id"],
                    view["completed"] + view["failed"],
                    view["total"],
                    detail=f"{view['state']}, {view['failed']} failed, {view['in_progress']} running",
                )
            if not watch or settled:
                break
            pause(interval)
    if not as_json:
        click.echo("\n".join(render_status(view)))


@roles.command(name="list")
@click.option("--company", "company_id", required=True)
@database_url_option
@json_option
@click.pass_context
def list_batches(ctx: click.Context, company_id: str, database_url: str, as_json: bool) -> None:
    """The company's batches (newest first) with their state."""
    from batch_pipelines.role_onboarding.service import batch_status
    from batch_pipelines.role_onboarding.submission import validate_company_id

    try:
        company_id = validate_company_id(company_id)
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    store = _store(ctx, database_url)
    instance = _instance(ctx)
    rows = []
    for batch in store.list_batches(company_id):
        try:
            view = batch_status(instance, store, batch.batch_id).to_dict()
        except BatchPipelinesError:
            continue  # expired between listing and reading
        rows.append(
            {
                k: view[k]
                for k in (
                    "batch_id",
                    "state",
                    "total",
                    "completed",
                    "failed",
                    "progress_percent",
                    "created_at",
                )
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no live batch for {company_id}")
    for r in rows:
        click.echo(
            f"{r['batch_id']}  {r['state']:<11} {r['completed']}/{r['total']} done, {r['failed']} failed, "
            f"{r['progress_percent']:.1f}%  created {r['created_at']}"
        )


@roles.command()
@click.argument("batch_id")
@click.option(
    "--workflow-id",
    "workflow_ids",
    multiple=True,
    help="Only these failed workflows (default: all failed).",
)
@click.option("--force-rerun", is_flag=True)
@database_url_option
@json_option
@click.pass_context
def retry(
    ctx: click.Context,
    batch_id: str,
    workflow_ids: tuple[str, ...],
    force_rerun: bool,
    database_url: str,
    as_json: bool,
) -> None:
    """Retry the batch's failed roles; the new runs join the same batch."""
    from batch_pipelines.role_onboarding.service import retry_failed

    try:
        response = retry_failed(
            _instance(ctx),
            _store(ctx, database_url),
            batch_id,
            workflow_ids=list(workflow_ids) or None,
            force_rerun=force_rerun,
        )
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    if as_json:
        click.echo(json.dumps(response, indent=2))
        return
    click.echo(f"{response['batch_id']}: {response['message']}")
    for old, new in zip(
        response["retried_workflow_ids"], response["new_workflow_ids"], strict=True
    ):
        click.echo(f"  {old} -> {new}")
    for u in response["untouched"]:
        click.echo(f"  untouched {u['workflow_id']}: {u['reason']}")


@roles.command()
@database_url_option
@click.pass_context
def cleanup(ctx: click.Context, database_url: str) -> None:
    """Delete batch records past their time to live now (reads also do it lazily)."""
    gone = _store(ctx, database_url).delete_expired()
    click.echo(f"deleted {len(gone)} expired batch record{'s' if len(gone) != 1 else ''}")
