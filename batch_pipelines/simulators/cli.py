"""``simulate``: run a simulator as a local HTTP server.

The same apps the tests drive in-process can be served, so the Dagster UI, the CLI and a
benchmark against real sockets all see the same behaviour. Fault flags override ``SIM_*``
environment variables (see ``FaultPlan.from_env_mapping``), which override the defaults.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from batch_pipelines.cli_options import cli_group
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.instance import EMBEDDED_RISK_MODELER_DB
from batch_pipelines.simulators.faults import FaultPlan


def _fault_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--host", default="127.0.0.1", show_default=True),
        click.option("--port", type=int, required=True),
        click.option("--seed", type=int, default=None, help="Seed of the fault draws."),
        click.option(
            "--latency-ms", type=float, default=None, help="Latency added to every request."
        ),
        click.option(
            "--server-error-rate", type=float, default=None, help="Share of 500/502/503 answers."
        ),
        click.option("--rate-limit-rate", type=float, default=None, help="Share of 429 answers."),
        click.option(
            "--retry-after", type=float, default=None, help="Retry-After seconds on 429s."
        ),
        click.option(
            "--slow-rate", type=float, default=None, help="Share of accepted-then-slow answers."
        ),
        click.option("--slow-seconds", type=float, default=None, help="Delay of a slow answer."),
        click.option(
            "--workflow-failure-rate",
            type=float,
            default=None,
            help="Share of workflows ending FAILED.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _plan(
    *,
    seed: int | None,
    latency_ms: float | None,
    server_error_rate: float | None,
    rate_limit_rate: float | None,
    retry_after: float | None,
    slow_rate: float | None,
    slow_seconds: float | None,
    workflow_failure_rate: float | None,
) -> FaultPlan:
    try:
        return FaultPlan.from_env_mapping(os.environ).with_overrides(
            seed=seed,
            latency_seconds=None if latency_ms is None else latency_ms / 1000.0,
            server_error_rate=server_error_rate,
            rate_limit_rate=rate_limit_rate,
            retry_after_seconds=retry_after,
            slow_rate=slow_rate,
            slow_seconds=slow_seconds,
            workflow_failure_rate=workflow_failure_rate,
        )
    except ConfigurationError as exc:
        raise click.UsageError(exc.message) from None


def serve(app: Any, host: str, port: int) -> None:
    """Run ``app`` with uvicorn, using uvloop and httptools when they are installed."""
    import uvicorn  # imported here: only serving needs it

    extra: dict[str, str] = {}
    if importlib.util.find_spec("uvloop") is not None:
        extra["loop"] = "uvloop"
    if importlib.util.find_spec("httptools") is not None:
        extra["http"] = "httptools"
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, **extra)


@cli_group()
def simulate() -> None:
    """Run a simulator of an outside service as a local HTTP server."""


# The state of a served simulator (the embedded one's is EMBEDDED_RISK_MODELER_DB).
SERVED_RISK_MODELER_DB = Path(".data/simulators/risk_modeler.sqlite")


def reset_risk_modeler_state(db_path: Path) -> None:
    """Empty the simulator's state in ``db_path`` (datasources, portfolios, workflows, ...),
    so a workbook can be loaded again after the batch store was reset; ids are never reused."""
    from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator

    sim = RiskModelerSimulator(db_path)
    try:
        sim.reset()
    finally:
        sim.close()


@simulate.command("reset-risk-modeler")
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=EMBEDDED_RISK_MODELER_DB,
    show_default=True,
    help=f"The simulator's SQLite file ({SERVED_RISK_MODELER_DB} for `simulate risk-modeler`).",
)
def reset_risk_modeler(db_path: Path) -> None:
    """Forget everything the Risk Modeler simulator holds (by default the embedded one the
    Dagster code location uses). Reset it whenever you reset the batch store, or reloading
    a workbook fails with "EDM ... already exists"."""
    if not db_path.is_file():
        click.echo(f"{db_path}: no simulator state, nothing to reset", err=True)
        return
    reset_risk_modeler_state(db_path)
    click.echo(f"{db_path}: risk-modeler simulator state reset", err=True)


@simulate.command("risk-modeler")
@_fault_options
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=SERVED_RISK_MODELER_DB,
    show_default=True,
    help="SQLite file holding the simulator's state (survives restarts).",
)
@click.option(
    "--reset",
    is_flag=True,
    help="Forget the state kept in --db from earlier runs before serving.",
)
@click.option(
    "--api-key",
    envvar="RISK_MODELER_API_KEY",
    default="sim-key",
    show_default=True,
    help="Expected Authorization header (default from RISK_MODELER_API_KEY).",
)
@click.option(
    "--workflow-seconds",
    type=float,
    nargs=3,
    default=(0.05, 0.05, 0.1),
    show_default=True,
    help="Seconds a workflow spends QUEUED, PENDING and RUNNING.",
)
def risk_modeler(
    host: str,
    port: int,
    db_path: Path,
    api_key: str,
    workflow_seconds: tuple[float, float, float],
    reset: bool,
    **faults: Any,
) -> None:
    """Moody's Risk Modeler (datasources, portfolios, workflows)."""
    from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator

    if reset:
        reset_risk_modeler_state(db_path)
    sim = RiskModelerSimulator(
        db_path, api_key=api_key, faults=_plan(**faults), workflow_seconds=workflow_seconds
    )
    click.echo(f"risk-modeler simulator on http://{host}:{port} (state in {db_path})", err=True)
    serve(sim.app, host, port)


@simulate.command("models")
@_fault_options
@click.option(
    "--api-key",
    envvar="MODELS_API_KEY",
    default="sim-key",
    show_default=True,
    help="Expected bearer token (default from MODELS_API_KEY).",
)
@click.option(
    "--omit-usage-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of answers without a usage block.",
)
def models(host: str, port: int, api_key: str, omit_usage_rate: float, **faults: Any) -> None:
    """An OpenAI-compatible model endpoint (chat completions, embeddings)."""
    from batch_pipelines.simulators.models import ModelSimulator

    sim = ModelSimulator(api_key=api_key, faults=_plan(**faults), omit_usage_rate=omit_usage_rate)
    click.echo(f"models simulator on http://{host}:{port}/v1", err=True)
    serve(sim.app, host, port)


@simulate.command("teams")
@_fault_options
def teams(host: str, port: int, **faults: Any) -> None:
    """A Microsoft Teams Workflows webhook (POST /webhook/<name>)."""
    from batch_pipelines.simulators.teams import TeamsSimulator

    sim = TeamsSimulator(faults=_plan(**faults))
    click.echo(f"teams simulator on http://{host}:{port}/webhook/<name>", err=True)
    serve(sim.app, host, port)


@simulate.command("config-service")
@_fault_options
@click.option(
    "--api-key",
    envvar="CONFIG_SERVICE_API_KEY",
    default="config-service-simulator-key",
    show_default=True,
)
def config_service(host: str, port: int, api_key: str, **faults: Any) -> None:
    """The config service's preference API (/v1/preferences, /v1/users/<id>/preferences/<feature>)."""
    from batch_pipelines.simulators.config_service import ConfigServiceSimulator

    sim = ConfigServiceSimulator(api_key=api_key, faults=_plan(**faults))
    click.echo(f"config service simulator on http://{host}:{port}", err=True)
    serve(sim.app, host, port)


if __name__ == "__main__":
    simulate()
