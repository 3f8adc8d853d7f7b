"""How a configured batch turns its data into requests, and how requests are executed.

The seed's four processing strategies decide how many requests a batch sends and what each
contains:

- individual: one request per item (a user, or a category item), run concurrently;
- object: one request for a whole category (or, for BATCH_USERS, one per chunk of users);
- combined: one request over several categories;
- preference: requests per user with that user's preferences and template overrides
  applied (PREFERENCE_BATCH_* types send one request per set of users whose overrides are
  identical, so users who want the same thing share one call).

Planning is pure (data in, requests out) so it is tested without a service; execution takes
any object with ModelClient's ``chat`` and retries failed requests with exponential backoff
up to the job's ``retry_limit``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from batch_pipelines.clients.http import ServiceError
from batch_pipelines.configured_batches.job_config import TEMPLATE_PLACEHOLDER, JobConfig, JobType
from batch_pipelines.core.backoff import RetryPolicy, backoff_delay
from batch_pipelines.core.concurrency import map_bounded
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.core.sequences import chunks


class Strategy(StrEnum):
    INDIVIDUAL = "individual"
    OBJECT = "object"
    COMBINED = "combined"
    PREFERENCE = "preference"


def strategy_for(job: JobConfig) -> Strategy:
    """The strategy of a job's type (a BATCH_CATEGORIES job over several categories is combined)."""
    if job.type.is_preference:
        return Strategy.PREFERENCE
    if job.type.processing == "individual":
        return Strategy.INDIVIDUAL
    if job.type == JobType.BATCH_CATEGORIES and len(job.category_names) > 1:
        return Strategy.COMBINED
    return Strategy.OBJECT


# ----------------------------------------------------------------------------- templates


class TemplateError(ConfigurationError):
    """A template names a value the request does not have."""

    code = "BP-TEMPLATE"


def _lookup(variables: Mapping[str, Any], path: str) -> Any:
    value: Any = variables
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            raise KeyError(path)
    return value


def render_template(
    template: str, variables: Mapping[str, Any], *, job_id: str = "", request_key: str = ""
) -> str:
    """Replace each ``{{ a.b.c }}`` with that value of ``variables`` (dotted dict lookups only:
    no attribute access or code, so a job file cannot reach into Python objects)."""

    def replace(match: Any) -> str:
        path = match.group(1)
        try:
            value = _lookup(variables, path)
        except KeyError:
            raise TemplateError(
                f"job {job_id}, request {request_key}: the template uses {{{{ {path} }}}}, which this request does not have",
                details={"job_id": job_id, "request": request_key, "placeholder": path},
            ) from None
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return value if isinstance(value, str) else json.dumps(value, default=str)

    return TEMPLATE_PLACEHOLDER.sub(replace, template)


# ----------------------------------------------------------------------------- planning


class CategoryItemLike(Protocol):
    id: str
    category: str
    data: dict
    user_ids: list[str]


class PreferenceLike(Protocol):
    user_id: str
    tenant_id: str
    feature_type: str
    frequency: str
    preferred_day: Any
    preferred_time: str
    timezone: str
    template_overrides: dict


@dataclass(frozen=True)
class Request:
    """One call to the service: its key within the batch, the rendered prompt and the data
    sent with it, and the users (with their tenants) its result belongs to."""

    key: str
    prompt: str
    data: Any
    user_ids: tuple[str, ...] = ()
    tenants: Mapping[str, str | None] = field(default_factory=dict)
    item_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchInputs:
    """What a batch has to work on, already validated: users (records with ``id``), category
    items by category, and preferences by user id (preference batches)."""

    users: Sequence[Mapping[str, Any]] = ()
    items_by_category: Mapping[str, Sequence[CategoryItemLike]] = field(default_factory=dict)
    preferences: Mapping[str, PreferenceLike] = field(default_factory=dict)


def _job_vars(job: JobConfig, tick: str) -> dict[str, Any]:
    return {
        "job": {"job_id": job.job_id, "type": job.type.value, "purpose_id": job.purpose_id},
        "tick": tick,
    }


def _item_dict(item: CategoryItemLike) -> dict[str, Any]:
    return {
        "id": item.id,
        "category": item.category,
        "data": dict(item.data),
        "user_ids": list(item.user_ids),
    }


def _tenant(user: Mapping[str, Any]) -> str | None:
    tenant = user.get("tenant_id")
    return None if tenant is None else str(tenant)


def _render(
    job: JobConfig, variables: dict[str, Any], key: str, template: str | None = None
) -> str:
    return render_template(template or job.template, variables, job_id=job.job_id, request_key=key)


def _preference_dict(pref: PreferenceLike) -> dict[str, Any]:
    return {
        "frequency": str(pref.frequency),
        "preferred_day": pref.preferred_day,
        "preferred_time": pref.preferred_time,
        "timezone": pref.timezone,
        "feature_type": pref.feature_type,
    }


