"""``fragment_core.paging.paginate``: max_pages, loops, de-duplication, completeness."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fragment_core.errors import ConfigurationError, IncompleteFetchError, TransientError
from fragment_core.paging import (
    MaxPagesError,
    Page,
    PagingLoopError,
    paginate,
)


def pages_of(
    chunks: Sequence[Sequence[Any]], *, total: int | None = None
) -> tuple[Callable[[object | None], Page[Any]], list[object | None]]:
    """A fetch_page serving ``chunks`` in order (tokens 1, 2, ...) and the tokens it got."""
    asked: list[object | None] = []

    def fetch(token: object | None) -> Page[Any]:
        asked.append(token)
        index = 0 if token is None else int(str(token))
        nxt = index + 1 if index + 1 < len(chunks) else None
        return Page(list(chunks[index]), nxt, total)

    return fetch, asked


def test_every_page_in_order_each_token_passed_on() -> None:
    fetch, asked = pages_of([[1, 2], [3], [4, 5]])
    assert list(paginate(fetch)) == [1, 2, 3, 4, 5]
    assert asked == [None, 1, 2]


def test_pages_are_fetched_lazily() -> None:
    fetch, asked = pages_of([[1, 2], [3]])
    items = paginate(fetch)
    assert next(items) == 1
    assert asked == [None]


def test_max_pages_stops_a_runaway_listing() -> None:
    fetch, asked = pages_of([[1], [2], [3], [4]])
    with pytest.raises(MaxPagesError, match=r"tickets: stopped after 3 pages") as caught:
        list(paginate(fetch, max_pages=3, what="tickets"))
    assert isinstance(caught.value, ConfigurationError)
    assert len(asked) == 3


def test_max_pages_allows_exactly_that_many() -> None:
    fetch, _ = pages_of([[1], [2], [3]])
    assert list(paginate(fetch, max_pages=3)) == [1, 2, 3]


def test_the_same_next_token_twice_is_a_loop() -> None:
    asked: list[object | None] = []

    def stuck(token: object | None) -> Page[int]:
        asked.append(token)
        return Page([len(asked)], "same")

    with pytest.raises(PagingLoopError, match=r"tickets: page 3 repeats") as caught:
        list(paginate(stuck, what="tickets"))
    assert isinstance(caught.value, ConfigurationError)
    assert asked == [None, "same"]


def test_a_token_seen_earlier_is_a_loop_even_not_consecutively() -> None:
    tokens = {None: "a", "a": "b", "b": "a"}

    def cycle(token: object | None) -> Page[int]:
        return Page([1], tokens[token])  # type: ignore[index]

    with pytest.raises(PagingLoopError, match=r"page 4 repeats"):
        list(paginate(cycle))


def test_unhashable_tokens_are_compared_by_value() -> None:
    def stuck(token: object | None) -> Page[int]:
        return Page([1], {"after": [1, 2]})

    with pytest.raises(PagingLoopError):
        list(paginate(stuck))


def test_items_are_de_duplicated_by_id() -> None:
    fetch, _ = pages_of([[{"id": "a"}, {"id": "b"}], [{"id": "b"}, {"id": "c"}]])
    got = list(paginate(fetch, id_of=lambda item: item["id"]))
    assert [item["id"] for item in got] == ["a", "b", "c"]


def test_items_without_id_are_never_de_duplicated() -> None:
    fetch, _ = pages_of([[{"x": 1}], [{"x": 1}]])
    assert len(list(paginate(fetch, id_of=lambda item: item.get("id")))) == 2


def test_without_id_of_every_item_is_yielded() -> None:
    fetch, _ = pages_of([[1, 1], [1]])
    assert list(paginate(fetch)) == [1, 1, 1]


def test_a_listing_reaching_its_total_is_complete() -> None:
    fetch, _ = pages_of([[1, 2], [3]], total=3)
    assert list(paginate(fetch)) == [1, 2, 3]


def test_a_listing_ending_before_its_total_is_incomplete_never_the_end() -> None:
    fetch, _ = pages_of([[1, 2], [3]], total=5)
    items = paginate(fetch, what="HubSpot tasks")
    got: list[int] = []
    with pytest.raises(IncompleteFetchError) as caught:
        for item in items:
            got.append(item)
    error = caught.value
    assert got == [1, 2, 3]  # the items came, but the end did not: the caller closes nothing
    assert isinstance(error, TransientError)  # the run fails and is retried
    assert (error.fetched, error.total) == (3, 5)
    assert str(error).startswith("HubSpot tasks is incomplete: it ended after 3 of the 5 items")


def test_duplicates_do_not_count_towards_the_total() -> None:
    fetch, _ = pages_of([[{"id": "a"}, {"id": "b"}], [{"id": "b"}]], total=3)
    with pytest.raises(IncompleteFetchError, match=r"after 2 of the 3"):
        list(paginate(fetch, id_of=lambda item: item["id"]))


def test_the_largest_total_announced_counts() -> None:
    # the listing shrank while paged (5 then 3): an item may have shifted past the pages read
    totals = iter([5, 3])

    def fetch(token: object | None) -> Page[int]:
        return Page([1, 2] if token is None else [3], 1 if token is None else None, next(totals))

    with pytest.raises(IncompleteFetchError, match=r"after 3 of the 5"):
        list(paginate(fetch))


def test_more_items_than_the_total_is_fine() -> None:
    fetch, _ = pages_of([[1, 2], [3]], total=2)
    assert list(paginate(fetch)) == [1, 2, 3]


def test_an_empty_listing() -> None:
    fetch, _ = pages_of([[]], total=0)
    assert list(paginate(fetch)) == []


@settings(derandomize=True, max_examples=300)
@given(
    st.lists(
        st.lists(st.integers(min_value=0, max_value=30), max_size=8), min_size=1, max_size=12
    )
)
def test_each_id_is_yielded_once_and_every_id_is_yielded(chunks: list[list[int]]) -> None:
    fetch, _ = pages_of([[{"id": str(n)} for n in chunk] for chunk in chunks])
    got = [item["id"] for item in paginate(fetch, id_of=lambda item: item["id"])]
    assert len(got) == len(set(got))
    assert set(got) == {str(n) for chunk in chunks for n in chunk}
    # in order of first sighting
    first_seen = list(dict.fromkeys(str(n) for chunk in chunks for n in chunk))
    assert got == first_seen


@settings(derandomize=True, max_examples=300)
@given(
    st.lists(
        st.lists(st.integers(min_value=0, max_value=30), max_size=8), min_size=1, max_size=12
    ),
    st.integers(min_value=0, max_value=40),
)
def test_incomplete_exactly_when_fewer_unique_ids_than_the_total(
    chunks: list[list[int]], total: int
) -> None:
    fetch, _ = pages_of([[{"id": str(n)} for n in chunk] for chunk in chunks], total=total)
    unique = len({n for chunk in chunks for n in chunk})
    items = paginate(fetch, id_of=lambda item: item["id"])
    if unique < total:
        with pytest.raises(IncompleteFetchError):
            list(items)
    else:
        assert len(list(items)) == unique


def test_paginate_names_the_source_in_its_errors_and_batched_reads_lazily() -> None:
    from fragment_core.errors import IncompleteFetchError
    from fragment_core.paging import Page, batched, paginate

    pages = {None: Page([1, 2], 1, total=5), 1: Page([3], None, total=5)}
    with pytest.raises(IncompleteFetchError) as info:
        list(paginate(pages.__getitem__, where="source 'crm'"))
    assert info.value.where == "source 'crm'" and str(info.value).startswith("source 'crm': ")

    pulled: list[int] = []

    def items() -> Any:
        for i in range(5):
            pulled.append(i)
            yield i

    batches = batched(items(), 2)
    assert next(batches) == [0, 1] and pulled == [0, 1]
    assert list(batches) == [[2, 3], [4]]
