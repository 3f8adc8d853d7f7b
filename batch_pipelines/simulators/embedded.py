"""The embedded default: real clients wired to in-process simulators.

Tests, the demo and the benchmarks use these so that everything runs on a laptop with no
network; production passes real base URLs to the same clients instead.
"""

from __future__ import annotations

from typing import Any

import httpx

from batch_pipelines.clients.models import ModelClient
from batch_pipelines.clients.risk_modeler import RiskModelerClient
from batch_pipelines.clients.teams import TeamsClient
from batch_pipelines.simulators.models import ModelSimulator
from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator
from batch_pipelines.simulators.teams import TeamsSimulator

EMBEDDED_RISK_MODELER_URL = "http://risk-modeler.simulator"
EMBEDDED_MODELS_URL = "http://models.simulator"
EMBEDDED_TEAMS_URL = "http://teams.simulator/webhook/batch-pipelines"


def risk_modeler_client(sim: RiskModelerSimulator, **kwargs: Any) -> RiskModelerClient:
    return RiskModelerClient(
        EMBEDDED_RISK_MODELER_URL, sim.api_key, transport=httpx.ASGITransport(app=sim.app), **kwargs
    )


def model_client(sim: ModelSimulator, *, api_key: str | None = None, **kwargs: Any) -> ModelClient:
    return ModelClient(EMBEDDED_MODELS_URL, api_key, transport=httpx.ASGITransport(app=sim.app), **kwargs)


def teams_client(sim: TeamsSimulator, **kwargs: Any) -> TeamsClient:
    return TeamsClient(EMBEDDED_TEAMS_URL, transport=httpx.ASGITransport(app=sim.app), **kwargs)
