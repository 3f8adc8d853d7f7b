"""The per-role workflow: its steps directly, and the asset materialized on an ephemeral
instance against the model simulator (failures injected with its FaultPlan)."""

import asyncio

import dagster as dg
import pytest

from batch_pipelines.core.backoff import RetryPolicy
from batch_pipelines.metadata import STANDARD_CHECKS
from batch_pipelines.resources import BatchStoreResource, ModelsResource
from batch_pipelines.role_onboarding.assets import role_onboarding
from batch_pipelines.role_onboarding.resources import RoleOnboardingSettings
from batch_pipelines.role_onboarding.store import RoleOnboardingStore
from batch_pipelines.role_onboarding.workflow import (
    RoleInput,
    StepFailed,
    resolve_taxonomy,
    run_role_workflow,
)
from batch_pipelines.simulators.embedded import model_client
from batch_pipelines.simulators.faults import FaultPlan
from batch_pipelines.simulators.models import ModelSimulator
from batch_pipelines.store.batch_store import BatchStore
from batch_pipelines_tests.test_metadata import assert_standard_metadata

ROLE = RoleInput(
    partition_key="acme/claims-adjuster",
    role_name="Claims Adjuster",
    draup_role_name="Claims Handler",
)


def _run(role, sim, published):
    async def go():
        client = model_client(sim, retry=RetryPolicy(max_retries=0))
        async with client:
            return await run_role_workflow(
                role,
                client=client,
                model="sim-large",
                publish=lambda r: published.append(r) or "cr-1",
                run_ref="t",
            )

    return asyncio.run(go())


def test_the_workflow_runs_every_step_in_order_and_bills_each_model_call():
    sim, published = ModelSimulator(), []
    result = _run(ROLE, sim, published)
    assert result.steps == [
        "validate_input", "resolve_taxonomy", "gather_documents", "ai_assessment", "enhancement_workflows",
        "publish_dashboard",
    ]  # fmt: skip
    assert result.taxonomy == resolve_taxonomy(ROLE) and result.taxonomy.name == "Claims Handler"
    assert result.assessment and set(result.enhancements) == {"skills_enrichment", "career_paths"}
    assert sim.stats()["billed_calls"] == 3 == len(result.costs)
    assert result.cost > 0 and published == [result]


def test_skipping_enhancement_workflows_makes_one_model_call():
    sim = ModelSimulator()
    role = RoleInput(
        partition_key="acme/actuary", role_name="Actuary", skip_enhancement_workflows=True
    )
    result = _run(role, sim, [])
    assert "enhancement_workflows" not in result.steps and sim.stats()["billed_calls"] == 1


def test_a_model_service_error_fails_the_ai_assessment_as_transient():
    sim = ModelSimulator(faults=FaultPlan(server_error_rate=1.0))
    with pytest.raises(StepFailed) as failed:
        _run(ROLE, sim, [])
    assert failed.value.step == "ai_assessment" and failed.value.transient
    assert str(failed.value).startswith("[BP-ROLE-STEP] ai_assessment: ")


def test_a_role_name_of_another_partition_fails_validation_for_good():
    with pytest.raises(StepFailed) as failed:
        _run(RoleInput(partition_key="acme/actuary", role_name="Underwriter"), ModelSimulator(), [])
    assert (failed.value.step, failed.value.transient) == ("validate_input", False)


def _materialize(tmp_path, instance, partition, config, settings=None):
    instance.add_dynamic_partitions("role", [partition])
    return dg.materialize(
        [role_onboarding],
        partition_key=partition,
        run_config={"ops": {"role_onboarding": {"config": config}}},
        instance=instance,
        resources={
            "batch_store": BatchStoreResource(database_url=f"sqlite:///{tmp_path / 'store.db'}"),
            "models": ModelsResource(),
            "role_onboarding_settings": settings
            or RoleOnboardingSettings(dashboard_base_url="https://app.example"),
        },
        raise_on_error=False,
    )


def _metadata(result):
    (mat,) = result.asset_materializations_for_node("role_onboarding")
    return {k: v.value for k, v in mat.metadata.items()}


def test_materializing_a_role_publishes_its_dashboard_and_reports_steps_and_cost(tmp_path):
    with dg.instance_for_test() as instance:
        result = _materialize(tmp_path, instance, "acme/actuary", {"role_name": "Actuary"})
        assert result.success
        meta = _metadata(result)
        (mat,) = result.asset_materializations_for_node("role_onboarding")
        assert_standard_metadata(mat.metadata)
        assert isinstance(mat.metadata["dashboard_url"], dg.UrlMetadataValue)
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert meta["dashboard_url"] == "https://app.example/dashboard/roles/cr-1"
    assert meta["steps"][-1] == "publish_dashboard" and meta["cost"] > 0 and meta["tokens"] > 0
    assert (meta["units_total"], meta["units_succeeded"], meta["success_rate"]) == (1, 1, 1.0)
    assert {name: e.passed for name, e in checks.items()} == dict.fromkeys(STANDARD_CHECKS, True)
    assert {e.metadata["partition"].value for e in checks.values()} == {"acme/actuary"}
    assert RoleOnboardingStore(BatchStore(f"sqlite:///{tmp_path / 'store.db'}")).get_dashboard(
        "acme/actuary"
    )


def test_a_ready_role_is_not_redone_unless_force_rerun(tmp_path):
    with dg.instance_for_test() as instance:
        assert _materialize(tmp_path, instance, "acme/actuary", {"role_name": "Actuary"}).success
        again = _metadata(_materialize(tmp_path, instance, "acme/actuary", {}))
        forced = _metadata(_materialize(tmp_path, instance, "acme/actuary", {"force_rerun": True}))
    assert again["already_ready"] is True and again["steps"] == [] and again["cost"] == 0
    assert (again["units_total"], again["units_skipped"]) == (1, 1)
    assert (
        forced["steps"][-1] == "publish_dashboard"
        and forced["dashboard_url"] == again["dashboard_url"]
    )


def test_an_injected_assessment_failure_is_retried_then_fails_the_run_naming_the_step(tmp_path):
    settings = RoleOnboardingSettings(simulated_assessment_failures="actuary")
    with dg.instance_for_test() as instance:
        result = _materialize(
            tmp_path, instance, "acme/actuary", {"role_name": "Actuary", "attempt": 1}, settings
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        restarts = [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
        second = _materialize(
            tmp_path, instance, "acme/actuary", {"role_name": "Actuary", "attempt": 2}, settings
        )
    user_failure = failure.step_failure_data.user_failure_data
    assert user_failure.description.startswith("acme/actuary failed at ai_assessment: ")
    assert user_failure.metadata["step"].value == "ai_assessment"
    assert len(restarts) == 2  # the retry policy tried three times in all
    assert second.success


def test_an_unknown_role_without_a_name_fails_at_validation_without_retries(tmp_path):
    with dg.instance_for_test() as instance:
        result = _materialize(tmp_path, instance, "acme/ghost", {})
        restarts = [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    assert not result.success and restarts == []
