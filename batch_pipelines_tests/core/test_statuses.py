"""Job and batch statuses: terminal sets, legal and illegal transitions, service words."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_pipelines.core.errors import IllegalTransition
from batch_pipelines.core.statuses import (
    BATCH_TERMINAL,
    JOB_TERMINAL,
    BatchStatus,
    JobStatus,
    can_transition_batch,
    can_transition_job,
    check_batch_transition,
    check_job_transition,
    job_status_from_service,
)

# The service's forward order while a workflow is alive (seed 003's status flow).
FORWARD = [
    JobStatus.SUBMITTED,
    JobStatus.QUEUED,
    JobStatus.PENDING,
    JobStatus.RUNNING,
]


def test_job_terminal_set_is_exactly_finished_failed_cancelled_and_error():
    assert JobStatus.terminal() == {
        JobStatus.FINISHED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.ERROR,
    }
    assert JobStatus.terminal() is JOB_TERMINAL


@pytest.mark.parametrize("status", list(JobStatus))
def test_a_job_status_is_terminal_exactly_when_it_is_in_the_terminal_set(status):
    assert status.is_terminal == (status in JOB_TERMINAL)


@pytest.mark.parametrize(
    "status",
    [JobStatus.CANCEL_REQUESTED, JobStatus.CANCELLING, JobStatus.INITIATED, JobStatus.RUNNING],
)
def test_cancel_requests_and_in_flight_states_are_not_terminal(status):
    assert not status.is_terminal


def test_batch_terminal_set_excludes_initiated_active_and_paused():
    assert BatchStatus.terminal() == {
        BatchStatus.COMPLETED,
        BatchStatus.FAILED,
        BatchStatus.CANCELLED,
        BatchStatus.ERROR,
    }
    assert BatchStatus.terminal() is BATCH_TERMINAL
    for status in (BatchStatus.INITIATED, BatchStatus.ACTIVE, BatchStatus.PAUSED):
        assert not status.is_terminal


def test_the_full_happy_path_of_a_job_is_legal_step_by_step():
    path = [JobStatus.INITIATED, *FORWARD, JobStatus.FINISHED]
    for current, new in itertools.pairwise(path):
        assert check_job_transition(current, new) is new


@pytest.mark.parametrize(
    ("later_index", "earlier_index"),
    [(j, i) for i, j in itertools.combinations(range(len(FORWARD)), 2)],
)
def test_an_in_flight_job_never_goes_back_to_an_earlier_state(later_index, earlier_index):
    with pytest.raises(IllegalTransition):
        check_job_transition(FORWARD[later_index], FORWARD[earlier_index])


@pytest.mark.parametrize(
    ("earlier_index", "later_index"),
    list(itertools.combinations(range(len(FORWARD)), 2)),
)
def test_a_poll_may_skip_forward_over_in_flight_states(earlier_index, later_index):
    assert can_transition_job(FORWARD[earlier_index], FORWARD[later_index])


@pytest.mark.parametrize("status", FORWARD)
@pytest.mark.parametrize("end", [JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_any_in_flight_state_may_end_as_the_service_reports(status, end):
    assert can_transition_job(status, end)


@pytest.mark.parametrize("end", [JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED])
@pytest.mark.parametrize("new", list(JobStatus))
def test_a_job_that_ended_at_the_service_never_changes_again(end, new):
    assert can_transition_job(end, new) == (new == end)


def test_a_submission_error_may_be_retried_on_the_same_job():
    assert check_job_transition(JobStatus.ERROR, JobStatus.SUBMITTED) is JobStatus.SUBMITTED


def test_a_job_never_submitted_cannot_report_running():
    with pytest.raises(IllegalTransition) as excinfo:
        check_job_transition(JobStatus.INITIATED, JobStatus.RUNNING)
    assert excinfo.value.code == "BP-TRANSITION"
    assert "INITIATED" in str(excinfo.value) and "RUNNING" in str(excinfo.value)


def test_a_job_being_cancelled_can_finish_or_be_cancelled_but_not_be_resubmitted():
    for status in (JobStatus.CANCEL_REQUESTED, JobStatus.CANCELLING):
        assert can_transition_job(status, JobStatus.CANCELLED)
        assert can_transition_job(status, JobStatus.FINISHED)
        assert not can_transition_job(status, JobStatus.SUBMITTED)
    assert can_transition_job(JobStatus.CANCEL_REQUESTED, JobStatus.CANCELLING)
    assert not can_transition_job(JobStatus.CANCELLING, JobStatus.CANCEL_REQUESTED)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(list(JobStatus)))
def test_repeating_the_same_job_status_is_always_legal_because_polls_repeat(status):
    assert check_job_transition(status, status) is status


def test_job_transitions_accept_plain_strings_and_return_the_enum():
    result = check_job_transition("QUEUED", "RUNNING")
    assert result is JobStatus.RUNNING


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (BatchStatus.INITIATED, BatchStatus.ACTIVE),
        (BatchStatus.ACTIVE, BatchStatus.PAUSED),
        (BatchStatus.PAUSED, BatchStatus.ACTIVE),
        (BatchStatus.ACTIVE, BatchStatus.COMPLETED),
        (BatchStatus.ACTIVE, BatchStatus.FAILED),
        (BatchStatus.ACTIVE, BatchStatus.ERROR),
        (BatchStatus.ACTIVE, BatchStatus.CANCELLED),
        (BatchStatus.INITIATED, BatchStatus.COMPLETED),  # an empty batch settles at once
        (BatchStatus.FAILED, BatchStatus.ACTIVE),  # resubmission reopens
        (BatchStatus.COMPLETED, BatchStatus.ACTIVE),
    ],
)
def test_legal_batch_transitions_are_accepted(current, new):
    assert check_batch_transition(current, new) is new


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (BatchStatus.INITIATED, BatchStatus.FAILED),
        (BatchStatus.PAUSED, BatchStatus.COMPLETED),
        (BatchStatus.COMPLETED, BatchStatus.FAILED),
        (BatchStatus.CANCELLED, BatchStatus.COMPLETED),
        (BatchStatus.ACTIVE, BatchStatus.INITIATED),
    ],
)
def test_illegal_batch_transitions_raise(current, new):
    assert not can_transition_batch(current, new)
    with pytest.raises(IllegalTransition):
        check_batch_transition(current, new)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Succeeded", JobStatus.FINISHED),
        ("SUCCESS", JobStatus.FINISHED),
        ("completed", JobStatus.FINISHED),
        ("InProgress", JobStatus.RUNNING),
        ("in progress", JobStatus.RUNNING),
        ("IN_PROGRESS", JobStatus.RUNNING),
        ("Canceled", JobStatus.CANCELLED),
        ("  queued  ", JobStatus.QUEUED),
        ("cancel requested", JobStatus.CANCEL_REQUESTED),
        ("FAILED", JobStatus.FAILED),
    ],
)
def test_service_words_and_their_aliases_map_onto_job_statuses(raw, expected):
    assert job_status_from_service(raw) is expected


@pytest.mark.parametrize("raw", ["EXPLODED", "", "done-ish", "Paused"])
def test_an_unknown_service_word_raises_instead_of_being_guessed(raw):
    with pytest.raises(IllegalTransition) as excinfo:
        job_status_from_service(raw)
    assert repr(raw) in str(excinfo.value)
