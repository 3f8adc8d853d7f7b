"""Engine handlers for the twelve Risk Modeler batch types: how one job is submitted and how
many are tracked. The family's assets pick a handler per batch type with ``handler_for``;
the engine does the rest.

Every handler is built from one ``HandlerContext`` and sends ``job.request_id`` as
``x-rms-requestid`` on its submitting POST, so that a resumed run is answered with a replay.
Jobs made of several POSTs (MRI import: bucket, files, mapping, import; treaties: treaty,
then lines of business) derive one key per step from the job's key (``step_request_id``),
so that each step replays on its own and the same job never creates a second bucket.

Names in a job configuration (portfolios, treaties, analyses, groups, the RDM) are resolved
to the service's ids at submission, with one listing per EDM or per job, not one call per
name. A reference that cannot exist yet but will (the RDM a seed export is creating, a
group a rollup in the same batch is creating) is waited for inside ``submit`` (polling,
shared between the jobs that wait for the same thing) and, past ``ready_timeout_seconds``,
reported as ``NotReady``: a transient error the engine retries. A reference that is simply
missing (the analysis of a group never ran) is a permanent error naming it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from batch_pipelines.clients.http import Conflict, TransientServiceError
from batch_pipelines.clients.risk_modeler import (
    DEFAULT_CURRENCY,
    DEFAULT_SERVER_NAME,
    RiskModelerClient,
    Workflow,
)
from batch_pipelines.core.errors import JobError
from batch_pipelines.core.statuses import JobStatus
from batch_pipelines.engine.handlers import JobHandler, SubmitOutcome, TrackOutcome
from batch_pipelines.risk_modeling.batch_types import BatchType
from batch_pipelines.risk_modeling.context import HandlerContext
from batch_pipelines.store.batch_store import JobRecord

# Lines of business attached to every treaty when the job configuration names none.
DEFAULT_LINES_OF_BUSINESS: tuple[str, ...] = ("ALL",)
_STEP_NAMESPACE = uuid.UUID("5b0c1f0e-7d0a-4b8e-9c55-2f1f8f6a9d31")


class NotReady(TransientServiceError):
    """Something this job needs is being created by another job and is not there yet."""

    code = "BP-NOT-READY"


class MissingReference(JobError):
    """The job names something that does not exist (and nothing is creating it)."""

    code = "BP-MISSING-REFERENCE"


def step_request_id(request_id: str, step: str) -> str:
    """The idempotency key of one step of a multi-call job, derived from the job's key."""
    return str(uuid.uuid5(_STEP_NAMESPACE, f"{request_id}/{step}"))


def _failure_message(workflow: Workflow) -> str | None:
    texts = [
        m.get("message") for m in workflow.messages if isinstance(m, dict) and m.get("message")
    ]
    return "; ".join(texts) if texts else None


class _Snapshot:
    """A listing fetched once and shared by every job that needs it; refetched (by one job
    at a time) only when it is older than the age a caller accepts."""

    def __init__(self, fetch: Callable[[], Awaitable[list[dict[str, Any]]]]):
        self._fetch = fetch
        self._items: list[dict[str, Any]] | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def items(self, max_age: float = float("inf")) -> list[dict[str, Any]]:
        async with self._lock:
            if self._items is None or time.monotonic() - self._at > max_age:
                self._items = await self._fetch()
                self._at = time.monotonic()
            return self._items


