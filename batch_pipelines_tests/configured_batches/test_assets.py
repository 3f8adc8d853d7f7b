"""The assets on an ephemeral instance: a static job's tick, a preference group's tick, a
resumed run, an invalid job file made visible in the UI, the fallbacks taken when the config
or category source is down, and the status by feature type and user in the metadata."""

import logging

import dagster as dg
import pytest
import sqlalchemy as sa

from batch_pipelines.configured_batches.assets import preference_batch
from batch_pipelines.configured_batches.configured_jobs import ConfiguredJobsResource
from batch_pipelines.configured_batches.contexts import ContextStore
from batch_pipelines.configured_batches.definitions import configured_batches_definitions
from batch_pipelines.configured_batches.groups import TICK_TAG as PREFERENCE_TICK_TAG
from batch_pipelines.configured_batches.job_config import SAMPLE_JOBS_FILE
from batch_pipelines.configured_batches.monitors import configured_jobs_problems
from batch_pipelines.configured_batches.partitions import PREFERENCE_GROUPS
from batch_pipelines.configured_batches.resources import ConfigServiceResource
from batch_pipelines.resources import (
    BatchStoreResource,
    ModelsResource,
    TeamsResource,
    default_resources,
)
from batch_pipelines.store.batch_store import BatchStore
from batch_pipelines_tests.test_metadata import assert_standard_metadata

from .batch_data import ACTIVE_USERS, INACTIVE_USER, add_preferences, job_file, seed


@pytest.fixture
def store_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = BatchStore(url)
    seed(store.engine)
    store.dispose()
    return url


def _resources(store_url: str, jobs_file: str = "") -> dict:
    return {
        "batch_store": BatchStoreResource(database_url=store_url),
        "models": ModelsResource(),
        "configured_jobs": ConfiguredJobsResource(jobs_file=jobs_file),
        "config_service": ConfigServiceResource(),
        "teams": TeamsResource(),
    }


def _configured_batch():
    defs = configured_batches_definitions(str(SAMPLE_JOBS_FILE))
    return next(a for a in defs.assets if a.key.path == ["configured_batch"])


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    (materialization,) = result.asset_materializations_for_node(result.all_node_events[0].node_name)
    return {k: v.value for k, v in materialization.metadata.items()}


def test_a_static_jobs_tick_runs_its_batch_and_reports_the_seeds_context(store_url):
    asset = _configured_batch()
    tick = "2026-11-24T07:30+01:00"
    result = dg.materialize(
        [asset],
        partition_key="user_welcome_notes",
        instance=dg.DagsterInstance.ephemeral(),
        resources=_resources(store_url),
        run_config={"ops": {"configured_batch": {"config": {"tick": tick}}}},
    )
    assert result.success
    meta = _metadata(result)
    assert meta["batch_key"] == f"user_welcome_notes/{tick}"
    assert meta["units_total"] == meta["units_succeeded"] == len(ACTIVE_USERS)
    assert meta["batch_id"] == str(
        BatchStore(store_url).find_batches(family="configured_batches")[0].id
    )
    assert meta["batch_context"]["results"]["progress"]["percentage"] == 100
    assert meta["status_by_tenant"] == {
        "tenant_a": {"users": 10, "succeeded": 10, "failed": 0},
        "tenant_b": {"users": 10, "succeeded": 10, "failed": 0},
    }
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "reconciled_completed": True,
        "nothing_failed": True,
        "processed_something": True,
    }
    (materialization,) = result.asset_materializations_for_node("configured_batch")
    assert_standard_metadata(materialization.metadata)
    for evaluation in result.get_asset_check_evaluations():
        assert evaluation.metadata["partition"].value == "user_welcome_notes"
    assert meta["nothing_to_do"] is False
    store = BatchStore(store_url)
    assert ContextStore(store.engine).status_by_user(ACTIVE_USERS[0])[0]["tick"] == tick

    again = dg.materialize(
        [asset],
        partition_key="user_welcome_notes",
        instance=dg.DagsterInstance.ephemeral(),
        resources=_resources(store_url),
        run_config={"ops": {"configured_batch": {"config": {"tick": tick}}}},
    )
    meta = _metadata(again)
    # Same tick: the same batch, and nothing is sent again.
    assert meta["requests_sent_this_run"] == 0 and meta["requests_reused"] == len(ACTIVE_USERS)
    assert len(store.find_batches(family="configured_batches")) == 1