def plan_requests(job: JobConfig, inputs: BatchInputs, *, tick: str) -> list[Request]:
    """The requests of one batch run, in a stable order (same inputs, same keys)."""
    strategy = strategy_for(job)
    base = _job_vars(job, tick)
    variables = dict(job.template_variables)
    requests: list[Request] = []
    users = list(inputs.users)
    if strategy is Strategy.INDIVIDUAL and job.type.data_source == "users":
        for user in users:
            key = f"user:{user['id']}"
            prompt = _render(job, {**base, "user": dict(user), "variables": variables}, key)
            requests.append(
                Request(
                    key, prompt, dict(user), (str(user["id"]),), {str(user["id"]): _tenant(user)}
                )
            )
    elif strategy is Strategy.INDIVIDUAL:
        for category in job.category_names:
            for item in inputs.items_by_category.get(category, ()):
                key = f"item:{category}:{item.id}"
                data = _item_dict(item)
                v = {**base, "item": data, "category": {"name": category}, "variables": variables}
                requests.append(Request(key, _render(job, v, key), data, item_ids=(item.id,)))
    elif strategy is Strategy.OBJECT and job.type.data_source == "users":
        for index, chunk in enumerate(chunks(users, job.chunk_size)):
            key = f"users:chunk-{index}"
            ids = tuple(str(u["id"]) for u in chunk)
            v = {**base, "users": {"count": len(chunk), "ids": list(ids)}, "variables": variables}
            requests.append(
                Request(
                    key,
                    _render(job, v, key),
                    [dict(u) for u in chunk],
                    ids,
                    {str(u["id"]): _tenant(u) for u in chunk},
                )
            )
    elif strategy is Strategy.OBJECT:
        (category,) = job.category_names
        items = [_item_dict(i) for i in inputs.items_by_category.get(category, ())]
        key = f"category:{category}"
        v = {
            **base,
            "category": {"name": category, "item_count": len(items)},
            "items": {"count": len(items)},
            "variables": variables,
        }
        requests.append(
            Request(
                key,
                _render(job, v, key),
                {"category": category, "items": items},
                item_ids=tuple(i["id"] for i in items),
            )
        )
    elif strategy is Strategy.COMBINED:
        combined = {
            c: [_item_dict(i) for i in inputs.items_by_category.get(c, ())]
            for c in job.category_names
        }
        count = sum(len(v) for v in combined.values())
        key = "combined:" + "+".join(job.category_names)
        v = {
            **base,
            "categories": {
                "names": list(job.category_names),
                "count": len(combined),
                "item_counts": {c: len(i) for c, i in combined.items()},
            },
            "items": {"count": count},
            "variables": variables,
        }
        ids = tuple(i["id"] for items in combined.values() for i in items)
        requests.append(Request(key, _render(job, v, key), {"categories": combined}, item_ids=ids))
    else:
        requests = _plan_preference(job, inputs, base)
    return requests


def _plan_preference(job: JobConfig, inputs: BatchInputs, base: dict[str, Any]) -> list[Request]:
    """A request per user (PREFERENCE_INDIVIDUAL_*) or per set of users with identical
    template overrides (PREFERENCE_BATCH_*), each rendered with those overrides applied."""
    requests: list[Request] = []
    category_items = {
        c: [_item_dict(i) for i in inputs.items_by_category.get(c, ())] for c in job.category_names
    }

    def variables_for(pref: PreferenceLike | None) -> tuple[dict[str, Any], str | None]:
        overrides = dict(pref.template_overrides or {}) if pref is not None else {}
        template = overrides.pop("template", None)
        return {**job.template_variables, **overrides}, template

    def category_vars(items: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        flat = [i for group in items.values() for i in group]
        names = list(items)
        return {
            "category": {"name": names[0] if names else "", "item_count": len(flat)},
            "categories": {"names": names, "count": len(names)},
            "items": {"count": len(flat)},
        }

    if job.type.processing == "individual":
        # Which items of each category reference a user, built once (not a scan per user).
        items_of_user: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for c, items in category_items.items():
            for i in items:
                for ref in dict.fromkeys(i["user_ids"]):
                    items_of_user.setdefault(ref, {}).setdefault(c, []).append(i)
        for user in inputs.users:
            uid = str(user["id"])
            pref = inputs.preferences.get(uid)
            variables, template = variables_for(pref)
            key = f"user:{uid}"
            v: dict[str, Any] = {**base, "user": dict(user), "variables": variables}
            if pref is not None:
                v["preference"] = _preference_dict(pref)
            data: Any = dict(user)
            item_ids: tuple[str, ...] = ()
            if job.type.data_source == "categories":
                # The category items that reference this user.
                found = items_of_user.get(uid, {})
                mine = {c: found.get(c, []) for c in category_items}
                v.update(category_vars(mine))
                data = {"user": dict(user), "items": mine}
                item_ids = tuple(i["id"] for group in mine.values() for i in group)
            requests.append(
                Request(
                    key,
                    _render(job, v, key, template),
                    data,
                    (uid,),
                    {uid: _tenant(user)},
                    item_ids,
                )
            )
        return requests

    # Batch variants: users sharing the same overrides share one request (chunked).
    sets: dict[str, list[Mapping[str, Any]]] = {}
    for user in inputs.users:
        pref = inputs.preferences.get(str(user["id"]))
        fingerprint = json.dumps(
            dict(pref.template_overrides or {}) if pref else {}, sort_keys=True, default=str
        )
        sets.setdefault(fingerprint, []).append(user)
    for fingerprint in sorted(sets):
        members = sets[fingerprint]
        digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:10]
        first_pref = inputs.preferences.get(str(members[0]["id"]))
        variables, template = variables_for(first_pref)
        for index, chunk in enumerate(chunks(members, job.chunk_size)):
            key = f"overrides:{digest}:chunk-{index}"
            ids = tuple(str(u["id"]) for u in chunk)
            v = {**base, "users": {"count": len(chunk), "ids": list(ids)}, "variables": variables}
            if first_pref is not None:
                v["preference"] = _preference_dict(first_pref)
            data: Any = [dict(u) for u in chunk]
            item_ids = ()
            if job.type.data_source == "categories":
                v.update(category_vars(category_items))
                data = {"users": [dict(u) for u in chunk], "categories": category_items}
                item_ids = tuple(i["id"] for group in category_items.values() for i in group)
            requests.append(
                Request(
                    key,
                    _render(job, v, key, template),
                    data,
                    ids,
                    {str(u["id"]): _tenant(u) for u in chunk},
                    item_ids,
                )
            )
    return requests