class RiskModelerHandler:
    """Shared tracking and cancelling of Risk Modeler workflows (one list call per 100)."""

    execution: Literal["sync", "async"] = "async"
    # Waiting for something another job is creating (see the module docstring).
    ready_poll_seconds: float = 1.0
    ready_timeout_seconds: float = 600.0

    def __init__(self, ctx: HandlerContext):
        self.ctx = ctx
        self.client: RiskModelerClient = ctx.client
        self._snapshots: dict[tuple[str, str], _Snapshot] = {}

    async def submit(self, job: JobRecord) -> SubmitOutcome:  # pragma: no cover - abstract
        raise NotImplementedError

    async def track(self, jobs: Sequence[JobRecord]) -> Mapping[int, TrackOutcome]:
        if self.execution == "sync":
            return {}
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

    # -- shared lookups ----------------------------------------------------------------

    def _snapshot(
        self, kind: str, key: str, fetch: Callable[[], Awaitable[list[dict[str, Any]]]]
    ) -> _Snapshot:
        snapshot = self._snapshots.get((kind, key))
        if snapshot is None:
            snapshot = self._snapshots[(kind, key)] = _Snapshot(fetch)
        return snapshot

    async def _by_name(
        self, kind: str, key: str, fetch: Callable[[], Awaitable[list[dict[str, Any]]]], name: str
    ) -> dict[str, Any] | None:
        """The item named ``name`` in a shared listing, refetching once on a miss."""
        snapshot = self._snapshot(kind, key, fetch)
        for max_age in (float("inf"), 0.0):
            for item in await snapshot.items(max_age):
                if item.get("name") == name:
                    return item
        return None

    async def _portfolio(self, edm: str, name: str) -> dict[str, Any]:
        portfolio = await self._by_name(
            "portfolios", edm, lambda: self.client.list_portfolios(edm), name
        )
        if portfolio is None:
            raise MissingReference(f'Portfolio "{name}" does not exist in EDM "{edm}"')
        return portfolio

    async def _treaty(self, edm: str, name: str) -> dict[str, Any]:
        treaty = await self._by_name("treaties", edm, lambda: self.client.list_treaties(edm), name)
        if treaty is None:
            raise MissingReference(f'Treaty "{name}" does not exist in EDM "{edm}"')
        return treaty

    async def _server_id(self, name: str) -> int:
        server = await self._by_name("servers", "", self.client.list_data_servers, name)
        if server is None:
            raise MissingReference(f'Data server "{name}" does not exist')
        return int(server["id"])

    async def _wait_for(self, what: str, probe: Callable[[], Awaitable[Any]]) -> Any:
        """Poll ``probe`` until it returns something, or raise NotReady past the timeout."""
        deadline = time.monotonic() + self.ready_timeout_seconds
        while True:
            found = await probe()
            if found:
                return found
            if time.monotonic() >= deadline:
                raise NotReady(
                    f"{what} not ready after {self.ready_timeout_seconds:g}s",
                    service="risk_modeler",
                )
            await asyncio.sleep(self.ready_poll_seconds)


class EdmCreationHandler(RiskModelerHandler):
    """EDM Creation: an async datasource CREATE workflow per database."""

    execution = "async"

    async def submit(self, job: JobRecord) -> SubmitOutcome:
        cfg = job.configuration
        name = cfg["edm_name"]
        server = cfg.get("server_name", DEFAULT_SERVER_NAME)
        workflow_id = await self.client.create_edm(
            name, server_name=server, request_id=job.request_id
        )
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
        return SubmitOutcome(
            status=JobStatus.FINISHED, request=request, response={"portfolio_id": portfolio_id}
        )


class EdmUpgradeHandler(RiskModelerHandler):
    """EDM DB Upgrade: an async EDM_DATA_UPGRADE workflow to the target data version."""

    execution = "async"

    async def submit(self, job: JobRecord) -> SubmitOutcome:
        cfg = job.configuration
        name = cfg["edm_name"]
        server = cfg.get("server_name", DEFAULT_SERVER_NAME)
        version = cfg.get("target_edm_version")
        workflow_id = await self.client.upgrade_edm(
            name, server_name=server, edm_data_version=version, request_id=job.request_id
        )
        return SubmitOutcome(
            status=JobStatus.SUBMITTED,
            workflow_id=workflow_id,
            request={
                "operation": "EDM_DATA_UPGRADE",
                "datasourcename": name,
                "servername": server,
                "edmDataVersion": version,
            },
            response={"workflow_id": workflow_id},
        )


