"""`batch-pipelines docs ...`: submit, steer and inspect document jobs from a terminal.

Jobs submitted here are stored like those from the UI; with a Dagster daemon running, the
launcher sensor starts their runs. ``--run`` (on submit, resume and start) works the job
right here instead, which is what a laptop without `make dev` wants.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from batch_pipelines.cli_options import (
    OFFSET,
    PAGE,
    PAGE_SIZE,
    cli_error,
    cli_group,
    dagster_instance,
    database_url_option,
    json_option,
    open_store,
)
from batch_pipelines.core.errors import BatchPipelinesError, hide_secrets

_pipelines_dir = click.option(
    "--pipelines-dir",
    envvar="DOCUMENT_AI_PIPELINES_DIR",
    default=None,
    show_envvar=True,
    help="Folder of pipeline templates (default: the shipped ones).",
)


# How long `--run` waits for another worker to let go of the job before saying who holds it.
CLAIM_WAIT_SECONDS = 10.0


def _pipelines(pipelines_dir: str | None):
    from batch_pipelines.document_ai.pipelines import SHIPPED_PIPELINES_DIR, load_pipelines

    return load_pipelines(Path(pipelines_dir) if pipelines_dir else SHIPPED_PIPELINES_DIR)


def _jobs(database_url: str):
    from batch_pipelines.document_ai.store import DocumentJobStore

    return DocumentJobStore(open_store(database_url))


def _job_and_template(database_url: str, pipelines_dir: str | None, ref: str):
    """(job store, the job, the template it runs) for a command about one job."""
    jobs = _jobs(database_url)
    record = jobs.get_job(ref)
    return jobs, record, record.template(_pipelines(pipelines_dir)[record.pipeline])


def _models():
    """The model service as the code location declares it (MODELS_BASE_URL, MODELS_API_KEY),
    else the simulator."""
    from batch_pipelines.resources import models_resource, resolved

    return resolved(models_resource())


def _settings():
    """Model routes, prices, validator and embedding models, as the code location has them."""
    from batch_pipelines.document_ai.resources import document_ai_settings
    from batch_pipelines.resources import resolved

    return resolved(document_ai_settings())


def _budget(value: str | None) -> Decimal | None:
    """A ``--budget`` value as an amount, or a one-line error naming the option and the rule
    (``Decimal("abc")`` would raise a bare ``InvalidOperation``)."""
    from batch_pipelines.core.costs import to_money
    from batch_pipelines.core.errors import ConfigurationError, shorten

    if value is None or value == "":
        return None
    try:
        return to_money(value, what="--budget")
    except ConfigurationError:
        raise ConfigurationError(
            f"--budget {shorten(value)} is not allowed: give an amount >= 0, e.g. 0.50"
        ) from None


def run_job_here(
    jobs,
    job,
    template,
    echo=click.echo,
    runner_id: str | None = None,
    *,
    show_progress: bool = True,
) -> Any:
    """Work a RUNNING job to the end (or to a pause) in this process; return the job.

    Each phase's progress shows as a live bar with rate and ETA in a terminal, as plain
    lines otherwise (``batch_pipelines.progress``); ``show_progress=False`` for --json.
    With ``DAGSTER_HOME`` set, each phase is recorded on its asset as soon as it ends (as
    if a run had done it: partition materialized, or the stop observed), so a kill loses at
    most the record of the phase in flight, which the next worker makes up.
    """
    from batch_pipelines.document_ai.runner import RunnerOptions
    from batch_pipelines.progress import ProgressReporter

    settings = _settings()
    instance = dagster_instance(required=False)
    recorded: list[str] = []
    unrecorded: list[str] = []

    def record(report) -> None:
        if instance is None:
            return
        from batch_pipelines.document_ai.runless import record_phase

        # The record is a view of the work, not the work: a Dagster instance that cannot
        # take it does not fail the job; the record is made up later (resume, status).
        try:
            if record_phase(instance, jobs, template, job, report):
                recorded.append(report.phase)
        except Exception as exc:
            unrecorded.append(f"{report.phase} ({hide_secrets(f'{type(exc).__name__}: {exc}')})")

    async def go():
        async with _models().client() as client:
            runner = settings.job_runner(
                jobs,
                job,
                template,
                client,
                options=RunnerOptions(validator_model=settings.validator_model),
                runner_id=runner_id,
            )
            # A worker that is stopping (paused a moment ago) lets go of the job within a
            # few seconds; a dead one's claim is taken over at once.
            return await runner.run_all(
                claim_wait_seconds=CLAIM_WAIT_SECONDS,
                on_progress=lambda r: progress.update(
                    r.phase,
                    r.done_before + r.processed,
                    r.items_total,
                    baseline=r.done_before,
                    detail=f"cost this run {r.cost}",
                ),
                on_phase=record,
            )

    try:
        with ProgressReporter(enabled=show_progress) as progress:
            reports = asyncio.run(go())
    finally:
        if instance is not None:
            instance.dispose()
    for report in reports:
        echo(
            f"  {report.phase}: {report.completed} done, {report.failed} failed, cost {report.cost}"
            + (f" - stopped: {report.stopped}" if report.stopped else "")
        )
    if recorded:
        echo(
            f"  recorded on the assets of {template.name} for partition {job.key}: "
            + ", ".join(recorded)
        )
    if unrecorded:
        echo(
            f"  not recorded on the assets (`docs status {job.key}` retries once the job is "
            f"COMPLETED): {'; '.join(unrecorded)}"
        )
    return jobs.get_job(job.id)


def record_missing_work(jobs, job, template, echo=click.echo) -> None:
    """Make up the asset records of a COMPLETED job whose worker was killed before recording
    a phase (with ``DAGSTER_HOME`` set); phases already materialized are left alone."""
    instance = dagster_instance(required=False)
    if instance is None:
        return
    from batch_pipelines.document_ai.runless import record_missing_phases

    try:
        if phases := record_missing_phases(instance, jobs, template, job):
            echo(
                f"  recorded on the assets of {template.name} for partition {job.key}: "
                + ", ".join(phases)
            )
    finally:
        instance.dispose()


@cli_group()
def docs() -> None:
    """Document AI batch jobs: submit, steer and inspect."""


@docs.command()
@click.argument("items_file", type=click.Path(dir_okay=False))
@click.option("--pipeline", required=True, help="Pipeline template name.")
@click.option("--name", default=None, help="Job name (default: the file name).")
@click.option("--project", "project_id", default="default", show_default=True)
@click.option("--concurrency", type=int, default=5, show_default=True)
@click.option("--checkpoint-frequency", type=int, default=10, show_default=True)
@click.option(
    "--budget",
    "cost_budget",
    type=str,
    default=None,
    help="Cost budget; the job pauses before passing it.",
)
@click.option("--target-language", default=None, help="For translation phases.")
@click.option(
    "--phases",
    "phases_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML list of the job's own phases, replacing the pipeline's one for one.",
)
@click.option("--no-start", is_flag=True, help="Store the job PENDING; start it later.")
@click.option("--run", "run_here", is_flag=True, help="Work the job in this process now.")
@database_url_option
@_pipelines_dir
@json_option
def submit(
    items_file,
    pipeline,
    name,
    project_id,
    concurrency,
    checkpoint_frequency,
    cost_budget,
    target_language,
    phases_file,
    no_start,
    run_here,
    database_url,
    pipelines_dir,
    as_json,
) -> None:
    """Create a job from ITEMS_FILE (.jsonl, .csv or .xlsx); every item is checked first."""
    from pydantic import ValidationError

    from batch_pipelines.document_ai.batch_jobs import BatchJobSpec, JobOptions, check_pipeline
    from batch_pipelines.document_ai.claims import new_runner_id
    from batch_pipelines.document_ai.items import load_items
    from batch_pipelines.document_ai.pipelines import describe_validation_error, load_phases

    try:
        pipelines = _pipelines(pipelines_dir)
        items = load_items(items_file)
        try:
            spec = BatchJobSpec(
                name=name or Path(items_file).stem,
                project_id=project_id,
                pipeline=pipeline,
                items=items,
                options=JobOptions(
                    concurrency=concurrency,
                    checkpoint_frequency=checkpoint_frequency,
                    cost_budget=_budget(cost_budget),
                    auto_start=not no_start,
                    target_language=target_language,
                ),
                phases=load_phases(phases_file) if phases_file else None,
            )
        except ValidationError as exc:
            problems = describe_validation_error(exc)
            raise click.ClickException(f"invalid job options: {problems}") from None
        check_pipeline(spec, pipelines)
        jobs = _jobs(database_url)
        # With --run the job is born claimed by this process: no launcher run races it.
        runner_id = new_runner_id() if run_here else None
        job = jobs.create_job(spec, pipelines[pipeline], claimed_by=runner_id)
        if run_here and job.status.value == "RUNNING":
            job = run_job_here(
                jobs,
                job,
                pipelines[pipeline],
                echo=(lambda _: None) if as_json else click.echo,
                show_progress=not as_json,
                runner_id=runner_id,
            )
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    if as_json:
        click.echo(json.dumps(job.to_dict(), indent=2))
    else:
        click.echo(f"job {job.key} ({job.item_count} items, pipeline {job.pipeline}): {job.status}")


def _show_status(status: dict[str, Any]) -> None:
    p = status["progress"]
    click.echo(
        f"job {status['key']}  {status['status']}  pipeline {status['pipeline']}  project {status['project_id']}"
    )
    if status["status_reason"]:
        click.echo(f"  reason: {status['status_reason']}")
    if status.get("worker_died"):
        click.echo(f"  worker: {status['worker']}; `docs resume {status['key']}` goes on")
    click.echo(
        f"  progress: {p['completed']} completed, {p['failed']} failed of {p['total']} ({p['percent']}%)"
    )
    click.echo(
        f"  current phase: {status['current_phase'] or '-'}   cost: {status['cost']}   tokens: {status['tokens']}"
        f"   ETA: {status['eta_seconds'] if status['eta_seconds'] is not None else '-'} s"
    )
    for ph in status["phases"]:
        click.echo(f"    {ph['phase']:<24} {ph['completed']:>6} done {ph['failed']:>6} failed")
    click.echo(f"  allowed actions: {', '.join(status['allowed_actions']) or '-'}")


@docs.command()
@click.argument("job")
@database_url_option
@_pipelines_dir
@json_option
def status(job, database_url, pipelines_dir, as_json) -> None:
    """Progress, current phase, cost, tokens and ETA of JOB (key or id)."""
    from batch_pipelines.document_ai.reports import job_status

    try:
        jobs = _jobs(database_url)
        record = jobs.get_job(job)
        pipeline = _pipelines(pipelines_dir)[record.pipeline]
        # A COMPLETED job worked here whose last records a kill lost gets them now (on the
        # pipeline's assets: a job's own phases run at their positions).
        record_missing_work(
            jobs, record, pipeline, echo=(lambda _: None) if as_json else click.echo
        )
        data = job_status(jobs, record, record.template(pipeline))
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        _show_status(data)


@docs.command()
@click.argument("job")
@click.option("--offset", type=OFFSET, default=0)
@click.option("--limit", type=PAGE_SIZE, default=20, show_default=True, help="Items shown (1-100).")
@database_url_option
@_pipelines_dir
@json_option
def results(job, offset, limit, database_url, pipelines_dir, as_json) -> None:
    """Per item: input, output, phase outputs, cost, status, errors, validation scores."""
    from batch_pipelines.document_ai.reports import item_results

    try:
        jobs, record, template = _job_and_template(database_url, pipelines_dir, job)
        rows = item_results(jobs, record, template, offset=offset, limit=limit)
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        output = r["output"]
        shown = (
            f"[vector of {len(output)}]"
            if isinstance(output, list)
            else str(output or "")[:80].replace("\n", " ")
        )
        scores = ",".join(f"{k}={v:g}" for k, v in r["validation_scores"].items()) or "-"
        click.echo(
            f"{r['index']:>6} {r['status']:<12} cost {r['cost']:<10} scores {scores:<30} {shown}"
        )
        for phase, error in r["errors"].items():
            click.echo(f"{'':>6} error in {phase}: {error}")


@docs.command()
@click.argument("job")
@database_url_option
@_pipelines_dir
@json_option
def analytics(job, database_url, pipelines_dir, as_json) -> None:
    """Cost total / by phase / per item, processing time, success rate, failed items."""
    from batch_pipelines.document_ai.reports import analytics as compute

    try:
        jobs, record, template = _job_and_template(database_url, pipelines_dir, job)
        data = compute(jobs, record, template)
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"job {data['job']}: cost {data['cost_total']} ({data['tokens']} tokens), "
        f"success rate {data['success_rate']}%, mean cost per item {data['cost_per_item_mean']}"
    )
    for phase, cost in data["cost_by_phase"].items():
        click.echo(
            f"  {phase:<24} cost {cost:<12} mean {data['processing_seconds_by_phase_mean'][phase]} s per item"
        )
    click.echo(f"  cost by kind: {data['cost_by_kind']}")
    click.echo(f"  mean processing time per item: {data['processing_seconds_per_item_mean']} s")
    for f in data["failed_items"]:
        click.echo(f"  failed: item {f['index']} in {f['phase']}: {f['error']}")


@docs.command("list")
@click.option("--project", "project_id", default=None)
@click.option(
    "--status",
    "status_filter",
    default=None,
    help="PENDING, RUNNING, PAUSED, COMPLETED, FAILED or CANCELLED.",
)
@click.option("--page", type=PAGE, default=1, show_default=True)
@click.option("--page-size", type=PAGE_SIZE, default=20, show_default=True, help="Jobs per page.")
@database_url_option
@json_option
def list_jobs(project_id, status_filter, page, page_size, database_url, as_json) -> None:
    """Jobs, newest first, filtered by project and status, a page at a time."""
    from batch_pipelines.core.errors import ConfigurationError, shorten
    from batch_pipelines.document_ai.batch_jobs import DocJobStatus

    try:
        if status_filter and status_filter.upper() not in DocJobStatus.__members__:
            raise ConfigurationError(
                f"--status {shorten(status_filter)}: expected one of {', '.join(DocJobStatus)}"
            )
        found, total = _jobs(database_url).list_jobs(
            project_id=project_id,
            status=status_filter.upper() if status_filter else None,
            limit=page_size,
            offset=(page - 1) * page_size,
        )
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "total": total,
                    "page": page,
                    "page_size": page_size,
                    "jobs": [j.to_dict() for j in found],
                },
                indent=2,
            )
        )
        return
    click.echo(f"{total} job(s); page {page}")
    for j in found:
        click.echo(
            f"  {j.key:<40} {j.status.value:<10} {j.pipeline:<24} {j.project_id:<16} {j.item_count:>6} items"
        )


def _apply_claimed(jobs, ref: str, action: str, reason: str | None, runner_id: str):
    """Start or resume ``ref`` claimed by ``runner_id`` in one step; a worker that is stopping
    (paused a moment ago) lets go within a few seconds, so its claim is waited for that long
    before the error says who holds it (the job is left as it was)."""
    import time

    from batch_pipelines.document_ai.store import JobNotRunnable

    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while True:
        try:
            return jobs.apply_action(ref, action, reason=reason, claimed_by=runner_id)
        except JobNotRunnable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def _steer(action: str, doc: str, can_run: bool):
    @click.argument("job")
    @click.option("--reason", default=None)
    @database_url_option
    @_pipelines_dir
    def command(job, reason, database_url, pipelines_dir, run_here=False, budget=None) -> None:
        try:
            jobs = _jobs(database_url)
            if budget is not None:
                jobs.set_cost_budget(job, _budget(budget))
            if action == "resume":
                # A job whose worker was killed is still RUNNING: it is failed with the
                # reason first, so it can be resumed at once.
                died = jobs.fail_if_worker_died(job)
                if died.status.value == "FAILED" and died.status_reason:
                    click.echo(f"job {died.key}: {died.status_reason}")
            runner_id = None
            if run_here:
                from batch_pipelines.document_ai.claims import new_runner_id

                # The job turns RUNNING already claimed by this process: no launcher run
                # races the worker below.
                runner_id = new_runner_id()
                record = _apply_claimed(jobs, job, action, reason, runner_id)
            else:
                record = jobs.apply_action(job, action, reason=reason)
            click.echo(f"job {record.key}: {record.status}")
            if run_here:
                record = run_job_here(
                    jobs, record, _pipelines(pipelines_dir)[record.pipeline], runner_id=runner_id
                )
                click.echo(f"job {record.key}: {record.status}")
        except BatchPipelinesError as exc:
            raise cli_error(exc) from None

    command.__doc__ = doc
    if can_run:
        command = click.option(
            "--run", "run_here", is_flag=True, help="Work the job in this process now."
        )(command)
    if action == "resume":
        command = click.option("--budget", default=None, help="A new cost budget.")(command)
    return docs.command(action)(command)


_steer("start", "Start a PENDING job.", can_run=True)
_steer("pause", "Pause a RUNNING job: in-flight items finish, then its run stops.", can_run=False)
_steer("resume", "Resume a PAUSED or FAILED job from its last checkpoint.", can_run=True)
_steer("cancel", "Cancel a job unless it is COMPLETED or CANCELLED.", can_run=False)


@docs.command()
@click.argument("job")
@database_url_option
def delete(job, database_url) -> None:
    """Delete a job that is not RUNNING, with its items, results and ledger entries."""
    try:
        record = _jobs(database_url).delete_job(job)
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    click.echo(f"job {record.key} deleted")
    if (found := dagster_instance(required=False)) is not None:
        # The job's partition goes too, as when the UI's delete_document_job does it.
        from batch_pipelines.document_ai.assets import remove_job_partition

        with found as instance:
            if name := remove_job_partition(instance, record.pipeline, record.key):
                click.echo(f"partition {record.key} of {name} removed")


@docs.command()
@click.argument("job")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "xlsx"]), default="jsonl", show_default=True
)
@click.option(
    "--out",
    "folder",
    type=click.Path(file_okay=False),
    default=".data/document_ai/exports",
    show_default=True,
)
@database_url_option
@_pipelines_dir
def export(job, fmt, folder, database_url, pipelines_dir) -> None:
    """Write JOB's per-item results to JSONL or XLSX."""
    from batch_pipelines.document_ai.exports import export_results

    try:
        jobs, record, template = _job_and_template(database_url, pipelines_dir, job)
        path = export_results(jobs, record, template, Path(folder), fmt)
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    click.echo(f"results of {record.key} written to {path}")


@docs.command("add-references")
@click.argument("project_id")
@click.argument("files", type=click.Path(exists=True, dir_okay=False), nargs=-1, required=True)
@database_url_option
def add_references(project_id, files, database_url) -> None:
    """Index reference documents (text files) of PROJECT_ID for use_rag phases."""
    from batch_pipelines.core.names import check_name
    from batch_pipelines.document_ai.rag import ReferenceLibrary

    try:
        check_name(project_id, "PROJECT_ID")
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    store = open_store(database_url)

    async def go() -> dict[str, int]:
        async with _models().client() as client:
            settings = _settings()
            library = ReferenceLibrary(
                store.engine,
                client,
                embedding_model=settings.embedding_model,
                prices=settings.price_table(),
                on_cost=store.record_cost_entries,
            )
            return {
                Path(f).name: await library.add_document(
                    project_id, Path(f).name, Path(f).read_text(encoding="utf-8")
                )
                for f in files
            }

    try:
        added = asyncio.run(go())
    except BatchPipelinesError as exc:
        raise cli_error(exc) from None
    for name, passages in added.items():
        click.echo(f"{name}: {passages} passages indexed for project {project_id}")