def test_a_preference_groups_run_uses_its_members_and_their_preferences(store_url):
    store = BatchStore(store_url)
    prefs = add_preferences(
        store.engine,
        [
            {
                "tenant_id": "tenant_a",
                "user_id": uid,
                "feature_type": "daily_digest",
                "frequency": "daily",
                "preferred_time": "09:00",
                "timezone": "Europe/Paris",
                "template_overrides": {"length": "long"} if uid == ACTIVE_USERS[0] else {},
            }
            for uid in (ACTIVE_USERS[0], ACTIVE_USERS[1], INACTIVE_USER)
        ],
    )
    key = "daily_digest|daily|*|09:00|Europe/Paris"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PREFERENCE_GROUPS.name, [key])
    result = dg.materialize(
        [preference_batch],
        partition_key=key,
        instance=instance,
        resources=_resources(store_url),
        tags={PREFERENCE_TICK_TAG: "2026-11-24T08:00:00+00:00"},
    )
    assert result.success and len(prefs) == 3
    meta = _metadata(result)
    context = meta["batch_context"]["results"]
    assert context["items"] == {
        "valid_users": [ACTIVE_USERS[0], ACTIVE_USERS[1]],
        "invalid_users": [INACTIVE_USER],
    }
    assert context["metadata"]["preference_group"] == key
    assert context["metadata"]["group_users"] == {
        "total": 3,
        "valid": 2,
        "invalid": 1,
        "invalid_ids": [INACTIVE_USER],
    }
    contexts = ContextStore(store.engine)
    requests = {
        r.data["request_key"]: r.data["prompt"]
        for r in contexts.find("configured_request", meta["batch_key"])
    }
    assert requests[f"user:{ACTIVE_USERS[0]}"].startswith("Write a long summary")
    assert requests[f"user:{ACTIVE_USERS[1]}"].startswith("Write a short summary")
    assert contexts.status_by_feature_type("daily_digest")[0]["succeeded"] == 2
    assert meta["batch_key"].endswith("/2026-11-24T08:00:00+00:00")


def test_an_invalid_job_leaves_the_rest_loaded_and_is_shown_in_the_asset_and_a_failing_sensor(
    tmp_path,
):
    def break_one(raw):
        raw["jobs"][1]["schedule"]["time"] = "25:00"

    path = job_file(tmp_path, break_one)
    defs = dg.Definitions.merge(
        configured_batches_definitions(str(path)), dg.Definitions(resources=default_resources())
    )
    repository = defs.get_repository_def()
    assert "product_descriptions_schedule" not in {s.name for s in repository.schedule_defs}
    assert "user_welcome_notes_schedule" in {s.name for s in repository.schedule_defs}
    asset = repository.assets_defs_by_key[dg.AssetKey("configured_batch")]
    assert (
        "product_descriptions, field schedule.time"
        in asset.descriptions_by_key[dg.AssetKey("configured_batch")]
    )
    assert "product_descriptions" not in asset.partitions_def.get_partition_keys()

    context = dg.build_sensor_context(
        resources={"configured_jobs": ConfiguredJobsResource(jobs_file=str(path))}
    )
    with pytest.raises(Exception, match="product_descriptions, field schedule.time"):
        configured_jobs_problems(context)
    fine = dg.build_sensor_context(resources={"configured_jobs": ConfiguredJobsResource()})
    assert "9 valid jobs, no problems" in configured_jobs_problems(fine).skip_message


def test_the_readme_describes_a_bad_job_file_as_the_ui_shows_it():
    """The sensor above fails its tick; Dagster shows a failed tick as an orange triangle on
    the Automation page with the problems in the tick's details, not as a red sensor."""
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert "in red on the Automation page" not in readme
    assert "every tick of the `configured_jobs_problems` sensor fails" in readme
    assert "orange warning triangle" in readme and "in the tick's details" in readme


