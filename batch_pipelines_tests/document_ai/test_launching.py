"""The launcher's pure decisions: one run per generation, dead runs found by their heartbeat."""

from __future__ import annotations

from batch_pipelines.document_ai.launching import RunningJob, RunSeen, launch_decisions, run_key


def test_a_running_job_without_a_run_of_its_generation_gets_one():
    d = launch_decisions(
        [RunningJob("papers-1", "document_pipeline", 2)],
        {run_key("papers-1", 1): [RunSeen("r1", "SUCCESS")]},
    )
    assert [(x.key, x.run_key) for x in d.to_launch] == [("papers-1", "papers-1#2")]
    assert d.to_fail == [] and d.dead_runs == []


def test_a_job_whose_run_is_active_and_heartbeating_is_left_alone():
    job = RunningJob("papers-1", "document_pipeline", 1, claim_expired_seconds=None)
    d = launch_decisions([job], {"papers-1#1": [RunSeen("r1", "STARTED")]})
    assert (d.to_launch, d.to_fail, d.dead_runs) == ([], [], [])


def test_a_started_run_whose_worker_stopped_heartbeating_is_reported_dead_and_the_job_failed():
    job = RunningJob("papers-1", "document_pipeline", 1, claim_expired_seconds=300)
    d = launch_decisions([job], {"papers-1#1": [RunSeen("r1", "STARTED")]}, dead_after_seconds=60)
    assert [run for run, _ in d.dead_runs] == ["r1"]
    assert d.to_fail[0][0] == "papers-1" and "stopped renewing its claim" in d.to_fail[0][1]
    # a claim only just expired (a slow renewal) is not a death
    recent = RunningJob("papers-1", "document_pipeline", 1, claim_expired_seconds=5)
    assert (
        launch_decisions(
            [recent], {"papers-1#1": [RunSeen("r1", "STARTED")]}, dead_after_seconds=60
        ).dead_runs
        == []
    )


def test_a_job_whose_runs_all_ended_without_settling_it_is_failed_with_the_run_named():
    d = launch_decisions(
        [RunningJob("papers-1", "document_pipeline", 1)], {"papers-1#1": [RunSeen("r9", "FAILURE")]}
    )
    assert d.to_launch == [] and d.dead_runs == []
    assert d.to_fail == [
        ("papers-1", "run r9 ended FAILURE without settling the job; resume it to go on")
    ]


def test_a_job_worked_outside_dagster_by_a_live_worker_gets_no_run():
    job = RunningJob("papers-1", "document_pipeline", 1, claimed_elsewhere=True)
    d = launch_decisions([job], {})
    assert (d.to_launch, d.to_fail, d.to_complete) == ([], [], [])


def test_a_job_held_by_a_live_worker_is_not_failed_for_a_run_that_ended_without_the_claim():
    # `docs resume --run` raced the launcher: its run found the claim taken and failed, but
    # the CLI worker is alive and working the job.
    job = RunningJob("papers-1", "document_pipeline", 2, claimed_elsewhere=True)
    d = launch_decisions([job], {"papers-1#2": [RunSeen("r7", "FAILURE")]})
    assert (d.to_launch, d.to_fail, d.dead_runs, d.to_complete) == ([], [], [], [])
    # once that worker's claim has run out, the job is failed as before
    gone = RunningJob("papers-1", "document_pipeline", 2, claim_expired_seconds=90)
    d = launch_decisions([gone], {"papers-1#2": [RunSeen("r7", "FAILURE")]})
    assert [key for key, _ in d.to_fail] == ["papers-1"]


def test_a_running_job_with_every_item_settled_is_completed_instead_of_given_a_run():
    job = RunningJob("papers-1", "document_pipeline", 3, nothing_left=True)
    d = launch_decisions([job], {})
    assert d.to_launch == [] and d.to_complete == ["papers-1"]
    # with its run still going, that run settles it
    busy = launch_decisions([job], {"papers-1#3": [RunSeen("r1", "STARTED")]})
    assert busy.to_complete == [] and busy.to_launch == []
