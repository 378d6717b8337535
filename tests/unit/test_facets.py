"""Facet counting from matching passages, facet field validation, Elasticsearch buckets as values."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from service.backends.elasticsearch import facet_aggregations, facet_value
from service.errors import InvalidRequest
from service.search.facets import (
    FACET_VALUES,
    FacetCounts,
    FacetValue,
    count_documents,
    disjunctive_counts,
    metadata_values,
    parse_facet_fields,
)
from service.search.models import Equals, Filter


def test_documents_count_once_however_many_chunks_match() -> None:
    passages = [
        ("d1", {"lang": "en", "year": 1990}),
        ("d1", {"lang": "en", "year": 1990}),
        ("d2", {"lang": "de", "year": 1990}),
        ("d3", {"lang": "en"}),
    ]

    counts = count_documents(passages, ["lang", "year"])

    assert counts.total == 3
    assert counts.fields["lang"] == [FacetValue("en", 2), FacetValue("de", 1)]
    assert counts.fields["year"] == [FacetValue(1990, 2)]


def test_lists_count_each_value_once_and_objects_are_skipped() -> None:
    passages = [("d1", {"tags": ["a", "b", "a"], "meta": {"x": 1}}), ("d2", {"tags": ["b"]})]

    counts = count_documents(passages, ["tags", "meta", "missing"])

    assert counts.fields == {"tags": [FacetValue("b", 2), FacetValue("a", 1)], "meta": [], "missing": []}


def test_dotted_names_are_paths_unless_a_key_has_the_dots() -> None:
    assert metadata_values({"site": {"lang": "en"}}, "site.lang") == ["en"]
    assert metadata_values({"site.lang": "fr", "site": {"lang": "en"}}, "site.lang") == ["fr"]


def test_only_the_most_frequent_values_are_listed_ties_by_value() -> None:
    passages = [(f"d{i}", {"n": i % (FACET_VALUES + 5)}) for i in range(200)]

    values = count_documents(passages, ["n"]).fields["n"]

    assert len(values) == FACET_VALUES
    assert [v.count for v in values] == sorted((v.count for v in values), reverse=True)
    assert [v.value for v in values[:3]] == [0, 1, 10]  # all 8 each; "0" < "1" < "10" as text


def test_facet_fields_are_validated() -> None:
    assert parse_facet_fields(None) is None
    assert parse_facet_fields(["lang", "site.lang", "lang"]) == ("lang", "site.lang")
    with pytest.raises(InvalidRequest, match="facets: field 'a b'"):
        parse_facet_fields(["a b"])
    with pytest.raises(InvalidRequest, match="at most 10"):
        parse_facet_fields([f"f{i}" for i in range(11)])


@pytest.mark.parametrize(
    ("bucket", "value"),
    [
        ({"key": "en", "doc_count": 3}, "en"),
        ({"key": 1955.0, "key_as_string": "1955.0", "doc_count": 3}, 1955),
        ({"key": 2.5, "key_as_string": "2.5", "doc_count": 3}, 2.5),
        ({"key": 1, "key_as_string": "true", "doc_count": 3}, True),
        ({"key": 0, "key_as_string": "false", "doc_count": 3}, False),
        ({"key": 0, "key_as_string": "1970-01-01T00:00:00.000Z", "doc_count": 3}, "1970-01-01T00:00:00.000Z"),
    ],
)
def test_elasticsearch_buckets_become_metadata_values(bucket: dict[str, object], value: object) -> None:
    found = facet_value({**bucket, "docs": {"value": 2}})

    assert found == FacetValue(value, 2)  # type: ignore[arg-type]
    assert type(found.value) is type(value)


def test_elasticsearch_counts_documents_per_value() -> None:
    aggregations = facet_aggregations(["lang"])

    assert aggregations["total"]["cardinality"]["field"] == "doc_id"
    assert aggregations["facet0"]["terms"]["field"] == "metadata.lang"
    assert aggregations["facet0"]["aggs"]["docs"] == aggregations["total"]


DOCS = [
    ("a", {"kind": "even", "lang": "en"}),
    ("b", {"kind": "odd", "lang": "en"}),
    ("c", {"kind": "odd", "lang": "de"}),
    ("d", {"kind": "even", "lang": "de"}),
    ("e", {"kind": "odd", "lang": "en"}),
]


def test_a_filtered_field_is_counted_without_its_own_condition() -> None:
    passes: list[tuple[tuple[str, ...], Filter | None]] = []

    async def count(names: Sequence[str], narrowed: Filter | None) -> FacetCounts:
        passes.append((tuple(names), narrowed))
        wanted = {c.field: c.value for c in narrowed.conditions if isinstance(c, Equals)} if narrowed else {}
        kept = [(i, m) for i, m in DOCS if all(m.get(f) == v for f, v in wanted.items())]
        return count_documents(kept, names)

    chosen = Filter((Equals("kind", "odd"), Equals("lang", "en")))
    counts = asyncio.run(disjunctive_counts(count, ["lang", "kind", "year"], chosen))

    assert counts.total == 2  # b and e: the whole filter
    assert list(counts.fields) == ["lang", "kind", "year"]
    assert counts.fields["kind"] == [FacetValue("odd", 2), FacetValue("even", 1)]  # lang=en only
    assert counts.fields["lang"] == [FacetValue("en", 2), FacetValue("de", 1)]  # kind=odd only
    assert counts.fields["year"] == []
    assert len(passes) == 3
    # Without a filter on a faceted field, one pass as before.
    passes.clear()
    plain = asyncio.run(disjunctive_counts(count, ["kind"], Filter((Equals("lang", "de"),))))
    assert plain.total == 2 and len(passes) == 1
