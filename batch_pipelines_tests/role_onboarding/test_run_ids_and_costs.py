"""A role's run records its id on the batch's workflow (status and CLI show it), and its
model calls reach the cost ledger under the role batch's shared ``batches`` row, once per
call of a workflow attempt, with incomplete usage estimated and flagged."""

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import dagster as dg
from click.testing import CliRunner

from batch_pipelines.core.costs import Usage, reported_or_estimated_usage
from batch_pipelines.resources import BatchStoreResource, ModelsResource
from batch_pipelines.role_onboarding.assets import role_onboarding
from batch_pipelines.role_onboarding.cli import roles
from batch_pipelines.role_onboarding.resources import RoleOnboardingSettings
from batch_pipelines.role_onboarding.sensors import role_batch_submissions
from batch_pipelines.role_onboarding.service import batch_status, submit_batch
from batch_pipelines.role_onboarding.store import (
    LEDGER_BATCH_TYPE,
    LEDGER_FAMILY,
    RoleOnboardingStore,
)
from batch_pipelines.role_onboarding.submission import validate_submission
from batch_pipelines.role_onboarding.workflow import RoleInput, run_role_workflow
from batch_pipelines.store.batch_store import BatchStore

HOUR = timedelta(hours=1)


def _submit(store, names=("Actuary", "Underwriter"), *, skip=False):
    submission = validate_submission(
        "acme", [{"role_name": n} for n in names], options={"skip_enhancement_workflows": skip}
    )
    return submit_batch(
        store, submission, enabled=True, ttl=HOUR, role_seconds=900, concurrency=5
    ).batch


def _launch(instance, store_url):
    context = dg.build_sensor_context(
        instance=instance,
        resources={
            "batch_store": BatchStoreResource(database_url=store_url),
            "role_onboarding_settings": RoleOnboardingSettings(),
        },
    )
    return role_batch_submissions(context).run_requests


def _execute(instance, store_url, request, run_config=None):
    return dg.materialize(
        [role_onboarding],
        partition_key=request.partition_key,
        run_config=run_config or request.run_config,
        tags=request.tags,
        instance=instance,
        resources={
            "batch_store": BatchStoreResource(database_url=store_url),
            "models": ModelsResource(),
            "role_onboarding_settings": RoleOnboardingSettings(),
        },
        raise_on_error=False,
    )


def test_each_role_run_records_its_run_id_on_the_batch_and_the_status_and_cli_show_it(tmp_path):
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    store = RoleOnboardingStore(BatchStore(store_url))
    batch = _submit(store)
    with dg.instance_for_test() as instance:
        requests = _launch(instance, store_url)
        for request in requests:
            instance.add_dynamic_partitions("role", [request.partition_key])
        assert all(w.run_id is None for w in store.get_batch(batch.batch_id).workflows)
        runs = {r.partition_key: _execute(instance, store_url, r).run_id for r in requests}
        stored = {w.partition_key: w.run_id for w in store.get_batch(batch.batch_id).workflows}
        status = batch_status(instance, store, batch.batch_id).to_dict()
        shown = CliRunner().invoke(
            roles,
            ["status", batch.batch_id, "--json"],
            obj={"store": store, "instance": instance},
            catch_exceptions=False,
        )
    assert stored == runs and len(set(runs.values())) == 2
    assert {r["partition_key"]: r["run_id"] for r in status["roles"]} == runs
    assert {r["partition_key"]: r["run_id"] for r in json.loads(shown.output)["roles"]} == runs


