"""Batch job specs and options, and the job lifecycle (start, pause, resume, cancel, delete)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from batch_pipelines.core.errors import ConfigurationError, IllegalTransition
from batch_pipelines.document_ai import batch_jobs
from batch_pipelines.document_ai.batch_jobs import (
    BatchJobSpec,
    DocJobStatus,
    JobOptions,
    allowed_actions,
    can_delete,
    cancel,
    check_delete,
    check_pipeline,
    complete,
    fail,
    pause,
    resume,
    start,
)
from batch_pipelines.document_ai.items import Item, parse_items

P, R, Z, C, F, X = (
    DocJobStatus.PENDING,
    DocJobStatus.RUNNING,
    DocJobStatus.PAUSED,
    DocJobStatus.COMPLETED,
    DocJobStatus.FAILED,
    DocJobStatus.CANCELLED,
)


def spec(**overrides) -> BatchJobSpec:
    values = {
        "name": "papers",
        "project_id": "proj-1",
        "pipeline": "document_pipeline",
        "items": parse_items([{"content": "a"}, {"content": "b"}]),
    }
    return BatchJobSpec(**{**values, **overrides})


# --- options and spec --------------------------------------------------------------


def test_options_default_to_the_seeds_values():
    options = JobOptions()
    assert (
        options.concurrency,
        options.checkpoint_frequency,
        options.auto_start,
        options.cost_budget,
    ) == (
        5,
        10,
        True,
        None,
    )


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [("concurrency", [1, 50], [0, 51]), ("checkpoint_frequency", [1, 100], [0, 101])],
)
def test_option_limits_are_inclusive_at_the_boundaries(field, good, bad):
    for value in good:
        assert getattr(JobOptions(**{field: value}), field) == value
    for value in bad:
        with pytest.raises(ValidationError, match=field):
            JobOptions(**{field: value})


def test_a_cost_budget_is_a_non_negative_finite_decimal():
    assert JobOptions(cost_budget="12.50").cost_budget == Decimal("12.50")
    assert JobOptions(cost_budget=0).cost_budget == Decimal(0)
    for bad in ("-0.01", "NaN", "Infinity"):
        with pytest.raises(ValidationError, match="cost_budget"):
            JobOptions(cost_budget=bad)


def test_unknown_options_are_refused_rather_than_ignored():
    with pytest.raises(ValidationError, match="checkpointFrequency"):
        JobOptions(checkpointFrequency=5)


def test_a_spec_holds_its_items_and_default_options():
    job = spec()
    assert [i.content for i in job.items] == ["a", "b"]
    assert job.options == JobOptions()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "  "}, "name"),
        ({"project_id": ""}, "project_id"),
        ({"pipeline": ""}, "pipeline"),
        ({"items": []}, "items"),
        ({"items": [Item(index=1, content="x")]}, "items"),
    ],
)
def test_a_spec_with_a_blank_field_or_bad_items_is_refused(overrides, field):
    with pytest.raises(ValidationError, match=field):
        spec(**overrides)


def test_a_spec_naming_an_unknown_pipeline_is_refused_listing_the_known_ones():
    check_pipeline(spec(), ["document_pipeline"])
    with pytest.raises(ConfigurationError, match="unknown pipeline 'nope'; available: a, b"):
        check_pipeline(spec(pipeline="nope"), ["b", "a"])


# --- lifecycle: each rule ----------------------------------------------------------


def test_the_statuses_are_exactly_the_six_of_the_seed():
    assert [s.value for s in DocJobStatus] == [
        "PENDING",
        "RUNNING",
        "PAUSED",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    ]


LEGAL = {
    ("start", P): R,
    ("pause", R): Z,
    ("resume", Z): R,
    ("resume", F): R,
    ("cancel", P): X,
    ("cancel", R): X,
    ("cancel", Z): X,
    ("cancel", F): X,
    ("complete", R): C,
    ("fail", R): F,
}
FUNCTIONS = {
    "start": start,
    "pause": pause,
    "resume": resume,
    "cancel": cancel,
    "complete": complete,
    "fail": fail,
}


@pytest.mark.parametrize("action", list(FUNCTIONS))
@pytest.mark.parametrize("status", list(DocJobStatus))
def test_each_action_is_legal_exactly_where_the_rules_allow_it(action, status):
    function = FUNCTIONS[action]
    if (action, status) in LEGAL:
        assert function(status) is LEGAL[(action, status)]
    else:
        with pytest.raises(IllegalTransition) as info:
            function(status)
        assert info.value.message.startswith(f"cannot {action} a job that is {status}: ")
        assert info.value.code == "BP-TRANSITION"
        assert info.value.details == {"action": action, "status": status.value}


@pytest.mark.parametrize(
    ("function", "status", "message"),
    [
        (pause, P, "cannot pause a job that is PENDING: only a RUNNING job can be paused"),
        (start, Z, "cannot start a job that is PAUSED: only a PENDING job can be started"),
        (
            resume,
            R,
            "cannot resume a job that is RUNNING: only a PAUSED or FAILED job can be resumed",
        ),
        (
            cancel,
            C,
            "cannot cancel a job that is COMPLETED: a COMPLETED or CANCELLED job cannot be cancelled",
        ),
    ],
)
def test_illegal_actions_are_refused_in_plain_words(function, status, message):
    with pytest.raises(IllegalTransition) as info:
        function(status)
    assert info.value.message == message


@pytest.mark.parametrize("status", list(DocJobStatus))
def test_a_job_can_be_deleted_unless_it_is_running(status):
    assert can_delete(status) == (status is not R)
    if status is R:
        with pytest.raises(
            IllegalTransition, match="cannot delete a job that is RUNNING: pause or cancel it first"
        ):
            check_delete(status)
    else:
        check_delete(status)


def test_plain_strings_are_accepted_and_unknown_ones_are_refused():
    assert start("PENDING") is R
    with pytest.raises(IllegalTransition, match="unknown job status 'DONE'"):
        pause("DONE")


def test_allowed_actions_lists_what_the_ui_may_offer():
    assert allowed_actions(P) == {"start", "cancel", "delete"}
    assert allowed_actions(R) == {"pause", "cancel"}
    assert allowed_actions(Z) == {"resume", "cancel", "delete"}
    assert allowed_actions(F) == {"resume", "cancel", "delete"}
    assert allowed_actions(C) == {"delete"}
    assert allowed_actions(X) == {"delete"}


# --- lifecycle: property -----------------------------------------------------------

ACTION_NAMES = ["start", "pause", "resume", "cancel", "complete", "fail", "delete"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(DocJobStatus)), st.lists(st.sampled_from(ACTION_NAMES), max_size=30))
def test_random_action_sequences_never_break_the_rules(initial, actions):
    status, deleted = initial, False
    for action in actions:
        before = status
        if action == "delete":
            try:
                check_delete(status)
            except IllegalTransition:
                assert before is R
                continue
            assert before is not R
            deleted = True
            break
        try:
            status = getattr(batch_jobs, action)(status)
        except IllegalTransition:
            assert status is before  # a refused action changes nothing
            continue
        # Settled jobs never change; a job only runs from PENDING, PAUSED or FAILED; only a
        # running job pauses, completes or fails; nothing goes back to PENDING.
        assert before not in (C, X)
        assert status is not P
        if status is R:
            assert before in (P, Z, F)
        if status in (Z, C, F):
            assert before is R
        if status is X:
            assert before in (P, R, Z, F)
    assert deleted or status in DocJobStatus


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([C, X]), st.lists(st.sampled_from(ACTION_NAMES[:6]), max_size=20))
def test_a_completed_or_cancelled_job_never_changes_status(settled, actions):
    for action in actions:
        with pytest.raises(IllegalTransition):
            getattr(batch_jobs, action)(settled)
    assert can_delete(settled)
