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
    """The store at ``database_url`` (the embedded SQLite file when empty)."""
    from batch_pipelines.store.batch_store import BatchStore

    return BatchStore(database_url or None)
