"""The `batch-pipelines` command: demo, simulators, workbook validation and batch actions."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from batch_pipelines.cli_options import (
    ErrorReportingGroup,
    cli_error,
    cli_group,
    database_url_option,
    debug_option,
    format_counts,
    json_option,
    open_store,
)
from batch_pipelines.configured_batches.cli import jobs
from batch_pipelines.core.errors import BatchPipelinesError
from batch_pipelines.core.statuses import BatchStatus
from batch_pipelines.document_ai.cli import docs
from batch_pipelines.instance import use_project_instance
from batch_pipelines.risk_modeling.cli import config
from batch_pipelines.role_onboarding.cli import roles
from batch_pipelines.simulators.cli import simulate


@cli_group(cls=ErrorReportingGroup)
@debug_option
@click.pass_context
def main(ctx: click.Context) -> None:
    """Batch pipelines: observable, restartable batches against outside services.

    An error prints one line with its code (exit 1); --debug shows its traceback instead.
    """
    # Every command (and every hint one prints) finds the project's Dagster instance as
    # `make` sets it: DAGSTER_HOME, else .dagster_home in the project folder.
    ctx.call_on_close(use_project_instance(os.environ, Path.cwd()))


main.add_command(simulate)
main.add_command(config)
main.add_command(docs)
main.add_command(jobs)
main.add_command(roles)


@main.command()
def demo() -> None:
    """Run every batch family end to end on the embedded default and say where to look."""
    from batch_pipelines.demo import run_demo

    try:
        code = run_demo(click.echo)
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    sys.exit(code)


@cli_group()
def batch() -> None:
    """Inspect and steer batches of any family."""


main.add_command(batch)


@batch.command("list")
@database_url_option
@click.option("--family", default=None)
@json_option
def list_batches(database_url: str, family: str | None, as_json: bool) -> None:
    """List batches with their status and job counts."""
    store = open_store(database_url)
    rows = [
        {
            "id": b.id,
            "family": b.family,
            "batch_type": b.batch_type,
            "partition": b.partition_key,
            "status": b.status.value,
            "jobs": store.job_status_counts(b.id),
        }
        for b in store.find_batches(family=family)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo("\n".join(batch_table(rows)))


def batch_table(rows: list[dict]) -> list[str]:
    """``batch list``'s text: a header, then one line per batch; jobs as ``STATUS count``."""
    if not rows:
        return ["no batches"]
    line = "{:>6}  {:<10} {:<14} {:<28} {:<10} {}"
    return [line.format("id", "status", "family", "batch type", "partition", "jobs")] + [
        line.format(
            r["id"],
            r["status"],
            r["family"],
            r["batch_type"],
            r["partition"] or "-",
            format_counts(r["jobs"]),
        )
        for r in rows
    ]


@batch.command()
@click.argument("batch_id", type=int)
@database_url_option
@json_option
def status(batch_id: int, database_url: str, as_json: bool) -> None:
    """A batch's status, its last reconciliation and its jobs."""
    store = open_store(database_url)
    try:
        b = store.get_batch(batch_id)
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    recon = store.recon_log(batch_id)
    jobs = store.list_jobs(batch_id)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "batch": {
                        "id": b.id,
                        "family": b.family,
                        "batch_type": b.batch_type,
                        "status": b.status.value,
                        "partition": b.partition_key,
                        "created_at": b.created_at.isoformat(),
                    },
                    "reconciliation": recon[-1]["summary"] if recon else None,
                    "jobs": [
                        {
                            "id": j.id,
                            "key": j.key,
                            "status": j.status.value,
                            "skipped": j.skipped,
                            "workflow_id": j.workflow_id,
                            "parent_job_id": j.parent_job_id,
                            "last_error": j.last_error,
                        }
                        for j in jobs
                    ],
                },
                indent=2,
            )
        )
        return
    click.echo(
        f"batch {b.id}  {b.batch_type}  ({b.family}, partition {b.partition_key or '-'})  status {b.status}"
    )
    if recon:
        click.echo(
            f"last reconciliation: {recon[-1]['status']} - {recon[-1]['summary'].get('reason', '')}"
        )
    click.echo(f"jobs: {format_counts(store.job_status_counts(batch_id))}")
    for j in jobs:
        flag = " (skipped)" if j.skipped else ""
        err = f"  {j.last_error}" if j.last_error and not j.skipped else ""
        click.echo(
            f"  {j.id:>7} {j.status.value:<10} {j.key:<40} wf={j.workflow_id or '-'}{flag}{err}"
        )


def _set_status(batch_id: int, database_url: str, target: BatchStatus) -> None:
    try:
        b = open_store(database_url).set_batch_status(batch_id, target)
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    click.echo(f"batch {b.id} is now {b.status}")


@batch.command()
@click.argument("batch_id", type=int)
@database_url_option
def pause(batch_id: int, database_url: str) -> None:
    """Pause: in-flight submissions finish, then the running engine stops."""
    _set_status(batch_id, database_url, BatchStatus.PAUSED)


@batch.command()
@click.argument("batch_id", type=int)
@database_url_option
def resume(batch_id: int, database_url: str) -> None:
    """Resume a paused batch (materialize its asset again to continue)."""
    _set_status(batch_id, database_url, BatchStatus.ACTIVE)


@batch.command()
@click.argument("batch_id", type=int)
@database_url_option
def cancel(batch_id: int, database_url: str) -> None:
    """Cancel: no more submissions; in-flight workflows are cancelled at the service."""
    _set_status(batch_id, database_url, BatchStatus.CANCELLED)


@batch.command()
@click.argument("job_ids", type=int, nargs=-1, required=True)
@database_url_option
@click.option(
    "--configuration-json", default=None, help="Replacement job configuration (JSON object)."
)
@click.option(
    "--reason", "override_reason", default=None, help="Why the configuration is replaced."
)
def resubmit(
    job_ids: tuple[int, ...],
    database_url: str,
    configuration_json: str | None,
    override_reason: str | None,
) -> None:
    """Resubmit FAILED/ERROR/CANCELLED jobs as new jobs; the originals are kept, skipped."""
    from batch_pipelines.core.json_values import parse_json_object

    try:
        data = parse_json_object(configuration_json, "--configuration-json")
        new_ids = open_store(database_url).resubmit_jobs(
            list(job_ids), configuration_data=data, override_reason=override_reason
        )
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    click.echo(f"resubmitted {list(job_ids)} as {new_ids}")


if __name__ == "__main__":
    main()
