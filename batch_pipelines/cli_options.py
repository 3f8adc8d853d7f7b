"""Options and helpers shared by every `batch-pipelines` command group."""

from __future__ import annotations

import click

from batch_pipelines.core.errors import BatchPipelinesError

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


def cli_error(exc: BatchPipelinesError) -> click.ClickException:
    """How every command reports a project error: its code and message on one line (exit 1,
    no traceback), the same in every command group, so scripts can match on the code."""
    return click.ClickException(str(exc))
