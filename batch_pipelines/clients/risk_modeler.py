"""Client of Moody's RMS Intelligent Risk Platform — Risk Modeler API.

Submissions are asynchronous: the service answers 202 with a ``Location`` naming a workflow,
which the engine then polls (there are no callbacks). Creates that finish at once answer 201
with the ``Location`` of the new resource. Every POST carries ``x-rms-requestid`` chosen by
the caller, derived deterministically from the job, so that a retried or resumed submission
is recognised by the service instead of creating a second EDM or analysis.

New batch types (MRI import, treaties, GeoHaz, analyses, groups, exports) are added as more
methods built on ``_submit`` (202 + workflow) / ``_create`` (201 + resource id) / ``_list_all``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from batch_pipelines.clients.http import (
    ResourceNotFound,
    ServiceClient,
    UnexpectedResponse,
)
from batch_pipelines.core.sequences import chunks
from batch_pipelines.core.statuses import JobStatus, job_status_from_service

REQUEST_ID_HEADER = "x-rms-requestid"
DEFAULT_SERVER_NAME = "databridge-1"
_LIST_PAGE_SIZE = 1000


class Workflow(BaseModel):
    """A Risk Modeler workflow as polled. Unknown fields are kept (``extra="allow"``) so
    that the raw service answer can be stored and shown even when it grows new fields."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, populate_by_name=True)

    id: str
    status: str
    name: str | None = None
    type: str | None = None
    submitTime: str | None = None
    startTime: str | None = None
    endTime: str | None = None
    progress: float | None = None
    summary: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] = Field(default_factory=dict)
    messages: list[Any] = Field(default_factory=list)
    jobs: list[Any] = Field(default_factory=list)

    @field_validator("summary", "output", mode="before")
    @classmethod
    def _none_to_dict(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("messages", "jobs", mode="before")
    @classmethod
    def _none_to_list(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def job_status(self) -> JobStatus:
        """The status in the project's vocabulary; raises IllegalTransition on a word the
        project does not know, so that a new service state is noticed, not guessed."""
        return job_status_from_service(self.status)

    @property
    def is_terminal(self) -> bool:
        return self.job_status.is_terminal


def workflow_id_from_location(location: str) -> str:
    """The id at the end of a ``Location`` header: absolute or relative URL, query and
    trailing slash ignored (``https://h/riskmodeler/v1/workflows/42?x=1`` -> ``"42"``).

    Plain string handling rather than a URL parser: it runs once per submission, and a full
    parse cost more than the rest of reading the answer."""
    text = location.strip().split("#", 1)[0].split("?", 1)[0]
    if "://" in text:
        text = text.partition("://")[2].partition("/")[2]  # the path: no scheme, no host
    segment = unquote(text.rstrip("/").rsplit("/", 1)[-1])
    if not segment:
        raise UnexpectedResponse(
            f"Location header without an id: {location!r}", service="risk_modeler"
        )
    return segment


REFERENCE_KINDS = ("model-profiles", "output-profiles", "event-rate-schemes")
DEFAULT_CURRENCY: dict[str, Any] = {
    "code": "USD",
    "scheme": "RMS",
    "vintage": "RL18",
    "asOfDate": "2025-01-01",
}


@dataclass(frozen=True)
class StorageFile:
    """A file registered in a storage bucket: its id and where to upload its bytes."""

    id: str
    upload_url: str


def _int_or_str(value: Any) -> Any:
    """Ids travel as strings inside the project; the service's JSON bodies take numbers."""
    text = str(value)
    return int(text) if text.isdigit() else value


class RiskModelerClient(ServiceClient):
    """Async client of the Risk Modeler API.

    ``base_url`` is the regional host (``https://api-euw1.rms.com``); a base ending in
    ``/riskmodeler``, as Moody's documentation writes it, is accepted too.
    """

    def __init__(self, base_url: str, api_key: str | None, **kwargs: Any):
        kwargs.setdefault("service_name", "risk_modeler")
        base = base_url.rstrip("/")
        if base.endswith("/riskmodeler"):
            base = base[: -len("/riskmodeler")]
        super().__init__(base, api_key, **kwargs)

    def _auth_headers(self) -> dict[str, str]:
        # The key goes as-is, no "Bearer": that is how the Risk Modeler reads it.
        return {"Authorization": self._api_key.reveal()} if self._api_key else {}

    # -- building blocks ------------------------------------------------------------

    def _location_id(self, response: httpx.Response, method: str) -> str:
        location = response.headers.get("location")
        if not location:
            target = self._display_target(method, response.request.url)
            raise UnexpectedResponse(
                f"{self.service_name} {target} answered {response.status_code} without a Location header",
                status=response.status_code,
                service=self.service_name,
            )
        return workflow_id_from_location(location)

    async def _post_for_id(
        self,
        path: str,
        *,
        expected: int,
        request_id: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> str:
        response = await self.request(
            "POST",
            path,
            params=params,
            json=json,
            idempotency_header=(REQUEST_ID_HEADER, request_id),
            expected=(expected,),
        )
        return self._location_id(response, "POST")

    async def _submit(self, path: str, **kwargs: Any) -> str:
        """POST an asynchronous operation (202); return the id of the workflow it started."""
        return await self._post_for_id(path, expected=202, **kwargs)

    async def _create(self, path: str, **kwargs: Any) -> str:
        """POST a synchronous create (201); return the id of the new resource."""
        return await self._post_for_id(path, expected=201, **kwargs)

    async def _list_all(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        items_key: str = "searchItems",
        page_size: int = _LIST_PAGE_SIZE,
    ) -> list[dict[str, Any]]:
        """Every item of a ``{totalMatchCount, <items_key>: [...]}`` listing, page by page."""
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            body = await self.request_json(
                "GET",
                path,
                params={**(params or {}), "limit": page_size, "offset": offset},
                expected=(200,),
            )
            page = self._items(body, items_key, path)
            items.extend(page)
            total = body.get("totalMatchCount") if isinstance(body, dict) else None
            offset += len(page)
            if not page or len(page) < page_size or (isinstance(total, int) and offset >= total):
                return items

    def _items(self, body: Any, items_key: str, path: str) -> list[dict[str, Any]]:
        page = body.get(items_key) if isinstance(body, dict) else None
        if page is None and isinstance(body, list):
            page = body
        if page is None and isinstance(body, dict) and body.get("totalMatchCount") == 0:
            page = []  # an empty listing may leave the list out
        if not isinstance(page, list):
            raise UnexpectedResponse(
                f"{self.service_name} GET {path} answered without a {items_key!r} list",
                service=self.service_name,
            )
        return page

    def _workflow(self, raw: Any) -> Workflow:
        try:
            return Workflow.model_validate(raw)
        except ValidationError as exc:
            raise UnexpectedResponse(
                f"{self.service_name} sent a workflow that does not parse: "
                f"{exc.error_count()} error(s), first {exc.errors()[0]['loc']}",
                service=self.service_name,
            ) from None

    # -- EDMs (datasources) ---------------------------------------------------------

    async def create_edm(
        self, name: str, *, server_name: str = DEFAULT_SERVER_NAME, request_id: str
    ) -> str:
        """Start creating an EDM; return the workflow id."""
        return await self._submit(
            "/riskmodeler/v2/datasources",
            request_id=request_id,
            params={"datasourcename": name, "servername": server_name, "operation": "CREATE"},
        )

    async def upgrade_edm(
        self,
        name: str,
        *,
        request_id: str,
        server_name: str = DEFAULT_SERVER_NAME,
        edm_data_version: str | None = None,
    ) -> str:
        """Start upgrading an EDM's data version; return the workflow id. ``edm_data_version``
        (e.g. "23") names the target, as the Platform API's ``edmDataVersion`` does; without
        it the service upgrades to its latest version."""
        params = {
            "datasourcename": name,
            "servername": server_name,
            "operation": "EDM_DATA_UPGRADE",
        }
        if edm_data_version:
            params["edmdataversion"] = edm_data_version
        return await self._submit(
            "/riskmodeler/v2/datasources", request_id=request_id, params=params
        )

    async def list_edms(self) -> list[dict[str, Any]]:
        return await self._list_all("/riskmodeler/v2/datasources")

    async def get_edm(self, name: str) -> dict[str, Any] | None:
        """The EDM's description, or None when no EDM has that name."""
        try:
            body = await self.request_json(
                "GET", f"/riskmodeler/v2/datasources/{quote(name, safe='')}", expected=(200,)
            )
        except ResourceNotFound:
            return None
        return body

    # -- portfolios -----------------------------------------------------------------

    async def create_portfolio(
        self, edm: str, *, name: str, number: str, description: str = "", request_id: str
    ) -> str:
        """Create a portfolio in an EDM (synchronous); return the portfolio id."""
        return await self._create(
            "/riskmodeler/v2/portfolios",
            request_id=request_id,
            params={"datasource": edm},
            json={"name": name, "number": number, "description": description},
        )

    async def list_portfolios(self, edm: str) -> list[dict[str, Any]]:
        return await self._list_all("/riskmodeler/v2/portfolios", params={"datasource": edm})

    async def get_portfolio(self, edm: str, portfolio_id: str | int) -> dict[str, Any] | None:
        """The portfolio (with ``accountsCount``/``locationsCount``), or None if missing."""
        try:
            return await self.request_json(
                "GET",
                f"/riskmodeler/v2/portfolios/{quote(str(portfolio_id), safe='')}",
                params={"datasource": edm},
                expected=(200,),
            )
        except ResourceNotFound:
            return None

    # -- data servers and reference data ----------------------------------------------

    async def list_data_servers(self) -> list[dict[str, Any]]:
        """Data servers (``{id, name}``); exports name their server by id."""
        return await self._list_all("/riskmodeler/v1/dataservers")

    async def list_reference_data(
        self, kind: str, names: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Model profiles, output profiles or event rate schemes (``kind`` is one of
        ``model-profiles``, ``output-profiles``, ``event-rate-schemes``) as ``{id, name}``;
        with ``names``, only those (one call for all of them)."""
        if kind not in REFERENCE_KINDS:
            raise ValueError(
                f"unknown reference data kind {kind!r}; expected one of {REFERENCE_KINDS}"
            )
        params = {"name": list(dict.fromkeys(names))} if names else None
        if names is not None and not names:
            return []
        return await self._list_all(f"/riskmodeler/v1/{kind}", params=params)

    # -- MRI import: storage bucket, files, upload, mapping, import ----------------------

    async def create_storage_bucket(self, *, request_id: str) -> str:
        """A storage bucket for the files of one import; return the bucket id."""
        return await self._create("/riskmodeler/v1/storage", request_id=request_id, json={})

    async def create_storage_file(
        self, bucket_id: str, *, file_name: str, file_size: int, file_type: str, request_id: str
    ) -> StorageFile:
        """Register a file (``file_type`` account or location) in a bucket; return its id
        and where to upload its bytes."""
        response = await self.request(
            "POST",
            f"/riskmodeler/v1/storage/{quote(str(bucket_id), safe='')}/path",
            json={"fileName": file_name, "fileSize": file_size, "fileType": file_type},
            idempotency_header=(REQUEST_ID_HEADER, request_id),
            expected=(200, 201),
        )
        body = self.json_of(response, "POST")
        file_id = body.get("id") or body.get("fileId") if isinstance(body, dict) else None
        upload_url = body.get("uploadUrl") if isinstance(body, dict) else None
        if file_id is None or not upload_url:
            raise UnexpectedResponse(
                f"{self.service_name} POST storage path answered without a file id and upload URL",
                service=self.service_name,
            )
        return StorageFile(id=str(file_id), upload_url=str(upload_url))

    async def upload_file(self, upload_url: str, content: bytes) -> None:
        """Upload a file's bytes to where ``create_storage_file`` said (PUT)."""
        url = httpx.URL(upload_url)
        path = url.raw_path.decode() if url.is_absolute_url else upload_url
        await self.request(
            "PUT",
            path,
            content=content,
            headers={"content-type": "text/csv"},
            expected=(200, 201, 204),
        )

    async def create_import_mapping(
        self, bucket_id: str, *, request_id: str, settings: Mapping[str, Any] | None = None
    ) -> str:
        """The mapping file of an MRI import in this bucket; return the mapping file id."""
        return await self._create(
            f"/riskmodeler/v1/imports/createmapping/{quote(str(bucket_id), safe='')}",
            request_id=request_id,
            json=dict(settings or {}),
        )

    async def submit_mri_import(
        self,
        *,
        bucket_id: str,
        edm: str,
        portfolio_id: str,
        accounts_file_id: str,
        locations_file_id: str,
        mapping_file_id: str,
        request_id: str,
        currency: str = "USD",
        delimiter: str = "COMMA",
        skip_lines: int = 1,
        append_locations: bool = False,
    ) -> str:
        """Start an MRI import of uploaded files into a portfolio; return the workflow id."""
        return await self._submit(
            "/riskmodeler/v1/imports",
            request_id=request_id,
            json={
                "importType": "MRI",
                "bucketId": _int_or_str(bucket_id),
                "dataSourceName": edm,
                "accountsFileId": _int_or_str(accounts_file_id),
                "locationsFileId": _int_or_str(locations_file_id),
                "mappingFileId": _int_or_str(mapping_file_id),
                "delimiter": delimiter,
                "skipLines": skip_lines,
                "currency": currency,
                "portfolioId": _int_or_str(portfolio_id),
                "appendLocations": append_locations,
            },
        )

    # -- treaties ----------------------------------------------------------------------

    async def create_treaty(self, edm: str, treaty: Mapping[str, Any], *, request_id: str) -> str:
        """Create a treaty in an EDM (synchronous); return the treaty id."""
        return await self._create(
            "/riskmodeler/v1/treaties",
            request_id=request_id,
            params={"datasource": edm},
            json=dict(treaty),
        )

    async def add_treaty_lines_of_business(
        self, edm: str, lines: Sequence[Mapping[str, Any]], *, request_id: str
    ) -> list[dict[str, Any]]:
        """Attach lines of business (``[{treatyId, name}]``) to treaties; return them with ids."""
        body = await self.request_json(
            "POST",
            "/riskmodeler/v1/treaties/lob/batch",
            params={"datasource": edm},
            json=[dict(line) for line in lines],
            idempotency_header=(REQUEST_ID_HEADER, request_id),
            expected=(200, 201),
        )
        return self._items(body, "searchItems", "/riskmodeler/v1/treaties/lob/batch")

    async def list_treaties(self, edm: str) -> list[dict[str, Any]]:
        return await self._list_all("/riskmodeler/v1/treaties", params={"datasource": edm})

    # -- GeoHaz ------------------------------------------------------------------------

    async def submit_geohaz(
        self, edm: str, portfolio_id: str, layers: Sequence[Mapping[str, Any]], *, request_id: str
    ) -> str:
        """Start geocoding and hazard lookup of a portfolio; return the workflow id."""
        return await self._submit(
            f"/riskmodeler/v2/portfolios/{quote(str(portfolio_id), safe='')}/geohaz",
            request_id=request_id,
            params={"datasource": edm},
            json=[dict(layer) for layer in layers],
        )

    # -- analyses and analysis groups ----------------------------------------------------

    async def submit_analysis(
        self, portfolio_id: str, settings: Mapping[str, Any], *, request_id: str
    ) -> str:
        """Start processing a portfolio (``settings`` is the process body: edm, jobName,
        modelProfileId, ...); return the workflow id."""
        return await self._submit(
            f"/riskmodeler/v2/portfolios/{quote(str(portfolio_id), safe='')}/process",
            request_id=request_id,
            json={"id": _int_or_str(portfolio_id), "exposureType": "PORTFOLIO", **settings},
        )

    async def list_analyses(
        self,
        *,
        names: Sequence[str] | None = None,
        edm: str | None = None,
        is_group: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Analyses and groups (``isGroup``), optionally only those with these names."""
        if names is not None and not names:
            return []
        params: dict[str, Any] = {}
        if names:
            params["name"] = list(dict.fromkeys(names))
        if edm:
            params["datasource"] = edm
        if is_group is not None:
            params["isgroup"] = "true" if is_group else "false"
        return await self._list_all("/riskmodeler/v2/analyses", params=params)

    async def delete_analysis(self, analysis_id: str | int) -> None:
        await self.request(
            "DELETE",
            f"/riskmodeler/v2/analyses/{quote(str(analysis_id), safe='')}",
            expected=(200, 202, 204),
        )

    async def create_analysis_group(
        self,
        name: str,
        analysis_ids: Sequence[str | int],
        *,
        request_id: str,
        currency: Mapping[str, Any] | None = None,
        num_of_simulations: int = 50000,
        simulate_to_plt: bool = True,
        propagate_detailed_losses: bool = False,
    ) -> str:
        """Start creating a group of analyses (or of groups: a rollup); return the workflow id."""
        return await self._submit(
            "/riskmodeler/v2/analysis-groups",
            request_id=request_id,
            json={
                "name": name,
                "analysisIds": [_int_or_str(i) for i in analysis_ids],
                "currency": dict(currency or DEFAULT_CURRENCY),
                "numOfSimulations": num_of_simulations,
                "simulateToPLT": simulate_to_plt,
                "propagateDetailedLosses": propagate_detailed_losses,
            },
        )

    async def list_analysis_groups(
        self, *, names: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        if names is not None and not names:
            return []
        params = {"name": list(dict.fromkeys(names))} if names else None
        return await self._list_all("/riskmodeler/v2/analysis-groups", params=params)

    async def delete_analysis_group(self, group_id: str | int) -> None:
        await self.request(
            "DELETE",
            f"/riskmodeler/v2/analysis-groups/{quote(str(group_id), safe='')}",
            expected=(200, 202, 204),
        )

    # -- exports to RDM (Platform export API) -----------------------------------------

    async def submit_rdm_export(
        self,
        analysis_ids: Sequence[str | int],
        *,
        server_id: int,
        request_id: str,
        rdm_name: str | None = None,
        database_id: str | int | None = None,
    ) -> str:
        """Export analyses/groups to an RDM: a new one named ``rdm_name`` or the existing
        ``database_id`` (exactly one of them); return the job (workflow) id."""
        if (rdm_name is None) == (database_id is None):
            raise ValueError("give exactly one of rdm_name or database_id")
        settings: dict[str, Any] = {"serverId": server_id}
        if rdm_name is not None:
            settings["rdmName"] = rdm_name
        else:
            settings["databaseId"] = _int_or_str(database_id)
        return await self._submit(
            "/platform/export/v1/jobs",
            request_id=request_id,
            json={
                "exportType": "RDM_DATABRIDGE",
                "resourceType": "analyses",
                "resourceUris": [f"/platform/riskdata/v1/analyses/{i}" for i in analysis_ids],
                "settings": settings,
            },
        )

    async def list_rdms(self) -> list[dict[str, Any]]:
        """RDMs (``{id/databaseId, name, ...}``), listed as datasources of type RDM."""
        return await self._list_all("/riskmodeler/v2/datasources", params={"type": "RDM"})

    # -- workflows ------------------------------------------------------------------

    async def get_workflow(self, workflow_id: str) -> Workflow | None:
        """The workflow, or None while the service answers 204 (known but not ready yet)."""
        response = await self.request(
            "GET",
            f"/riskmodeler/v1/workflows/{quote(str(workflow_id), safe='')}",
            expected=(200, 204),
        )
        if response.status_code == 204:
            return None
        return self._workflow(self.json_of(response, "GET"))

    async def get_workflows(
        self, ids: Sequence[str], *, chunk_size: int = 100
    ) -> dict[str, Workflow]:
        """Many workflows in few calls, keyed by id. Ids the service does not return are
        simply absent: the caller decides whether that is "not ready" or "lost"."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        unique = list(dict.fromkeys(str(i) for i in ids))
        result: dict[str, Workflow] = {}
        for chunk in chunks(unique, chunk_size):
            body = await self.request_json(
                "GET",
                "/riskmodeler/v1/workflows",
                params={"ids": ",".join(chunk), "limit": len(chunk)},
                expected=(200,),
            )
            for raw in self._items(body, "workflows", "/riskmodeler/v1/workflows"):
                workflow = self._workflow(raw)
                result[workflow.id] = workflow
        return result

    async def cancel_workflow(self, workflow_id: str) -> None:
        await self.request(
            "DELETE",
            f"/riskmodeler/v1/workflows/{quote(str(workflow_id), safe='')}",
            expected=(200, 202, 204),
        )