def test_a_partition_whose_job_became_invalid_fails_with_the_jobs_problem(store_url, tmp_path):
    path = job_file(tmp_path, lambda raw: raw["jobs"][0].update(concurrency=0))
    with pytest.raises(dg.Failure, match="user_welcome_notes.*concurrency"):
        dg.materialize(
            [_configured_batch()],
            partition_key="user_welcome_notes",
            instance=dg.DagsterInstance.ephemeral(),
            resources=_resources(store_url, str(path)),
        )


def test_a_job_file_that_is_wholly_invalid_still_loads_the_code_location(tmp_path):
    path = tmp_path / "jobs.json"
    path.write_text('{"jobs": 3}')
    defs = dg.Definitions.merge(
        configured_batches_definitions(str(path)), dg.Definitions(resources=default_resources())
    )
    repository = defs.get_repository_def()
    assert repository.schedule_defs == []
    asset = repository.assets_defs_by_key[dg.AssetKey("configured_batch")]
    assert asset.partitions_def.get_partition_keys() == []
    assert "jobs.json, field jobs" in asset.descriptions_by_key[dg.AssetKey("configured_batch")]
    assert "preference_batch_job" in {j.name for j in repository.get_all_jobs()}


def test_the_next_run_of_a_group_uses_changed_preferences_and_only_its_current_members(store_url):
    store = BatchStore(store_url)
    a, b = ACTIVE_USERS[2], ACTIVE_USERS[3]

    def prefer(uid: str, time: str, **overrides):
        return {
            "tenant_id": "tenant_b",
            "user_id": uid,
            "feature_type": "daily_digest",
            "frequency": "daily",
            "preferred_time": time,
            "timezone": "UTC",
            "template_overrides": overrides,
        }

    add_preferences(store.engine, [prefer(a, "09:00"), prefer(b, "09:00")])
    key = "daily_digest|daily|*|09:00|UTC"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PREFERENCE_GROUPS.name, [key])

    def run(tick: str) -> dict[str, str]:
        result = dg.materialize(
            [preference_batch],
            partition_key=key,
            instance=instance,
            resources=_resources(store_url),
            tags={PREFERENCE_TICK_TAG: tick},
        )
        batch_key = _metadata(result)["batch_key"]
        return {
            r.data["request_key"]: r.data["prompt"]
            for r in ContextStore(store.engine).find("configured_request", batch_key)
        }

    first = run("2026-11-24T09:00:00+00:00")
    assert set(first) == {f"user:{a}", f"user:{b}"} and "short summary" in first[f"user:{a}"]
    add_preferences(
        store.engine, [prefer(a, "09:00", length="long"), prefer(b, "10:00")]
    )  # a changes, b moves
    second = run("2026-11-25T09:00:00+00:00")
    assert set(second) == {f"user:{a}"} and "long summary" in second[f"user:{a}"]


def test_a_failed_batch_is_recorded_and_a_rerun_of_its_tick_sends_only_the_failed_requests(
    store_url,
):
    from batch_pipelines.configured_batches.job_config import load_job_configuration
    from batch_pipelines.configured_batches.repositories import CategoryRepository, UserRepository
    from batch_pipelines.configured_batches.runner import run_batch
    from batch_pipelines.core.backoff import RetryPolicy
    from batch_pipelines.core.statuses import BatchStatus
    from batch_pipelines.simulators.embedded import model_client
    from batch_pipelines.simulators.faults import FaultPlan
    from batch_pipelines.simulators.models import ModelSimulator

    store = BatchStore(store_url)
    job = {j.job_id: j for j in load_job_configuration(SAMPLE_JOBS_FILE)[0]}["product_descriptions"]
    job = job.model_copy(update={"retry_limit": 0})
    down = ModelSimulator(faults=FaultPlan(seed=1, server_error_rate=0.5))
    healthy = ModelSimulator()

    def run(sim):
        return run_batch(
            store,
            job,
            tick="2026-11-24T10:15+00:00",
            client_factory=lambda: model_client(sim, retry=RetryPolicy(max_retries=0)),
            users=UserRepository(store.engine),
            categories=CategoryRepository(store.engine),
        )

    first = run(down)
    assert first.status == BatchStatus.FAILED and 0 < len(first.failed_keys) < first.requests_total
    assert first.context["results"]["progress"]["failed"] == len(first.failed_keys)
    second = run(healthy)
    assert second.status == BatchStatus.COMPLETED and second.batch_id == first.batch_id
    assert second.sent_this_run == len(
        first.failed_keys
    ) and second.reused == first.requests_total - len(first.failed_keys)
    assert (
        len(store.list_cost_entries(first.batch_id)) == first.requests_total
    )  # each request billed once


