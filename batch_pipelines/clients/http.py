"""The shared base of every client of an outside service: transport, retries, typed errors.

Batches send thousands of calls to services that rate-limit, time out and fail for a few
minutes at a time. Putting retry, timeout and error mapping in one place means every family
gets the same behaviour, and the engine can decide what to do with a failure by its type
(transient: try again later with the same idempotency key; permanent: mark the job ERROR)
without knowing which service produced it.

Secrets (API keys, webhook URLs) travel only in headers or the request line. They are kept
out of ``repr()``, error messages and log lines, including when a service echoes them back
in an error body, because errors end up in Dagster's event log, notifications and the CLI's
JSON output.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping
from typing import Any, Generic, TypeVar

import httpx

from batch_pipelines.core.backoff import RetryPolicy, backoff_delay, parse_retry_after
from batch_pipelines.core.errors import BatchPipelinesError, ConfigurationError

logger = logging.getLogger("batch_pipelines.clients")

REDACTED = "***"
REQUEST_IN_PROGRESS = "REQUEST_IN_PROGRESS"
RETRYABLE_SERVER_STATUSES = frozenset({500, 502, 503, 504})
DEFAULT_EXPECTED = (200, 201, 202, 204)
_BODY_SNIPPET_CHARS = 300
# Joined request URLs kept per client: a batch sends the same few (path, query) pairs over
# and over, and parsing a URL is a fair share of a request's CPU. Cleared when full, which
# only happens when paths carry ids (workflow polling), where reuse is rare anyway.
_URL_CACHE_SIZE = 512

SleepFn = Callable[[float], Awaitable[None]]
OnRetry = Callable[[int, "ServiceError", float], Any]
T = TypeVar("T")


# --------------------------------------------------------------------------- errors


class ServiceError(BatchPipelinesError):
    """A call to an outside service did not give the expected answer.

    ``status`` is the HTTP status (None when no response arrived), ``service_code`` and
    ``log_id`` come from the service's error body so that a support ticket can quote them,
    and ``retryable`` says whether trying the same request again may succeed.
    """

    code = "BP-SERVICE"
    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        service_code: str | None = None,
        log_id: str | None = None,
        retryable: bool | None = None,
        service: str | None = None,
        details: dict[str, Any] | None = None,
    ):
        self.status = status
        self.service_code = service_code
        self.log_id = log_id
        self.retryable = self.default_retryable if retryable is None else retryable
        self.service = service
        merged = {
            k: v
            for k, v in {
                "service": service,
                "status": status,
                "service_code": service_code,
                "log_id": log_id,
                "retryable": self.retryable,
            }.items()
            if v is not None
        }
        merged.update(details or {})
        super().__init__(message, details=merged)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive the default Exception pickling, and
        # errors cross process boundaries (process pools, multiprocess executors).
        return (_restore_error, (type(self), self.message, dict(self.__dict__)))


def _restore_error(cls: type[ServiceError], message: str, state: dict[str, Any]) -> ServiceError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class TransientServiceError(ServiceError):
    """Worth retrying later: the service was busy, slow, unreachable or briefly broken.

    ``retry_after`` is the wait the service asked for, in seconds, when it said so.
    """

    code = "BP-SERVICE-TRANSIENT"
    default_retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any):
        self.retry_after = retry_after
        super().__init__(message, **kwargs)
        if retry_after is not None:
            self.details["retry_after"] = retry_after


class RateLimited(TransientServiceError):
    code = "BP-SERVICE-RATE-LIMITED"


class ServerError(TransientServiceError):
    """5xx. 500/502/503/504 are retried; others (501, 505...) are marked not retryable."""

    code = "BP-SERVICE-SERVER"


class RequestTimeout(TransientServiceError):
    """No answer in time. The request may or may not have been processed: only an
    idempotency key makes a retry safe."""

    code = "BP-SERVICE-TIMEOUT"


class ServiceUnavailable(TransientServiceError):
    """Could not connect, or the connection broke before an answer arrived."""

    code = "BP-SERVICE-UNAVAILABLE"


class RequestInProgress(TransientServiceError):
    """409 with code REQUEST_IN_PROGRESS: the original request with the same idempotency
    key is still being processed. Transient, unlike other conflicts: asking again later
    returns the original's result."""

    code = "BP-SERVICE-IN-PROGRESS"


