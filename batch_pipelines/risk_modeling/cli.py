"""``config`` command group: check a master configuration workbook before loading it.

Analysts run ``batch-pipelines config validate FILE`` while preparing a cycle; it needs no
database, Dagster instance or network, so it works on any laptop. The exit status (0 valid,
1 invalid) makes it usable in scripts and CI; ``--json`` is the machine-readable form
(``{"valid", "errors", "job_counts"}``), whose shape is part of the interface.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from batch_pipelines.cli_options import cli_group, json_option
from batch_pipelines.risk_modeling.workbook import validate_workbook


@cli_group(name="config")
def config() -> None:
    """Risk-modeling master configuration workbooks."""


@config.command(name="validate")
@click.argument("file", type=click.Path(path_type=Path))
@json_option
def validate(file: Path, as_json: bool) -> None:
    """Validate FILE and list every error with its sheet, row and column.

    Exits 0 if the workbook is valid, 1 otherwise. A missing or unreadable FILE is reported
    like any other error rather than as a usage error, so scripts see one contract.
    """
    result = validate_workbook(file)
    if as_json:
        click.echo(json.dumps(result.to_json_dict(), indent=2))
    else:
        if result.valid:
            click.echo(f"{file.name}: valid")
            width = max(len(name) for name in result.job_counts)
            click.echo("Job counts:")
            for name, count in result.job_counts.items():
                click.echo(f"  {name:<{width}}  {count:>6}")
            click.echo(f"  {'Total':<{width}}  {sum(result.job_counts.values()):>6}")
        else:
            count = len(result.issues)
            click.echo(f"{file.name}: invalid, {count} error{'s' if count != 1 else ''}")
            for issue in result.issues:
                click.echo(str(issue))
    raise SystemExit(0 if result.valid else 1)


if __name__ == "__main__":
    config()
