"""A whole cycle through Dagster: twelve assets on an ephemeral instance against the simulator.

Covers the Done-when of the family: every batch type reconciles COMPLETED; injected workflow
failures make a batch FAILED with a Teams card; re-materializing resubmits only the failed
jobs and brings it to COMPLETED without touching finished ones; existing analyses wait for
a decision.
"""

import dagster as dg
import pytest

from batch_pipelines.core.statuses import JobStatus
from batch_pipelines.resources import RiskModelerResource
from batch_pipelines.risk_modeling.assets import risk_modeling_assets
from batch_pipelines.risk_modeling.batch_types import BATCH_TYPE_ORDER, BatchType
from batch_pipelines.risk_modeling.cycle_batches import FAMILY, store_cycle_configuration
from batch_pipelines.risk_modeling.demo_cycle import cycle_resources
from batch_pipelines.risk_modeling.jobs import analysis_decisions
from batch_pipelines.risk_modeling.partitions import CYCLES
from batch_pipelines.risk_modeling.sample_source import create_sample_source
from batch_pipelines.risk_modeling.sample_workbook import valid_workbook
from batch_pipelines.risk_modeling.workbook import load_workbook_configuration
from batch_pipelines.store.batch_store import BatchStore
from batch_pipelines_tests.test_metadata import assert_standard_metadata

ANALYSIS_INDEX = BATCH_TYPE_ORDER.index(BatchType.ANALYSIS)
GROUPING_INDEX = BATCH_TYPE_ORDER.index(BatchType.GROUPING)


@pytest.fixture
def cycle(tmp_path):
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    configuration = load_workbook_configuration(valid_workbook().write(tmp_path / "cycle.xlsx"))
    store = BatchStore(store_url)
    name, _ = store_cycle_configuration(store, configuration, source="cycle.xlsx")
    resources = cycle_resources(tmp_path, store_url, workflow_seconds=0.05)
    create_sample_source(resources["risk_modeling"].source_url(), configuration)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(CYCLES.name, [name])
        yield name, store, resources, instance, tmp_path
    store.dispose()


def _materialize(assets, name, resources, instance):
    return dg.materialize(
        assets, partition_key=name, instance=instance, resources=resources, raise_on_error=False
    )


def _batch(store, name, batch_type):
    (batch,) = store.find_batches(family=FAMILY, batch_type=batch_type.value, partition_key=name)
    return batch


def test_a_whole_cycle_reconciles_completed_for_all_twelve_batch_types_and_reports_metadata(cycle):
    name, store, resources, instance, _ = cycle
    result = _materialize(risk_modeling_assets, name, resources, instance)
    assert result.success
    for batch_type in BATCH_TYPE_ORDER:
        batch = _batch(store, name, batch_type)
        assert batch.status.value == "COMPLETED", batch_type
    mats = result.asset_materializations_for_node("risk_modeling__analysis")
    meta = mats[0].metadata
    assert meta["reconciliation_status"].value == "COMPLETED"
    assert_standard_metadata(meta)
    assert meta["units_succeeded"].value == meta["units_total"].value > 0
    assert meta["success_rate"].value == 1.0
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "validation_clean": True,
        "reconciled_completed": True,
        "nothing_failed": True,
        "processed_something": True,
    }
    for evaluation in result.get_asset_check_evaluations():
        assert evaluation.metadata["partition"].value == name


