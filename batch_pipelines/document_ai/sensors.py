"""Sensors of the document AI family: launching runs for RUNNING jobs, and the drop folder.

Both are thin: the launcher reads RUNNING jobs and their runs and lets
``launching.launch_decisions`` decide; the drop-folder sensor notices new item files and
launches ``submit_document_job`` for each, where validation happens (an invalid file is a
failed run listing every bad item, visible in the UI).
"""

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from batch_pipelines.core.errors import ConfigurationError, IllegalTransition, shorten
from batch_pipelines.core.names import UnsafeName, check_name
from batch_pipelines.document_ai.assets import JOB_TAG, job_name_for, partitions_for
from batch_pipelines.document_ai.batch_jobs import DocJobStatus
from batch_pipelines.document_ai.items import SUPPORTED_EXTENSIONS
from batch_pipelines.document_ai.jobs import submit_document_job
from batch_pipelines.document_ai.launching import RunningJob, RunSeen, launch_decisions, run_key
from batch_pipelines.document_ai.resources import DocumentAISettings
from batch_pipelines.document_ai.runless import record_missing_phases
from batch_pipelines.document_ai.store import DocumentJobStore
from batch_pipelines.drop_folders import scan
from batch_pipelines.resources import BatchStoreResource

GENERATION_TAG = "batch_pipelines/document_job_generation"


def build_document_job_launcher(pipeline_jobs: Sequence) -> dg.SensorDefinition:
    """The launcher sensor, targeting the asset job of every pipeline (a sensor must name the
    jobs it may launch, and those are built from the templates when the code location loads)."""

    @dg.sensor(
        name="document_job_launcher",
        jobs=list(pipeline_jobs),
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches one pipeline run per started or resumed document job; marks jobs whose run died FAILED.",
    )
    def document_job_launcher(
        context: dg.SensorEvaluationContext,
        batch_store: BatchStoreResource,
        document_ai: DocumentAISettings,
    ) -> dg.SensorResult | dg.SkipReason:
        return launch_runs(context, DocumentJobStore(batch_store.get_store()), document_ai)

    return document_job_launcher


def launch_runs(
    context: dg.SensorEvaluationContext, jobs: DocumentJobStore, document_ai: DocumentAISettings
) -> dg.SensorResult | dg.SkipReason:
    running = jobs.running_jobs()
    if not running:
        return dg.SkipReason("no RUNNING document job")
    # The runs of every RUNNING job's current generation in one query (newest first), kept
    # per job and generation; runs of earlier generations are not read.
    seen: dict[tuple[str, str], list[RunSeen]] = {(j.key, str(j.generation)): [] for j in running}
    current = dg.RunsFilter(
        tags={
            JOB_TAG: [j.key for j in running],
            GENERATION_TAG: sorted({str(j.generation) for j in running}),
        }
    )
    found: dict[str, dg.DagsterRun] = {}
    for record in context.instance.get_run_records(current):
        run = record.dagster_run
        of_generation = seen.get((run.tags.get(JOB_TAG, ""), run.tags.get(GENERATION_TAG, "")))
        if of_generation is not None:
            of_generation.append(RunSeen(run.run_id, run.status.value))
            found[run.run_id] = run
    runs = {run_key(j.key, j.generation): seen[(j.key, str(j.generation))] for j in running}
    now = datetime.now(UTC)
    decisions = launch_decisions(
        [
            RunningJob(
                j.key,
                j.pipeline,
                j.generation,
                claim_expired_seconds=(now - j.lease_expires_at).total_seconds()
                if j.runner_id and j.lease_expires_at and j.lease_expires_at < now
                else None,
                claimed_elsewhere=bool(
                    j.runner_id and j.lease_expires_at and j.lease_expires_at >= now
                ),
                nothing_left=jobs.settled_items(j.batch_id) >= j.item_count,
            )
            for j in running
        ],
        runs,
    )
    for run_id, reason in decisions.dead_runs:
        dead = found.get(run_id)
        if dead is not None and not dead.is_finished:
            context.instance.report_run_failed(dead, reason)
    for key, reason in decisions.to_fail:
        jobs.apply_action(key, "fail", reason=reason)
        context.log.warning(f"document job {key}: {reason}")
    pipelines = document_ai.pipelines()
    for key in decisions.to_complete:
        try:
            completed = jobs.apply_action(key, "complete", reason="every item was already settled")
        except IllegalTransition:
            continue  # paused or cancelled meanwhile
        context.log.info(f"document job {key}: every item settled; completed without a run")
        if completed.pipeline in pipelines:
            # Its worker died before recording its last phases on the assets: made up here.
            recorded = record_missing_phases(
                context.instance, jobs, pipelines[completed.pipeline], completed
            )
            if recorded:
                context.log.info(f"document job {key}: recorded phases {', '.join(recorded)}")
    requests, partitions = [], []
    for launch in decisions.to_launch:
        current = jobs.get_job(launch.key)
        if current.status != DocJobStatus.RUNNING or current.generation != launch.generation:
            # Settled (or restarted) since this tick read it, e.g. by a `docs --run` worker:
            # a run now would do nothing.
            continue
        if launch.pipeline not in pipelines:
            jobs.apply_action(
                launch.key, "fail", reason=f"pipeline {launch.pipeline!r} is no longer defined"
            )
            continue
        name = partitions_for(pipelines[launch.pipeline]).name
        if not context.instance.has_dynamic_partition(name, launch.key):
            partitions.append(dg.AddDynamicPartitionsRequest(name, [launch.key]))
        requests.append(
            dg.RunRequest(
                run_key=launch.run_key,
                job_name=job_name_for(launch.pipeline),
                partition_key=launch.key,
                tags={JOB_TAG: launch.key, GENERATION_TAG: str(launch.generation)},
            )
        )
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=partitions)


