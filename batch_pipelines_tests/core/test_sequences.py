"""Chunking keeps every item, in order, in slices no longer than asked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_pipelines.core.sequences import chunks


@given(st.lists(st.integers(), max_size=200), st.integers(min_value=1, max_value=50))
def test_chunks_keep_every_item_in_order_and_only_the_last_is_shorter(
    items: list[int], size: int
) -> None:
    parts = list(chunks(items, size))
    assert [x for part in parts for x in part] == items
    assert all(len(part) == size for part in parts[:-1])
    assert all(1 <= len(part) <= size for part in parts)


def test_a_chunk_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(chunks([1, 2], 0))