class MriImportHandler(RiskModelerHandler):
    """MRI Import: upload the account and location CSVs written by Data Extraction into a
    storage bucket, create the mapping, then start the import into the base portfolio."""

    execution = "async"

    def _csv(self, file_name: str, what: str) -> bytes:
        path: Path = self.ctx.cycle_file(file_name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise MissingReference(
                f'{what} file "{file_name}" not found in {self.ctx.cycle_dir} (written by Data Extraction)'
            ) from None

    async def submit(self, job: JobRecord) -> SubmitOutcome:
        cfg = job.configuration
        edm, rid = cfg["edm_name"], job.request_id
        accounts = self._csv(cfg["account_csv"], "Account CSV")
        locations = self._csv(cfg["location_csv"], "Location CSV")
        portfolio = await self._portfolio(edm, cfg["portfolio_name"])
        bucket_id = await self.client.create_storage_bucket(
            request_id=step_request_id(rid, "bucket")
        )
        file_ids = {}
        for file_type, name, content in (
            ("account", cfg["account_csv"], accounts),
            ("location", cfg["location_csv"], locations),
        ):
            stored = await self.client.create_storage_file(
                bucket_id,
                file_name=name,
                file_size=len(content),
                file_type=file_type,
                request_id=step_request_id(rid, f"file-{file_type}"),
            )
            await self.client.upload_file(stored.upload_url, content)
            file_ids[file_type] = stored.id
        mapping_id = await self.client.create_import_mapping(
            bucket_id, request_id=step_request_id(rid, "mapping")
        )
        request = {
            "importType": "MRI",
            "bucketId": bucket_id,
            "dataSourceName": edm,
            "portfolioId": str(portfolio["id"]),
            "accountsFileId": file_ids["account"],
            "locationsFileId": file_ids["location"],
            "mappingFileId": mapping_id,
            "delimiter": cfg.get("delimiter", "COMMA"),
            "currency": cfg.get("currency", "USD"),
        }
        workflow_id = await self.client.submit_mri_import(
            bucket_id=bucket_id,
            edm=edm,
            portfolio_id=request["portfolioId"],
            accounts_file_id=file_ids["account"],
            locations_file_id=file_ids["location"],
            mapping_file_id=mapping_id,
            delimiter=request["delimiter"],
            currency=request["currency"],
            request_id=rid,
        )
        return SubmitOutcome(
            status=JobStatus.SUBMITTED,
            workflow_id=workflow_id,
            request=request,
            response={"workflow_id": workflow_id},
        )


def treaty_payload(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The Risk Modeler treaty body of a treaty job configuration."""
    payload = {
        "name": cfg["treaty_name"],
        "number": str(cfg["treaty_number"]),
        "treatyType": cfg["treaty_type"],
        "riskLimit": cfg["per_risk_limit"],
        "occurrenceLimit": cfg["occurrence_limit"],
        "attachmentPoint": cfg["attachment_point"],
        "effectiveDate": cfg["inception_date"],
        "expirationDate": cfg["expiration_date"],
        "currency": {"name": cfg["currency"]},
        "attachmentBasis": cfg["attachment_basis"],
        "attachmentLevel": cfg["exposure_level"],
        "percentageCovered": cfg["percent_covered"],
        "percentagePlaced": cfg["percent_placed"],
        "percentageShare": cfg["percent_share"],
        "percentageRetention": cfg["percent_retention"],
        "premium": cfg["premium"],
        "numberOfReinstatements": cfg["reinstatements"],
        "reinstatementCharge": cfg["percent_reinstatement_charge"],
        "aggregateLimit": cfg["aggregate_limit"],
        "aggregateDeductible": cfg["aggregate_deductible_amount"],
        "priority": cfg["inuring_priority"],
    }
    if cfg.get("producer"):
        payload["cedant"] = cfg["producer"]
    if cfg.get("tags"):
        payload["tags"] = cfg["tags"]
    return payload


class TreatyHandler(RiskModelerHandler):
    """Create Reinsurance Treaties (sync): the treaty in its EDM, then its lines of business."""

    execution = "sync"

    async def submit(self, job: JobRecord) -> SubmitOutcome:
        cfg = job.configuration
        edm = cfg["edm_name"]
        payload = treaty_payload(cfg)
        try:
            treaty_id = await self.client.create_treaty(edm, payload, request_id=job.request_id)
        except Conflict:
            # A resubmission after the treaty was created but its lines of business were not:
            # finish the job on the existing treaty.
            treaty_id = str((await self._treaty(edm, payload["name"]))["id"])
        lines = [
            {"treatyId": int(treaty_id) if str(treaty_id).isdigit() else treaty_id, "name": name}
            for name in cfg.get("lines_of_business") or DEFAULT_LINES_OF_BUSINESS
        ]
        created = await self.client.add_treaty_lines_of_business(
            edm, lines, request_id=step_request_id(job.request_id, "lob")
        )
        return SubmitOutcome(
            status=JobStatus.FINISHED,
            request={"datasource": edm, "treaty": payload, "lines_of_business": lines},
            response={"treaty_id": treaty_id, "lob_ids": [str(line.get("id")) for line in created]},
        )


def geohaz_layers(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Geocode and hazard layers of a GeoHaz job, at the configured versions."""
    return [
        {
            "name": "geocode",
            "type": "geocode",
            "engineType": "RL",
            "version": cfg["geocode_version"],
            "layerOptions": {
                "skipPrevGeocoded": False,
                "aggregateTriggerEnabled": True,
                "geoLicenseType": "0",
            },
        },
        {
            "name": "earthquake",
            "type": "hazard",
            "engineType": "RL",
            "version": cfg["hazard_version"],
            "layerOptions": {"overrideUserDef": False, "skipPrevHazard": False},
        },
    ]


class GeoHazHandler(RiskModelerHandler):
    """GeoHaz: geocoding and hazard lookup of a base portfolio (async)."""

    execution = "async"

    async def submit(self, job: JobRecord) -> SubmitOutcome:
        cfg = job.configuration
        edm = cfg["edm_name"]
        portfolio = await self._portfolio(edm, cfg["portfolio_name"])
        layers = geohaz_layers(cfg)
        workflow_id = await self.client.submit_geohaz(
            edm, str(portfolio["id"]), layers, request_id=job.request_id
        )
        return SubmitOutcome(
            status=JobStatus.SUBMITTED,
            workflow_id=workflow_id,
            request={"datasource": edm, "portfolioId": str(portfolio["id"]), "layers": layers},
            response={"workflow_id": workflow_id},
        )


class AnalysisHandler(RiskModelerHandler):
    """Analysis: process a portfolio with a model profile, output profile, event rate scheme
    and treaties, all resolved by name (async; the analysis is named after the job)."""

    execution = "async"

    async def _reference_id(self, kind: str, name: str) -> int:
        item = await self._by_name(
            "reference",
            f"{kind}:{name}",
            lambda: self.client.list_reference_data(kind, [name]),
            name,
        )
        if item is None:
            raise MissingReference(
                f'{kind.replace("-", " ").rstrip("s").capitalize()} "{name}" does not exist'
            )
        return int(item["id"])

    async def submit(self, job: JobRecord) -> SubmitOutcome:
        cfg = job.configuration
        edm = cfg["edm_name"]
        portfolio = await self._portfolio(edm, cfg["portfolio_name"])
        treaty_ids = [
            int((await self._treaty(edm, name))["id"]) for name in cfg.get("treaties") or []
        ]
        settings: dict[str, Any] = {
            "edm": edm,
            "jobName": cfg["analysis_name"],
            "currency": dict(DEFAULT_CURRENCY),
            "modelProfileId": await self._reference_id("model-profiles", cfg["analysis_profile"]),
            "outputProfileId": await self._reference_id("output-profiles", cfg["output_profile"]),
            "treaties": treaty_ids,
            "tagNames": list(cfg.get("tags") or []),
            "globalAnalysisSettings": {
                "franchiseDeductible": False,
                "minLossThreshold": "1.00",
                "treatConstructionOccupancyAsUnknown": True,
                "numMaxLossEvent": 1,
            },
        }
        if cfg.get("event_rate_scheme"):
            settings["eventRateSchemeId"] = await self._reference_id(
                "event-rate-schemes", cfg["event_rate_scheme"]
            )
        workflow_id = await self.client.submit_analysis(
            str(portfolio["id"]), settings, request_id=job.request_id
        )
        return SubmitOutcome(
            status=JobStatus.SUBMITTED,
            workflow_id=workflow_id,
            request={"portfolioId": str(portfolio["id"]), **settings},
            response={"workflow_id": workflow_id},
        )


def _newest(items: list[dict[str, Any]], name: str, want_group: bool) -> dict[str, Any] | None:
    """The newest analysis (or group) with this name: names are unique per cycle, and a
    delete-and-resubmit leaves the newer one as the one to use."""
    matches = [i for i in items if i.get("name") == name and bool(i.get("isGroup")) == want_group]
    return max(matches, key=lambda i: int(i["id"])) if matches else None


class GroupingHandler(RiskModelerHandler):
    """Grouping / Grouping Rollup: an analysis group of the items' analyses (and, for a
    rollup, groups). A group item not yet there (a rollup of a rollup of the same batch) is
    waited for; a missing analysis is a permanent error."""

    execution = "async"

    async def _resolve(self, items: list[dict[str, Any]]) -> list[int]:
        names = [item["name"] for item in items]
        found = await self.client.list_analyses(names=names)
        ids: dict[str, int] = {}
        missing_groups: list[str] = []
        missing: list[str] = []
        for item in items:
            want_group = item.get("kind") == "group"
            match = _newest(found, item["name"], want_group)
            if match is not None:
                ids[item["name"]] = int(match["id"])
            elif want_group:
                missing_groups.append(item["name"])
            else:
                missing.append(f'{item.get("kind", "analysis")} "{item["name"]}"')
        if missing:
            raise MissingReference(f"No analysis exists for {', '.join(missing)}")
        if missing_groups:

            async def probe() -> list[dict[str, Any]] | None:
                groups = await self.client.list_analyses(names=missing_groups, is_group=True)
                ready = {g: _newest(groups, g, True) for g in missing_groups}
                return groups if all(ready.values()) else None

            groups = await self._wait_for(f"Groups {', '.join(missing_groups)}", probe)
            for name in missing_groups:
                ids[name] = int(_newest(groups, name, True)["id"])  # type: ignore[index]
        return list(dict.fromkeys(ids[item["name"]] for item in items))

    async def submit(self, job: JobRecord) -> SubmitOutcome:
        cfg = job.configuration
        name = cfg["group_name"]
        analysis_ids = await self._resolve(list(cfg["items"]))
        workflow_id = await self.client.create_analysis_group(
            name, analysis_ids, request_id=job.request_id
        )
        return SubmitOutcome(
            status=JobStatus.SUBMITTED,
            workflow_id=workflow_id,
            request={
                "name": name,
                "analysisIds": [str(i) for i in analysis_ids],
                "currency": DEFAULT_CURRENCY,
            },
            response={"workflow_id": workflow_id},
        )


class GroupingRollupHandler(GroupingHandler):
    """Grouping Rollup: groups of groups (same call; items may be groups)."""


class ExportToRdmHandler(RiskModelerHandler):
    """Export to RDM: the seed job creates the RDM (``rdmName``); join jobs export into it
    by database id, so they wait (inside ``submit``, one shared RDM listing per poll) until
    the seed's RDM exists. A seed resubmitted after its RDM exists joins it instead."""

    execution = "async"

    async def _rdm_id(self, name: str, max_age: float = float("inf")) -> int | None:
        snapshot = self._snapshot("rdms", "", self.client.list_rdms)
        for item in await snapshot.items(max_age):
            if item.get("name") == name:
                return int(item.get("databaseId", item["id"]))
        return None

    async def submit(self, job: JobRecord) -> SubmitOutcome:
        cfg = job.configuration
        rdm_name, entity = cfg["rdm_name"], cfg["entity_name"]
        want_group = cfg.get("entity_kind") == "group"
        match = _newest(await self.client.list_analyses(names=[entity]), entity, want_group)
        if match is None:
            raise MissingReference(
                f'{"Group" if want_group else "Analysis"} "{entity}" does not exist'
            )
        server_id = await self._server_id(cfg.get("server_name", DEFAULT_SERVER_NAME))
        database_id = await self._rdm_id(rdm_name) or await self._rdm_id(rdm_name, max_age=0.0)
        if database_id is None and cfg.get("rdm_role", "seed") != "seed":
            database_id = await self._wait_for(
                f'RDM "{rdm_name}" (created by the seed export {cfg.get("seed_key")!r})',
                lambda: self._rdm_id(rdm_name, max_age=self.ready_poll_seconds),
            )
        target: dict[str, Any] = (
            {"rdmName": rdm_name} if database_id is None else {"databaseId": database_id}
        )
        workflow_id = await self.client.submit_rdm_export(
            [match["id"]],
            server_id=server_id,
            rdm_name=target.get("rdmName"),
            database_id=target.get("databaseId"),
            request_id=job.request_id,
        )
        return SubmitOutcome(
            status=JobStatus.SUBMITTED,
            workflow_id=workflow_id,
            request={
                "exportType": "RDM_DATABRIDGE",
                "resourceType": "analyses",
                "resourceUris": [f"/platform/riskdata/v1/analyses/{match['id']}"],
                "settings": {"serverId": server_id, **target},
            },
            response={"workflow_id": workflow_id},
        )


HandlerFactory = Callable[[HandlerContext], JobHandler]


def _data_extraction(ctx: HandlerContext) -> JobHandler:
    from batch_pipelines.risk_modeling.sql_jobs import DataExtractionHandler

    return DataExtractionHandler(ctx)


def _portfolio_mapping(ctx: HandlerContext) -> JobHandler:
    from batch_pipelines.risk_modeling.sql_jobs import PortfolioMappingHandler

    return PortfolioMappingHandler(ctx)


# The two SQL handlers are imported when first built: they live in sql_jobs (SQLAlchemy).
HANDLERS: dict[BatchType, HandlerFactory] = {
    BatchType.DATA_EXTRACTION: _data_extraction,
    BatchType.EDM_CREATION: EdmCreationHandler,
    BatchType.PORTFOLIO_CREATION: PortfolioCreationHandler,
    BatchType.MRI_IMPORT: MriImportHandler,
    BatchType.CREATE_REINSURANCE_TREATIES: TreatyHandler,
    BatchType.EDM_DB_UPGRADE: EdmUpgradeHandler,
    BatchType.GEOHAZ: GeoHazHandler,
    BatchType.PORTFOLIO_MAPPING: _portfolio_mapping,
    BatchType.ANALYSIS: AnalysisHandler,
    BatchType.GROUPING: GroupingHandler,
    BatchType.GROUPING_ROLLUP: GroupingRollupHandler,
    BatchType.EXPORT_TO_RDM: ExportToRdmHandler,
}


def client_context(
    client: RiskModelerClient, *, cycle: str = "adhoc", data_dir: Path | None = None
) -> HandlerContext:
    """A context with only a client (and a data folder), for the REST handlers in tests,
    benchmarks and the demo; the SQL URLs point at in-memory SQLite."""
    return HandlerContext(
        client=client,
        cycle=cycle,
        data_dir=data_dir or Path("data"),
        source_database_url="sqlite://",
        databridge_url="sqlite://",
    )


def handler_for(batch_type: BatchType | str, ctx: HandlerContext) -> JobHandler:
    """The handler of a batch type (by enum or display name), built on ``ctx``."""
    return HANDLERS[BatchType(batch_type)](ctx)