class _DownSource:
    """A config source that is down."""

    def _fail(self, *args, **kwargs):
        from batch_pipelines.configured_batches.preferences import PreferenceSourceUnavailable

        raise PreferenceSourceUnavailable(
            "config service unreachable at https://ops:hunter2@config.example"
        )

    for_feature = get = changed_since = _fail


class DownConfigService(ConfigServiceResource):
    def config_database(self, engine):
        from batch_pipelines.configured_batches.preferences import ConfigDatabaseClient

        return ConfigDatabaseClient(_DownSource())


def _with_default_overrides(raw):
    digest = next(j for j in raw["jobs"] if j.get("feature_type") == "daily_digest")
    digest["default_preferences"]["template_overrides"] = {"length": "medium"}


def test_a_preference_group_runs_with_the_jobs_default_preferences_when_the_config_source_is_down(
    store_url, tmp_path
):
    store = BatchStore(store_url)
    members = (ACTIVE_USERS[4], ACTIVE_USERS[5])
    add_preferences(
        store.engine,
        [
            {
                "tenant_id": "tenant_a",
                "user_id": uid,
                "feature_type": "daily_digest",
                "frequency": "daily",
                "preferred_time": "07:00",
                "timezone": "UTC",
                "template_overrides": {"length": "long"},
            }
            for uid in members
        ],
    )
    key = "daily_digest|daily|*|07:00|UTC"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PREFERENCE_GROUPS.name, [key])

    def run(config_service, tick):
        resources = {
            **_resources(store_url, str(job_file(tmp_path, _with_default_overrides))),
            "config_service": config_service,
        }
        result = dg.materialize(
            [preference_batch],
            partition_key=key,
            instance=instance,
            resources=resources,
            tags={PREFERENCE_TICK_TAG: tick},
        )
        meta = _metadata(result)
        prompts = [
            r.data["prompt"]
            for r in ContextStore(store.engine).find("configured_request", meta["batch_key"])
        ]
        return meta, prompts

    up, prompts = run(ConfigServiceResource(), "2026-11-24T07:00:00+00:00")
    assert up["preference_fallbacks"] == 0 and up["preference_source_error"] == ""
    assert len(prompts) == 2 and all("long summary" in p for p in prompts)

    down, prompts = run(DownConfigService(), "2026-11-25T07:00:00+00:00")
    assert down["preference_fallbacks"] == 2
    assert (
        "unreachable" in down["preference_source_error"]
        and "hunter2" not in down["preference_source_error"]
    )
    assert len(prompts) == 2 and all(
        "medium summary" in p for p in prompts
    )  # the job's defaults, not the stored "long"
    assert down["batch_context"]["results"]["items"]["valid_users"] == list(members)


def test_a_category_batch_falls_back_to_the_snapshot_an_earlier_run_kept_when_the_source_fails(
    store_url,
):
    asset = _configured_batch()

    def run(tick):
        result = dg.materialize(
            [asset],
            partition_key="product_descriptions",
            instance=dg.DagsterInstance.ephemeral(),
            resources=_resources(store_url),
            run_config={"ops": {"configured_batch": {"config": {"tick": tick}}}},
        )
        assert result.success
        meta = _metadata(result)
        return meta, sorted(
            r.data["request_key"]
            for r in ContextStore(BatchStore(store_url).engine).find(
                "configured_request", meta["batch_key"] + "/"
            )
        )

    first, first_requests = run("2026-11-24T10:15+00:00")
    assert first["category_fallbacks"] == 0 and len(first_requests) == 6
    store = BatchStore(store_url)
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE category_items RENAME TO category_items_away"))
        conn.execute(sa.text("ALTER TABLE categories RENAME TO categories_away"))
    store.dispose()
    second, second_requests = run("2026-11-25T10:15+00:00")
    assert second["category_fallbacks"] == 1
    assert second_requests == first_requests
    assert second["batch_context"]["results"]["items"]["valid_categories"] == ["product_category"]


