"""`batch-pipelines roles ...` with click's CliRunner against a store and a test instance."""

import gc
import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from click.testing import CliRunner

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.role_onboarding.cli import progress_bar, read_roles_file, roles
from batch_pipelines.role_onboarding.store import RoleOnboardingStore
from batch_pipelines.store.batch_store import BatchStore


@pytest.fixture
def env(tmp_path):
    store = RoleOnboardingStore(BatchStore(f"sqlite:///{tmp_path / 'store.db'}"))
    with dg.instance_for_test() as instance:
        yield {"store": store, "instance": instance}


def _invoke(env, *args, **kwargs):
    return CliRunner().invoke(roles, list(args), obj=env, catch_exceptions=False, **kwargs)


def test_submit_with_role_options_answers_like_the_seed_and_reports_skipped_roles(env):
    result = _invoke(
        env,
        "submit",
        "--company",
        "acme",
        "--role",
        "Actuary",
        "--role",
        "Underwriter=Insurance Underwriter",
        "--role",
        "!!!",
        "--json",
    )
    assert result.exit_code == 0, result.output
    response = json.loads(result.output)
    assert response["status"] == "queued" and response["total_roles"] == 3
    assert (response["queued_roles"], response["skipped_roles"]) == (2, 1)
    assert len(response["workflow_ids"]) == 2
    assert response["estimated_duration_seconds"] == 900.0
    assert response["invalid_roles"][0]["index"] == 2
    batch = env["store"].get_batch(response["batch_id"])
    assert batch.current_workflows()[1].draup_role_name == "Insurance Underwriter"


def test_submit_reads_the_seeds_request_body_from_a_file(env, tmp_path):
    body = {
        "company_id": "liberty-mutual",
        "roles": [
            {"role_name": "Claims Adjuster", "draup_role_name": "Claims Handler"},
            {"role_name": "Risk Analyst"},
        ],
        "options": {"skip_enhancement_workflows": True, "force_rerun": False},
        "created_by": "admin@company.com",
    }
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(body))
    result = _invoke(env, "submit", str(path))
    assert result.exit_code == 0
    assert "Batch submitted: 2 roles queued for processing" in result.output
    batch_id = result.output.split(":")[0]
    batch = env["store"].get_batch(batch_id)
    assert batch.options == {"skip_enhancement_workflows": True, "force_rerun": False}
    assert batch.created_by == "admin@company.com"


def test_a_broken_file_is_an_error_naming_the_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"roles": [\n  {"role_name": }\n]}')
    with pytest.raises(ConfigurationError, match=r"broken.json: not valid JSON \(line 2"):
        read_roles_file(path)
    csv_path = tmp_path / "roles.csv"
    csv_path.write_text("name\nActuary\n")
    with pytest.raises(ConfigurationError, match="role_name column"):
        read_roles_file(csv_path)


def test_submission_is_refused_when_the_feature_flag_is_off(env, monkeypatch):
    monkeypatch.setenv("ROLE_ONBOARDING_BATCH_SUBMISSION_ENABLED", "false")
    result = CliRunner().invoke(
        roles, ["submit", "--company", "acme", "--role", "Actuary"], obj=env
    )
    assert result.exit_code == 1
    assert "disabled by its feature flag" in result.output


def test_submit_takes_the_ttl_and_role_estimate_from_the_same_settings_as_the_ui(env, monkeypatch):
    monkeypatch.setenv("ROLE_ONBOARDING_BATCH_TTL_SECONDS", "3600")
    before = datetime.now(UTC)
    response = json.loads(
        _invoke(env, "submit", "--company", "acme", "--role", "Actuary", "--json").output
    )
    batch = env["store"].get_batch(response["batch_id"])
    assert timedelta(minutes=59) < batch.expires_at - before <= timedelta(hours=1, seconds=5)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", 'ROLE_ONBOARDING_BATCH_TTL_SECONDS" cannot be coerced into an int'),
        ("-5", "must be a positive number"),
    ],
)
def test_a_bad_ttl_variable_is_refused_naming_it_and_nothing_is_stored(
    env, monkeypatch, value, message
):
    monkeypatch.setenv("ROLE_ONBOARDING_BATCH_TTL_SECONDS", value)
    result = CliRunner().invoke(
        roles, ["submit", "--company", "acme", "--role", "Actuary"], obj=env
    )
    assert result.exit_code == 1
    assert message in result.output and "[BP-" in result.output
    assert env["store"].list_batches(company_id="acme") == []


