"""A process that works one document job to the end; the kill test SIGKILLs it at random points.

Usage: python -m batch_pipelines_tests.document_ai.kill_worker STORE_URL MODELS_URL JOB_ID [LEASE_SECONDS]

A long LEASE_SECONDS keeps a killed worker's claim live for long: only its dead pid then
tells a successor it may take the job over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys

from batch_pipelines.clients.models import ModelClient
from batch_pipelines.document_ai.pipelines import load_pipelines
from batch_pipelines.document_ai.runner import DocumentJobRunner, RunnerOptions
from batch_pipelines.document_ai.store import DocumentJobStore
from batch_pipelines.store.batch_store import BatchStore

# Short leases: the next worker takes over a killed worker's claim within a second or two.
OPTIONS = RunnerOptions(lease_seconds=1.5, control_check_seconds=0.2, max_checkpoint_seconds=1.0)


async def main(store_url: str, models_url: str, job_id: int, lease_seconds: float | None) -> int:
    jobs = DocumentJobStore(BatchStore(store_url))
    job = jobs.get_job(job_id)
    template = load_pipelines()[job.pipeline]
    async with ModelClient(
        models_url, os.environ["MODELS_API_KEY"], timeout_seconds=30, use_aiohttp=True
    ) as client:
        options = OPTIONS
        if lease_seconds is not None:
            options = dataclasses.replace(OPTIONS, lease_seconds=lease_seconds)
        runner = DocumentJobRunner(jobs, job, template, client, options=options)
        await runner.run_all(claim_wait_seconds=10)
    print(f"RESULT {jobs.get_job(job_id).status}", flush=True)
    return 0


if __name__ == "__main__":
    lease = float(sys.argv[4]) if len(sys.argv) > 4 else None
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), lease)))
