"""`batch-pipelines jobs ...`."""

from __future__ import annotations

import click


@click.group()
def jobs() -> None:
    """Configured and preference-driven batches: status by user, tenant or feature type."""
