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
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from batch_pipelines.clients.http import (
    ResourceNotFound,
    ServiceClient,
    UnexpectedResponse,
)
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
    trailing slash ignored (``https://h/riskmodeler/v1/workflows/42?x=1`` -> ``"42"``)."""
    try:
        path = httpx.URL(location.strip()).path
    except (httpx.InvalidURL, TypeError):
        path = ""
    segment = path.rstrip("/").rsplit("/", 1)[-1]
    if not segment:
        raise UnexpectedResponse(f"Location header without an id: {location!r}", service="risk_modeler")
    return segment


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

    async def _submit(
        self,
        path: str,
        *,
        request_id: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> str:
        """POST an asynchronous operation; return the id of the workflow it started."""
        response = await self.request(
            "POST",
            path,
            params=params,
            json=json,
            idempotency_header=(REQUEST_ID_HEADER, request_id),
            expected=(202,),
        )
        return self._location_id(response, "POST")

    async def _create(
        self,
        path: str,
        *,
        request_id: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> str:
        """POST a synchronous create; return the id of the new resource."""
        response = await self.request(
            "POST",
            path,
            params=params,
            json=json,
            idempotency_header=(REQUEST_ID_HEADER, request_id),
            expected=(201,),
        )
        return self._location_id(response, "POST")

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
                "GET", path, params={**(params or {}), "limit": page_size, "offset": offset}, expected=(200,)
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
        self, name: str, *, request_id: str, server_name: str = DEFAULT_SERVER_NAME
    ) -> str:
        """Start upgrading an EDM's data version; return the workflow id."""
        return await self._submit(
            "/riskmodeler/v2/datasources",
            request_id=request_id,
            params={"datasourcename": name, "servername": server_name, "operation": "EDM_DATA_UPGRADE"},
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

    # -- workflows ------------------------------------------------------------------

    async def get_workflow(self, workflow_id: str) -> Workflow | None:
        """The workflow, or None while the service answers 204 (known but not ready yet)."""
        response = await self.request(
            "GET", f"/riskmodeler/v1/workflows/{quote(str(workflow_id), safe='')}", expected=(200, 204)
        )
        if response.status_code == 204:
            return None
        return self._workflow(self.json_of(response, "GET"))

    async def get_workflows(self, ids: Sequence[str], *, chunk_size: int = 100) -> dict[str, Workflow]:
        """Many workflows in few calls, keyed by id. Ids the service does not return are
        simply absent: the caller decides whether that is "not ready" or "lost"."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        unique = list(dict.fromkeys(str(i) for i in ids))
        result: dict[str, Workflow] = {}
        for start in range(0, len(unique), chunk_size):
            chunk = unique[start : start + chunk_size]
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