def test_a_batchs_metadata_has_its_status_by_feature_type_and_a_capped_status_by_user(
    store_url, monkeypatch
):
    from batch_pipelines.configured_batches import assets

    monkeypatch.setattr(assets, "STATUS_TABLE_ROWS", 5)
    result = dg.materialize(
        [_configured_batch()],
        partition_key="user_welcome_notes",
        instance=dg.DagsterInstance.ephemeral(),
        resources=_resources(store_url),
        run_config={"ops": {"configured_batch": {"config": {"tick": "2026-11-24T07:30+00:00"}}}},
    )
    meta = _metadata(result)
    assert meta["status_by_user_total"] == len(ACTIVE_USERS)
    rows = meta["status_by_user"].records
    assert len(rows) == 5 and {r.data["status"] for r in rows} == {"succeeded"}
    assert [r.data["user"] for r in rows] == ACTIVE_USERS[:5]
    assert meta["status_by_feature_type"] == {}  # a static job has no feature type

    store = BatchStore(store_url)
    add_preferences(
        store.engine,
        [
            {
                "tenant_id": "tenant_b",
                "user_id": uid,
                "feature_type": "daily_digest",
                "frequency": "daily",
                "preferred_time": "06:00",
                "timezone": "UTC",
            }
            for uid in (ACTIVE_USERS[6], INACTIVE_USER)
        ],
    )
    key = "daily_digest|daily|*|06:00|UTC"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PREFERENCE_GROUPS.name, [key])
    meta = _metadata(
        dg.materialize(
            [preference_batch],
            partition_key=key,
            instance=instance,
            resources=_resources(store_url),
            tags={PREFERENCE_TICK_TAG: "2026-11-24T06:00:00+00:00"},
        )
    )
    assert meta["status_by_feature_type"] == {
        "daily_digest": {"users": 1, "succeeded": 1, "failed": 0, "tenants": ["tenant_a"]}
    }
    assert [(r.data["user"], r.data["status"]) for r in meta["status_by_user"].records] == [
        (ACTIVE_USERS[6], "succeeded")
    ]


def test_without_default_preferences_a_down_source_keeps_each_members_grouped_preference_and_a_member_who_turned_it_off_is_left_out():
    from batch_pipelines.configured_batches.assets import current_preferences
    from batch_pipelines.configured_batches.job_config import load_job_configuration
    from batch_pipelines.configured_batches.preferences import ConfigDatabaseClient, Preference

    job = {j.job_id: j for j in load_job_configuration(SAMPLE_JOBS_FILE)[0]}[
        "personal_daily_digest"
    ]
    stored = {
        uid: Preference(
            tenant_id="t1",
            user_id=uid,
            feature_type="daily_digest",
            template_overrides={"length": "long"},
        )
        for uid in ("a", "b")
    }
    no_defaults = job.model_copy(update={"default_preferences": None})
    current, meta = current_preferences(ConfigDatabaseClient(_DownSource()), no_defaults, stored)
    assert (
        current == stored
        and meta["preference_fallbacks"] == 2
        and meta["preference_members_left_out"] == 0
    )

    class Up:
        def for_feature(self, feature_type):
            return [
                stored["a"].model_copy(update={"template_overrides": {"length": "tiny"}}),
                stored["b"].model_copy(update={"enabled": False}),
            ]

    current, meta = current_preferences(ConfigDatabaseClient(Up()), job, stored)
    assert list(current) == ["a"] and current["a"].template_overrides == {"length": "tiny"}
    assert meta == {
        "preference_fallbacks": 0,
        "preference_source_error": "",
        "preference_members_left_out": 1,
    }


