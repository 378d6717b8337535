"""Facets and pages of results through POST /v1/search, on both lexical backends and real models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.backends.stack import open_lexical
from tests.conftest import bearer
from tests.integration.rerank_app import new_key, running
from tests.integration.search_app import LEXICAL_BACKENDS, cranfield, index_documents, search_settings

pytestmark = pytest.mark.anyio
DOCS = cranfield(limit=60)
QUERY = "boundary layer flow over a flat plate"


@pytest.fixture(params=LEXICAL_BACKENDS, scope="module")
def lexical(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
async def client(lexical: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    # Generous stage timeouts: on a busy machine a slow stage must not degrade the order under test.
    slow_ok = {"lexical_timeout": 120, "vector_timeout": 120, "rerank": {"timeout": 120}}
    settings = search_settings(tmp_path_factory.mktemp(f"facets-{lexical}"), lexical, **slow_ok)
    report = await index_documents(settings, "cranfacets", DOCS)
    assert report.added == len(DOCS) and report.failed == 0
    key = new_key(settings, "pager")
    async with running(settings) as http:
        http.headers.update(bearer(key))
        yield http
    store = open_lexical(settings)
    await store.drop_collection("cranfacets")
    await store.close()


async def search(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/search", json={"query": QUERY, "collection": "cranfacets", **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["degraded"] == []
    return result


async def test_facet_counts_are_the_totals_of_filtered_searches(client: httpx.AsyncClient) -> None:
    body = await search(client, facets=["year", "kind"], top_k=5)

    years, kinds = body["facets"]["year"], body["facets"]["kind"]
    assert 0 < body["total"] <= len(DOCS)
    assert {bucket["value"] for bucket in kinds} == {"even", "odd"}
    assert sum(bucket["count"] for bucket in kinds) == body["total"]  # each document has one kind
    assert all(isinstance(bucket["value"], int) for bucket in years)
    for bucket in [*years[:3], *kinds]:
        field = "year" if bucket in years else "kind"
        filtered = await search(client, facets=[], filter={field: bucket["value"]}, top_k=50)
        assert filtered["total"] == bucket["count"], (field, bucket)
        assert {hit["metadata"][field] for hit in filtered["hits"]} == {bucket["value"]}


async def test_a_chosen_value_keeps_its_fields_other_values_and_narrows_the_rest(
    client: httpx.AsyncClient,
) -> None:
    everything = await search(client, facets=["kind", "year"])
    even = await search(client, facets=["kind", "year"], filter={"kind": "even"})

    # Disjunctive: the filtered field is counted without its own condition, so "odd" stays, with the
    # count it would have if chosen instead; the other field and the total follow the filter.
    assert even["facets"]["kind"] == everything["facets"]["kind"]
    assert {bucket["value"] for bucket in even["facets"]["kind"]} == {"even", "odd"}
    counts = {bucket["value"]: bucket["count"] for bucket in everything["facets"]["kind"]}
    assert even["total"] == counts["even"] < everything["total"]
    assert sum(bucket["count"] for bucket in even["facets"]["year"]) <= even["total"]
    year = even["facets"]["year"][0]
    both = await search(client, facets=[], filter={"kind": "even", "year": year["value"]})
    assert both["total"] == year["count"]


async def test_without_facets_there_are_no_counts(client: httpx.AsyncClient) -> None:
    body = await search(client)

    assert body["facets"] is None and body["total"] is None and "facets" not in body["timings"]


async def test_two_pages_of_ten_are_one_page_of_twenty(client: httpx.AsyncClient) -> None:
    # Reranked: the depth-15 head is in rerank order, so the page boundary falls inside it.
    options = {"rerank": {"depth": 15}}
    first = await search(client, top_k=10, **options)
    second = await search(client, top_k=10, cursor=first["cursor"], **options)
    twenty = await search(client, top_k=20, **options)

    paged = [hit["id"] for hit in first["hits"] + second["hits"]]
    assert paged == [hit["id"] for hit in twenty["hits"]]
    assert len(set(paged)) == 20
    assert [hit["score"] for hit in first["hits"] + second["hits"]] == [
        hit["score"] for hit in twenty["hits"]
    ]


async def test_pages_end_at_the_documented_depth(client: httpx.AsyncClient) -> None:
    cursor, seen = None, []
    while True:
        # Every document, vector-only ones included: the floor that drops unrelated ones is not the subject.
        page = await search(
            client, top_k=100, cursor=cursor, candidates=1000, rerank={"enabled": False}, vector_floor="off"
        )
        seen += [hit["id"] for hit in page["hits"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == len(DOCS)  # 60 documents < max_depth 200: all, once each


async def test_bad_cursors_and_facets_are_400s_that_say_why(client: httpx.AsyncClient) -> None:
    first = await search(client, top_k=5)
    other = await client.post(
        "/v1/search", json={"query": "shock waves", "collection": "cranfacets", "cursor": first["cursor"]}
    )
    broken = await client.post(
        "/v1/search", json={"query": QUERY, "collection": "cranfacets", "cursor": "%%"}
    )
    bad_facet = await client.post(
        "/v1/search", json={"query": QUERY, "collection": "cranfacets", "facets": ["no spaces"]}
    )

    assert other.status_code == broken.status_code == bad_facet.status_code == 400
    assert "another search" in other.json()["error"]["message"]
    assert "cursor is not valid" in broken.json()["error"]["message"]
    assert "facets: field 'no spaces'" in bad_facet.json()["error"]["message"]