def test_role_costs_reach_the_ledger_under_the_batchs_shared_batch_and_a_repeated_attempt_bills_once(
    tmp_path,
):
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    ledger = BatchStore(store_url)
    store = RoleOnboardingStore(ledger)
    batch = _submit(store, ("Actuary",))
    shared = store.ledger_batch_id(batch.batch_id)
    assert shared is not None
    record = ledger.get_batch(shared)
    assert (record.family, record.batch_type, record.partition_key) == (
        LEDGER_FAMILY,
        LEDGER_BATCH_TYPE,
        batch.batch_id,
    )
    with dg.instance_for_test() as instance:
        (request,) = _launch(instance, store_url)
        instance.add_dynamic_partitions("role", [request.partition_key])
        first = _execute(instance, store_url, request)
        # The same workflow attempt run again (a relaunched run redoing the role): same calls.
        forced = json.loads(json.dumps(request.run_config))
        forced["ops"]["role_onboarding"]["config"]["force_rerun"] = True
        again = _execute(instance, store_url, request, forced)
    assert first.success and again.success
    entries = ledger.list_cost_entries(shared)
    assert len(entries) == 3 and {e.phase for e in entries} == {
        "ai_assessment",
        "enhancement_workflows",
    }
    workflow = batch.workflows[0].workflow_id
    assert all(e.call_key.startswith(f"role_onboarding:{workflow}:") for e in entries)
    (mat,) = first.asset_materializations_for_node("role_onboarding")
    assert float(ledger.cost_totals(shared).total_cost) == mat.metadata["cost"].value > 0
    # The role batch's id, as text: an id is a label, not a figure to plot.
    assert mat.metadata["batch_id"] == dg.MetadataValue.text(batch.batch_id)


def test_the_batch_status_and_roles_status_show_the_batchs_cost_from_the_ledger(tmp_path):
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    ledger = BatchStore(store_url)
    store = RoleOnboardingStore(ledger)
    batch = _submit(store)
    with dg.instance_for_test() as instance:
        assert batch_status(instance, store, batch.batch_id).to_dict()["cost"] == "0.000000"
        for request in _launch(instance, store_url):
            instance.add_dynamic_partitions("role", [request.partition_key])
            assert _execute(instance, store_url, request).success
        status = batch_status(instance, store, batch.batch_id).to_dict()
        shown = CliRunner().invoke(
            roles,
            ["status", batch.batch_id],
            obj={"store": store, "instance": instance},
            catch_exceptions=False,
        )
    totals = ledger.cost_totals(store.ledger_batch_id(batch.batch_id))
    assert totals.total_cost > 0
    assert status["cost"] == str(totals.total_cost.quantize(Decimal("0.000001")))
    assert status["tokens"] == totals.prompt_tokens + totals.completion_tokens
    assert f"cost {status['cost']} ({status['tokens']} tokens" in shown.output


class _PartialUsageClient:
    """A model service that reports prompt tokens only."""

    def __init__(self):
        self.calls = 0

    async def chat(self, messages, *, model, idempotency_key=None):
        self.calls += 1
        return SimpleNamespace(content="An answer of some length.", usage={"prompt_tokens": 40})


def test_incomplete_usage_is_completed_by_an_estimate_and_flagged_in_the_ledger(tmp_path):
    ledger = BatchStore(f"sqlite:///{tmp_path / 'store.db'}")
    recorded = []
    role = RoleInput(
        partition_key="acme/actuary", role_name="Actuary", skip_enhancement_workflows=True
    )

    def run():
        return asyncio.run(
            run_role_workflow(
                role, client=_PartialUsageClient(), model="sim-large", publish=lambda r: "cr-1", run_ref="ref",
                on_cost=lambda e: recorded.append(ledger.record_cost_entries([e])),
            )
        )  # fmt: skip

    (entry,) = run().costs
    assert (
        entry.usage.prompt_tokens == 40
        and entry.usage.completion_tokens > 0
        and entry.usage.estimated
    )
    run()  # the same attempt again: its call key is in the ledger already
    assert recorded == [1, 0]


def test_usage_keeps_what_the_model_reported_and_estimates_only_what_is_missing():
    usage_from = reported_or_estimated_usage  # the one rule, in core, that the roles use
    prompt, answer = "x" * 400, "y" * 40
    assert usage_from({"prompt_tokens": 7, "completion_tokens": 3}, prompt, answer) == Usage(7, 3)
    assert usage_from({"prompt_tokens": 7}, prompt, answer) == Usage(7, 10, estimated=True)
    assert usage_from({"prompt_tokens": "7", "completion_tokens": 3}, prompt, answer) == Usage(
        100, 3, estimated=True
    )
    assert usage_from(None, prompt, answer) == Usage(100, 10, estimated=True)
    assert usage_from({}, prompt, answer) == Usage(100, 10, estimated=True)
