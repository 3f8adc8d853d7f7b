"""Engine handlers for Risk Modeler batch types: how one job is submitted and how many are
tracked. The family's assets pick a handler per batch type; the engine does the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from batch_pipelines.clients.risk_modeler import RiskModelerClient, Workflow
from batch_pipelines.core.statuses import JobStatus
from batch_pipelines.engine.handlers import SubmitOutcome, TrackOutcome
from batch_pipelines.store.batch_store import JobRecord


def _failure_message(workflow: Workflow) -> str | None:
    texts = [m.get("message") for m in workflow.messages if isinstance(m, dict) and m.get("message")]
    return "; ".join(texts) if texts else None


class RiskModelerHandler:
    """Shared tracking and cancelling of Risk Modeler workflows (one list call per 100)."""

    execution: Literal["sync", "async"] = "async"

    def __init__(self, client: RiskModelerClient):
        self.client = client

    async def submit(self, job: JobRecord) -> SubmitOutcome:  # pragma: no cover - abstract
        raise NotImplementedError

    async def track(self, jobs: Sequence[JobRecord]) -> Mapping[int, TrackOutcome]:
        by_workflow = {job.workflow_id: job for job in jobs if job.workflow_id}
        workflows = await self.client.get_workflows(list(by_workflow))
        outcomes: dict[int, TrackOutcome] = {}
        for workflow_id, workflow in workflows.items():
            job = by_workflow.get(workflow_id)
            if job is None:
                continue
            status = workflow.job_status
            details: dict[str, Any] = {"summary": workflow.summary} if workflow.summary else {}
            if status == JobStatus.FAILED:
                details["error"] = _failure_message(workflow) or "workflow FAILED"
            outcomes[job.id] = TrackOutcome(
                status=status,
                service_status=workflow.status,
                progress=workflow.progress,
                details=details or None,
            )
        return outcomes

    async def cancel(self, job: JobRecord) -> None:
        if job.workflow_id:
            await self.client.cancel_workflow(job.workflow_id)


class EdmCreationHandler(RiskModelerHandler):
    """EDM Creation: an async datasource CREATE workflow per database."""

    execution = "async"

    async def submit(self, job: JobRecord) -> SubmitOutcome:
        cfg = job.configuration
        name = cfg["edm_name"]
        server = cfg.get("server_name", "databridge-1")
        workflow_id = await self.client.create_edm(name, server_name=server, request_id=job.request_id)
        return SubmitOutcome(
            status=JobStatus.SUBMITTED,
            workflow_id=workflow_id,
            request={"operation": "CREATE", "datasourcename": name, "servername": server},
            response={"workflow_id": workflow_id},
        )


class PortfolioCreationHandler(RiskModelerHandler):
    """Portfolio Creation: a synchronous create; FINISHED as soon as the service answers."""

    execution = "sync"

    async def submit(self, job: JobRecord) -> SubmitOutcome:
        cfg = job.configuration
        request = {
            "datasource": cfg["edm_name"],
            "name": cfg["portfolio_name"],
            "number": str(cfg.get("portfolio_number", cfg["portfolio_name"]))[:20],
            "description": cfg.get("description", ""),
        }
        portfolio_id = await self.client.create_portfolio(
            request["datasource"],
            name=request["name"],
            number=request["number"],
            description=request["description"],
            request_id=job.request_id,
        )
        return SubmitOutcome(status=JobStatus.FINISHED, request=request, response={"portfolio_id": portfolio_id})

    async def track(self, jobs: Sequence[JobRecord]) -> Mapping[int, TrackOutcome]:
        return {}
