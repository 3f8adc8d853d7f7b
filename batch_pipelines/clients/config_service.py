"""Client of the config service: user preferences over HTTP.

In production the config database sits behind a service (``CONFIG_SERVICE_URL`` with
``CONFIG_SERVICE_API_KEY`` as a bearer token); the embedded default reads the store instead.
This client speaks the service's small JSON API and inherits timeouts, retries with backoff
and Retry-After, typed errors and secret redaction from ``ServiceClient``:

- ``GET /v1/preferences?feature_type=&page_token=`` -> ``{"preferences": [...], "next_page_token"}``
- ``GET /v1/users/{user_id}/preferences/{feature_type}`` -> one preference, 404 when none
- ``GET /v1/preferences/changes?cursor=&limit=`` -> ``{"preferences": [...], "next_cursor"}``,
  deletions included as records with ``"deleted": true``
- ``PUT`` / ``DELETE /v1/users/{user_id}/preferences/{feature_type}``

Records are plain dicts with the fields of ``configured_batches.preferences.Preference``;
validating them is the caller's job (this layer knows no family models).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from batch_pipelines.clients.http import ServiceClient, UnexpectedResponse

SERVICE_NAME = "config-service"


def _user_path(user_id: str, feature_type: str) -> str:
    return f"/v1/users/{quote(user_id, safe='')}/preferences/{quote(feature_type, safe='')}"


class ConfigServiceClient(ServiceClient):
    """Async client of the config service's preference API."""

    def __init__(self, base_url: str, api_key: str | None, **kwargs: Any):
        kwargs.setdefault("service_name", SERVICE_NAME)
        kwargs.setdefault("timeout_seconds", 10.0)
        super().__init__(base_url, api_key, **kwargs)

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key.reveal()}"} if self._api_key else {}

    def _records(self, body: Any, path: str) -> list[dict[str, Any]]:
        records = body.get("preferences") if isinstance(body, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise UnexpectedResponse(
                f"{self.service_name} GET {path} answered without a preferences list",
                service=self.service_name,
            )
        return records

    async def preferences(self, feature_type: str) -> list[dict[str, Any]]:
        """Every preference for ``feature_type`` (all pages)."""
        path = "/v1/preferences"
        records: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params = {"feature_type": feature_type, **({"page_token": token} if token else {})}
            body = await self.request_json("GET", path, params=params, expected=(200,))
            records.extend(self._records(body, path))
            token = body.get("next_page_token")
            if not token:
                return records

    async def preference(self, user_id: str, feature_type: str) -> dict[str, Any] | None:
        """One user's preference, None when the user has none."""
        path = _user_path(user_id, feature_type)
        response = await self.request("GET", path, expected=(200, 404))
        if response.status_code == 404:
            return None
        body = self.json_of(response, "GET")
        if not isinstance(body, dict):
            raise UnexpectedResponse(f"{self.service_name} GET {path} answered without an object")
        return body

    async def changes(
        self, cursor: str | None, *, limit: int | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Preferences changed after ``cursor``, oldest first, and the next cursor."""
        path = "/v1/preferences/changes"
        params: dict[str, Any] = {}
        if cursor:
            params["cursor"] = cursor
        if limit is not None:
            params["limit"] = limit
        body = await self.request_json("GET", path, params=params or None, expected=(200,))
        next_cursor = body.get("next_cursor") if isinstance(body, dict) else None
        if not isinstance(next_cursor, str):
            raise UnexpectedResponse(
                f"{self.service_name} GET {path} answered without next_cursor",
                service=self.service_name,
            )
        return self._records(body, path), next_cursor

    async def put_preference(self, record: dict[str, Any]) -> dict[str, Any]:
        path = _user_path(str(record.get("user_id", "")), str(record.get("feature_type", "")))
        return await self.request_json("PUT", path, json=record, expected=(200, 201))

    async def delete_preference(self, user_id: str, feature_type: str) -> bool:
        response = await self.request(
            "DELETE", _user_path(user_id, feature_type), expected=(204, 404)
        )
        return response.status_code == 204