def test_injected_failures_fail_the_batch_notify_teams_and_resubmission_completes_it(cycle):
    name, store, resources, instance, tmp_path = cycle
    upstream = risk_modeling_assets[:ANALYSIS_INDEX]
    analysis_asset = [risk_modeling_assets[ANALYSIS_INDEX]]
    assert _materialize(upstream, name, resources, instance).success

    flaky = dict(resources)
    flaky["risk_modeler"] = RiskModelerResource(
        simulator_db=resources["risk_modeler"].simulator_db,
        simulator_workflow_seconds=0.05,
        simulator_workflow_failure_rate=0.5,
        simulator_seed=0,  # of the six analyses, some fail and some finish
    )
    first = _materialize(analysis_asset, name, flaky, instance)
    batch = _batch(store, name, BatchType.ANALYSIS)
    assert batch.status.value == "FAILED"
    evaluations = {e.check_name: e for e in first.get_asset_check_evaluations()}
    assert evaluations["reconciled_completed"].passed is False, evaluations
    failed = evaluations["nothing_failed"]
    assert failed.passed is False and failed.metadata["units_failed"].value > 0
    (notice,) = [
        e for e in store.batch_events(batch.id) if e["message"] == "Teams notification sent"
    ]
    assert notice["data"]["delivered"] is True
    assert "Analysis batch FAILED" in str(notice["data"]["card"])

    before = {j.id: j for j in store.list_jobs(batch.id)}
    finished_before = {i for i, j in before.items() if j.status == JobStatus.FINISHED}
    failed_before = {i for i, j in before.items() if j.status == JobStatus.FAILED}
    assert failed_before and finished_before

    second = _materialize(analysis_asset, name, resources, instance)
    assert second.success
    after = {j.id: j for j in store.list_jobs(batch.id)}
    assert _batch(store, name, BatchType.ANALYSIS).status.value == "COMPLETED"
    # finished jobs untouched; each failed job kept (skipped) with a new child that finished
    for job_id in finished_before:
        assert after[job_id].status == JobStatus.FINISHED and not after[job_id].skipped
        assert after[job_id].workflow_id == before[job_id].workflow_id
    children = [j for j in after.values() if j.parent_job_id in failed_before]
    assert len(children) == len(failed_before) and all(
        j.status == JobStatus.FINISHED for j in children
    )
    assert all(after[i].skipped for i in failed_before)


