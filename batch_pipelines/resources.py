"""Dagster resources: how assets, jobs and sensors reach the store and outside services.

Each resource is configured from environment variables through ``dg.EnvVar`` when they are
set, and falls back to the embedded default otherwise (a SQLite file under .data/ and the
in-process simulators), so the same code runs on a laptop and in production.

| env var                          | resource           | embedded default                |
|----------------------------------|--------------------|---------------------------------|
| BATCH_PIPELINES_DATABASE_URL     | BatchStoreResource | sqlite:///.data/batch_pipelines.db |
| RISK_MODELER_BASE_URL / _API_KEY | RiskModelerResource| in-process simulator            |
| MODELS_BASE_URL / MODELS_API_KEY | ModelsResource     | in-process simulator            |
| TEAMS_WEBHOOK_URL                | TeamsResource      | in-process simulator            |

A deployment sets ``BATCH_PIPELINES_REQUIRE_SERVICES=true`` so that a missing variable
stops the code location from loading instead of quietly running on the embedded default
(a batch "finished" against a simulator is worse than no batch).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field, PrivateAttr

from batch_pipelines.clients.models import ModelClient
from batch_pipelines.clients.risk_modeler import RiskModelerClient
from batch_pipelines.clients.teams import TeamsClient
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.core.flags import parse_flag
from batch_pipelines.instance import EMBEDDED_RISK_MODELER_DB
from batch_pipelines.store.batch_store import BatchStore

DATA_DIR = Path(".data")


REQUIRE_SERVICES_ENV = "BATCH_PIPELINES_REQUIRE_SERVICES"
# Where the embedded default stands in for something production must provide: the store,
# the outside services and the risk-modeling SQL sources. (The config service is optional:
# preferences can come from the store.)
PRODUCTION_SETTINGS = (
    "BATCH_PIPELINES_DATABASE_URL",
    "RISK_MODELER_BASE_URL",
    "RISK_MODELER_API_KEY",
    "MODELS_BASE_URL",
    "TEAMS_WEBHOOK_URL",
    "RISK_MODELING_SOURCE_DATABASE_URL",
    "RISK_MODELING_DATABRIDGE_URL",
)


# Settings another setting makes necessary even without BATCH_PIPELINES_REQUIRE_SERVICES:
# with a real Risk Modeler, Data Bridge is its SQL Server, and the embedded default (the
# simulator's own database file) would put every Portfolio Mapping job in ERROR.
REQUIRED_WITH: dict[str, tuple[str, ...]] = {
    "RISK_MODELER_BASE_URL": ("RISK_MODELING_DATABRIDGE_URL",),
}


def real_services_required(env: Mapping[str, str]) -> bool:
    """Whether ``env`` is a deployment's: ``BATCH_PIPELINES_REQUIRE_SERVICES`` set true."""
    return parse_flag(env.get(REQUIRE_SERVICES_ENV), name=REQUIRE_SERVICES_ENV, default=False)


def missing_production_settings(env: Mapping[str, str]) -> list[str]:
    """The production settings ``env`` leaves unset, when it requires real services; none
    otherwise."""
    if not real_services_required(env):
        return []
    return [name for name in PRODUCTION_SETTINGS if not env.get(name, "").strip()]


def missing_companion_settings(env: Mapping[str, str]) -> dict[str, list[str]]:
    """Per set setting of ``REQUIRED_WITH``, the settings it needs that ``env`` leaves unset."""
    missing: dict[str, list[str]] = {}
    for name, needed in REQUIRED_WITH.items():
        unset = [n for n in needed if not env.get(n, "").strip()]
        if env.get(name, "").strip() and unset:
            missing[name] = unset
    return missing


def check_production_settings(env: Mapping[str, str]) -> None:
    """Refuse to load a deployment that requires real services but does not name them all,
    or that names a real service without the settings it needs."""
    if missing := missing_production_settings(env):
        raise ConfigurationError(
            f"{REQUIRE_SERVICES_ENV} is set, so the embedded defaults (SQLite store, simulators, sample "
            f"SQL sources) are refused; set: {', '.join(missing)}",
            details={"missing": missing},
        )
    if companions := missing_companion_settings(env):
        (name, unset), *_ = companions.items()
        raise ConfigurationError(
            f"{name} is set, so the embedded default of {', '.join(unset)} (the simulator's "
            f"database) cannot serve it; set: {', '.join(unset)}",
            details={"missing": [n for needed in companions.values() for n in needed]},
        )


