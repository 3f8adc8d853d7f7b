"""The cost ledger: prices, usage, per-call cost and de-duplicated totals."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_pipelines.core.costs import (
    COST_QUANTUM,
    DEFAULT_PRICES,
    UNASSIGNED,
    CostEntry,
    ModelPrice,
    PriceTable,
    Usage,
    cost_of,
    estimate_usage,
    summarize,
)
from batch_pipelines.core.errors import ConfigurationError

PRICE = ModelPrice(Decimal("0.00015"), Decimal("0.0006"))


def entry(
    key: str,
    *,
    tokens=(1000, 500),
    phase="extract",
    item="doc-1",
    batch="b1",
    kind="call",
    estimated=False,
):
    usage = Usage(*tokens, estimated=estimated)
    return CostEntry(key, batch, phase, item, "sim-small", usage, cost_of(usage, PRICE), kind)


# --- prices ------------------------------------------------------------------------


def test_a_float_price_becomes_the_decimal_it_reads_as_not_its_binary_approximation():
    price = ModelPrice(0.1, "0.2")
    assert price.input_per_1k == Decimal("0.1")
    assert price.output_per_1k == Decimal("0.2")


@pytest.mark.parametrize("bad", [-1, "abc", float("nan"), float("inf"), True])
def test_a_negative_or_non_numeric_price_is_a_configuration_error(bad):
    with pytest.raises(ConfigurationError):
        ModelPrice(bad, 0)


def test_an_unknown_model_is_a_configuration_error_that_names_it():
    with pytest.raises(ConfigurationError) as excinfo:
        DEFAULT_PRICES.price_for("gpt-9-ultra")
    assert "gpt-9-ultra" in str(excinfo.value)
    assert excinfo.value.code == "BP-CONFIG"
    assert "sim-small" in excinfo.value.details["known_models"]


def test_a_price_table_is_built_from_configuration_with_floats_strings_and_pairs():
    table = PriceTable.from_mapping(
        {
            "a": {"input_per_1k": 0.5, "output_per_1k": "1.25"},
            "b": [0.01, 0],
            "c": PRICE,
        }
    )
    assert table.price_for("a") == ModelPrice(Decimal("0.5"), Decimal("1.25"))
    assert table.price_for("b") == ModelPrice(Decimal("0.01"), Decimal("0"))
    assert table["c"] is PRICE
    assert sorted(table) == ["a", "b", "c"] and len(table) == 3


@pytest.mark.parametrize(
    "value",
    [
        {"input_per_1k": 1},
        {"input_per_1k": 1, "output_per_1k": 1, "currency": "USD"},
        [1, 2, 3],
        "1.0",
    ],
)
def test_a_price_with_missing_extra_or_malformed_fields_is_rejected(value):
    with pytest.raises(ConfigurationError, match="'m'"):
        PriceTable.from_mapping({"m": value})


def test_a_price_table_cannot_be_changed_after_it_is_built():
    with pytest.raises(TypeError):
        DEFAULT_PRICES["sim-small"] = PRICE  # type: ignore[index]


@pytest.mark.parametrize(
    "model",
    [
        "sim-small",
        "sim-large",
        "sim-embed",
        "sim-validator",
        "gpt-4o-mini",
        "text-embedding-3-small",
    ],
)
def test_default_prices_cover_the_simulator_and_common_public_models(model):
    price = DEFAULT_PRICES.price_for(model)
    assert price.input_per_1k > 0


def test_the_large_simulated_model_costs_more_than_the_small_one():
    small, large = DEFAULT_PRICES.price_for("sim-small"), DEFAULT_PRICES.price_for("sim-large")
    assert large.input_per_1k > small.input_per_1k
    assert large.output_per_1k > small.output_per_1k


# --- usage -------------------------------------------------------------------------


def test_total_tokens_is_prompt_plus_completion():
    assert Usage(12, 30).total_tokens == 42


@pytest.mark.parametrize("tokens", [(-1, 0), (0, -5), (1.5, 0), (True, 0)])
def test_usage_rejects_negative_or_non_integer_tokens(tokens):
    with pytest.raises(ValueError):
        Usage(*tokens)


@pytest.mark.parametrize(
    ("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)]
)
def test_estimated_usage_is_about_four_characters_per_token_rounded_up(text, tokens):
    usage = estimate_usage(text, "")
    assert usage.prompt_tokens == tokens
    assert usage.completion_tokens == 0
    assert usage.estimated is True


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_estimated_usage_is_never_zero_for_non_empty_text_and_never_far_from_a_quarter(p, c):
    usage = estimate_usage(p, c)
    assert (usage.prompt_tokens >= 1) == bool(p)
    assert (usage.completion_tokens >= 1) == bool(c)
    assert 0 <= usage.prompt_tokens - len(p) / 4 < 1


# --- cost of one call ----------------------------------------------------------------


def test_the_cost_of_a_call_is_tokens_times_price_per_thousand():
    assert cost_of(Usage(1000, 1000), PRICE) == Decimal("0.00075")
    assert cost_of(Usage(2000, 0), PRICE) == Decimal("0.0003")


def test_the_cost_is_quantized_to_eight_decimals_rounding_half_up():
    tiny = ModelPrice(Decimal("0.000005"), 0)  # 1 token -> 0.000000005
    cost = cost_of(Usage(1, 0), tiny)
    assert cost == Decimal("0.00000001")
    assert cost.as_tuple().exponent == -8


@settings(max_examples=80, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**7),
    st.integers(min_value=0, max_value=10**7),
    st.integers(min_value=1, max_value=1000),
)
def test_a_call_never_costs_less_than_a_call_with_fewer_tokens(prompt, completion, extra):
    base = cost_of(Usage(prompt, completion), PRICE)
    assert base >= 0
    assert base == base.quantize(COST_QUANTUM)
    assert cost_of(Usage(prompt + extra, completion), PRICE) >= base
    assert cost_of(Usage(prompt, completion + extra), PRICE) >= base


# --- entries -------------------------------------------------------------------------


def test_a_priced_entry_takes_its_cost_from_the_price_table():
    e = CostEntry.priced(call_key="k", batch_id=7, model="sim-large", usage=Usage(1000, 0))
    assert e.cost == DEFAULT_PRICES.price_for("sim-large").input_per_1k
    assert e.kind == "call" and e.phase is None and e.item_id is None


def test_pricing_an_unknown_model_fails_instead_of_billing_zero():
    with pytest.raises(ConfigurationError, match="mystery"):
        CostEntry.priced(call_key="k", batch_id=1, model="mystery", usage=Usage(1, 1))


def test_an_entry_keeps_its_cost_as_a_decimal_even_when_given_a_string():
    e = CostEntry("k", "b", None, None, "m", Usage(1, 1), "0.5")  # type: ignore[arg-type]
    assert e.cost == Decimal("0.5")


@pytest.mark.parametrize(
    "change",
    [{"kind": "refund"}, {"cost": Decimal("-1")}, {"call_key": ""}],
)
def test_an_entry_with_an_unknown_kind_a_negative_cost_or_no_key_is_rejected(change):
    fields = {
        "call_key": "k",
        "batch_id": "b",
        "phase": None,
        "item_id": None,
        "model": "m",
        "usage": Usage(1, 1),
        "cost": Decimal("0.1"),
        "kind": "call",
    }
    with pytest.raises(ValueError):
        CostEntry(**{**fields, **change})


# --- totals --------------------------------------------------------------------------


def test_a_call_recorded_twice_is_billed_once():
    a = entry("b1:doc-1:extract:0")
    totals = summarize([a, a, entry("b1:doc-1:extract:0")])
    assert totals.calls == 1
    assert totals.total_cost == a.cost
    assert totals.total_tokens == 1500


def test_two_different_calls_sharing_a_key_is_an_error_not_a_silent_pick():
    with pytest.raises(ValueError, match="b1:x"):
        summarize([entry("b1:x"), entry("b1:x", tokens=(1, 1))])


def test_totals_break_down_by_phase_item_batch_model_and_kind():
    entries = [
        entry("1", phase="extract", item="d1"),
        entry("2", phase="classify", item="d1", kind="validation"),
        entry("3", phase=None, item=None, batch=42, kind="retry", estimated=True),
    ]
    totals = summarize(entries)
    one = entries[0].cost
    assert totals.calls == 3
    assert totals.estimated_calls == 1
    assert (totals.prompt_tokens, totals.completion_tokens, totals.total_tokens) == (
        3000,
        1500,
        4500,
    )
    assert totals.by_phase == {"classify": one, "extract": one, UNASSIGNED: one}
    assert totals.by_item == {"d1": 2 * one, UNASSIGNED: one}
    assert totals.by_batch == {"42": one, "b1": 2 * one}
    assert totals.by_model == {"sim-small": 3 * one}
    assert totals.by_kind == {"call": one, "retry": one, "validation": one}


def test_no_entries_sum_to_zero():
    totals = summarize([])
    assert totals.total_cost == Decimal(0)
    assert totals.calls == 0 and totals.by_phase == {}


def test_totals_serialise_to_json_with_money_as_floats():
    data = json.loads(json.dumps(summarize([entry("1")]).to_dict()))
    assert data["total_cost"] == pytest.approx(0.00045)
    assert isinstance(data["total_cost"], float)
    assert data["by_phase"] == {"extract": pytest.approx(0.00045)}
    assert data["calls"] == 1


entry_strategy = st.builds(
    entry,
    st.sampled_from([f"k{i}" for i in range(6)]),
    tokens=st.tuples(st.integers(0, 5000), st.integers(0, 5000)),
    phase=st.sampled_from(["a", "b", None]),
    item=st.sampled_from(["x", "y", None]),
    batch=st.sampled_from(["b1", "b2"]),
)


@st.composite
def ledgers(draw) -> list[CostEntry]:
    # One content per key (as a correct ledger has), each possibly recorded several times.
    by_key = {e.call_key: e for e in draw(st.lists(entry_strategy, max_size=6))}
    unique = list(by_key.values())
    repeats = draw(st.lists(st.sampled_from(unique), max_size=6)) if unique else []
    return draw(st.permutations(unique + repeats))


@settings(max_examples=80, deadline=None)
@given(ledgers())
def test_every_breakdown_adds_up_to_the_total_and_repeats_change_nothing(ledger):
    totals = summarize(ledger)
    assert totals.calls == len({e.call_key for e in ledger})
    for breakdown in (
        totals.by_phase,
        totals.by_item,
        totals.by_batch,
        totals.by_model,
        totals.by_kind,
    ):
        assert sum(breakdown.values(), Decimal(0)) == totals.total_cost
    assert summarize(ledger + ledger[::-1]) == totals
    assert totals.total_tokens == totals.prompt_tokens + totals.completion_tokens


def test_reported_usage_is_used_and_missing_or_malformed_usage_is_estimated_and_flagged():
    from batch_pipelines.core.costs import reported_or_estimated_usage

    assert reported_or_estimated_usage(
        {"prompt_tokens": 12, "completion_tokens": 3}, "x", "y"
    ) == Usage(12, 3)
    # A count left out is estimated (and flagged), never taken as zero; what was reported stays.
    partial = reported_or_estimated_usage({"prompt_tokens": 7}, "x", "a long enough answer")
    assert partial.prompt_tokens == 7 and partial.completion_tokens > 0 and partial.estimated
    # An embedding has no completion: no count is expected, nothing is estimated.
    assert reported_or_estimated_usage({"prompt_tokens": 7, "total_tokens": 7}, "x", "") == Usage(
        7, 0
    )
    assert reported_or_estimated_usage(
        {"prompt_tokens": True, "completion_tokens": -1}, "x" * 40, "y" * 8
    ).estimated
    for raw in (None, {}, {"prompt_tokens": "many"}, ["not", "a", "mapping"]):
        usage = reported_or_estimated_usage(raw, "a prompt of some length", "an answer")
        assert usage.estimated and usage.prompt_tokens > 0 and usage.completion_tokens > 0
