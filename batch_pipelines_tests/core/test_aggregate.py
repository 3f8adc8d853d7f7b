"""The aggregated batch view of seed 000 and its ETA estimate."""

from __future__ import annotations

import heapq
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_pipelines.core.aggregate import (
    AggregatedView,
    ItemState,
    ViewState,
    aggregate,
    estimate_eta_seconds,
)

Q, P, D, X = ItemState.QUEUED, ItemState.IN_PROGRESS, ItemState.COMPLETED, ItemState.FAILED


def states(queued=0, in_progress=0, completed=0, failed=0) -> list[ItemState]:
    return [Q] * queued + [P] * in_progress + [D] * completed + [X] * failed


# --- the view ----------------------------------------------------------------------


def test_the_seed_example_of_fifty_roles_gives_the_documented_figures():
    view = aggregate(states(queued=10, in_progress=3, completed=35, failed=2))
    assert (view.total, view.queued, view.in_progress, view.completed, view.failed) == (
        50,
        10,
        3,
        35,
        2,
    )
    assert view.state is ViewState.IN_PROGRESS
    assert view.progress_percent == 74.0
    assert view.success_rate == 94.6


def test_a_batch_whose_items_are_all_queued_is_pending_with_no_eta_yet():
    view = aggregate(states(queued=4))
    assert view.state is ViewState.PENDING
    assert view.progress_percent == 0.0
    assert view.success_rate == 0.0
    assert view.eta_seconds is None


def test_a_batch_whose_items_all_completed_is_completed_at_full_success():
    view = aggregate(states(completed=3))
    assert view.state is ViewState.COMPLETED
    assert (view.progress_percent, view.success_rate, view.eta_seconds) == (100.0, 100.0, 0.0)


def test_a_settled_batch_with_a_failure_is_partial():
    view = aggregate(states(completed=3, failed=1))
    assert view.state is ViewState.PARTIAL
    assert view.progress_percent == 100.0
    assert view.success_rate == 75.0


def test_a_batch_where_everything_failed_is_partial_with_zero_success():
    view = aggregate(states(failed=2))
    assert view.state is ViewState.PARTIAL
    assert view.success_rate == 0.0


def test_settled_items_beside_queued_ones_count_as_in_progress_not_pending():
    view = aggregate(states(queued=2, completed=1))
    assert view.state is ViewState.IN_PROGRESS


def test_one_running_item_makes_the_batch_in_progress():
    assert aggregate(states(queued=5, in_progress=1)).state is ViewState.IN_PROGRESS


def test_an_empty_batch_is_completed_with_full_progress_and_no_success():
    view = aggregate([])
    assert view == AggregatedView(0, 0, 0, 0, 0, ViewState.COMPLETED, 100.0, 0.0, 0.0)


def test_plain_strings_are_accepted_whatever_their_case_or_padding():
    view = aggregate(["queued", " COMPLETED ", "in_progress", "Failed"])
    assert (view.queued, view.in_progress, view.completed, view.failed) == (1, 1, 1, 1)


def test_an_unknown_item_state_is_rejected_with_the_known_ones_listed():
    with pytest.raises(ValueError, match="in_progress"):
        aggregate(["ready"])


def test_percentages_round_half_up_from_exact_arithmetic():
    # 1 of 400 is exactly 0.25 %: round() on a float would show 0.2.
    assert aggregate(states(queued=399, completed=1)).progress_percent == 0.3
    assert aggregate(states(queued=7, completed=1)).progress_percent == 12.5
    assert aggregate(states(queued=1, completed=2)).progress_percent == 66.7


def test_progress_never_shows_a_hundred_percent_while_an_item_is_unsettled():
    assert aggregate(states(queued=1, completed=1999)).progress_percent == 99.9


def test_progress_never_shows_zero_once_an_item_has_settled():
    assert aggregate(states(queued=2999, completed=1)).progress_percent == 0.1


def test_success_rate_never_shows_a_hundred_percent_when_something_failed():
    assert aggregate(states(completed=1999, failed=1)).success_rate == 99.9


def test_the_view_serialises_to_json_with_plain_values():
    data = json.loads(json.dumps(aggregate(states(queued=1, completed=1)).to_dict()))
    assert data["state"] == "in_progress"
    assert data["total"] == 2
    assert data["eta_seconds"] is None


def test_the_view_passes_durations_and_concurrency_to_the_eta():
    view = aggregate(states(queued=10, completed=2), durations_seconds=[60, 120], concurrency=5)
    assert view.eta_seconds == 180.0  # two waves of a 90 s mean


def test_a_concurrency_below_one_is_rejected():
    with pytest.raises(ValueError):
        aggregate(states(queued=1), concurrency=0)


# --- properties of the view --------------------------------------------------------

PROPERTY = settings(max_examples=100, deadline=None)
item_lists = st.lists(st.sampled_from(list(ItemState)), max_size=40)


@PROPERTY
@given(item_lists)
def test_counts_always_sum_to_the_total_and_percentages_stay_in_range(items):
    view = aggregate(items)
    assert view.queued + view.in_progress + view.completed + view.failed == view.total
    assert view.total == len(items)
    assert 0.0 <= view.progress_percent <= 100.0
    assert 0.0 <= view.success_rate <= 100.0


@PROPERTY
@given(item_lists)
def test_the_state_is_settled_exactly_when_nothing_is_queued_or_running(items):
    view = aggregate(items)
    if view.total == 0:
        return
    settled = view.queued + view.in_progress == 0
    assert (view.state in (ViewState.COMPLETED, ViewState.PARTIAL)) == settled
    assert (view.state is ViewState.PARTIAL) == (settled and view.failed > 0)
    assert (view.state is ViewState.PENDING) == (view.queued == view.total)
    assert (view.progress_percent == 100.0) == settled


