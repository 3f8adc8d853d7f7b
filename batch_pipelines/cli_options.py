"""Options and helpers shared by every `batch-pipelines` command group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from batch_pipelines.core.errors import (
    BatchPipelinesError,
    ConfigurationError,
    UnexpectedError,
    hide_secrets,
)
from batch_pipelines.core.pages import MAX_PAGE_SIZE

# The distribution whose version `--version` prints.
PACKAGE = "batch_pipelines"
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}
_DEBUG = "batch_pipelines.debug"


def debugging() -> bool:
    """Whether the running command was given the global ``--debug`` (show tracebacks)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.meta.get(_DEBUG))


def dagster_instance(*, required: bool = True) -> Any:
    """The project's Dagster instance (``DAGSTER_HOME``) for a command that records or reads
    runs; None when it is optional and unset.

    The top-level command points ``DAGSTER_HOME`` at the project's instance before every
    command (``batch_pipelines.instance.use_project_instance``), so only a command group
    invoked on its own (embedded in another click program, or a test) can find it unset: a
    required instance is then one coded line, never Dagster's traceback."""
    import os

    if not os.environ.get("DAGSTER_HOME", "").strip():
        if not required:
            return None
        raise cli_error(
            ConfigurationError(
                "DAGSTER_HOME is not set: the command records its work on the project's "
                "Dagster instance (run it as .venv/bin/batch-pipelines from the project "
                "folder, or export DAGSTER_HOME)"
            )
        )
    import dagster as dg

    return dg.DagsterInstance.get()


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    ctx.meta[_DEBUG] = value


debug_option = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="Show the traceback of an error instead of its one-line message.",
)


class ErrorReportingGroup(click.Group):
    """The top-level group: every error that escapes a command becomes one line with its
    code (exit 1) unless ``--debug`` is given. Project errors keep their code; anything
    else is BP-UNEXPECTED with its type and its first line, credentials hidden."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get(_DEBUG):
                raise
            raise click.ClickException(str(as_project_error(exc))) from None


def as_project_error(exc: Exception) -> BatchPipelinesError:
    """``exc`` as a project error: itself, or BP-UNEXPECTED saying its type and the first
    line of its text, with URL credentials and secret parameters hidden."""
    if isinstance(exc, BatchPipelinesError):
        return exc
    first = str(exc).strip().split("\n", 1)[0]
    detail = f": {hide_secrets(first, limit=200)}" if first else ""
    return UnexpectedError(
        f"unexpected {type(exc).__name__}{detail} (run with --debug for the traceback)"
    )


# Listings show 1 to MAX_PAGE_SIZE entries at a time, as the seeds' list calls allow.
PAGE_SIZE = click.IntRange(1, MAX_PAGE_SIZE)
OFFSET = click.IntRange(min=0)
PAGE = click.IntRange(min=1)


def format_counts(counts: dict[str, int]) -> str:
    """``FINISHED 9, FAILED 3`` for a status-count mapping; ``-`` when there is none."""
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "-"


def cli_group(**kwargs: Any) -> Callable[[Callable[..., Any]], click.Group]:
    """``click.group`` with ``-h`` as ``--help`` and ``--version``: the top-level command
    and every subgroup are made with it, so each answers both the same way."""

    def decorate(f: Callable[..., Any]) -> click.Group:
        f = click.version_option(package_name=PACKAGE, message="%(prog)s %(version)s")(f)
        return click.group(context_settings=CONTEXT_SETTINGS, **kwargs)(f)

    return decorate


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")

database_url_option = click.option(
    "--database-url",
    envvar="BATCH_PIPELINES_DATABASE_URL",
    default="",
    show_envvar=True,
    help="Store URL (sqlite:///PATH or postgresql://...); empty: the embedded SQLite file.",
)


def open_store(database_url: str):
    """The store at ``database_url`` (the embedded SQLite file when empty, unless the
    deployment requires real services: then the URL must be given)."""
    import os

    from batch_pipelines.resources import REQUIRE_SERVICES_ENV, real_services_required
    from batch_pipelines.store.batch_store import BatchStore

    if not database_url and real_services_required(os.environ):
        raise click.UsageError(
            f"{REQUIRE_SERVICES_ENV} is set, so the embedded SQLite store is refused: "
            "give --database-url or set BATCH_PIPELINES_DATABASE_URL"
        )
    return BatchStore(database_url or None)


def cli_error(exc: BatchPipelinesError) -> Exception:
    """How every command reports a project error: its code and message on one line (exit 1,
    no traceback), the same in every command group, so scripts can match on the code. With
    the global ``--debug`` it is the error itself, so its traceback shows."""
    if debugging():
        return exc
    return click.ClickException(str(exc))
