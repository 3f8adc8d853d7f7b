"""`make demo`: every batch family end to end on the embedded default.

It runs on SQLite stores and in-process simulators with injected faults, so a newcomer sees
the whole loop on a laptop: Risk Modeler batches (submission with retries, tracking,
reconciliation, a failure and the resubmission that repairs it) and a whole cycle, then
the document AI, configured-batch and role-onboarding families, each saying where to look.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from sqlalchemy.engine import make_url

from batch_pipelines.cli_options import format_counts
from batch_pipelines.core.backoff import RetryPolicy
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.core.statuses import JobStatus
from batch_pipelines.engine.executor import BatchRunResult, EngineOptions, ProgressReport, run_batch
from batch_pipelines.instance import store_url as project_store_url
from batch_pipelines.instance import ui_url
from batch_pipelines.risk_modeling.handlers import (
    EdmCreationHandler,
    PortfolioCreationHandler,
    client_context,
)
from batch_pipelines.simulators.embedded import risk_modeler_client
from batch_pipelines.simulators.faults import FaultPlan
from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator
from batch_pipelines.store.batch_store import BatchStore
from batch_pipelines.store.urls import redacted

DEMO_DIR = Path(".data") / "demo"
CYCLE = "202503"
EDMS = 12
PORTFOLIOS_PER_EDM = 4
CLI = ".venv/bin/batch-pipelines"
# Run config for the demos' Dagster runs: the console logger (every event at DEBUG) shows
# only errors; the whole event log is in the instance (make dev), and each demo says what
# happened in its own lines. One definition, used by every family's demo.
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def database_url_hint(store_url: str) -> str:
    """What a printed CLI hint needs to reach ``store_url``: nothing for the project's own
    store (the CLI's default), else ``--database-url URL`` (a family demo run on its own)."""
    if store_url == project_store_url(os.environ, Path.cwd()):
        return ""
    return f" --database-url {store_url}"


# The other families' demos: (folder, heading).
FAMILY_DEMOS = (
    ("document_ai", "Document AI"),
    ("configured_batches", "Configured batches"),
    ("role_onboarding", "Role onboarding"),
)


def where_to_look(echo: Callable[[str], None], entries: list[tuple[str, str]]) -> None:
    """A part's closing "where to look" block: labels aligned, one entry a line."""
    width = max(len(label) for label, _ in entries) + 1
    echo("  where to look:")
    for label, value in entries:
        echo(f"    {label + ':':<{width}}  {value}")


def _print_result(echo: Callable[[str], None], title: str, result: BatchRunResult) -> None:
    rec = result.reconciliation
    s = rec.summary
    echo(f"  {title}: batch {result.batch_id} reconciled {rec.status} - {rec.reason}")
    echo(f"    jobs by status: {format_counts(s.job_status_counts)}")
    echo(
        f"    configurations fulfilled {s.fulfilled_configurations}/{s.non_skipped_configurations}"
        f"; failed job ids {s.failed_job_ids or '-'}; error job ids {s.error_job_ids or '-'}"
    )
    echo(f"    submitted {result.submitted} jobs in {result.duration_seconds:.1f}s")


async def _run(
    store: BatchStore, sim: RiskModelerSimulator, batch_id: int, handler_cls, echo
) -> BatchRunResult:
    options = EngineOptions(
        concurrency=8,
        poll_interval_seconds=0.2,
        poll_max_interval_seconds=1.0,
        progress_interval_seconds=1.0,
    )

    last: list[str] = []

    def progress(report: ProgressReport) -> None:
        # The engine reports on a timer; a report that says nothing new is not repeated.
        message = report.message()
        if last != [message]:
            last[:] = [message]
            echo(f"    progress: {message}")

    retry = RetryPolicy(max_retries=6, backoff_base_seconds=0.05, backoff_max_seconds=1.0)
    async with risk_modeler_client(sim, timeout_seconds=2.0, retry=retry) as client:
        return await run_batch(
            store, batch_id, handler_cls(client_context(client)), options, on_progress=progress
        )


def _dagster_instance() -> dg.DagsterInstance:
    """The project's instance when DAGSTER_HOME is set (make sets it), else a temporary one."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _run_family_demos(
    echo: Callable[[str], None], directory: Path, instance: dg.DagsterInstance, store_url: str
) -> bool:
    """The other families' demos, each with a folder of its own for its simulators and
    files, all on the project's store and instance; all run even if one fails."""
    from batch_pipelines.configured_batches.demo import run_demo as configured_batches_demo
    from batch_pipelines.document_ai.demo import run_demo as document_ai_demo
    from batch_pipelines.role_onboarding.demo import run_demo as role_onboarding_demo

    demos = {
        "document_ai": document_ai_demo,
        "configured_batches": configured_batches_demo,
        "role_onboarding": role_onboarding_demo,
    }
    results = []
    for number, (name, heading) in enumerate(FAMILY_DEMOS, start=5):
        folder = directory / name
        folder.mkdir()
        echo(f"\n{number}. {heading}")
        results.append(demos[name](echo, folder, instance, store_url) == 0)
    return all(results)


def run_demo(echo: Callable[[str], None] = print, directory: Path = DEMO_DIR) -> int:
    # Retries are the interesting part of a faulty run: show them inline, one line each.
    logging.basicConfig(
        level=logging.WARNING, format="    retry: %(message)s", stream=sys.stdout, force=True
    )
    # The project's store and instance, which `make dev` and the CLI read (the simulators'
    # state stays under ``directory``).
    store_url = project_store_url(os.environ, Path.cwd())
    store = BatchStore(store_url)
    if store.find_batches():
        store.dispose()
        raise ConfigurationError(
            f"the project's store ({redacted(make_url(store_url))}) already has batches: the demo "
            "shows the product on a fresh project; `make clean-data` empties the embedded store "
            "and instance (or point BATCH_PIPELINES_DATABASE_URL and DAGSTER_HOME elsewhere)",
            code="BP-DEMO-NOT-FRESH",
        )
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    faults = FaultPlan(
        seed=3,
        latency_seconds=0.02,
        server_error_rate=0.08,
        rate_limit_rate=0.05,
        retry_after_seconds=0.2,
        workflow_failure_rate=0.15,
    )
    sim = RiskModelerSimulator(
        directory / "risk_modeler_simulator.db", faults=faults, workflow_seconds=(0.2, 0.2, 0.6)
    )

    echo(
        f"Cycle {CYCLE}: {EDMS} EDMs, {EDMS * PORTFOLIOS_PER_EDM} portfolios, against the Risk Modeler simulator"
    )
    echo(
        "  (8% 5xx, 5% 429 with Retry-After, 15% of workflows end FAILED: all injected on purpose)"
    )
    edm_names = [f"RM_EDM_{CYCLE}_DEMO_{i:02d}" for i in range(EDMS)]
    edm_batch = store.create_batch(
        family="risk_modeling",
        batch_type="EDM Creation",
        partition_key=CYCLE,
        job_configurations=[{"key": n, "data": {"edm_name": n}} for n in edm_names],
    )
    echo("\n1. EDM Creation (async workflows, tracked until terminal)")
    first = asyncio.run(_run(store, sim, edm_batch, EdmCreationHandler, echo))
    _print_result(echo, "EDM Creation", first)
    inspect_edms = f"{CLI} batch status {edm_batch}"
    where_to_look(
        echo,
        [
            ("the batch and its jobs", inspect_edms),
            (
                "the store",
                f"{redacted(make_url(store_url))}  (tables batches, jobs, job_tracking_log, batch_recon_log)",
            ),
            ("the simulator's state", str(directory / "risk_modeler_simulator.db")),
        ],
    )

    failed = [
        j.id
        for j in store.list_jobs(edm_batch, skipped=False)
        if j.status in (JobStatus.FAILED, JobStatus.ERROR)
    ]
    if failed:
        echo(
            f"\n2. Resubmitting the {len(failed)} failed jobs {failed} (new jobs point at their parents)"
        )
        # The service has recovered: same state file, no more injected failures.
        sim = RiskModelerSimulator(
            sim.db_path,
            faults=FaultPlan(seed=4, latency_seconds=0.02),
            workflow_seconds=(0.2, 0.2, 0.6),
        )
        store.resubmit_jobs(failed)
        second = asyncio.run(_run(store, sim, edm_batch, EdmCreationHandler, echo))
        _print_result(echo, "EDM Creation after resubmission", second)
        where_to_look(echo, [("the new jobs, with their parents skipped", inspect_edms)])

    portfolio_batch = store.create_batch(
        family="risk_modeling",
        batch_type="Portfolio Creation",
        partition_key=CYCLE,
        job_configurations=[
            {
                "key": f"{edm}:P{k}",
                "data": {
                    "edm_name": edm,
                    "portfolio_name": f"PORT_{i:02d}_{k}",
                    "portfolio_number": f"{i:02d}{k}",
                },
            }
            for i, edm in enumerate(edm_names)
            for k in range(PORTFOLIOS_PER_EDM)
        ],
    )
    echo("\n3. Portfolio Creation (synchronous calls)")
    third = asyncio.run(_run(store, sim, portfolio_batch, PortfolioCreationHandler, echo))
    _print_result(echo, "Portfolio Creation", third)
    stats = sim.stats()
    echo(
        "  the simulator's own count: "
        f"{stats['accepted_total']} submissions accepted, {stats['replays_total']} idempotent replays, "
        f"duplicate acceptances: {stats['duplicate_acceptances'] or 'none'}"
    )
    where_to_look(
        echo,
        [
            ("the batch", f"{CLI} batch status {portfolio_batch}"),
            ("every batch", f"{CLI} batch list"),
        ],
    )

    echo(
        "\n4. A whole risk-modeling cycle from a generated workbook (12 batch types as Dagster assets)"
    )
    from batch_pipelines.risk_modeling.demo_cycle import run_cycle_demo

    cycle_dir = directory / "cycle"
    cycle_dir.mkdir()
    with _dagster_instance() as instance:
        cycle_ok = run_cycle_demo(echo, cycle_dir, instance, store_url) == 0
        where_to_look(
            echo,
            [
                ("the cycle's batches", f"{CLI} batch list"),
                ("its files", str(cycle_dir / "risk_modeling")),
                (
                    "the Dagster UI",
                    "make dev, then the risk_modeling asset group (metadata, checks)",
                ),
            ],
        )
        families_ok = _run_family_demos(echo, directory, instance, store_url)

    echo("\nWhere to look:")
    echo(
        f"  the store:           {redacted(make_url(store_url))}  (every family's batches; tables batches, jobs, ...)"
    )
    echo(f"  simulator state:     {directory / 'risk_modeler_simulator.db'}")
    echo(f"  inspect a batch:     .venv/bin/batch-pipelines batch status {edm_batch}")
    echo(f"  the cycle's files:   {cycle_dir / 'risk_modeling'}")
    echo(f"  the Dagster UI:      make dev  (then open {ui_url(os.environ)}: Runs, and the")
    echo("                       asset groups of every family with their metadata and checks)")
    ok = (
        cycle_ok
        and families_ok
        and all(r.status.value == "COMPLETED" for r in ([second] if failed else [first]) + [third])
    )
    echo("Every part ended as expected." if ok else "Some part did NOT end as expected (above).")
    store.dispose()
    return 0 if ok else 1