def test_existing_analyses_wait_for_a_decision_and_the_decision_job_applies_it(cycle):
    name, store, resources, instance, tmp_path = cycle
    upstream = risk_modeling_assets[: ANALYSIS_INDEX + 1]
    assert _materialize(upstream, name, resources, instance).success
    # A second cycle over the same service: its analyses already exist there.
    configuration = load_workbook_configuration(
        valid_workbook().set_metadata("Cycle Type", "Rerun").write(tmp_path / "b.xlsx")
    )
    second, _ = store_cycle_configuration(store, configuration, source="b.xlsx")
    instance.add_dynamic_partitions(CYCLES.name, [second])
    blocked = dg.materialize(
        [risk_modeling_assets[ANALYSIS_INDEX]],
        partition_key=second,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not blocked.success
    failure = blocked.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "already exist" in failure.description and "analysis_decisions" in failure.description
    assert failure.metadata["existing_analyses"].value
    jobs = store.list_jobs(_batch(store, second, BatchType.ANALYSIS).id)
    keep, redo = jobs[0].key, jobs[1].key
    decided = analysis_decisions.execute_in_process(
        run_config={
            "ops": {
                "apply_analysis_decisions": {
                    "config": {
                        "cycle": second,
                        "decisions": [
                            {
                                "analysis_name": j.key,
                                "decision": "skip" if j.key != redo else "delete_and_resubmit",
                            }
                            for j in jobs
                        ],
                    }
                }
            }
        },
        resources=resources,
        instance=instance,
    )
    assert decided.success
    rerun = dg.materialize(
        [risk_modeling_assets[ANALYSIS_INDEX]],
        partition_key=second,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert rerun.success
    after = {j.key: j for j in store.list_jobs(_batch(store, second, BatchType.ANALYSIS).id)}
    assert after[keep].skipped and after[redo].status == JobStatus.FINISHED
    assert _batch(store, second, BatchType.ANALYSIS).status.value == "COMPLETED"


def test_existing_groups_wait_for_a_decision_and_delete_and_resubmit_recreates_the_group(cycle):
    import asyncio

    name, store, resources, instance, tmp_path = cycle
    assert _materialize(
        risk_modeling_assets[: GROUPING_INDEX + 1], name, resources, instance
    ).success
    # A second cycle over the same service: its analyses and groups already exist there.
    configuration = load_workbook_configuration(
        valid_workbook().set_metadata("Cycle Type", "Rerun").write(tmp_path / "b.xlsx")
    )
    second, _ = store_cycle_configuration(store, configuration, source="b.xlsx")
    instance.add_dynamic_partitions(CYCLES.name, [second])
    grouping = [risk_modeling_assets[GROUPING_INDEX]]
    blocked = _materialize(grouping, second, resources, instance)
    assert not blocked.success
    failure = blocked.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "analysis groups already exist" in failure.description
    assert "batch_type: Grouping" in failure.description
    batch_id = _batch(store, second, BatchType.GROUPING).id
    jobs = store.list_jobs(batch_id)
    assert len(jobs) >= 2
    keep, redo = jobs[0].key, jobs[1].key

    async def group_ids():
        async with resources["risk_modeler"].client() as client:
            return {g["name"]: g["id"] for g in await client.list_analysis_groups()}

    before = asyncio.run(group_ids())
    decided = analysis_decisions.execute_in_process(
        run_config={
            "ops": {
                "apply_analysis_decisions": {
                    "config": {
                        "cycle": second,
                        "batch_type": "Grouping",
                        "decisions": [
                            {
                                "analysis_name": j.key,
                                "decision": "skip" if j.key != redo else "delete_and_resubmit",
                            }
                            for j in jobs
                        ],
                    }
                }
            }
        },
        resources=resources,
        instance=instance,
    )
    assert decided.success
    assert redo not in asyncio.run(group_ids())  # deleted in the Risk Modeler
    assert _materialize(grouping, second, resources, instance).success
    after_ids = asyncio.run(group_ids())
    assert after_ids[keep] == before[keep] and after_ids[redo] != before[redo]
    after = {j.key: j for j in store.list_jobs(batch_id)}
    assert after[keep].skipped and after[redo].status == JobStatus.FINISHED
    assert _batch(store, second, BatchType.GROUPING).status.value == "COMPLETED"


def test_a_finished_job_whose_entity_is_gone_is_resubmitted_and_the_others_are_not(cycle):
    import asyncio

    name, store, resources, instance, _ = cycle
    through_analysis = risk_modeling_assets[: ANALYSIS_INDEX + 1]
    assert _materialize(through_analysis, name, resources, instance).success
    batch = _batch(store, name, BatchType.ANALYSIS)
    jobs = store.list_jobs(batch.id)
    victim = jobs[0]

    async def delete_one():
        async with resources["risk_modeler"].client() as client:
            (found,) = await client.list_analyses(names=[victim.key], is_group=False)
            await client.delete_analysis(found["id"])

    asyncio.run(delete_one())
    assert _materialize([risk_modeling_assets[ANALYSIS_INDEX]], name, resources, instance).success
    after = {j.id: j for j in store.list_jobs(batch.id)}
    children = [j for j in after.values() if j.parent_job_id is not None]
    assert [c.parent_job_id for c in children] == [victim.id]
    assert children[0].status == JobStatus.FINISHED and after[victim.id].skipped
    assert all(not after[j.id].skipped for j in jobs[1:])
    assert _batch(store, name, BatchType.ANALYSIS).status.value == "COMPLETED"


def test_a_failed_batch_blocks_the_next_batch_types_of_the_cycle(cycle):
    name, store, resources, instance, _ = cycle
    flaky = dict(resources)
    flaky["risk_modeler"] = RiskModelerResource(
        simulator_db=resources["risk_modeler"].simulator_db,
        simulator_workflow_seconds=0.05,
        simulator_workflow_failure_rate=1.0,
    )
    result = _materialize(risk_modeling_assets, name, flaky, instance)
    assert not result.success
    assert _batch(store, name, BatchType.EDM_CREATION).status.value == "FAILED"
    # nothing after EDM Creation ran: no batch exists for Portfolio Creation
    assert (
        store.find_batches(
            family=FAMILY, batch_type=BatchType.PORTFOLIO_CREATION.value, partition_key=name
        )
        == []
    )


def test_a_decision_on_an_unknown_analysis_is_final_and_not_retried(cycle):
    name, store, resources, _, _ = cycle
    with dg.instance_for_test(
        overrides={"run_retries": {"enabled": True, "max_retries": 2}}
    ) as instance:
        result = analysis_decisions.execute_in_process(
            run_config={
                "ops": {
                    "apply_analysis_decisions": {
                        "config": {
                            "cycle": name,
                            "decisions": [
                                {"analysis_name": "No Such Analysis", "decision": "skip"}
                            ],
                        }
                    }
                }
            },
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
        assert instance.get_run_by_id(result.run_id).tags["dagster/will_retry"] == "false"
    assert not result.success
    failure = result.failure_data_for_node("apply_analysis_decisions").user_failure_data
    assert "No Such Analysis" in failure.description
    assert failure.metadata["retryable"].value is False
    assert "No Such Analysis" in failure.metadata["errors"].value
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    # nothing was skipped by the refused decisions
    assert not any(j.skipped for j in store.list_jobs(_batch(store, name, BatchType.ANALYSIS).id))


def test_a_workbook_reloaded_after_a_store_reset_says_to_reset_the_simulator_and_then_loads(
    cycle,
):
    from click.testing import CliRunner

    from batch_pipelines.simulators.cli import simulate

    name, store, resources, instance, tmp_path = cycle
    edm_creation = [risk_modeling_assets[BATCH_TYPE_ORDER.index(BatchType.EDM_CREATION)]]
    assert _materialize(edm_creation, name, resources, instance).success
    # The batch store is reset (a new file) while the simulator keeps its EDMs.
    fresh_url = f"sqlite:///{tmp_path / 'fresh-store.db'}"
    fresh = BatchStore(fresh_url)
    configuration = load_workbook_configuration(tmp_path / "cycle.xlsx")
    store_cycle_configuration(fresh, configuration, source="cycle.xlsx")
    reset_resources = {
        **resources,
        "batch_store": cycle_resources(tmp_path, fresh_url)["batch_store"],
    }

    blocked = _materialize(edm_creation, name, reset_resources, instance)
    assert not blocked.success
    failure = blocked.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "already exists" in failure.description
    assert "batch-pipelines simulate reset-risk-modeler" in failure.description

    simulator_db = resources["risk_modeler"].simulator_db
    reset = CliRunner().invoke(simulate, ["reset-risk-modeler", "--db", simulator_db])
    assert reset.exit_code == 0, reset.output
    assert _materialize(edm_creation, name, reset_resources, instance).success
    fresh.dispose()


def test_the_reset_command_defaults_to_the_embedded_simulators_state():
    from batch_pipelines.simulators.cli import reset_risk_modeler

    (db,) = [p for p in reset_risk_modeler.params if p.name == "db_path"]
    assert str(db.default) == RiskModelerResource().simulator_db


def test_a_batch_that_fails_validation_is_not_retried_by_the_instances_run_retries(cycle):
    name, store, resources, _, tmp_path = cycle
    edm_creation = [risk_modeling_assets[BATCH_TYPE_ORDER.index(BatchType.EDM_CREATION)]]
    # Materialized from the UI: an ad-hoc asset job, without the cycle job's tags.
    with dg.instance_for_test(
        overrides={"run_retries": {"enabled": True, "max_retries": 2}}
    ) as instance:
        instance.add_dynamic_partitions(CYCLES.name, [name])
        assert _materialize(edm_creation, name, resources, instance).success
        second = load_workbook_configuration(
            valid_workbook().set_metadata("Cycle Type", "Again").write(tmp_path / "again.xlsx")
        )
        again, _ = store_cycle_configuration(store, second, source="again.xlsx")
        instance.add_dynamic_partitions(CYCLES.name, [again])

        blocked = _materialize(edm_creation, again, resources, instance)

        assert not blocked.success  # its EDMs exist already: a validation error
        assert instance.get_run_by_id(blocked.run_id).tags["dagster/will_retry"] == "false"


def test_materializing_an_archived_cycle_fails_once_with_the_reason(cycle):
    name, store, resources, _, tmp_path = cycle
    newer = load_workbook_configuration(
        valid_workbook().set_metadata("Cycle Type", "Newer").write(tmp_path / "newer.xlsx")
    )
    store_cycle_configuration(store, newer, source="newer.xlsx")  # archives the cycle
    with dg.instance_for_test(
        overrides={"run_retries": {"enabled": True, "max_retries": 2}}
    ) as instance:
        instance.add_dynamic_partitions(CYCLES.name, [name])
        result = _materialize(risk_modeling_assets[:1], name, resources, instance)
        assert instance.get_run_by_id(result.run_id).tags["dagster/will_retry"] == "false"
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert name in failure.description
    assert failure.metadata["retryable"].value is False


def _decide_on_three_jobs(name, store, resources):
    """Decide skip / delete_and_resubmit / skip on the first three analysis jobs of a cycle."""
    from batch_pipelines.risk_modeling.cycle_batches import ensure_batch

    batch_id = ensure_batch(store, name, BatchType.ANALYSIS)
    jobs = store.list_jobs(batch_id)[:3]
    decisions = [
        {"analysis_name": job.key, "decision": decision}
        for job, decision in zip(jobs, ["skip", "delete_and_resubmit", "skip"], strict=True)
    ]
    with dg.instance_for_test() as instance:
        result = analysis_decisions.execute_in_process(
            run_config={
                "ops": {
                    "apply_analysis_decisions": {"config": {"cycle": name, "decisions": decisions}}
                }
            },
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
    return result, batch_id, jobs


def _assert_each_decision_applied_once(store, batch_id, jobs):
    after = {j.id: j for j in store.list_jobs(batch_id)}
    skip_one, redo, skip_two = jobs
    assert after[skip_one.id].skipped and after[skip_two.id].skipped
    assert not after[redo.id].skipped and after[redo.id].status == JobStatus.INITIATED


def test_a_transient_fault_in_a_delete_is_retried_and_every_decision_is_applied_once(
    cycle, monkeypatch
):
    from batch_pipelines.risk_modeling import jobs as decision_jobs

    name, store, resources, _, _ = cycle
    real_delete = decision_jobs.delete_existing
    calls = []

    async def delete_failing_once(batch_type, job, client):
        calls.append(job["analysis_name"])
        if len(calls) == 1:
            raise ConnectionError("connection reset by peer")
        return await real_delete(batch_type, job, client)

    monkeypatch.setattr(decision_jobs, "delete_existing", delete_failing_once)
    result, batch_id, jobs = _decide_on_three_jobs(name, store, resources)

    assert result.success
    assert [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert calls == [jobs[1].key, jobs[1].key]  # the failed try, then the retry
    _assert_each_decision_applied_once(store, batch_id, jobs)


def test_a_transient_fault_between_two_skips_is_retried_and_the_done_skip_counts_as_done(
    cycle, monkeypatch
):
    name, store, resources, _, _ = cycle
    real_skip = BatchStore.skip_job
    calls = []

    def skip_failing_on_the_second(self, job_id, reason):
        calls.append(job_id)
        if len(calls) == 2:
            raise ConnectionError("database connection lost")
        return real_skip(self, job_id, reason)

    monkeypatch.setattr(BatchStore, "skip_job", skip_failing_on_the_second)
    result, batch_id, jobs = _decide_on_three_jobs(name, store, resources)

    assert result.success
    # the retry skips only the job whose skip failed, not the one skipped before the fault
    assert calls == [jobs[0].id, jobs[2].id, jobs[2].id]
    _assert_each_decision_applied_once(store, batch_id, jobs)
