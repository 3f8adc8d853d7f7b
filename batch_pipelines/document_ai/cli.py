"""`batch-pipelines docs ...`."""

from __future__ import annotations

import click


@click.group()
def docs() -> None:
    """Document AI batch jobs: submit, steer and inspect."""