# ----------------------------------------------------------------------------- execution


class ChatClient(Protocol):
    async def chat(
        self, messages: list[dict[str, Any]], *, model: str, idempotency_key: str | None = None
    ) -> Any: ...


@dataclass(frozen=True)
class RequestOutcome:
    """What happened to one request: its final status, attempts, answer or last error."""

    key: str
    status: str  # "succeeded" | "failed"
    attempts: int
    content: str | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None
    latency_seconds: float = 0.0
    idempotency_key: str = ""
    prompt_text: str = ""  # what was sent, for estimating usage when the service omits it

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


def idempotency_key(batch_key: str, request_key: str) -> str:
    """The same key for every attempt of one request of one batch run (any process), so a
    retried or resumed run is replayed by the service instead of billed again."""
    digest = hashlib.sha256(f"{batch_key}\x00{request_key}".encode()).hexdigest()[:32]
    return f"configured-batch-{digest}"


def messages_for(job: JobConfig, request: Request) -> list[dict[str, Any]]:
    system = (
        f"Purpose: {job.purpose_id or job.job_id}. Answer the instruction using the data given."
    )
    user = f"{request.prompt}\n{json.dumps(request.data, sort_keys=True, default=str)}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, ServiceError) and exc.retryable


async def execute_requests(
    client: ChatClient,
    job: JobConfig,
    requests: Sequence[Request],
    *,
    batch_key: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    backoff: RetryPolicy | None = None,
    on_done: Callable[[RequestOutcome], None] | None = None,
) -> list[RequestOutcome]:
    """Run ``requests`` at most ``job.concurrency`` at a time; a request failing with a
    retryable error is tried again after an exponential backoff, up to ``job.retry_limit``
    retries, with the same idempotency key. Results come back in request order."""
    policy = backoff or RetryPolicy(
        max_retries=job.retry_limit, backoff_base_seconds=0.5, backoff_max_seconds=30.0
    )

    async def one(request: Request) -> RequestOutcome:
        key = idempotency_key(batch_key, request.key)
        attempts = 0
        started = time.perf_counter()
        messages = messages_for(job, request)
        sent = "\n".join(m["content"] for m in messages)
        while True:
            attempts += 1
            try:
                result = await client.chat(messages, model=job.model, idempotency_key=key)
            except Exception as exc:  # noqa: BLE001 - every failure becomes the request's outcome
                message = (
                    str(exc) if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}"
                )
                if _retryable(exc) and attempts <= job.retry_limit:
                    retry_after = getattr(exc, "retry_after", None)
                    await sleep(
                        backoff_delay(attempts - 1, policy, retry_after=retry_after, rng=rng)
                    )
                    continue
                outcome = RequestOutcome(
                    request.key,
                    "failed",
                    attempts,
                    error=message[:500],
                    latency_seconds=time.perf_counter() - started,
                    idempotency_key=key,
                    prompt_text=sent,
                )
                break
            outcome = RequestOutcome(
                request.key,
                "succeeded",
                attempts,
                content=result.content,
                model=result.model,
                usage=result.usage,
                latency_seconds=time.perf_counter() - started,
                idempotency_key=key,
                prompt_text=sent,
            )
            break
        if on_done is not None:
            on_done(outcome)
        return outcome

    return await map_bounded(one, requests, job.concurrency)