@PROPERTY
@given(item_lists, st.randoms(use_true_random=False))
def test_the_view_does_not_depend_on_item_order(items, rnd):
    expected = aggregate(items)
    rnd.shuffle(items)
    assert aggregate(items) == expected


# --- ETA -------------------------------------------------------------------------


@pytest.mark.parametrize(("roles", "expected_minutes"), [(5, 15), (10, 30), (50, 150), (100, 300)])
def test_the_eta_reproduces_the_seed_throughput_table_at_five_workers(roles, expected_minutes):
    eta = estimate_eta_seconds([15 * 60], remaining=roles, concurrency=5)
    assert eta == expected_minutes * 60


def test_there_is_no_eta_before_any_duration_was_observed():
    assert estimate_eta_seconds([], remaining=3, concurrency=2) is None


def test_the_eta_is_zero_when_nothing_is_left_even_without_observations():
    assert estimate_eta_seconds([], remaining=0, concurrency=2, in_progress=0) == 0.0


def test_in_flight_items_alone_are_assumed_half_done():
    assert estimate_eta_seconds([100.0], remaining=0, concurrency=4, in_progress=3) == 50.0


def test_queued_items_fill_idle_workers_before_busy_ones():
    # 5 workers, 3 busy until 50 s: two queued items start now and end at 100 s...
    assert estimate_eta_seconds([100.0], remaining=2, concurrency=5, in_progress=3) == 100.0
    # ...a third must wait for a busy worker and ends at 150 s.
    assert estimate_eta_seconds([100.0], remaining=3, concurrency=5, in_progress=3) == 150.0


def test_in_flight_items_beyond_the_concurrency_delay_the_queue_by_half_a_duration():
    assert estimate_eta_seconds([100.0], remaining=1, concurrency=2, in_progress=5) == 150.0


def test_the_eta_uses_the_mean_observed_duration():
    assert estimate_eta_seconds([10.0, 20.0, 60.0], remaining=1, concurrency=1) == 30.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"remaining": 1, "concurrency": 0},
        {"remaining": -1, "concurrency": 1},
        {"remaining": 1, "concurrency": 1, "in_progress": -1},
    ],
)
def test_impossible_eta_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        estimate_eta_seconds([1.0], **kwargs)


def test_negative_or_nan_durations_are_rejected():
    with pytest.raises(ValueError):
        estimate_eta_seconds([1.0, -2.0], remaining=1, concurrency=1)
    with pytest.raises(ValueError):
        estimate_eta_seconds([math.nan], remaining=1, concurrency=1)


def simulate(mean: float, remaining: int, concurrency: int, in_progress: int) -> float:
    """Brute-force list scheduling, the independent reference for the closed form."""
    if remaining == 0 and in_progress == 0:
        return 0.0
    # Every in-flight item is running (even beyond the limit) and ends at mean/2; a worker
    # slot becomes available to the queue only when the number running drops below the
    # limit, i.e. at mean/2 for the busy slots.
    busy = min(in_progress, concurrency)
    slots = [mean / 2] * busy + [0.0] * (concurrency - busy)
    end = mean / 2 if in_progress else 0.0
    heapq.heapify(slots)
    for _ in range(remaining):
        start = heapq.heappop(slots)
        heapq.heappush(slots, start + mean)
        end = max(end, start + mean)
    return end


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=1, max_value=1000),
    st.integers(min_value=0, max_value=60),
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=0, max_value=12),
)
def test_the_eta_equals_a_brute_force_schedule_of_the_same_work(
    mean, remaining, concurrency, in_progress
):
    eta = estimate_eta_seconds(
        [float(mean)], remaining=remaining, concurrency=concurrency, in_progress=in_progress
    )
    assert eta == simulate(float(mean), remaining, concurrency, in_progress)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=1e4), min_size=1, max_size=5),
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=1, max_value=8),
)
def test_more_remaining_work_never_shortens_and_more_workers_never_lengthen_the_eta(
    durations, remaining, concurrency
):
    eta = estimate_eta_seconds(durations, remaining=remaining, concurrency=concurrency)
    assert eta is not None and eta >= 0
    assert estimate_eta_seconds(durations, remaining=remaining + 1, concurrency=concurrency) >= eta
    assert estimate_eta_seconds(durations, remaining=remaining, concurrency=concurrency + 1) <= eta


@given(
    st.dictionaries(
        st.sampled_from(list(ItemState)), st.integers(min_value=0, max_value=300), max_size=4
    ),
    st.lists(st.floats(min_value=0, max_value=1000), max_size=5),
    st.integers(min_value=1, max_value=20),
)
def test_aggregating_counts_is_aggregating_the_items_they_count(counts, durations, concurrency):
    from batch_pipelines.core.aggregate import aggregate_counts

    items = [state for state, n in counts.items() for _ in range(n)]
    by_name = {state.value: n for state, n in counts.items()}  # states may come by name
    expected = aggregate(items, durations_seconds=durations, concurrency=concurrency)
    assert (
        aggregate_counts(by_name, durations_seconds=durations, concurrency=concurrency) == expected
    )


def test_a_negative_count_is_refused():
    from batch_pipelines.core.aggregate import aggregate_counts

    with pytest.raises(ValueError, match="negative"):
        aggregate_counts({"queued": -1})
