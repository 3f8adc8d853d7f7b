"""The submissions drop folder: each new or changed push-batch body launches the submit job
once (cursor and run key), and a file the job's config cannot carry fails the tick naming
the file and the field, without holding up the other files."""

import json
import os

import dagster as dg
import pytest

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.resources import BatchStoreResource, ModelsResource
from batch_pipelines.role_onboarding.jobs import submit_role_batch
from batch_pipelines.role_onboarding.resources import RoleOnboardingSettings, default_settings
from batch_pipelines.role_onboarding.sensors import (
    SUBMISSION_FILE_TAG,
    role_submissions_drop_sensor,
    submission_run_config,
)
from batch_pipelines.role_onboarding.store import RoleOnboardingStore
from batch_pipelines.store.batch_store import BatchStore

SEED_BODY = {
    "company_id": "liberty-mutual",
    "roles": [
        {"role_name": "Claims Adjuster", "draup_role_name": "Claims Handler"},
        {"role_name": "Underwriter", "draup_role_id": "Insurance Underwriter"},
        {"role_name": "Risk Analyst"},
    ],
    "options": {"skip_enhancement_workflows": False, "force_rerun": True},
    "created_by": "admin@company.com",
}


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "incoming"
    path.mkdir()
    return path


def _tick(folder, cursor=None):
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={"role_onboarding_settings": RoleOnboardingSettings(drop_folder=str(folder))},
    )
    return role_submissions_drop_sensor(context)


def test_a_dropped_push_batch_body_launches_the_submit_job_once_keyed_by_file_name_mtime_and_size(
    folder,
):
    path = folder / "liberty.json"
    path.write_text(json.dumps(SEED_BODY))
    stat = path.stat()
    first = _tick(folder)
    (request,) = first.run_requests
    assert request.run_key == f"liberty.json:{stat.st_mtime_ns}:{stat.st_size}"
    assert request.tags[SUBMISSION_FILE_TAG] == "liberty.json"
    config = request.run_config["ops"]["store_role_batch"]["config"]
    assert config["company_id"] == "liberty-mutual" and config["created_by"] == "admin@company.com"
    assert config["force_rerun"] is True and config["skip_enhancement_workflows"] is False
    assert config["roles"][1] == {
        "role_name": "Underwriter",
        "draup_role_id": "Insurance Underwriter",
    }
    assert isinstance(_tick(folder, first.cursor), dg.SkipReason)

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    (again,) = _tick(folder, first.cursor).run_requests
    assert again.run_key != request.run_key and again.run_key.startswith("liberty.json:")


def test_the_launched_run_config_submits_the_batch_and_skips_a_role_without_a_name(
    folder, tmp_path
):
    (folder / "acme.json").write_text(
        json.dumps(
            {
                "company_id": "acme",
                "roles": [{"role_name": "Actuary"}, {"draup_role_name": "Ghost"}],
            }
        )
    )
    (request,) = _tick(folder).run_requests
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    with dg.instance_for_test() as instance:
        result = submit_role_batch.execute_in_process(
            run_config=request.run_config,
            tags=request.tags,
            resources={
                "batch_store": BatchStoreResource(database_url=store_url),
                "models": ModelsResource(),
                "role_onboarding_settings": RoleOnboardingSettings(),
            },
            instance=instance,
        )
    batch = RoleOnboardingStore(BatchStore(store_url)).get_batch(
        result.output_for_node("store_role_batch")
    )
    assert [w.partition_key for w in batch.workflows] == ["acme/actuary"]
    assert batch.invalid_roles == [
        {"index": 1, "role_name": None, "field": "role_name", "reason": "is required"}
    ]


def test_a_broken_file_fails_the_tick_naming_the_file_until_it_is_fixed(folder):
    bad = folder / "broken.json"
    bad.write_text('{"company_id": "acme",\n "roles": [')
    with pytest.raises(ConfigurationError, match=r"broken.json: not valid JSON \(line 2"):
        _tick(folder)
    bad.write_text(json.dumps({"company_id": "acme", "roles": [{"role_name": "Actuary"}]}))
    (request,) = _tick(folder).run_requests
    assert request.tags[SUBMISSION_FILE_TAG] == "broken.json"


def test_an_invalid_file_does_not_hold_up_a_valid_one_and_fails_the_next_tick_naming_its_field(
    folder,
):
    (folder / "good.json").write_text(json.dumps(SEED_BODY))
    (folder / "bad.json").write_text(
        json.dumps({"company_id": "acme", "roles": [{"role_name": "A"}, {"role_name": 7}]})
    )
    first = _tick(folder)
    assert [r.tags[SUBMISSION_FILE_TAG] for r in first.run_requests] == ["good.json"]
    with pytest.raises(
        ConfigurationError, match=r"bad.json: roles\[1\].role_name: must be a string"
    ):
        _tick(folder, first.cursor)
    (folder / "bad.json").unlink()
    assert isinstance(_tick(folder, first.cursor), dg.SkipReason)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([{"role_name": "A"}], "expected an object"),
        ({"company_id": "acme", "roles": [], "priority": 1}, "priority: unknown field"),
        ({"roles": []}, "company_id: required"),
        ({"company_id": "acme", "roles": "Actuary"}, "roles: must be a list"),
        (
            {"company_id": "acme", "roles": [{"role_name": "A", "level": "x"}]},
            r"roles\[0\].level: unknown field",
        ),
        (
            {"company_id": "acme", "roles": [], "options": {"force_rerun": "yes"}},
            "options.force_rerun: must be true",
        ),
        ({"company_id": "acme", "roles": [], "created_by": 3}, "created_by: must be a string"),
    ],
)
def test_a_body_the_submit_jobs_config_cannot_carry_is_refused_naming_its_field(body, message):
    with pytest.raises(ConfigurationError, match=message):
        submission_run_config(body)


def test_a_missing_drop_folder_skips_and_its_location_comes_from_the_environment(
    tmp_path, monkeypatch
):
    assert isinstance(_tick(tmp_path / "absent"), dg.SkipReason)
    assert (
        RoleOnboardingSettings().drop_folder.replace(os.sep, "/")
        == ".data/role_onboarding/incoming"
    )
    monkeypatch.setenv("ROLE_ONBOARDING_DROP_FOLDER", str(tmp_path))
    assert isinstance(default_settings().drop_folder, dg.EnvVar)


def test_a_dropped_file_whose_company_is_not_an_allowed_name_fails_the_tick_naming_file_and_field(
    folder,
):
    (folder / "climb.json").write_text(
        json.dumps({"company_id": "../../outside", "roles": [{"role_name": "Actuary"}]})
    )
    with pytest.raises(ConfigurationError, match=r"climb.json: company_id .* is not allowed"):
        _tick(folder)
