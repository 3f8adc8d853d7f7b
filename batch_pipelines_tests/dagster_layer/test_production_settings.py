"""A deployment that requires real services never falls back to the embedded defaults."""

from __future__ import annotations

import dagster as dg
import pytest

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.resources import (
    PRODUCTION_SETTINGS,
    REQUIRE_SERVICES_ENV,
    missing_production_settings,
)

EVERYTHING = {name: f"value-of-{name.lower()}" for name in PRODUCTION_SETTINGS}


def test_without_the_flag_nothing_is_required() -> None:
    assert missing_production_settings({}) == []
    assert missing_production_settings({REQUIRE_SERVICES_ENV: "false"}) == []


@pytest.mark.parametrize("flag", ["1", "true", "YES", " on "])
def test_with_the_flag_every_unset_or_blank_setting_is_named(flag: str) -> None:
    assert missing_production_settings({REQUIRE_SERVICES_ENV: flag}) == list(PRODUCTION_SETTINGS)
    partial = {**EVERYTHING, "MODELS_BASE_URL": "  ", REQUIRE_SERVICES_ENV: flag}
    del partial["RISK_MODELER_API_KEY"]
    assert missing_production_settings(partial) == ["RISK_MODELER_API_KEY", "MODELS_BASE_URL"]
    assert missing_production_settings({**EVERYTHING, REQUIRE_SERVICES_ENV: flag}) == []


def test_a_flag_that_is_neither_true_nor_false_is_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match=REQUIRE_SERVICES_ENV):
        missing_production_settings({REQUIRE_SERVICES_ENV: "prod"})


def test_the_code_location_refuses_to_load_and_lists_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from batch_pipelines.definitions import defs

    for name in PRODUCTION_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(REQUIRE_SERVICES_ENV, "true")
    monkeypatch.setenv("RISK_MODELER_BASE_URL", "https://api-euw1.rms.com")
    with pytest.raises(ConfigurationError) as info:
        defs()
    assert "RISK_MODELER_BASE_URL" not in info.value.details["missing"]
    assert info.value.details["missing"] == [
        n for n in PRODUCTION_SETTINGS if n != "RISK_MODELER_BASE_URL"
    ]
    assert "https://api-euw1.rms.com" not in str(info.value)


def test_the_cli_refuses_the_embedded_store_when_real_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from batch_pipelines.cli import main

    monkeypatch.delenv("BATCH_PIPELINES_DATABASE_URL", raising=False)
    monkeypatch.setenv(REQUIRE_SERVICES_ENV, "1")
    result = CliRunner().invoke(main, ["docs", "list"])
    assert result.exit_code == 2
    assert REQUIRE_SERVICES_ENV in result.output and "--database-url" in result.output


def test_the_cli_resolves_the_same_resource_factories_as_the_code_location(monkeypatch):
    from batch_pipelines.document_ai.resources import document_ai_settings
    from batch_pipelines.resources import models_resource, resolved

    monkeypatch.setenv("MODELS_BASE_URL", "https://models.example.invalid")
    monkeypatch.setenv("MODELS_API_KEY", "sk-test-secret")
    monkeypatch.setenv("DOCUMENT_AI_VALIDATOR_MODEL", "judge-1")
    monkeypatch.delenv("DOCUMENT_AI_EMBEDDING_MODEL", raising=False)
    declared = document_ai_settings()
    assert isinstance(declared.validator_model, dg.EnvVar)  # the UI shows where it comes from

    models = resolved(models_resource())
    settings = resolved(declared)
    assert (models.base_url, models.api_key) == ("https://models.example.invalid", "sk-test-secret")
    assert settings.validator_model == "judge-1"
    assert settings.embedding_model == type(settings)().embedding_model  # unset: the default


def test_a_variable_that_does_not_fit_its_field_is_a_configuration_error_naming_the_variable(
    monkeypatch,
):
    from batch_pipelines.resources import resolved
    from batch_pipelines.role_onboarding.resources import default_settings

    monkeypatch.setenv("ROLE_ONBOARDING_SIMULATED_MODEL_LATENCY_MS", "fast-please")
    with pytest.raises(ConfigurationError) as raised:
        resolved(default_settings())
    message = str(raised.value)
    assert (
        "ROLE_ONBOARDING_SIMULATED_MODEL_LATENCY_MS" in message
        and "cannot be coerced into an int" in message
    )
    assert "fast-please" not in message and "Stack Trace" not in message


def test_a_real_risk_modeler_without_a_data_bridge_url_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from batch_pipelines.definitions import defs

    for name in (*PRODUCTION_SETTINGS, REQUIRE_SERVICES_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RISK_MODELER_BASE_URL", "https://api-euw1.rms.com")
    with pytest.raises(ConfigurationError) as info:
        defs()
    assert info.value.details["missing"] == ["RISK_MODELING_DATABRIDGE_URL"]
    assert "RISK_MODELING_DATABRIDGE_URL" in str(info.value)
    assert "https://api-euw1.rms.com" not in str(info.value)

    monkeypatch.setenv("RISK_MODELING_DATABRIDGE_URL", "mssql+pyodbc://databridge/edms")
    assert defs().resolve_job_def("load_workbook")


def test_the_simulators_database_is_data_bridge_only_for_the_simulated_risk_modeler(tmp_path):
    from batch_pipelines.resources import RiskModelerResource
    from batch_pipelines.risk_modeling.resources import RiskModelingSettings

    simulated = RiskModelerResource(simulator_db=str(tmp_path / "sim.db"))
    assert RiskModelingSettings().databridge(simulated) == f"sqlite:///{tmp_path / 'sim.db'}"
    real = RiskModelerResource(base_url="https://api-euw1.rms.com", api_key="k")
    with pytest.raises(ConfigurationError, match="RISK_MODELING_DATABRIDGE_URL"):
        RiskModelingSettings().databridge(real)
    configured = RiskModelingSettings(databridge_url="mssql+pyodbc://databridge/edms")
    assert configured.databridge(real) == "mssql+pyodbc://databridge/edms"