def test_a_refused_submission_leaves_no_dead_instance_behind_for_a_later_definitions_load(
    tmp_path, monkeypatch
):
    """The CLI resolves its settings while the instance is open. Dagster's plain
    ``process_config_and_initialize`` opens a throwaway instance it never closes; when that
    was garbage-collected it put the closed instance back as the current one, and the next
    Definitions load in the process failed on it."""
    from batch_pipelines.role_onboarding.code_location import defs

    monkeypatch.setenv("ROLE_ONBOARDING_BATCH_SUBMISSION_ENABLED", "false")
    store = RoleOnboardingStore(BatchStore(f"sqlite:///{tmp_path / 'store.db'}"))
    with dg.instance_for_test() as instance:
        result = CliRunner().invoke(
            roles,
            ["submit", "--company", "acme", "--role", "Actuary"],
            obj={"store": store, "instance": instance},
        )
        assert result.exit_code == 1
    del result  # its traceback keeps the throwaway instance alive
    gc.collect()  # collecting it put the closed instance back as the current one
    assert defs().resolve_job_def("submit_role_batch").name == "submit_role_batch"


def test_status_prints_the_table_and_json_and_an_expired_batch_says_it_expired(env):
    submitted = json.loads(
        _invoke(env, "submit", "--company", "acme", "--role", "Actuary", "--json").output
    )
    batch_id = submitted["batch_id"]
    table = _invoke(env, "status", batch_id)
    assert table.exit_code == 0
    assert "state pending: total 1, queued 1" in table.output and "Actuary" in table.output
    as_json = json.loads(_invoke(env, "status", batch_id, "--json").output)
    assert (
        as_json["state"] == "pending"
        and as_json["roles"][0]["workflow_id"] == submitted["workflow_ids"][0]
    )
    listing = _invoke(env, "list", "--company", "acme")
    assert batch_id in listing.output

    env["store"].delete_expired(now=datetime.now(UTC) + timedelta(days=2))
    gone = CliRunner().invoke(roles, ["status", batch_id], obj=env)
    assert gone.exit_code == 1 and f"{batch_id} expired at" in gone.output
    unknown = CliRunner().invoke(roles, ["status", "batch-000000000000"], obj=env)
    assert unknown.exit_code == 1 and "no batch batch-000000000000" in unknown.output


def test_retry_of_a_batch_without_failures_retries_nothing(env):
    batch_id = json.loads(
        _invoke(env, "submit", "--company", "acme", "--role", "Actuary", "--json").output
    )["batch_id"]
    result = _invoke(env, "retry", batch_id)
    assert result.exit_code == 0 and "No failed role to retry" in result.output


def test_status_watch_redraws_until_the_batch_settles(env, monkeypatch, tmp_path):
    """The first draw is pending; while it waits the roles run; the second draw settles."""
    import dagster as dg

    from batch_pipelines.resources import BatchStoreResource, ModelsResource
    from batch_pipelines.role_onboarding.assets import role_onboarding
    from batch_pipelines.role_onboarding.resources import RoleOnboardingSettings
    from batch_pipelines.role_onboarding.service import run_request

    batch_id = json.loads(
        _invoke(env, "submit", "--company", "acme", "--role", "Actuary", "--json").output
    )["batch_id"]
    store, instance = env["store"], env["instance"]

    def run_the_roles(_seconds):
        for wf in store.get_batch(batch_id).current_workflows():
            request = run_request(wf)
            instance.add_dynamic_partitions("role", [wf.partition_key])
            dg.materialize(
                [role_onboarding],
                partition_key=wf.partition_key,
                run_config=request.run_config,
                tags=request.tags,
                instance=instance,
                resources={
                    "batch_store": BatchStoreResource(database_url=str(store.engine.url)),
                    "models": ModelsResource(),
                    "role_onboarding_settings": RoleOnboardingSettings(),
                },
            )

    monkeypatch.setattr("batch_pipelines.role_onboarding.cli.pause", run_the_roles)
    # The links start with the dashboard named by the same setting the UI reads.
    monkeypatch.setenv("ROLE_ONBOARDING_DASHBOARD_BASE_URL", "https://dash.example.invalid/")
    result = _invoke(env, "status", batch_id, "--watch")
    assert result.exit_code == 0
    assert "pending" in result.output and "completed" in result.output
    assert "[" + "#" * 30 + "] 100.0%" in result.output
    assert "1/1 roles (100%)" in result.output and "roles/s, ETA" in result.output
    assert "https://dash.example.invalid/dashboard/roles/cr-" in result.output


def test_the_progress_bar_fills_in_proportion():
    assert progress_bar(50.0, width=10) == "[#####-----]  50.0%"
    assert progress_bar(100.0, width=4) == "[####] 100.0%"


@pytest.mark.parametrize("command", ["submit", "list"])
def test_a_company_that_is_not_an_allowed_name_is_refused_in_one_line_with_its_code(env, command):
    args = ["--company", "../../outside"] + (["--role", "Actuary"] if command == "submit" else [])
    result = _invoke(env, command, *args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: [BP-NAME] company_id")
    assert len(result.output.strip().splitlines()) == 1
    assert env["store"].list_batches("outside") == []