def env_or(name: str, default: str | None = None) -> dg.EnvVar | str | None:
    """``dg.EnvVar(name)`` when the variable is set (so the UI shows where the value comes
    from and never the value), else the embedded default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


ResourceT = TypeVar("ResourceT", bound=dg.ConfigurableResource)


def resolved(resource: ResourceT) -> ResourceT:
    """``resource`` with its ``dg.EnvVar`` fields read now.

    Code outside a Dagster run (the CLI) builds its settings with the same factory as the
    code location and resolves them here, so the CLI and the UI cannot disagree on a
    default or on how a variable is read. A variable that does not fit its field (e.g. a
    word where a number belongs) is a ConfigurationError naming the variable, never its
    value.
    """
    try:
        # The context-manager form: the plain one opens a throwaway Dagster instance and
        # never closes it; when that is garbage-collected it makes an instance closed
        # meanwhile the current one again, and the next Definitions load fails on it.
        with resource.process_config_and_initialize_cm() as ready:
            return ready
    except dg.DagsterInvalidConfigError as exc:
        problems = "; ".join(_config_problem(error.message) for error in exc.errors)
        raise ConfigurationError(f"{type(resource).__name__}: {problems}") from None


def _config_problem(message: str) -> str:
    # Dagster's message carries a stack trace after the reason; keep the reason.
    for line in message.splitlines():
        if "PostProcessingError:" in line:
            return line.split("PostProcessingError:", 1)[1].strip()
    return message.splitlines()[0].strip() if message.strip() else "invalid configuration"


class BatchStoreResource(dg.ConfigurableResource):
    """The batch store; empty URL means the embedded SQLite file."""

    database_url: str = Field(default="", repr=False)  # may hold a password

    _store: BatchStore | None = PrivateAttr(default=None)

    def get_store(self) -> BatchStore:
        if self._store is None:
            self._store = BatchStore(self.database_url or None)
        return self._store


class RiskModelerResource(dg.ConfigurableResource):
    """The Risk Modeler API, or its simulator (SQLite state under .data/) when no URL is set."""

    base_url: str = ""
    api_key: str | None = Field(default=None, repr=False)
    timeout_seconds: float = 60.0
    simulator_db: str = str(EMBEDDED_RISK_MODELER_DB)
    simulator_workflow_seconds: float = 0.5
    # Fault injection in the embedded simulator, for demos and tests of failure handling.
    simulator_workflow_failure_rate: float = 0.0
    simulator_seed: int = 0

    _simulator: Any = PrivateAttr(default=None)

    @property
    def is_simulated(self) -> bool:
        return not self.base_url

    def client(self) -> RiskModelerClient:
        if self.is_simulated:
            from batch_pipelines.simulators.embedded import risk_modeler_client

            return risk_modeler_client(self.simulator(), timeout_seconds=self.timeout_seconds)
        return RiskModelerClient(
            self.base_url, self.api_key, timeout_seconds=self.timeout_seconds, use_aiohttp=True
        )

    def simulator(self):
        """The embedded simulator (one per resource instance; its state is the SQLite file)."""
        from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator

        if self._simulator is None:
            s = self.simulator_workflow_seconds
            from batch_pipelines.simulators.faults import FaultPlan

            faults = FaultPlan(
                seed=self.simulator_seed, workflow_failure_rate=self.simulator_workflow_failure_rate
            )
            self._simulator = RiskModelerSimulator(
                self.simulator_db, workflow_seconds=(s / 4, s / 4, s / 2), faults=faults
            )
        return self._simulator


class ModelsResource(dg.ConfigurableResource):
    """An OpenAI-compatible model service, or its simulator when no URL is set."""

    base_url: str = ""
    api_key: str | None = Field(default=None, repr=False)
    timeout_seconds: float = 120.0

    def client(self) -> ModelClient:
        if not self.base_url:
            from batch_pipelines.simulators.embedded import model_client
            from batch_pipelines.simulators.models import ModelSimulator

            return model_client(ModelSimulator(), timeout_seconds=self.timeout_seconds)
        return ModelClient(
            self.base_url, self.api_key, timeout_seconds=self.timeout_seconds, use_aiohttp=True
        )


class TeamsResource(dg.ConfigurableResource):
    """The Teams channel's Workflows webhook (the URL is the secret), or a recording sink."""

    webhook_url: str = Field(default="", repr=False)  # the URL is the secret

    _simulator: Any = PrivateAttr(default=None)

    def simulator(self):
        """The recording sink used when no webhook is set (one per resource instance)."""
        from batch_pipelines.simulators.teams import TeamsSimulator

        if self._simulator is None:
            self._simulator = TeamsSimulator()
        return self._simulator

    def client(self) -> TeamsClient:
        if not self.webhook_url:
            from batch_pipelines.simulators.embedded import teams_client

            return teams_client(self.simulator())
        return TeamsClient(self.webhook_url)


def models_resource() -> ModelsResource:
    """The model service as the code location declares it: MODELS_BASE_URL and MODELS_API_KEY."""
    return ModelsResource(base_url=env_or("MODELS_BASE_URL", ""), api_key=env_or("MODELS_API_KEY"))


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "batch_store": BatchStoreResource(database_url=env_or("BATCH_PIPELINES_DATABASE_URL", "")),
        "risk_modeler": RiskModelerResource(
            base_url=env_or("RISK_MODELER_BASE_URL", ""), api_key=env_or("RISK_MODELER_API_KEY")
        ),
        "models": models_resource(),
        "teams": TeamsResource(webhook_url=env_or("TEAMS_WEBHOOK_URL", "")),
    }
