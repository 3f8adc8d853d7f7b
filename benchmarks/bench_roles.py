"""roles_status_sqlite / roles_status_postgres: the status of a 10,000-role batch.

The batch record and 10,000 role runs are written first: the runs through the instance's
own run storage (Dagster's insertion values and tables, in one transaction per chunk, since
``add_run`` one by one takes about 10 ms a run on SQLite), with the tags the submissions
sensor gives role runs; 70 % succeeded (with a published dashboard), 5 % failed, 5 % are
running and 20 % wait. Then ``service.batch_status`` is timed as the CLI and the UI job
call it: batch record, one run-storage query per retry round, dashboards, aggregation.

Ideal: the goal, 1 s. Measured: the median of five calls. SQLite: an instance in a
temporary folder; PostgreSQL: dagster_postgres storage on a fresh database on
127.0.0.1:5432 (user postgres), dropped afterwards.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.runs.schema import RunsTable, RunTagsTable
from dagster._core.storage.tags import PARTITION_NAME_TAG

from batch_pipelines.role_onboarding.service import batch_status, run_tags
from batch_pipelines.role_onboarding.store import RoleOnboardingStore
from batch_pipelines.role_onboarding.submission import (
    RoleOptions,
    ValidatedSubmission,
    ValidRole,
    new_batch_id,
)
from batch_pipelines.store.batch_store import BatchStore
from batch_pipelines.store.role_onboarding_tables import role_dashboards
from benchmarks.common import bench_line

ROLES = 10_000
GOAL_SECONDS = 1.0
CHUNK = 1000
ADMIN_URL = os.environ.get(
    "BATCH_PIPELINES_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
# Share of roles per run status, in order. Waiting roles are NOT_STARTED runs: a QUEUED run
# record needs the code location's origin, and both statuses mean "queued" to the status.
MIX = [("SUCCESS", 0.70), ("FAILURE", 0.05), ("STARTED", 0.05), ("NOT_STARTED", 0.20)]


def _status_for(index: int) -> str:
    position = (index % 100) / 100
    total = 0.0
    for status, share in MIX:
        total += share
        if position < total:
            return status
    return MIX[-1][0]


def _seed(instance: dg.DagsterInstance, store: RoleOnboardingStore) -> tuple[str, dict[str, int]]:
    company = "bench-co"
    submission = ValidatedSubmission(
        company_id=company,
        options=RoleOptions(),
        created_by="bench",
        valid=[ValidRole(i, f"Role {i}", None, f"{company}/role-{i}") for i in range(ROLES)],
    )
    batch = store.create_batch(new_batch_id(), submission)
    storage = instance.run_storage
    # Dagster inspects the schema for this on every insertion; once is enough here.
    has_backfill_id = storage.has_backfill_id_column()
    storage.has_backfill_id_column = lambda: has_backfill_id  # type: ignore[method-assign]
    now = datetime.now(UTC)
    expected = dict.fromkeys([status for status, _ in MIX], 0)
    workflows = batch.current_workflows()
    ready: list[dict] = []
    for start in range(0, len(workflows), CHUNK):
        runs, tags = [], []
        for wf in workflows[start : start + CHUNK]:
            status = _status_for(wf.role_index)
            expected[status] += 1
            run = DagsterRun(
                job_name="role_onboarding_job",
                run_id=str(uuid.uuid4()),
                status=dg.DagsterRunStatus(status),
                tags={**run_tags(wf), PARTITION_NAME_TAG: wf.partition_key},
            )
            values = storage._get_run_insertion_values(run, now)  # noqa: SLF001 - Dagster's own row
            values["start_time"] = now.timestamp() - 60 if status != "NOT_STARTED" else None
            values["end_time"] = now.timestamp() - 10 if status in ("SUCCESS", "FAILURE") else None
            runs.append(values)
            tags.extend(
                {"run_id": run.run_id, "key": k, "value": v}
                for k, v in run.tags_for_storage().items()
            )
            if status == "SUCCESS":
                ready.append(
                    {
                        "partition_key": wf.partition_key,
                        "company_id": company,
                        "role_name": wf.role_name,
                        "taxonomy_role_id": "dr-bench",
                        "taxonomy_role_name": wf.role_name,
                        "record": {},
                        "workflow_id": wf.workflow_id,
                        "published_at": now,
                    }
                )
        with storage.connect() as conn:  # one transaction per chunk
            conn.execute(RunsTable.insert(), runs)
            conn.execute(RunTagsTable.insert(), tags)
    with store.engine.begin() as conn:
        conn.execute(role_dashboards.insert(), ready)
    return batch.batch_id, expected


def _measure(name: str, instance: dg.DagsterInstance, store: RoleOnboardingStore) -> None:
    seeding = time.perf_counter()
    batch_id, expected = _seed(instance, store)
    print(
        f"{name}: {ROLES} role runs recorded in {time.perf_counter() - seeding:.1f}s ({expected})",
        flush=True,
    )
    timings = []
    view = None
    for _ in range(5):
        t0 = time.perf_counter()
        view = batch_status(instance, store, batch_id)
        timings.append(time.perf_counter() - t0)
    assert view is not None
    v = view.view
    got = {
        "SUCCESS": v.completed,
        "FAILURE": v.failed,
        "STARTED": v.in_progress,
        "NOT_STARTED": v.queued,
    }
    if (
        got != expected
        or v.total != ROLES
        or sum(1 for r in view.roles if r.dashboard_url) != expected["SUCCESS"]
    ):
        raise RuntimeError(f"{name}: status disagrees with the recorded runs: {got} != {expected}")
    measured = statistics.median(timings)
    print(
        f"{name}: batch status of {ROLES} roles in {measured:.3f}s (median of 5; min {min(timings):.3f}s) "
        f"vs {GOAL_SECONDS:.1f}s ideal (the goal); state {v.state}, {v.progress_percent}% settled",
        flush=True,
    )
    bench_line(name, "s", measured, GOAL_SECONDS, digits=4)


def bench_sqlite() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "dagster.yaml").write_text("")  # the default SQLite instance, said so (no warning)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            base = BatchStore(f"sqlite:///{home / 'store.db'}")
            try:
                _measure("roles_status_sqlite", instance, RoleOnboardingStore(base))
            finally:
                base.dispose()


@contextmanager
def _fresh_postgres_database() -> Iterator[str]:
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bp_bench_roles_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def bench_postgres() -> None:
    with _fresh_postgres_database() as url, tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "dagster.yaml").write_text(
            f"storage:\n  postgres:\n    postgres_url: {json.dumps(url)}\n"
        )
        with dg.DagsterInstance.from_config(str(home)) as instance:
            base = BatchStore(url)
            try:
                _measure("roles_status_postgres", instance, RoleOnboardingStore(base))
            finally:
                base.dispose()


def main() -> None:
    bench_sqlite()
    bench_postgres()


if __name__ == "__main__":
    main()