class PermanentServiceError(ServiceError):
    """Retrying the same request will fail the same way: fix the input, key or state."""

    code = "BP-SERVICE-PERMANENT"


class BadRequest(PermanentServiceError):
    code = "BP-SERVICE-BAD-REQUEST"


class Unauthorized(PermanentServiceError):
    code = "BP-SERVICE-UNAUTHORIZED"


class ResourceNotFound(PermanentServiceError):
    code = "BP-SERVICE-NOT-FOUND"


class Conflict(PermanentServiceError):
    code = "BP-SERVICE-CONFLICT"


class UnexpectedResponse(PermanentServiceError):
    """The service answered, but not in the shape the client relies on (a status outside
    the expected ones, a missing Location header, a body without the required fields)."""

    code = "BP-SERVICE-UNEXPECTED"


# --------------------------------------------------------------------------- redaction


class Secret(Generic[T]):
    """A value that does not show itself in ``repr()``/``str()`` (and so not in
    ``vars(client)`` dumps or debugger output)."""

    __slots__ = ("_value",)

    def __init__(self, value: T):
        self._value = value

    def reveal(self) -> T:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of every secret, longest first so that a URL is masked as a
    whole before its parts are."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


# --------------------------------------------------------------------------- mapping


def parse_error_body(
    response: httpx.Response,
) -> tuple[str, str | None, str | None, dict[str, Any]]:
    """Pull ``(message, service_code, log_id, extra details)`` out of an error response.

    Understands the Risk Modeler's ``{code, message, logId}`` and OpenAI's
    ``{"error": {message, type, param, code}}``; anything else becomes a short snippet of
    the body so that an HTML error page from a proxy is still visible but not dumped whole.
    """
    details: dict[str, Any] = {}
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    message: str | None = None
    service_code: str | None = None
    log_id: str | None = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = _opt_str(error.get("message"))
            service_code = _opt_str(error.get("code")) or _opt_str(error.get("type"))
            for key in ("type", "param"):
                if error.get(key) is not None:
                    details[f"error_{key}"] = _opt_str(error.get(key))
        elif isinstance(error, str):
            message = error
        if message is None:
            message = _opt_str(body.get("message"))
        if service_code is None:
            service_code = _opt_str(body.get("code"))
        log_id = _opt_str(body.get("logId"))
    if message is None:
        text = response.text.strip()
        message = text[:_BODY_SNIPPET_CHARS] + ("..." if len(text) > _BODY_SNIPPET_CHARS else "")
    if log_id is None:
        log_id = response.headers.get("x-request-id")
    return message or response.reason_phrase or "", service_code, log_id, details


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def error_from_response(
    response: httpx.Response,
    *,
    service: str,
    target: str,
    secrets: Iterable[str] = (),
) -> ServiceError:
    """Turn an unexpected HTTP answer into the typed error the engine acts on."""
    status = response.status_code
    body_message, service_code, log_id, details = parse_error_body(response)
    secrets = list(secrets)
    text = f"{service} {target} answered {status}"
    if service_code:
        text += f" {service_code}"
    if body_message:
        text += f": {body_message}"
    if log_id:
        text += f" (logId {log_id})"
    text = redact(text, secrets)  # the body may echo a key or URL back
    kwargs: dict[str, Any] = {
        "status": status,
        "service_code": service_code,
        "log_id": log_id,
        "service": service,
        "details": details,
    }
    retry_after = parse_retry_after(response.headers)
    if status == 429:
        return RateLimited(text, retry_after=retry_after, **kwargs)
    if status == 408:
        return RequestTimeout(text, retry_after=retry_after, **kwargs)
    if status == 409:
        if service_code == REQUEST_IN_PROGRESS:
            return RequestInProgress(text, retry_after=retry_after, **kwargs)
        return Conflict(text, **kwargs)
    if status in (401, 403):
        return Unauthorized(text, **kwargs)
    if status == 404:
        return ResourceNotFound(text, **kwargs)
    if 400 <= status < 500:
        return BadRequest(text, **kwargs)
    if status >= 500:
        return ServerError(
            text,
            retry_after=retry_after,
            retryable=status in RETRYABLE_SERVER_STATUSES,
            **kwargs,
        )
    return UnexpectedResponse(text, **kwargs)


