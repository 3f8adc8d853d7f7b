"""`batch-pipelines roles ...`."""

from __future__ import annotations

import click


@click.group()
def roles() -> None:
    """Role onboarding batches: submit, status, retry failed roles."""
