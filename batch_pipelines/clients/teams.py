"""Client of Microsoft Teams incoming webhooks (Workflows), for notifications.

A Teams webhook has no separate key: whoever knows the URL can post to the channel. The URL
is therefore handled as the secret: it is never logged and is masked (whole, and its path
and query on their own) in every error message.

Workflows webhooks accept Adaptive Cards only and reject messages over about 28 KB; the size
is checked before sending, so an oversized card fails fast with a clear error instead of a
vague 400 after the retries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import httpx

from batch_pipelines.clients.http import REDACTED, Secret, ServiceClient
from batch_pipelines.core.errors import ConfigurationError

MAX_PAYLOAD_BYTES = 28 * 1024
ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


log = logging.getLogger("batch_pipelines.notifications")


class CardTooLarge(ConfigurationError):
    """The card would exceed Teams' message size limit: shorten it (fewer facts, less text)."""

    code = "BP-TEAMS-CARD-TOO-LARGE"


class TeamsClient(ServiceClient):
    """Posts Adaptive Cards to one Teams webhook URL (passed as ``base_url``)."""

    def __init__(self, webhook_url: str, **kwargs: Any):
        kwargs.setdefault("service_name", "teams")
        self._webhook_secrets = Secret(_url_secrets(webhook_url))
        super().__init__(webhook_url, None, **kwargs)

    def _secrets(self) -> list[str]:
        return [*super()._secrets(), *self._webhook_secrets.reveal()]

    def _display_target(self, method: str, url: httpx.URL) -> str:
        return f"{method} <webhook>"

    @property
    def display_base_url(self) -> str:
        return f"{self._base_url.scheme}://{self._base_url.host}/{REDACTED}"

    async def send_card(self, card: dict[str, Any]) -> None:
        """Post one Adaptive Card (its ``content`` dict, e.g. from ``adaptive_card``)."""
        message = {
            "type": "message",
            "attachments": [{"contentType": ADAPTIVE_CARD_CONTENT_TYPE, "content": card}],
        }
        payload = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise CardTooLarge(
                f"Teams card is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}",
                details={"bytes": len(payload), "limit": MAX_PAYLOAD_BYTES},
            )
        await self.request(
            "POST",
            "",
            content=payload,
            headers={"Content-Type": "application/json"},
            expected=range(200, 300),
        )


def adaptive_card(
    title: str,
    facts: list[tuple[str, str]],
    *,
    link: tuple[str, str] | None = None,
    links: Sequence[tuple[str, str]] = (),
    text: str | None = None,
) -> dict[str, Any]:
    """A small Adaptive Card: a bold title, optional text, a fact table and optional "open"
    buttons (``link`` and each of ``links`` = (button title, url)). Version 1.4 is what
    Teams renders everywhere, including mobile."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True}
    ]
    if text:
        body.append({"type": "TextBlock", "text": text, "wrap": True})
    body.append(
        {"type": "FactSet", "facts": [{"title": str(k), "value": str(v)} for k, v in facts]}
    )
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    buttons = [link, *links] if link is not None else list(links)
    if buttons:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": title, "url": url} for title, url in buttons
        ]
    return card


def _url_secrets(webhook_url: str) -> list[str]:
    """The URL and the parts of it that identify or sign the webhook."""
    secrets = [webhook_url, webhook_url.strip()]
    try:
        url = httpx.URL(webhook_url.strip())
    except (httpx.InvalidURL, TypeError):
        return secrets
    secrets.append(str(url))
    if len(url.path) > 1:
        secrets.append(url.path)
        secrets.append(url.raw_path.decode("ascii", "replace").split("?", 1)[0])
    query = url.query.decode("ascii", "replace")
    if query:
        secrets.append(query)
        # Individual values (sig=..., the workflow id) may be quoted on their own.
        secrets.extend(v for _, v in url.params.multi_items() if len(v) >= 8)
    return secrets


async def notify_batch(client: TeamsClient, card: dict[str, Any]) -> bool:
    """Send ``card``; True when delivered. A notification never fails the batch it is
    about: a delivery failure is logged and reported as False."""
    try:
        async with client:
            await client.send_card(card)
        return True
    except Exception as exc:  # noqa: BLE001 - a notification never fails the batch
        log.warning("Teams notification not delivered: %s", exc)
        return False
