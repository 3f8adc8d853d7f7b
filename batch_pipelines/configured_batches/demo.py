"""The configured batches part of `make demo`: every one of the 8 batch types, end to end.

On the demo data (three tenants, 300 users, three categories, preferences), through Dagster
on the given instance: the preference-change sensor puts users in their preference groups
(partitions of ``preference_group``), then each static job of the shipped sample runs one
tick of ``configured_batch`` and each preference job runs its largest group's tick of
``preference_batch``, all against the model simulator. Every run writes a context in the
seed's shape; the demo checks that shape and prints where to look.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from batch_pipelines.configured_batches.assets import build_configured_batch_asset, preference_batch
from batch_pipelines.configured_batches.configured_jobs import ConfiguredJobsResource
from batch_pipelines.configured_batches.contexts import BATCH, ContextStore
from batch_pipelines.configured_batches.demo_data import seed_demo_data
from batch_pipelines.configured_batches.group_store import PreferenceGroupStore
from batch_pipelines.configured_batches.groups import TICK_TAG as PREFERENCE_TICK_TAG
from batch_pipelines.configured_batches.job_config import (
    SAMPLE_JOBS_FILE,
    JobConfig,
    load_job_configuration,
)
from batch_pipelines.configured_batches.partitions import PREFERENCE_GROUPS
from batch_pipelines.configured_batches.resources import ConfigServiceResource
from batch_pipelines.configured_batches.runner import batch_key_for
from batch_pipelines.configured_batches.sensors import preference_change_sensor
from batch_pipelines.demo import QUIET, database_url_hint
from batch_pipelines.metadata import checks_line
from batch_pipelines.resources import BatchStoreResource, ModelsResource, TeamsResource
from batch_pipelines.store.batch_store import BatchStore

SEED_KEYS = {"metadata", "items", "progress", "validation"}


def has_seed_shape(context: dict | None, data_source_type: str) -> bool:
    """Whether a stored batch context has the seed's keys (and, for category batches, the
    user references in its metadata)."""
    if not context or set(context) != {"results"} or set(context["results"]) != SEED_KEYS:
        return False
    results = context["results"]
    if set(results["progress"]) != {"processed", "succeeded", "failed", "total", "percentage"}:
        return False
    if data_source_type == "categories":
        return (
            set(results["items"]) == {"valid_categories", "invalid_categories"}
            and "user_references" in results["metadata"]
        )
    return set(results["items"]) == {"valid_users", "invalid_users"}


def _group_preferences(
    echo: Callable[[str], None], instance: dg.DagsterInstance, resources: dict
) -> None:
    """One evaluation of the preference-change sensor, with its partition changes applied
    (the daemon does that in `make dev`)."""
    context = dg.build_sensor_context(instance=instance, resources=resources)
    # The sensor's log line goes to Dagster's console logger (stderr) in its raw format;
    # the demo says the same below in its own words.
    with contextlib.redirect_stderr(io.StringIO()):
        result = preference_change_sensor(context)
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    groups = len(instance.get_dynamic_partitions(PREFERENCE_GROUPS.name))
    echo(
        f"  preference-change sensor: {groups} preference groups are partitions of {PREFERENCE_GROUPS.name}"
    )


def _largest_group(store: BatchStore, job: JobConfig) -> str | None:
    counts = PreferenceGroupStore(store.engine).member_counts()
    mine = {k: n for k, n in counts.items() if k.startswith(f"{job.feature_type}|")}
    return max(sorted(mine), key=lambda k: mine[k]) if mine else None


def run_demo(
    echo: Callable[[str], None],
    directory: Path,
    instance: dg.DagsterInstance,
    store_url: str | None = None,
) -> int:
    """Run this family's demo on the embedded default in ``directory`` (empty, created by the
    caller) with ``instance`` and ``store_url`` (the project's store in `make demo`; by
    default a new one in ``directory``); print what happened and where to look; 0 when it
    did what it should."""
    store_url = store_url or f"sqlite:///{directory / 'batch_store.db'}"
    store = BatchStore(store_url)
    data = seed_demo_data(store.engine)
    echo(
        f"  demo data: {data.tenants} tenants, {data.users} users ({data.inactive_users} inactive), "
        f"{data.categories} categories with {data.category_items} items, {data.preferences} preferences"
    )
    resources = {
        "batch_store": BatchStoreResource(database_url=store_url),
        "models": ModelsResource(),
        "configured_jobs": ConfiguredJobsResource(),
        "config_service": ConfigServiceResource(),
        "teams": TeamsResource(),
    }
    _group_preferences(echo, instance, resources)

    jobs, problems = load_job_configuration(SAMPLE_JOBS_FILE)
    if problems:
        for p in problems:
            echo(f"  {p}")
        return 1
    static = [j for j in jobs if not j.type.is_preference]
    configured_batch = build_configured_batch_asset(static)
    tick = datetime.now(UTC).isoformat(timespec="minutes")
    contexts = ContextStore(store.engine)
    ok = True
    evaluations = []
    echo(f"  {'job':<28} {'type':<34} {'requests':>8}  {'invalid':>7}  context")
    for job in jobs:
        if job.type.is_preference:
            group = _largest_group(store, job)
            if group is None:
                echo(f"  {job.job_id:<28} {job.type.value:<34} no preference group")
                ok = False
                continue
            result = dg.materialize(
                [preference_batch],
                partition_key=group,
                instance=instance,
                resources=resources,
                tags={PREFERENCE_TICK_TAG: tick},
                run_config=QUIET,
                raise_on_error=False,
            )
            key = batch_key_for(job, tick, group)
        else:
            result = dg.materialize(
                [configured_batch],
                partition_key=job.job_id,
                instance=instance,
                resources=resources,
                run_config={**QUIET, "ops": {"configured_batch": {"config": {"tick": tick}}}},
                raise_on_error=False,
            )
            key = batch_key_for(job, tick)
        evaluations += result.get_asset_check_evaluations()
        context = contexts.get(BATCH, key)
        shaped = has_seed_shape(context, job.type.data_source)
        ok &= result.success and shaped
        if context is None:
            echo(
                f"  {job.job_id:<28} {job.type.value:<34} run {result.run_id[:8]} FAILED, no context"
            )
            continue
        r = context["results"]
        progress = r["progress"]
        echo(
            f"  {job.job_id:<28} {job.type.value:<34} {progress['succeeded']:>3}/{progress['total']:<4}  "
            f"{r['validation']['invalid']:>7}  {'seed shape' if shaped else 'WRONG SHAPE'}"
            + (
                f"  (group {r['metadata']['preference_group']})"
                if "preference_group" in r["metadata"]
                else ""
            )
        )
    store.dispose()
    echo(f"  {checks_line(evaluations)}")
    echo("  where to look:")
    echo(
        f"    status by user:    .venv/bin/batch-pipelines jobs status --user user_0001{database_url_hint(store_url)}"
    )
    echo(
        f"    by tenant:         .venv/bin/batch-pipelines jobs status --tenant acme{database_url_hint(store_url)}"
    )
    echo(
        f"    by feature type:   .venv/bin/batch-pipelines jobs status --feature-type daily_digest{database_url_hint(store_url)}"
    )
    echo(
        "    the Dagster UI:    make dev, then the configured_batches asset group (configured_batch,"
    )
    echo(
        "                       preference_batch: metadata batch_context), Automation (schedules, sensors)"
    )
    return 0 if ok else 1
