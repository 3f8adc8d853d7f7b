"""cycle_full: a whole risk-modeling cycle of the fixture's 465 jobs against the simulator.

Every batch type runs in dependency order through the same code the assets run
(``cycle_batches.materialize_batch_type``: batch creation, validation against the
simulator's state, the engine, reconciliation), without Dagster's per-step overhead.

Ideal: for each batch type in order, ceil(jobs / concurrency) x the simulated job duration
(an async workflow's queued + pending + running seconds; a synchronous call's latency),
summed. The fixture is read from ../shared when present; otherwise a generated workbook of
about the same size is used (and said so).
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from pathlib import Path

from batch_pipelines.engine.executor import EngineOptions
from batch_pipelines.risk_modeling.batch_types import BATCH_TYPE_ORDER
from batch_pipelines.risk_modeling.context import HandlerContext
from batch_pipelines.risk_modeling.cycle_batches import (
    materialize_batch_type,
    store_cycle_configuration,
)
from batch_pipelines.risk_modeling.job_configurations import job_counts
from batch_pipelines.risk_modeling.sample_source import create_sample_source
from batch_pipelines.risk_modeling.sample_workbook import write_valid_workbook
from batch_pipelines.risk_modeling.workbook import load_workbook_configuration
from batch_pipelines.simulators.embedded import risk_modeler_client
from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator
from batch_pipelines.store.batch_store import BatchStore
from benchmarks.common import bench_line

FIXTURE = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "fixtures"
    / "valid_excel_configuration.xlsx"
)
CONCURRENCY = 20
WORKFLOW_SECONDS = (0.1, 0.1, 0.3)  # queued, pending, running of every simulated workflow
LATENCY_SECONDS = 0.01


async def _run(directory: Path, workbook: Path) -> tuple[float, float, dict[str, str]]:
    configuration = load_workbook_configuration(workbook)
    store = BatchStore(f"sqlite:///{directory / 'store.db'}")
    cycle, _ = store_cycle_configuration(store, configuration, source=str(workbook))
    source = f"sqlite:///{directory / 'source.db'}"
    create_sample_source(source, configuration)
    from batch_pipelines.simulators.faults import FaultPlan

    sim = RiskModelerSimulator(
        directory / "rm.db",
        workflow_seconds=WORKFLOW_SECONDS,
        faults=FaultPlan(latency_seconds=LATENCY_SECONDS),
    )
    counts = job_counts(configuration)
    options = EngineOptions(
        concurrency=CONCURRENCY, poll_interval_seconds=0.05, poll_max_interval_seconds=0.2
    )
    ideal = 0.0
    statuses: dict[str, str] = {}
    started = time.perf_counter()
    async with risk_modeler_client(sim) as client:
        ctx = HandlerContext(
            client=client,
            cycle=cycle,
            data_dir=directory / "data",
            source_database_url=source,
            databridge_url=f"sqlite:///{directory / 'rm.db'}",
        )
        for batch_type in BATCH_TYPE_ORDER:
            n = counts[batch_type.value]
            duration = (
                sum(WORKFLOW_SECONDS) + LATENCY_SECONDS if batch_type.is_async else LATENCY_SECONDS
            )
            ideal += math.ceil(n / CONCURRENCY) * duration
            t0 = time.perf_counter()
            outcome = await materialize_batch_type(store, ctx, batch_type, options=options)
            statuses[batch_type.value] = outcome.run.status.value
            print(
                f"  {batch_type.value:<28} {n:>4} jobs  {outcome.run.status.value:<10} "
                f"{time.perf_counter() - t0:6.2f}s (ideal {math.ceil(n / CONCURRENCY) * duration:5.2f}s)",
                flush=True,
            )
    measured = time.perf_counter() - started
    store.dispose()
    return measured, ideal, statuses


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if FIXTURE.exists():
            workbook, label = FIXTURE, "the fixture workbook"
        else:
            workbook, label = (
                write_valid_workbook(directory / "generated.xlsx", scale=30),
                "a generated workbook (fixture absent)",
            )
        total = sum(job_counts(load_workbook_configuration(workbook)).values())
        print(
            f"cycle_full: {total} jobs of {label}, concurrency {CONCURRENCY}, workflows {sum(WORKFLOW_SECONDS)}s"
        )
        measured, ideal, statuses = asyncio.run(_run(directory, workbook))
    completed = all(s == "COMPLETED" for s in statuses.values())
    print(
        f"cycle_full: {measured:.2f}s measured vs {ideal:.2f}s ideal (ratio {measured / ideal:.2f}); "
        f"all twelve COMPLETED: {completed}"
    )
    if not completed:
        raise RuntimeError(f"cycle did not complete: {statuses}")
    bench_line("cycle_full", "s", measured, round(ideal, 2), digits=2)


if __name__ == "__main__":
    main()
