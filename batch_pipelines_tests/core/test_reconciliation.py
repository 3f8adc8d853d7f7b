"""Reconciliation: job states -> batch status, by the rules of seed 003."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_pipelines.core.reconciliation import (
    ConfigurationView,
    JobView,
    Reconciliation,
    reconcile,
)
from batch_pipelines.core.statuses import BatchStatus, JobStatus

F, X, C, E = JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.ERROR
NON_TERMINAL = [s for s in JobStatus if not s.is_terminal]


def configs(*ids: int, skipped: tuple[int, ...] = ()) -> list[ConfigurationView]:
    return [ConfigurationView(id=i, skipped=i in skipped) for i in ids]


def jobs(*specs: tuple) -> list[JobView]:
    """Each spec is (config_id, status) or (config_id, status, skipped); ids count from 1."""
    return [JobView(n, spec[0], spec[1], *spec[2:]) for n, spec in enumerate(specs, start=1)]


# --- the rules, one by one ---------------------------------------------------------


def test_an_empty_batch_is_completed_at_once():
    result = reconcile([], [])
    assert result.status is BatchStatus.COMPLETED
    assert result.summary.total_jobs == 0


def test_a_batch_whose_configurations_and_jobs_are_all_skipped_is_completed():
    result = reconcile(configs(1, 2, skipped=(1, 2)), jobs((1, X, True)))
    assert result.status is BatchStatus.COMPLETED


def test_configurations_without_any_job_keep_the_batch_active():
    result = reconcile(configs(1, 2), [])
    assert result.status is BatchStatus.ACTIVE
    assert "2 configurations" in result.reason


def test_a_configuration_whose_only_job_was_skipped_unfinished_keeps_the_batch_active():
    result = reconcile(configs(1), jobs((1, X, True)))
    assert result.status is BatchStatus.ACTIVE


@pytest.mark.parametrize("running", NON_TERMINAL)
def test_any_non_terminal_job_keeps_the_batch_active_even_next_to_an_error(running):
    result = reconcile(configs(1, 2, 3), jobs((1, E), (2, X), (3, running)))
    assert result.status is BatchStatus.ACTIVE
    assert result.reason == "1 of 3 jobs still in progress"


def test_a_batch_whose_every_job_is_cancelled_is_cancelled():
    result = reconcile(configs(1, 2), jobs((1, C), (2, C), (2, F, True)))
    assert result.status is BatchStatus.CANCELLED
    assert result.summary.cancelled_job_ids == [1, 2]


def test_any_error_job_makes_the_batch_error_even_when_others_failed():
    result = reconcile(configs(1, 2, 3), jobs((1, X), (2, E), (3, C)))
    assert result.status is BatchStatus.ERROR
    assert result.reason == "1 of 3 jobs ERROR"


def test_an_error_next_to_cancelled_jobs_is_error_not_cancelled():
    result = reconcile(configs(1, 2), jobs((1, C), (2, E)))
    assert result.status is BatchStatus.ERROR


def test_failed_jobs_make_the_batch_failed_and_the_reason_counts_them():
    specs = [(i, F) for i in range(1, 9)] + [(9, X), (10, X)]
    result = reconcile(configs(*range(1, 11)), jobs(*specs))
    assert result.status is BatchStatus.FAILED
    assert result.reason == "2 of 10 jobs FAILED"
    assert result.summary.failed_job_ids == [9, 10]


def test_every_configuration_with_a_finished_job_completes_the_batch():
    result = reconcile(configs(1, 2), jobs((1, F), (2, F)))
    assert result.status is BatchStatus.COMPLETED
    assert result.summary.fulfilled_configuration_ids == [1, 2]


def test_a_cancelled_attempt_beside_a_finished_one_still_completes_the_batch():
    result = reconcile(configs(1, 2), jobs((1, C), (1, F), (2, F)))
    assert result.status is BatchStatus.COMPLETED


def test_a_cancelled_job_that_leaves_a_configuration_unfulfilled_keeps_the_batch_active():
    result = reconcile(configs(1, 2), jobs((1, F), (2, C)))
    assert result.status is BatchStatus.ACTIVE
    assert result.summary.unfulfilled_configuration_ids == [2]
    assert "1 of 2 configurations" in result.reason


def test_a_failed_job_resubmitted_and_finished_completes_the_batch():
    # The failed attempt is marked skipped by resubmission; only the new job counts.
    result = reconcile(configs(1, 2), jobs((1, F), (2, X, True), (2, F)))
    assert result.status is BatchStatus.COMPLETED
    assert result.summary.failed_job_ids == []


def test_a_finished_job_superseded_by_a_cancelled_resubmission_still_fulfils_its_configuration():
    # Seed 003: "COMPLETED: All job configurations have at least one FINISHED job" - the
    # words do not say non-skipped, and the work of configuration 2 was done once.
    result = reconcile(configs(1, 2), jobs((1, F), (2, F, True), (2, C)))
    assert result.status is BatchStatus.COMPLETED
    assert result.summary.fulfilled_configuration_ids == [1, 2]
    assert result.summary.unfulfilled_configuration_ids == []


def test_a_superseded_finished_job_fulfils_its_configuration_even_without_a_live_job():
    result = reconcile(configs(1), jobs((1, F, True)))
    assert result.status is BatchStatus.COMPLETED
    assert result.reason == "the one configuration has a FINISHED job"


def test_a_superseded_finished_job_does_not_hide_a_failed_or_running_resubmission():
    assert reconcile(configs(1), jobs((1, F, True), (1, X))).status is BatchStatus.FAILED
    running = reconcile(configs(1), jobs((1, F, True), (1, JobStatus.RUNNING)))
    assert running.status is BatchStatus.ACTIVE


def test_a_skipped_configuration_is_not_fulfilled_by_its_finished_job():
    result = reconcile(configs(1, 2, skipped=(1,)), jobs((1, F, True), (2, C)))
    assert result.status is BatchStatus.CANCELLED
    assert result.summary.fulfilled_configuration_ids == []


def test_a_skipped_configuration_without_jobs_does_not_block_completion():
    result = reconcile(configs(1, 2, skipped=(2,)), jobs((1, F)))
    assert result.status is BatchStatus.COMPLETED
    assert result.summary.non_skipped_configurations == 1
    assert result.summary.unfulfilled_configuration_ids == []


# --- the summary -------------------------------------------------------------------


def test_the_summary_counts_skipped_jobs_under_skipped_and_the_rest_under_their_status():
    result = reconcile(
        configs(1, 2, 3, skipped=(3,)),
        jobs((1, F), (2, X, True), (2, X), (3, E, True), (1, C)),
    )
    s = result.summary
    assert s.job_status_counts == {"FINISHED": 1, "FAILED": 1, "CANCELLED": 1, "SKIPPED": 2}
    assert (s.total_jobs, s.non_skipped_jobs) == (5, 3)
    assert (s.total_configurations, s.non_skipped_configurations) == (3, 2)
    assert s.fulfilled_configuration_ids == [1]
    assert s.unfulfilled_configuration_ids == [2]
    assert (s.fulfilled_configurations, s.unfulfilled_configurations) == (1, 1)
    assert s.failed_job_ids == [3]
    assert s.cancelled_job_ids == [5]
    assert s.error_job_ids == []


def test_the_reconciliation_round_trips_through_json():
    result = reconcile(configs(1), jobs((1, X)))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["status"] == "FAILED"
    assert data["reason"] == result.reason
    assert data["summary"]["job_status_counts"] == {"FAILED": 1}
    assert data["summary"]["failed_job_ids"] == [1]


def test_a_job_view_accepts_a_plain_status_string_and_rejects_unknown_words():
    assert JobView(1, 1, "FINISHED").status is JobStatus.FINISHED
    with pytest.raises(ValueError):
        JobView(1, 1, "DONE")


def test_duplicate_job_ids_are_rejected_instead_of_being_counted_twice():
    with pytest.raises(ValueError, match="duplicate job ids"):
        reconcile(configs(1), [JobView(7, 1, F), JobView(7, 1, X)])


def test_duplicate_configuration_ids_are_rejected():
    with pytest.raises(ValueError, match="duplicate configuration ids"):
        reconcile(configs(1, 1), [])


# --- properties --------------------------------------------------------------------

PROPERTY = settings(max_examples=80, deadline=None)

config_sets = st.lists(st.booleans(), min_size=0, max_size=5).map(
    lambda flags: [ConfigurationView(i, skipped=s) for i, s in enumerate(flags, start=1)]
)


@st.composite
def batches(draw) -> tuple[list[ConfigurationView], list[JobView]]:
    cfgs = draw(config_sets)
    # Jobs may also point at a configuration id that is not listed (id len+1): the rules
    # must not crash on an orphan job row.
    cfg_ids = st.integers(min_value=1, max_value=len(cfgs) + 1)
    specs = draw(
        st.lists(st.tuples(cfg_ids, st.sampled_from(list(JobStatus)), st.booleans()), max_size=8)
    )
    return cfgs, [JobView(n, c, s, k) for n, (c, s, k) in enumerate(specs, start=1)]


@PROPERTY
@given(batches(), st.randoms(use_true_random=False))
def test_the_result_does_not_depend_on_the_order_of_jobs_or_configurations(batch, rnd):
    cfgs, js = batch
    expected = reconcile(cfgs, js)
    rnd.shuffle(cfgs)
    rnd.shuffle(js)
    assert reconcile(cfgs, js) == expected


@PROPERTY
@given(batches(), st.sampled_from(list(JobStatus)), st.integers(min_value=1, max_value=6))
def test_adding_a_skipped_job_never_changes_the_status_unless_it_finished(batch, status, config_id):
    cfgs, js = batch
    before = reconcile(cfgs, js)
    after = reconcile(cfgs, [*js, JobView(len(js) + 1, config_id, status, skipped=True)])
    if status is JobStatus.FINISHED and after.status is not before.status:
        # A superseded FINISHED job can only fulfil a configuration (rule 7).
        assert (before.status, after.status) == (BatchStatus.ACTIVE, BatchStatus.COMPLETED)
    else:
        assert after.status is before.status
    assert after.summary.job_status_counts.get("SKIPPED", 0) == (
        before.summary.job_status_counts.get("SKIPPED", 0) + 1
    )


@PROPERTY
@given(batches())
def test_summary_counts_always_add_up(batch):
    cfgs, js = batch
    s = reconcile(cfgs, js).summary
    assert sum(s.job_status_counts.values()) == s.total_jobs == len(js)
    assert s.fulfilled_configurations + s.unfulfilled_configurations == s.non_skipped_configurations
    assert sorted(s.fulfilled_configuration_ids + s.unfulfilled_configuration_ids) == sorted(
        c.id for c in cfgs if not c.skipped
    )


@PROPERTY
@given(batches())
def test_a_batch_with_a_live_non_terminal_job_is_always_active(batch):
    cfgs, js = batch
    result = reconcile(cfgs, js)
    if any(not j.skipped and not j.status.is_terminal for j in js):
        assert result.status is BatchStatus.ACTIVE
    if result.status in (BatchStatus.FAILED, BatchStatus.ERROR, BatchStatus.CANCELLED):
        assert all(j.skipped or j.status.is_terminal for j in js)


@st.composite
def fulfilled_batches(draw) -> tuple[list[ConfigurationView], list[JobView]]:
    """Every live configuration has a FINISHED live job; other live jobs are FINISHED or
    CANCELLED; skipped jobs (any status) and skipped configurations are sprinkled in."""
    n = draw(st.integers(min_value=1, max_value=5))
    skipped_cfgs = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if all(skipped_cfgs):
        skipped_cfgs[0] = False
    cfgs = [ConfigurationView(i, skipped=s) for i, s in enumerate(skipped_cfgs, start=1)]
    specs = [(c.id, F, False) for c in cfgs if not c.skipped]
    specs += draw(
        st.lists(st.tuples(st.integers(1, n), st.sampled_from([F, C]), st.just(False)), max_size=4)
    )
    specs += draw(
        st.lists(
            st.tuples(st.integers(1, n), st.sampled_from(list(JobStatus)), st.just(True)),
            max_size=4,
        )
    )
    order = draw(st.permutations(specs))
    return cfgs, [JobView(i, c, s, k) for i, (c, s, k) in enumerate(order, start=1)]


@PROPERTY
@given(fulfilled_batches())
def test_every_configuration_finished_and_nothing_failed_or_running_means_completed(batch):
    cfgs, js = batch
    result = reconcile(cfgs, js)
    assert isinstance(result, Reconciliation)
    assert result.status is BatchStatus.COMPLETED
    assert result.summary.unfulfilled_configuration_ids == []