# --------------------------------------------------------------------------- client


# Sent with every request before the auth and per-call headers; what httpx's client would
# send, with our own User-Agent so that a service's logs can tell batch traffic apart.
_DEFAULT_HEADERS = (
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate"),
    ("Connection", "keep-alive"),
    ("User-Agent", "batch-pipelines"),
)


class ServiceClient:
    """Async HTTP client of one outside service, with retries and typed errors.

    Requests are ``httpx.Request`` objects sent straight to an httpx transport (its
    connection pool), not through ``httpx.AsyncClient``: everything the client adds on top
    (auth flows, redirects, cookie jars, base-URL and header merging, event hooks) is either
    unused here or done once per client below, and it cost more CPU per request than the
    transport itself, which limits a batch's throughput on a busy event loop. Cookies are
    deliberately not kept: the services authenticate with a key per request, so cookies
    only come from load balancers, and one jar shared by a batch's concurrent requests
    would pin them all to one backend. ``Response.cookies`` still works.

    The transport is created on first use, inside the running event loop: a client object
    can then be built in synchronous code (a Dagster resource, a CLI option parser) and used
    from whichever loop the engine runs. Subclasses add the service's calls and say how to
    authenticate (``_auth_headers``).

    Transport choice: ``transport`` wins (tests and the embedded default pass
    ``httpx.ASGITransport(app=simulator)``); else ``use_aiohttp`` picks httpx-aiohttp's
    transport, which costs much less CPU per request at high concurrency; else httpx's own
    connection pool, limited to ``max_connections``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_seconds: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, so sharing is safe
        transport: httpx.AsyncBaseTransport | None = None,
        use_aiohttp: bool = False,
        max_connections: int = 100,
        service_name: str,
        sleep: SleepFn | None = None,
        on_retry: OnRetry | None = None,
        rng: random.Random | None = None,
    ):
        if timeout_seconds <= 0:
            raise ConfigurationError(f"{service_name}: timeout_seconds must be > 0")
        if max_connections < 1:
            raise ConfigurationError(f"{service_name}: max_connections must be >= 1")
        self.service_name = service_name
        self._api_key = Secret(api_key) if api_key else None
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError) as exc:
            # Not the exception text: it may quote the URL, which can be the secret.
            raise ConfigurationError(
                f"{service_name}: invalid base URL ({type(exc).__name__})"
            ) from None
        if not url.is_absolute_url:
            raise ConfigurationError(f"{service_name}: base URL must be absolute (scheme and host)")
        if url.userinfo:
            # The services authenticate with a key; the transport refuses URL credentials
            # with an error quoting the whole URL, password included.
            raise ConfigurationError(
                f"{service_name}: the base URL must not carry a user name or password "
                "(give the key in the service's API key setting)"
            )
        # Hidden too: for a webhook the URL itself is the credential.
        self._base = Secret(url)
        self.timeout_seconds = float(timeout_seconds)
        self.retry = retry
        self._transport = transport
        self._use_aiohttp = use_aiohttp
        self._max_connections = max_connections
        self._sleep: SleepFn = sleep or asyncio.sleep
        self._on_retry = on_retry
        self._rng = rng
        self._pool: httpx.AsyncBaseTransport | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        # Both hold secrets (a webhook URL, the auth header), hence the Secret wrappers.
        self._urls: Secret[dict[tuple[str, Any], httpx.URL]] = Secret({})
        self._prepared_headers: Secret[tuple[dict[str, str], httpx.Headers] | None] = Secret(None)
        self._timeout_extension = httpx.Timeout(self.timeout_seconds).as_dict()

    @property
    def _base_url(self) -> httpx.URL:
        return self._base.reveal()

    # -- hooks for subclasses -------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a request. Override per service."""
        return {}

    def _secrets(self) -> list[str]:
        """Strings that must never appear in errors or logs. Override to add more."""
        return [self._api_key.reveal()] if self._api_key else []

    def _display_target(self, method: str, url: httpx.URL) -> str:
        """How a request is named in errors and logs: method and path, no query (query
        strings may carry names users consider private, and never help debugging much)."""
        return f"{method} {url.path}"

    @property
    def display_base_url(self) -> str:
        return redact(str(self._base_url), self._secrets())

    # -- lifecycle ------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"{type(self).__name__}(service={self.service_name!r}, base_url={self.display_base_url!r})"

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        pool, self._pool, self._pool_loop = self._pool, None, None
        if pool is not None:
            await pool.aclose()

    def _build_transport(self) -> httpx.AsyncBaseTransport | None:
        if self._transport is not None:
            return self._transport
        limits = httpx.Limits(
            max_connections=self._max_connections,
            max_keepalive_connections=self._max_connections,
        )
        if self._use_aiohttp:
            from httpx_aiohttp import AiohttpTransport

            return AiohttpTransport(limits=limits)
        return httpx.AsyncHTTPTransport(limits=limits)

    def _get_pool(self) -> httpx.AsyncBaseTransport:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._pool_loop is not loop:
            # Connections belong to the loop that opened them; a client reused from a new
            # loop (asyncio.run per Dagster op) must start a fresh pool. The old one cannot
            # be closed from here: its loop is gone.
            logger.debug("%s: event loop changed, opening a new connection pool", self.service_name)
            self._pool = None
        if self._pool is None:
            self._pool = self._build_transport()
            self._pool_loop = loop
        return self._pool

    # -- requests -------------------------------------------------------------------

    def _url(self, path: str, params: Mapping[str, Any] | None = None) -> httpx.URL:
        """The URL of ``path`` joined onto the base URL, with ``params`` as its query; built
        once per distinct (path, params) and then reused (``httpx.URL`` is immutable)."""
        if params is None:
            query = None
            key: tuple[str, Any] = (path, None)
        else:
            query = httpx.QueryParams(params)
            key = (path, tuple((name, tuple(query.get_list(name))) for name in query))
        urls = self._urls.reveal()
        url = urls.get(key)
        if url is None:
            url = self._join_url(path, query)
            if len(urls) >= _URL_CACHE_SIZE:
                urls.clear()
            urls[key] = url
        return url

    def _join_url(self, path: str, query: httpx.QueryParams | None) -> httpx.URL:
        """Join ``path`` onto the base URL by appending (httpx's own base_url merging would
        put a trailing slash after a query string, which breaks webhook URLs). ``query``,
        when given, replaces the base URL's query, as ``httpx.Request(params=...)`` does.
        One URL parse in all, where joining and then passing ``params=`` took two."""
        base = self._base_url
        changes: dict[str, Any] = {}
        if path:
            changes["path"] = f"{base.path.rstrip('/')}/{path.lstrip('/')}"
        if query is not None:
            changes["params"] = query
        return base.copy_with(**changes) if changes else base

    def _headers(
        self, headers: Mapping[str, str] | None, idempotency_header: tuple[str, str] | None
    ) -> httpx.Headers:
        """The default headers, then the auth headers, then ``headers``, then the
        idempotency header. Defaults plus auth are merged once and reused for as long as
        ``_auth_headers()`` keeps answering the same."""
        auth = self._auth_headers()
        prepared = self._prepared_headers.reveal()
        if prepared is None or prepared[0] != auth:
            base = httpx.Headers(_DEFAULT_HEADERS)
            base.update(auth)
            prepared = (dict(auth), base)
            self._prepared_headers = Secret(prepared)
        if not headers and idempotency_header is None:
            return prepared[1]  # Request copies it: sharing is safe
        merged = httpx.Headers(prepared[1])
        if headers:
            merged.update(headers)
        if idempotency_header is not None:
            merged[idempotency_header[0]] = idempotency_header[1]
        return merged

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets())

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_header: tuple[str, str] | None = None,
        expected: Container[int] = DEFAULT_EXPECTED,
    ) -> httpx.Response:
        """Send one logical request, retrying transient failures; return the response whose
        status is in ``expected`` or raise the typed error.

        Retried: timeouts, connection failures, 408, 429, 500/502/503/504 and a 409 whose
        body code is REQUEST_IN_PROGRESS (the idempotent original is still running, so
        asking again later yields its result). The idempotency header, when given, is the
        same on every attempt: that is what makes retrying a POST safe.
        """
        method = method.upper()
        url = self._url(path, params)
        attempt = 0
        while True:
            started = time.perf_counter()
            error: ServiceError
            try:
                response = await self._send_once(
                    method,
                    url,
                    json=json,
                    content=content,
                    headers=headers,
                    idempotency_header=idempotency_header,
                )
            except TransientServiceError as exc:
                error = exc
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "%s %s failed after %.3fs (attempt %d): %s",
                        self.service_name,
                        self._display_target(method, url),
                        time.perf_counter() - started,
                        attempt + 1,
                        error.code,
                    )
            else:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "%s %s -> %d in %.3fs (attempt %d)",
                        self.service_name,
                        self._display_target(method, url),
                        response.status_code,
                        time.perf_counter() - started,
                        attempt + 1,
                    )
                if response.status_code in expected:
                    return response
                error = error_from_response(
                    response,
                    service=self.service_name,
                    target=self._display_target(method, url),
                    secrets=self._secrets(),
                )
            # Only failures get this far: the target is named for logs and errors only.
            target = self._display_target(method, url)
            if not error.retryable or attempt >= self.retry.max_retries:
                if error.retryable:
                    logger.warning(
                        "%s %s: giving up after %d attempts: %s",
                        self.service_name,
                        target,
                        attempt + 1,
                        error,
                    )
                raise error
            retry_after = error.retry_after if isinstance(error, TransientServiceError) else None
            delay = backoff_delay(attempt, self.retry, retry_after=retry_after, rng=self._rng)
            attempt += 1
            logger.warning(
                "%s %s: %s; retry %d/%d in %.2fs",
                self.service_name,
                target,
                error,
                attempt,
                self.retry.max_retries,
                delay,
            )
            if self._on_retry is not None:
                outcome = self._on_retry(attempt, error, delay)
                if inspect.isawaitable(outcome):
                    await outcome
            await self._sleep(delay)

    async def _send_once(
        self,
        method: str,
        url: httpx.URL,
        *,
        json: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        idempotency_header: tuple[str, str] | None,
    ) -> httpx.Response:
        """One attempt, bounded by ``timeout_seconds`` even on transports that ignore
        httpx's timeouts (ASGITransport does), with transport failures made typed. The
        body is read before returning, so the connection goes back to the pool here."""
        pool = self._get_pool()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                request = httpx.Request(
                    method,
                    url,
                    json=json,
                    content=content,
                    headers=self._headers(headers, idempotency_header),
                    extensions={"timeout": self._timeout_extension},
                )
                response = await pool.handle_async_request(request)
                response.request = request
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                return response
        except TimeoutError:
            raise self._transport_error(
                RequestTimeout, method, url, f"no answer within {self.timeout_seconds:g}s"
            ) from None
        except (httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ConnectError) as exc:
            raise self._transport_error(
                ServiceUnavailable, method, url, self._describe(exc)
            ) from None
        except httpx.TimeoutException as exc:
            raise self._transport_error(RequestTimeout, method, url, self._describe(exc)) from None
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            target = self._display_target(method, url)
            raise PermanentServiceError(
                f"{self.service_name} {target} could not be sent: {self._describe(exc)}",
                service=self.service_name,
            ) from None
        except httpx.TransportError as exc:
            # Read/write errors, a server that hung up: the next attempt usually works.
            raise self._transport_error(
                ServiceUnavailable, method, url, self._describe(exc)
            ) from None

    def _describe(self, exc: BaseException) -> str:
        text = str(exc)
        return self._redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)

    def _transport_error(
        self, cls: type[TransientServiceError], method: str, url: httpx.URL, reason: str
    ) -> TransientServiceError:
        target = self._display_target(method, url)
        return cls(
            self._redact(f"{self.service_name} {target}: {reason}"), service=self.service_name
        )

    async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """``request`` and decode a JSON body; a body that is not JSON is UnexpectedResponse."""
        response = await self.request(method, path, **kwargs)
        return self.json_of(response, method)

    def json_of(self, response: httpx.Response, method: str) -> Any:
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            target = self._display_target(method, response.request.url)
            raise UnexpectedResponse(
                f"{self.service_name} {target} answered {response.status_code} without a JSON body",
                status=response.status_code,
                service=self.service_name,
            ) from None