@pytest.mark.parametrize(
    ("job_id", "reason"),
    [
        ("user_welcome_notes", "no users match the job's filters"),
        ("product_descriptions", "none of the job's categories ['product_category'] exists"),
    ],
)
def test_a_batch_on_an_empty_store_says_it_had_nothing_to_do_and_its_checks_warn(
    tmp_path, job_id, reason
):
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [_configured_batch()],
        partition_key=job_id,
        instance=instance,
        resources=_resources(empty),
        run_config={"ops": {"configured_batch": {"config": {"tick": "2026-11-24T07:30+01:00"}}}},
    )
    assert result.success
    meta = _metadata(result)
    assert meta["units_total"] == 0 and meta["nothing_to_do"] is True
    assert reason in meta["nothing_to_do_reason"]
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {name: e.passed for name, e in evaluations.items()} == {
        "reconciled_completed": True,
        "nothing_failed": False,
        "processed_something": False,
    }
    for name in ("nothing_failed", "processed_something"):
        assert evaluations[name].severity == dg.AssetCheckSeverity.WARN
        assert evaluations[name].metadata["units_processed"].value == 0
        assert reason in evaluations[name].metadata["reason"].value
    warnings = [
        e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING
    ]
    assert any("nothing to do" in m and reason in m for m in warnings)
    store = BatchStore(empty)
    (batch,) = store.find_batches(family="configured_batches")
    assert any(
        e["level"] == "WARNING" and reason in e["message"] for e in store.batch_events(batch.id)
    )


def test_chunk_size_and_category_cache_ttl_come_from_the_environment_through_the_resource(
    store_url, tmp_path, monkeypatch
):
    monkeypatch.setenv("BATCH_CHUNK_SIZE", "7")
    monkeypatch.setenv("CATEGORY_CACHE_TTL", "0")

    def without_chunk_size(raw):
        next(j for j in raw["jobs"] if j["job_id"] == "team_activity_digest").pop("chunk_size")

    path = str(job_file(tmp_path, without_chunk_size))
    defs = configured_batches_definitions(path)
    configured_jobs = defs.resources["configured_jobs"]
    # Read through dg.EnvVar: the UI shows the variable's name, not a value fixed at load.
    assert configured_jobs.chunk_size.env_var_name == "BATCH_CHUNK_SIZE"
    assert configured_jobs.category_cache_ttl_seconds.env_var_name == "CATEGORY_CACHE_TTL"
    asset = next(a for a in defs.assets if a.key.path == ["configured_batch"])

    def run(job_id: str) -> dict:
        result = dg.materialize(
            [asset],
            partition_key=job_id,
            instance=dg.DagsterInstance.ephemeral(),
            resources={**_resources(store_url), "configured_jobs": configured_jobs},
            run_config={"ops": {"configured_batch": {"config": {"tick": "2026-11-24T08:00Z"}}}},
        )
        return _metadata(result)

    meta = run("team_activity_digest")  # BATCH_USERS over 20 users, in chunks of 7
    assert (meta["chunk_size"], meta["units_total"]) == (7, 3)
    assert meta["category_cache_ttl_seconds"] == 0
    # A job that sets its own chunk size keeps it.
    monkeypatch.setenv("BATCH_CHUNK_SIZE", "3")
    defs = configured_batches_definitions(str(SAMPLE_JOBS_FILE))
    configured_jobs = defs.resources["configured_jobs"]
    asset = next(a for a in defs.assets if a.key.path == ["configured_batch"])
    assert run("team_activity_digest")["chunk_size"] == 50


def test_a_chunk_size_from_the_environment_out_of_bounds_is_refused_naming_the_variable():
    from batch_pipelines.configured_batches.configured_jobs import ConfiguredJobsResource
    from batch_pipelines.core.errors import ConfigurationError

    resource = ConfiguredJobsResource(chunk_size=0)
    with pytest.raises(ConfigurationError, match="BATCH_CHUNK_SIZE must be between 1 and 10000"):
        resource.job("audience_trend_analysis")