def drop_path_problem(pipeline: str, project: str, name: str, known: Iterable[str]) -> str | None:
    """Why an item file at ``<pipeline>/<project>/<name>.<ext>`` cannot become a job, or None.

    The three parts become a pipeline choice, a project and a job name (a partition key and
    file names), so each must be an allowed name and the pipeline one of the templates.
    """
    for value, field in ((pipeline, "pipeline"), (project, "project"), (name, "job name")):
        try:
            check_name(value, f"{field} (from the file path)")
        except UnsafeName as exc:
            return exc.message
    names = sorted(known)
    if pipeline not in names:
        return f"unknown pipeline {shorten(pipeline)}; available: {', '.join(names) or '(none)'}"
    return None


def build_document_items_drop_sensor(submit_job: dg.JobDefinition) -> dg.SensorDefinition:
    """The drop-folder sensor, launching ``submit_job`` (the code location's own, whose
    pipeline is a choice of the loaded templates)."""

    @dg.sensor(
        job=submit_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Creates a document job for each new item file in <drop folder>/<pipeline>/<project>/.",
    )
    def document_items_drop_sensor(
        context: dg.SensorEvaluationContext, document_ai: DocumentAISettings
    ) -> dg.SensorResult | dg.SkipReason:
        found = scan(
            Path(document_ai.drop_folder),
            "*/*/*",
            context.cursor,
            what="item file",
            suffixes=SUPPORTED_EXTENSIONS,
        )
        if found.nothing_to_do:
            return dg.SkipReason(found.nothing_to_do)
        changed, current, cursor = found.changed, found.current, found.cursor
        requests = []
        known = document_ai.pipelines()
        for raw in changed:
            path = Path(raw)
            pipeline, project = path.parent.parent.name, path.parent.name
            problem = drop_path_problem(pipeline, project, path.stem, known)
            if problem:
                # No run: its config would carry the bad value into a partition key or folder.
                context.log.warning(f"item file {shorten(raw)} skipped: {problem}")
                continue
            config = {
                "name": path.stem,
                "project_id": project,
                "pipeline": pipeline,
                "items_path": raw,
            }
            requests.append(
                dg.RunRequest(
                    run_key=f"{pipeline}/{project}/{path.name}:{current[raw][0]}:{current[raw][1]}",
                    run_config={"ops": {"submit_document_job_op": {"config": config}}},
                    tags={"batch_pipelines/items_file": f"{pipeline}/{project}/{path.name}"},
                )
            )
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return document_items_drop_sensor


document_items_drop_sensor = build_document_items_drop_sensor(submit_document_job)


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails while a pipeline template is invalid, listing each problem with its file and field.",
)
def document_pipelines_problems(
    context: dg.SensorEvaluationContext, document_ai: DocumentAISettings
) -> dg.SkipReason:
    problems = document_ai.pipeline_problems()
    if problems:
        raise ConfigurationError(
            f"{len(problems)} invalid pipeline template(s) (left out of the code location; fix them and "
            "reload):\n" + "\n".join(f"- {p}" for p in problems)
        )
    return dg.SkipReason("every pipeline template is valid")
