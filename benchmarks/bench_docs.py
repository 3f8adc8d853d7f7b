"""docs_phases / docs_overhead: document items through three phases, Dagster included.

docs_phases: 10,000 items x 3 phases (text_cleanup -> summarization -> categorize, no
validation: one model call per item-phase) at concurrency 50 against the model simulator
answering after 20 ms. The clock runs from submitting the job to the end of the Dagster run
that materializes the three phase assets for the job's partition, checkpoints included.
Ideal: concurrency / latency = 2,500 item-phases/s; goal 80 %.

docs_overhead: the same at zero latency with 3,000 items: wall time per item-phase is what
the runner, the client, the in-process simulator, the store and Dagster cost. Ideal 0.4 ms
(the time budget per item-phase at 2,500/s).

Peak memory of the process is printed with each. ``BENCH_SCALE`` scales the item counts.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import dagster as dg

from batch_pipelines.document_ai.assets import JOB_TAG, build_pipeline_definitions
from batch_pipelines.document_ai.batch_jobs import BatchJobSpec, JobOptions
from batch_pipelines.document_ai.items import parse_items
from batch_pipelines.document_ai.pipelines import PipelineTemplate
from batch_pipelines.document_ai.resources import DocumentAISettings
from batch_pipelines.document_ai.store import DocumentJobStore
from batch_pipelines.resources import BatchStoreResource, ModelsResource, TeamsResource
from batch_pipelines.simulators.embedded import model_client
from batch_pipelines.simulators.faults import FaultPlan
from batch_pipelines.simulators.models import ModelSimulator
from batch_pipelines.store.batch_store import BatchStore
from benchmarks.common import bench_line, peak_rss_mib, scaled

CONCURRENCY = 50
LATENCY_S = 0.020
IDEAL_PER_S = CONCURRENCY / LATENCY_S  # 2,500
OVERHEAD_IDEAL_MS = 1000.0 / IDEAL_PER_S  # 0.4
GOAL = 0.80
PHASES = 3
TEMPLATE = PipelineTemplate.model_validate(
    {
        "name": "bench_pipeline",
        "phases": [
            {"name": "cleanup", "task_type": "text_cleanup"},
            {"name": "summary", "task_type": "summarization"},
            {"name": "category", "task_type": "categorize"},
        ],
    }
)
TEXT = (
    "The central bank raised interest rates to curb inflation. Markets fell as investors weighed the "
    "revenue outlook of banks, and analysts expect slower economic growth next quarter."
)


class _SimulatedModels(ModelsResource):
    """The models resource with a chosen simulator latency (the embedded default has none)."""

    latency_seconds: float = 0.0

    def client(self):
        return model_client(
            ModelSimulator(faults=FaultPlan(latency_seconds=self.latency_seconds)),
            timeout_seconds=60,
        )


# The run's console log at WARNING: the benchmark prints its own lines, not Dagster's step events.
_QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _run(directory: Path, items: int, latency: float) -> float:
    """Seconds from submission to the end of the Dagster run; checks every result is stored."""
    url = f"sqlite:///{directory / 'store.db'}"
    jobs = DocumentJobStore(BatchStore(url))
    resources = {
        "batch_store": BatchStoreResource(database_url=url),
        "models": _SimulatedModels(latency_seconds=latency),
        "teams": TeamsResource(),
        "document_ai": DocumentAISettings(),
    }
    assets, job_def, partitions = build_pipeline_definitions(TEMPLATE)
    defs = dg.Definitions(assets=assets, jobs=[job_def], resources=resources)
    resolved = defs.resolve_job_def(job_def.name)
    spec = BatchJobSpec(
        name="bench",
        project_id="bench",
        pipeline=TEMPLATE.name,
        items=parse_items([{"content": f"{TEXT} Item {i}."} for i in range(items)]),
        options=JobOptions(concurrency=CONCURRENCY),  # the default checkpoint frequency (10)
    )
    with dg.DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        job = jobs.create_job(spec, TEMPLATE)
        instance.add_dynamic_partitions(partitions.name, [job.key])
        result = resolved.execute_in_process(
            partition_key=job.key, instance=instance, tags={JOB_TAG: job.key}, run_config=_QUIET_RUN
        )
        elapsed = time.perf_counter() - started
    if not result.success:
        raise RuntimeError("the bench run failed")
    done = sum(sum(c.values()) for c in jobs.phase_counts(job.batch_id).values())
    if done != items * PHASES:
        raise RuntimeError(f"expected {items * PHASES} results, found {done}")
    jobs.store.dispose()
    return elapsed


def bench_phases() -> None:
    items = scaled(10_000)
    with tempfile.TemporaryDirectory() as tmp:
        elapsed = _run(Path(tmp), items, LATENCY_S)
    rate = items * PHASES / elapsed
    print(
        f"docs_phases: {items} items x {PHASES} phases at concurrency {CONCURRENCY}, {LATENCY_S * 1000:.0f} ms latency: "
        f"{rate:,.0f} item-phases/s in {elapsed:.1f} s (ideal {IDEAL_PER_S:,.0f}/s, {rate / IDEAL_PER_S:.0%}; "
        f"goal {GOAL:.0%} {'met' if rate >= GOAL * IDEAL_PER_S else 'NOT met'}); peak memory {peak_rss_mib():.0f} MiB",
        flush=True,
    )
    bench_line("docs_phases", "item-phases/s", rate, IDEAL_PER_S, digits=1)


def bench_overhead() -> None:
    items = scaled(3_000)
    with tempfile.TemporaryDirectory() as tmp:
        elapsed = _run(Path(tmp), items, 0.0)
    per_ms = elapsed * 1000 / (items * PHASES)
    print(
        f"docs_overhead: {items} items x {PHASES} phases at zero latency: {per_ms:.3f} ms per item-phase "
        f"(budget {OVERHEAD_IDEAL_MS} ms at the ideal rate); peak memory {peak_rss_mib():.0f} MiB",
        flush=True,
    )
    bench_line("docs_overhead", "ms/item-phase", per_ms, OVERHEAD_IDEAL_MS, digits=3)


def main() -> None:
    bench_overhead()
    bench_phases()


if __name__ == "__main__":
    main()
