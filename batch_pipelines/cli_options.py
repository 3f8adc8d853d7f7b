"""Options and helpers shared by every `batch-pipelines` command group."""

from __future__ import annotations

import click

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

    from batch_pipelines.resources import REQUIRE_SERVICES_ENV, missing_production_settings
    from batch_pipelines.store.batch_store import BatchStore

    if not database_url and missing_production_settings(os.environ):
        raise click.UsageError(
            f"{REQUIRE_SERVICES_ENV} is set, so the embedded SQLite store is refused: "
            "give --database-url or set BATCH_PIPELINES_DATABASE_URL"
        )
    return BatchStore(database_url or None)
