"""A process that runs one batch to the end; the kill test SIGKILLs it at chosen moments.

Usage: python -m batch_pipelines_tests.engine.kill_worker STORE_URL SIM_DB BATCH_ID
"""

from __future__ import annotations

import asyncio
import sys

from batch_pipelines.engine.executor import EngineOptions, run_batch
from batch_pipelines.risk_modeling.handlers import EdmCreationHandler, client_context
from batch_pipelines.simulators.embedded import risk_modeler_client
from batch_pipelines.simulators.faults import FaultPlan
from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator
from batch_pipelines.store.batch_store import BatchStore

OPTIONS = EngineOptions(
    concurrency=50,
    poll_interval_seconds=0.05,
    poll_max_interval_seconds=0.2,
    control_check_seconds=0.1,
    # Short leases: a resumed run takes over the dead run's claims within a second.
    lease_seconds=1.0,
)


async def main(store_url: str, sim_db: str, batch_id: int) -> int:
    store = BatchStore(store_url)
    # Workflows last about three seconds, so jobs are still running in the service well after
    # submission ends: the kill test's "tracking" kill point has a wide window even on a slow machine.
    sim = RiskModelerSimulator(
        sim_db,
        workflow_seconds=(0.5, 0.5, 2.0),
        faults=FaultPlan(seed=batch_id, latency_seconds=0.003),
    )
    async with risk_modeler_client(sim) as client:
        result = await run_batch(
            store, batch_id, EdmCreationHandler(client_context(client)), OPTIONS
        )
    print(f"RESULT {result.status} {result.counts}", flush=True)
    return 0 if result.status.is_terminal else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
