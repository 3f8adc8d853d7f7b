"""The engine with the real Risk Modeler client against the in-process simulator."""

from __future__ import annotations

import asyncio

from batch_pipelines.core.backoff import RetryPolicy
from batch_pipelines.core.statuses import BatchStatus, JobStatus
from batch_pipelines.engine.executor import EngineOptions, run_batch
from batch_pipelines.risk_modeling.handlers import (
    EdmCreationHandler,
    PortfolioCreationHandler,
    client_context,
)
from batch_pipelines.simulators.embedded import risk_modeler_client
from batch_pipelines.simulators.faults import FaultPlan
from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator

FAST = EngineOptions(
    concurrency=50,
    poll_interval_seconds=0.02,
    poll_max_interval_seconds=0.1,
    control_check_seconds=0.05,
)


def _edm_batch(store, n: int, prefix: str = "RM_EDM_202503") -> int:
    return store.create_batch(
        family="risk_modeling",
        batch_type="EDM Creation",
        job_configurations=[
            {"key": f"{prefix}_{i:05d}", "data": {"edm_name": f"{prefix}_{i:05d}"}}
            for i in range(n)
        ],
    )


async def _run(store, batch_id, handler_cls, sim, options=FAST, **client_kw):
    async with risk_modeler_client(sim, **client_kw) as client:
        return await run_batch(store, batch_id, handler_cls(client_context(client)), options)


def test_edm_and_portfolio_batches_complete_and_the_entities_exist(store, tmp_path):
    sim = RiskModelerSimulator(tmp_path / "rm.db", workflow_seconds=(0.01, 0.01, 0.02))
    edms = _edm_batch(store, 3)
    result = asyncio.run(_run(store, edms, EdmCreationHandler, sim))
    assert result.status == BatchStatus.COMPLETED, result.reconciliation.reason
    portfolios = store.create_batch(
        family="risk_modeling",
        batch_type="Portfolio Creation",
        job_configurations=[
            {
                "key": f"P{i}",
                "data": {
                    "edm_name": "RM_EDM_202503_00000",
                    "portfolio_name": f"P{i}",
                    "portfolio_number": f"{i}",
                },
            }
            for i in range(4)
        ],
    )
    assert (
        asyncio.run(_run(store, portfolios, PortfolioCreationHandler, sim)).status
        == BatchStatus.COMPLETED
    )

    async def entities():
        async with risk_modeler_client(sim) as client:
            return await client.list_edms(), await client.list_portfolios("RM_EDM_202503_00000")

    edm_list, portfolio_list = asyncio.run(entities())
    assert {e["name"] for e in edm_list} >= {"RM_EDM_202503_00000", "RM_EDM_202503_00002"}
    assert sorted(p["name"] for p in portfolio_list) == ["P0", "P1", "P2", "P3"]
    assert all(j.submission_response["portfolio_id"] for j in store.list_jobs(portfolios))


def test_a_submission_the_service_refuses_is_an_error_job_and_the_rest_go_on(store, tmp_path):
    sim = RiskModelerSimulator(tmp_path / "rm.db", workflow_seconds=(0.01, 0.01, 0.01))
    batch_id = store.create_batch(
        family="risk_modeling",
        batch_type="Portfolio Creation",
        job_configurations=[
            {"key": "ok", "data": {"edm_name": "NO_SUCH_EDM", "portfolio_name": "x"}},
        ],
    )
    result = asyncio.run(_run(store, batch_id, PortfolioCreationHandler, sim))
    assert result.status == BatchStatus.ERROR
    (job,) = store.list_jobs(batch_id)
    assert (
        job.status == JobStatus.ERROR and "404" in job.last_error or "not" in job.last_error.lower()
    )


def test_fault_run_of_2000_jobs_retries_every_transient_fault_and_accepts_each_job_once(tmp_path):
    """The Done-when fault run: 10% 5xx, 5% 429, 2% timeouts, 3% FAILED workflows."""
    from batch_pipelines.store.batch_store import BatchStore

    store = BatchStore(f"sqlite:///{tmp_path / 'store.db'}")
    sim = RiskModelerSimulator(
        tmp_path / "rm.db",
        workflow_seconds=(0.05, 0.05, 0.1),
        faults=FaultPlan(
            seed=11,
            server_error_rate=0.10,
            rate_limit_rate=0.05,
            retry_after_seconds=0.05,
            slow_rate=0.02,
            slow_seconds=0.6,
            workflow_failure_rate=0.03,
        ),
    )
    batch_id = _edm_batch(store, 2000)
    result = asyncio.run(
        _run(
            store,
            batch_id,
            EdmCreationHandler,
            sim,
            timeout_seconds=0.3,
            retry=RetryPolicy(max_retries=10, backoff_base_seconds=0.01, backoff_max_seconds=0.2),
        )
    )
    stats = sim.stats()
    faults = stats["faults_injected"]
    server_errors = sum(n for k, n in faults.items() if k.startswith("server_error"))
    assert (
        server_errors > 100 and faults.get("rate_limited", 0) > 50 and faults.get("slow", 0) > 10
    ), faults
    # every transient fault was retried: no job ended in ERROR
    assert "ERROR" not in result.counts, result.counts
    failed = store.list_jobs(batch_id, statuses=[JobStatus.FAILED])
    assert failed and result.counts == {"FINISHED": 2000 - len(failed), "FAILED": len(failed)}
    assert stats["workflows_by_status"].get("FAILED") == len(failed)
    assert result.status == BatchStatus.FAILED
    assert result.reconciliation.summary.failed_job_ids == sorted(j.id for j in failed)
    assert all(j.last_error for j in failed)
    # exactly one accepted submission per job, by the simulator's own count
    assert stats["accepted_total"] == 2000
    assert stats["duplicate_acceptances"] == [] and stats["accepted_per_request_id_max"] == 1
    store.dispose()
