"""The cost ledger model: prices, token usage, one entry per billed call, and totals.

Every model or API call that costs money writes exactly one ledger entry, keyed by the
call's ``call_key``; totals are always *sums over de-duplicated entries*, never counters,
so a retried or resumed run can record the same call again without billing it twice.
Money is Decimal throughout (floats drift when thousands of tiny prices are added) and is
quantized to 1e-8, well below a thousandth of a cent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Literal

from batch_pipelines.core.errors import ConfigurationError

COST_QUANTUM = Decimal("0.00000001")

# Key used in the per-phase / per-item totals for entries without a phase or item, so the
# breakdowns still add up to the total and stay valid JSON object keys.
UNASSIGNED = "(none)"

CostKind = Literal["call", "validation", "retry", "retrieval"]
COST_KINDS: frozenset[str] = frozenset({"call", "validation", "retry", "retrieval"})

# Rough rule used by OpenAI-style tokenizers on English text; good enough to keep a budget
# honest when a service omits ``usage``, and entries built from it are flagged estimated.
CHARS_PER_TOKEN = 4


def to_money(value: Decimal | int | float | str, *, what: str = "amount") -> Decimal:
    """Coerce a configured amount to a non-negative, finite Decimal.

    Floats go through ``str`` first so that ``0.15`` becomes ``Decimal("0.15")`` and not
    its binary approximation.
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"{what} must be a number, got {value!r}")
    try:
        amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ConfigurationError(f"{what} is not a number: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigurationError(f"{what} must be a finite amount >= 0, got {value!r}")
    return amount


@dataclass(frozen=True)
class ModelPrice:
    """Price of one model in currency units per 1,000 prompt (input) / completion tokens."""

    input_per_1k: Decimal
    output_per_1k: Decimal

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_per_1k", to_money(self.input_per_1k, what="input_per_1k"))
        object.__setattr__(
            self, "output_per_1k", to_money(self.output_per_1k, what="output_per_1k")
        )


class PriceTable(Mapping[str, ModelPrice]):
    """An immutable mapping of model name -> ModelPrice.

    A model missing from the table is a configuration error, not a free call: pricing it
    at zero would make a budget look healthy while money is being spent.
    Names match exactly (a service may answer with a dated variant such as
    ``gpt-4o-mini-2024-07-18``; price by the model you asked for).
    """

    __slots__ = ("_prices",)

    def __init__(self, prices: Mapping[str, ModelPrice] | None = None) -> None:
        table = dict(prices or {})
        for model, price in table.items():
            if not isinstance(price, ModelPrice):
                raise ConfigurationError(
                    f"price of model {model!r} must be a ModelPrice, got {type(price).__name__}"
                )
        self._prices: Mapping[str, ModelPrice] = MappingProxyType(table)

    def __getitem__(self, model: str) -> ModelPrice:
        return self._prices[model]

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def __repr__(self) -> str:
        return f"PriceTable({dict(self._prices)!r})"

    def price_for(self, model: str) -> ModelPrice:
        try:
            return self._prices[model]
        except KeyError:
            raise ConfigurationError(
                f"no price configured for model {model!r}",
                details={"model": model, "known_models": sorted(self._prices)},
            ) from None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> PriceTable:
        """Build a table from configuration (JSON/YAML): each value is a ModelPrice, a
        mapping with exactly ``input_per_1k`` and ``output_per_1k`` (numbers or numeric
        strings), or a two-item ``[input, output]`` list.

        Both prices are required, even for embedding models (write 0): a forgotten key
        would otherwise price real usage at zero without anyone noticing.
        """
        prices: dict[str, ModelPrice] = {}
        for model, value in raw.items():
            if not isinstance(model, str) or not model.strip():
                raise ConfigurationError(f"model name must be a non-empty string, got {model!r}")
            prices[model] = _parse_price(model, value)
        return cls(prices)


def _parse_price(model: str, value: Any) -> ModelPrice:
    if isinstance(value, ModelPrice):
        return value
    if isinstance(value, Mapping):
        keys = set(value)
        expected = {"input_per_1k", "output_per_1k"}
        if keys != expected:
            raise ConfigurationError(
                f"price of model {model!r} needs exactly {sorted(expected)}, got {sorted(map(str, keys))}",
                details={"model": model},
            )
        return ModelPrice(value["input_per_1k"], value["output_per_1k"])
    if isinstance(value, list | tuple) and len(value) == 2:
        return ModelPrice(value[0], value[1])
    raise ConfigurationError(
        f"price of model {model!r} must be a mapping or an [input, output] pair, got {value!r}",
        details={"model": model},
    )


# Embedded defaults. The sim-* names are the local simulator's models; the public names use
# list prices per 1k tokens in USD as published at the time of writing (override them in
# configuration for real accounting).
DEFAULT_PRICES = PriceTable.from_mapping(
    {
        "sim-small": {"input_per_1k": "0.00015", "output_per_1k": "0.0006"},
        "sim-large": {"input_per_1k": "0.0025", "output_per_1k": "0.01"},
        "sim-embed": {"input_per_1k": "0.00002", "output_per_1k": "0"},
        "sim-validator": {"input_per_1k": "0.0001", "output_per_1k": "0.0004"},
        "gpt-4o-mini": {"input_per_1k": "0.00015", "output_per_1k": "0.0006"},
        "gpt-4o": {"input_per_1k": "0.0025", "output_per_1k": "0.01"},
        "text-embedding-3-small": {"input_per_1k": "0.00002", "output_per_1k": "0"},
    }
)


@dataclass(frozen=True)
class Usage:
    """Tokens one call consumed; ``estimated`` when we counted them ourselves."""

    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "completion_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _estimate_tokens(text: str) -> int:
    # ceil keeps any non-empty text at >= 1 token: a call is never free.
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_usage(prompt_text: str, completion_text: str) -> Usage:
    """Estimate usage (about 4 characters per token) when the service omits it."""
    return Usage(
        prompt_tokens=_estimate_tokens(prompt_text),
        completion_tokens=_estimate_tokens(completion_text),
        estimated=True,
    )


def reported_or_estimated_usage(
    raw: Mapping[str, Any] | None, prompt_text: str, completion_text: str
) -> Usage:
    """The usage a service reported (OpenAI's ``usage`` block), with each count it left out
    or garbled estimated from the text (about 4 characters a token) and the usage then
    flagged estimated: a call is never priced at zero silently, and what the service did
    report is kept. An answer without text (an embedding) needs no completion count."""
    estimate = estimate_usage(prompt_text, completion_text)
    if not isinstance(raw, Mapping):
        return estimate
    counts: list[int] = []
    estimated = False
    for name, fallback, required in (
        ("prompt_tokens", estimate.prompt_tokens, True),
        ("completion_tokens", estimate.completion_tokens, bool(completion_text)),
    ):
        value = raw.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            counts.append(value)
        elif value is None and not required:
            counts.append(0)
        else:
            counts.append(fallback)
            estimated = True
    return Usage(counts[0], counts[1], estimated=estimated)


def cost_of(usage: Usage, price: ModelPrice) -> Decimal:
    """Cost of one call, quantized half-up to 1e-8."""
    raw = (
        Decimal(usage.prompt_tokens) * price.input_per_1k
        + Decimal(usage.completion_tokens) * price.output_per_1k
    ) / 1000
    return raw.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class CostEntry:
    """One billed call in the ledger.

    ``call_key`` identifies the call itself, not the attempt to record it: the engine
    derives it deterministically (e.g. batch, item, phase, attempt) so that a retry of the
    *same* call after a crash reuses the key and is counted once. ``kind`` tells why the
    money was spent: ``call`` (the work), ``validation`` (checking a result) or ``retry``
    (a new, deliberately repeated call, which has its own key and does cost money) or
    ``retrieval`` (embedding reference documents or a query for retrieval-augmented prompts).
    """

    call_key: str
    batch_id: str | int | None  # None: billed to no batch (e.g. indexing reference documents)
    phase: str | None
    item_id: str | None
    model: str
    usage: Usage
    cost: Decimal
    kind: CostKind = "call"

    def __post_init__(self) -> None:
        if not isinstance(self.call_key, str) or not self.call_key:
            raise ValueError("call_key must be a non-empty string")
        if self.kind not in COST_KINDS:
            raise ValueError(f"kind must be one of {sorted(COST_KINDS)}, got {self.kind!r}")
        # Accept what a store row or JSON gives back (str, int, float), but keep a Decimal.
        try:
            object.__setattr__(self, "cost", to_money(self.cost, what="cost"))
        except ConfigurationError as exc:
            # A bad cost here is a programming or data error, not bad configuration.
            raise ValueError(exc.message) from None

    @classmethod
    def priced(
        cls,
        *,
        call_key: str,
        batch_id: str | int | None,
        model: str,
        usage: Usage,
        prices: PriceTable = DEFAULT_PRICES,
        phase: str | None = None,
        item_id: str | None = None,
        kind: CostKind = "call",
    ) -> CostEntry:
        """Build an entry whose cost comes from ``prices`` (raises for an unknown model)."""
        return cls(
            call_key=call_key,
            batch_id=batch_id,
            phase=phase,
            item_id=item_id,
            model=model,
            usage=usage,
            cost=cost_of(usage, prices.price_for(model)),
            kind=kind,
        )


@dataclass(frozen=True)
class CostTotals:
    """Sums over a set of ledger entries, each call counted once.

    Breakdowns map a key to the cost (Decimal) of the entries with that key; entries
    without a phase or item are under ``"(none)"`` so every breakdown adds up to
    ``total_cost``. ``by_batch`` keys are ``str(batch_id)``; ``by_item`` keys are item ids
    as given (summarize one batch at a time if item ids repeat across batches).
    """

    total_cost: Decimal
    total_tokens: int
    prompt_tokens: int
    completion_tokens: int
    calls: int
    estimated_calls: int
    by_phase: dict[str, Decimal]
    by_item: dict[str, Decimal]
    by_batch: dict[str, Decimal]
    by_model: dict[str, Decimal]
    by_kind: dict[str, Decimal]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy. Money is a **float** (the Decimal rounded to 1e-8 converted
        to the nearest float), because Dagster metadata and charts want numbers; use the
        Decimal fields, not this dict, for further arithmetic."""

        def floats(d: dict[str, Decimal]) -> dict[str, float]:
            return {k: float(v) for k, v in d.items()}

        return {
            "total_cost": float(self.total_cost),
            "total_tokens": self.total_tokens,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "calls": self.calls,
            "estimated_calls": self.estimated_calls,
            "by_phase": floats(self.by_phase),
            "by_item": floats(self.by_item),
            "by_batch": floats(self.by_batch),
            "by_model": floats(self.by_model),
            "by_kind": floats(self.by_kind),
        }


def dedupe_entries(entries: Iterable[CostEntry]) -> list[CostEntry]:
    """Keep the first entry per ``call_key``, in order.

    An identical repeat is the same call recorded twice (a resumed run) and is dropped. A
    repeat with *different* content raises ValueError: two different calls sharing a key
    means the key derivation is wrong, and silently picking one would lose money.
    """
    seen: dict[str, CostEntry] = {}
    for entry in entries:
        previous = seen.get(entry.call_key)
        if previous is None:
            seen[entry.call_key] = entry
        elif previous != entry:
            raise ValueError(
                f"call_key {entry.call_key!r} recorded twice with different content: "
                f"{previous!r} vs {entry!r}"
            )
    return list(seen.values())


def summarize(entries: Iterable[CostEntry]) -> CostTotals:
    """Sum ledger entries into totals, counting each ``call_key`` once."""
    unique = dedupe_entries(entries)
    by_phase: dict[str, Decimal] = {}
    by_item: dict[str, Decimal] = {}
    by_batch: dict[str, Decimal] = {}
    by_model: dict[str, Decimal] = {}
    by_kind: dict[str, Decimal] = {}
    zero = Decimal(0)
    for e in unique:
        for bucket, key in (
            (by_phase, e.phase if e.phase is not None else UNASSIGNED),
            (by_item, e.item_id if e.item_id is not None else UNASSIGNED),
            (by_batch, str(e.batch_id)),
            (by_model, e.model),
            (by_kind, e.kind),
        ):
            bucket[key] = bucket.get(key, zero) + e.cost

    def ordered(d: dict[str, Decimal]) -> dict[str, Decimal]:
        # Sorted keys: the same ledger always yields the same dict (stable metadata/JSON).
        return {k: d[k] for k in sorted(d)}

    prompt = sum(e.usage.prompt_tokens for e in unique)
    completion = sum(e.usage.completion_tokens for e in unique)
    return CostTotals(
        total_cost=sum((e.cost for e in unique), zero),
        total_tokens=prompt + completion,
        prompt_tokens=prompt,
        completion_tokens=completion,
        calls=len(unique),
        estimated_calls=sum(1 for e in unique if e.usage.estimated),
        by_phase=ordered(by_phase),
        by_item=ordered(by_item),
        by_batch=ordered(by_batch),
        by_model=ordered(by_model),
        by_kind=ordered(by_kind),
    )
