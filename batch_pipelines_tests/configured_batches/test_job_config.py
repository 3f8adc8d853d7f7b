"""The job file: the sample's 8 types load, and every problem names the job and the field."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from batch_pipelines.configured_batches.job_config import (
    SAMPLE_JOBS_FILE,
    JobConfig,
    JobType,
    load_job_configuration,
    parse_jobs,
)

from .batch_data import job_file


def _sample() -> dict:
    return json.loads(SAMPLE_JOBS_FILE.read_text())


def test_the_shipped_sample_is_valid_and_covers_all_eight_types():
    jobs, problems = load_job_configuration(SAMPLE_JOBS_FILE)
    assert problems == []
    assert {j.type for j in jobs} == set(JobType)
    defaults = next(j for j in jobs if j.job_id == "audience_trend_analysis")
    assert (defaults.concurrency, defaults.retry_limit, defaults.chunk_size) == (5, 3, 100)


def test_an_invalid_job_is_reported_with_its_id_and_field_and_the_others_still_load(tmp_path):
    def break_two(raw):
        raw["jobs"][0]["schedule"]["timezone"] = "Mars/Olympus"
        raw["jobs"][1]["priority"] = "urgent"

    jobs, problems = load_job_configuration(job_file(tmp_path, break_two))
    assert len(jobs) == 7
    where = {(p.job, p.field) for p in problems}
    assert where == {
        ("user_welcome_notes", "schedule.timezone"),
        ("product_descriptions", "priority"),
    }
    assert "Mars/Olympus" in str(problems[0]) and "jobs.json" in str(problems[0])


def test_rules_over_several_fields_name_the_field_they_are_about():
    raw = _sample()
    raw["jobs"][2]["schedule"]["day"] = "someday"  # biweekly needs a weekday
    del raw["jobs"][5]["feature_type"]  # preference job without feature type
    raw["jobs"][3]["schedule"] = None  # static job without schedule
    raw["jobs"][0]["category"] = "product_category"  # a user job has no category
    raw["jobs"][6]["user_ids"] = ["user_0001"]  # preference jobs get their users from preferences
    jobs, problems = parse_jobs(raw, "jobs.json")
    assert {(p.job, p.field) for p in problems} == {
        ("personal_product_picks", "user_ids"),
        ("team_activity_digest", "schedule.day"),
        ("personal_daily_digest", "feature_type"),
        ("audience_trend_analysis", "schedule"),
        ("user_welcome_notes", "category"),
    }
    assert len(jobs) == 4


def test_unknown_template_placeholders_and_fields_are_refused():
    raw = _sample()
    raw["jobs"][0]["template"] = "Hello {{ customer.name }}"
    raw["jobs"][1]["colour"] = "blue"
    _, problems = parse_jobs(raw, "jobs.json")
    messages = {(p.job, p.field): p.message for p in problems}
    assert "customer" in messages[("user_welcome_notes", "template")]
    assert ("product_descriptions", "colour") in messages


def test_two_jobs_with_one_id_or_two_preference_jobs_of_one_feature_type_are_both_refused():
    raw = _sample()
    raw["jobs"].append(dict(raw["jobs"][0]))
    raw["jobs"].append({**raw["jobs"][5], "job_id": "another_digest"})
    jobs, problems = parse_jobs(raw, "jobs.json")
    ids = {j.job_id for j in jobs}
    assert (
        "user_welcome_notes" not in ids
        and "personal_daily_digest" not in ids
        and "another_digest" not in ids
    )
    assert {p.field for p in problems} == {"job_id", "feature_type"}


def test_a_file_that_is_not_json_or_missing_is_one_problem_not_an_exception(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"jobs": [')
    jobs, problems = load_job_configuration(bad)
    assert (
        jobs == [] and "not valid JSON" in problems[0].message and problems[0].source == "bad.json"
    )
    jobs, problems = load_job_configuration(tmp_path / "missing.json")
    assert jobs == [] and "cannot read" in problems[0].message


def test_a_cron_string_is_short_for_a_cron_schedule_in_utc():
    job = JobConfig.model_validate(
        {"job_id": "j", "type": "INDIVIDUAL_USERS", "schedule": "0  6 * * 1", "template": "x"}
    )
    assert job.schedule.cron == "0 6 * * 1" and job.schedule.timezone == "UTC"
    _, problems = parse_jobs(
        {
            "jobs": [
                {
                    "job_id": "j",
                    "type": "INDIVIDUAL_USERS",
                    "schedule": "61 * * * *",
                    "template": "x",
                }
            ]
        }
    )
    assert problems[0].field == "schedule.cron"


@given(st.integers(min_value=-5, max_value=40))
def test_a_monthly_day_is_accepted_exactly_when_every_month_has_it(day):
    entry = {
        "job_id": "m",
        "type": "BATCH_CATEGORIES",
        "category": "c",
        "template": "x",
        "schedule": {"frequency": "monthly", "day": day, "time": "06:00"},
    }
    jobs, problems = parse_jobs({"jobs": [entry]})
    assert bool(jobs) == (1 <= day <= 28)
    assert all(p.field == "schedule.day" for p in problems)


def test_a_binary_file_is_one_problem_naming_the_file_not_a_decode_error(tmp_path):
    binary = tmp_path / "jobs.xlsx"
    binary.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\xff\xfe\x00\x00")
    jobs, problems = load_job_configuration(binary)
    (problem,) = problems
    assert jobs == [] and problem.source == "jobs.xlsx"
    assert "not a UTF-8 text file" in problem.message and "offset 10" in problem.message
