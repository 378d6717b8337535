"""BM25 passages in Elasticsearch: one index per collection, one document per chunk."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from typing import Any

from elasticsearch import (
    ApiError,
    AsyncElasticsearch,
    BadRequestError,
    ConnectionTimeout,
    NotFoundError,
    TransportError,
)
from elasticsearch.helpers import BulkIndexError, async_bulk

from service.backends.whole_documents import document_entries
from service.errors import BackendTimeout, BackendUnavailable, InvalidRequest, NotFound, StorageFull
from service.packaged import packaged
from service.search.collections import checked_collection_name
from service.search.facets import FACET_VALUES, FacetCounts, FacetValue, disjunctive_counts
from service.search.models import AnyOf, Chunk, Condition, Equals, Filter, Hit, Range, Scalar
from service.search.typos import (
    EXACT,
    MAX_EXPANSIONS,
    PREFIX_WEIGHT,
    TYPO_WEIGHT,
    Matching,
    allowed_edits,
    fuzzy_terms,
    typed_words,
    unfinished_word,
)
from service.settings import ElasticsearchSettings

logger = logging.getLogger(__name__)

PASSAGES_CONFIG = packaged("elasticsearch", "passages.json")
# BM25 ranks on one field, content (title and text by copy_to), as on Tantivy; see tantivy.py for why.
# Indexes created before content existed are searched over title and text until re-created.
RANK_FIELD = "content"
LEGACY_FIELDS = ["title", "text"]
SEARCH_FIELDS = [*LEGACY_FIELDS, RANK_FIELD]  # every analysed field with the english analyzer
# Title and text unstemmed, for typo and prefix matching (see tantivy.py for why); indexes created
# before it existed match on the stems of the ranked fields instead.
WORDS_FIELD = "words"
SNIPPET_CHARS = 200
# Bulk request size and the page size when collecting a document's chunks to delete.
BATCH_SIZE = 500
# BM25 ranks documents, not chunks (see tantivy.py for why): a second index, <index>.documents, holds
# one entry per document (_id = document id) with its whole text, under the same settings and
# mapping, so [elasticsearch] bm25_k1 and bm25_b apply to it. Chunks still supply each hit's snippet
# and passage. A collection created before that index existed keeps ranking chunks until re-created.
DOCUMENTS_SUFFIX = ".documents"


# Defined in passages.json from what every Elasticsearch has, for servers without analysis-common.
FALLBACK_ANALYZER = "english_without_stemming"


def load_index_body(analyzer: str | None = None) -> dict[str, Any]:
    """Settings and mappings from the packaged elasticsearch/passages.json, perhaps with another analyzer."""
    body: dict[str, Any] = json.loads(PASSAGES_CONFIG.read_text(encoding="utf-8"))
    body.pop("_comment", None)
    if analyzer:
        for name in SEARCH_FIELDS:
            body["mappings"]["properties"][name]["analyzer"] = analyzer
    return body


def with_layout(body: dict[str, Any], settings: ElasticsearchSettings) -> dict[str, Any]:
    """The index body with the configured shard and replica counts (a number, or an auto-expand range)
    and BM25 parameters."""
    index_settings = body["settings"]
    index_settings["similarity"]["fathom_bm25"].update(k1=settings.bm25_k1, b=settings.bm25_b)
    index_settings["number_of_shards"] = settings.shards
    index_settings.pop("auto_expand_replicas", None)
    index_settings.pop("number_of_replicas", None)
    if isinstance(settings.replicas, int):
        index_settings["number_of_replicas"] = settings.replicas
    else:
        index_settings["auto_expand_replicas"] = settings.replicas
    return body


class ElasticsearchIndex:
    """LexicalStore on an Elasticsearch 9 cluster; `close()` releases the HTTP connections."""

    def __init__(self, settings: ElasticsearchSettings, client: AsyncElasticsearch | None = None) -> None:
        self._prefix = settings.index_prefix
        self._timeout = settings.request_timeout
        self._client = client or AsyncElasticsearch(
            settings.nodes(), request_timeout=settings.request_timeout
        )
        self._body = with_layout(load_index_body(), settings)
        self._fallback_body = with_layout(load_index_body(analyzer=FALLBACK_ANALYZER), settings)
        self._ranked_on: dict[str, list[str]] = {}  # index -> fields BM25 ranks on
        self._expand_on: dict[str, list[str]] = {}  # index -> fields typo and prefix clauses match
        self._whole: dict[str, bool] = {}  # index -> whether its documents' index exists

    async def close(self) -> None:
        await self._client.close()

    async def search(
        self,
        collection: str,
        text: str,
        *,
        limit: int,
        filter: Filter | None = None,
        matching: Matching = EXACT,
    ) -> list[Hit]:
        with self._translated(collection):
            ranked = await self._rank_fields(collection)
            expansions = await self._expansions(collection, text, ranked, matching)
            query = search_query(text, filter, ranked, expansions)
            if await self._ranks_documents(collection):
                return await self._document_hits(collection, text, query, limit)
            response = await self._client.search(
                index=self._index(collection),
                query=query,
                highlight=HIGHLIGHT,
                size=limit,
                track_total_hits=False,
            )
        return [hit_from_response(hit) for hit in response["hits"]["hits"]]

    async def _document_hits(
        self, collection: str, text: str, query: dict[str, Any], limit: int
    ) -> list[Hit]:
        """The best `limit` documents by BM25 on their whole text, each with its best-matching chunk."""
        response = await self._client.search(
            index=self._index(collection) + DOCUMENTS_SUFFIX,
            query=query,
            source=False,
            size=limit,
            track_total_hits=False,
        )
        scores = {hit["_id"]: float(hit["_score"]) for hit in response["hits"]["hits"]}
        if not scores:
            return []
        # Every chunk of those documents, scored by the query (a chunk that does not match scores 0,
        # so each document keeps a passage), and the best of each by collapsing on doc_id.
        passages = await self._client.search(
            index=self._index(collection),
            query={"bool": {"should": [query], "filter": [{"terms": {"doc_id": list(scores)}}]}},
            collapse={"field": "doc_id"},
            highlight=HIGHLIGHT,
            size=len(scores),
            track_total_hits=False,
        )
        best = {hit["_source"]["doc_id"]: hit for hit in passages["hits"]["hits"]}
        return [
            replace(hit_from_response(best[doc_id]), score=score)
            for doc_id, score in scores.items()
            if doc_id in best
        ]

    async def _ranks_documents(self, collection: str, *, fresh: bool = False) -> bool:
        """Whether the collection has its documents' index: read once per index for searches, afresh
        (`fresh`) for writes, which another replica's re-creating the collection must not make miss it."""
        index = self._index(collection)
        if fresh or index not in self._whole:
            self._whole[index] = bool(await self._client.indices.exists(index=index + DOCUMENTS_SUFFIX))
        return self._whole[index]

    async def facets(
        self,
        collection: str,
        text: str,
        fields: Sequence[str],
        *,
        filter: Filter | None = None,
        matching: Matching = EXACT,
    ) -> FacetCounts:
        """Documents matched and per-value document counts, from aggregations: no hit is fetched."""
        with self._translated(collection):
            ranked = await self._rank_fields(collection)
            expansions = await self._expansions(collection, text, ranked, matching)

            async def count(names: Sequence[str], narrowed: Filter | None) -> FacetCounts:
                response = await self._client.search(
                    index=self._index(collection),
                    query=search_query(text, narrowed, ranked, expansions),
                    size=0,
                    track_total_hits=False,
                    aggs=facet_aggregations(names),
                )
                found = response["aggregations"]
                return FacetCounts(
                    total=int(found["total"]["value"]),
                    fields={
                        name: [facet_value(bucket) for bucket in found[f"facet{i}"]["buckets"]]
                        for i, name in enumerate(names)
                    },
                )

            return await disjunctive_counts(count, fields, filter)

    async def _expansions(
        self, collection: str, text: str, fields: Sequence[str], matching: Matching
    ) -> list[dict[str, Any]]:
        """Typo and prefix clauses the query adds to its BM25 match (service/search/typos.py)."""
        clauses: list[dict[str, Any]] = []
        expand_on = self._expand_on[self._index(collection)]
        unstemmed = expand_on == [WORDS_FIELD]
        # No word long enough to carry a typo: no round trip to read document frequencies.
        if matching.typos and any(allowed_edits(word) for word, _, _ in typed_words(text)):
            words = [
                (word, word.lower() if unstemmed else term, doc_freq)
                for word, term, doc_freq in await self._unknown_words(collection, text, fields)
            ]
            clauses.extend(typo_clauses(words, expand_on))
        if matching.prefix and (word := unfinished_word(text)) is not None:
            clauses.extend(prefix_clauses(word, expand_on))
        return clauses

    async def _unknown_words(
        self, collection: str, text: str, fields: Sequence[str]
    ) -> list[tuple[str, str, int]]:
        """(word as typed, analysed term, document frequency) for every query term, from one
        _termvectors call on the query as an artificial document: the fields' own analysers cut it,
        and term_statistics give each term's document frequency without searching.

        The statistics are those of the shard the artificial document routes to: with one shard (the
        default) exact; with several, a word held only by other shards may be fuzzed too, which can
        only add documents below its exact matches.
        """
        response = await self._client.termvectors(
            index=self._index(collection),
            doc=dict.fromkeys(fields, text),
            fields=list(fields),
            term_statistics=True,
            field_statistics=False,
            positions=False,
            offsets=True,
            realtime=False,
        )
        doc_freqs: dict[str, int] = {}
        typed: dict[str, str] = {}
        for vector in response.get("term_vectors", {}).values():
            for term, info in vector.get("terms", {}).items():
                doc_freqs[term] = doc_freqs.get(term, 0) + int(info.get("doc_freq", 0))
                token = info["tokens"][0]
                typed[term] = text[token["start_offset"] : token["end_offset"]]
        return [(typed[term], term, doc_freq) for term, doc_freq in doc_freqs.items()]

    async def _rank_fields(self, collection: str) -> list[str]:
        """content, or title and text in an index created before content existed; read once per index."""
        index = self._index(collection)
        if index not in self._ranked_on:
            mappings = await self._client.indices.get_mapping(index=index)
            properties = next(iter(mappings.body.values()))["mappings"].get("properties", {})
            self._ranked_on[index] = [RANK_FIELD] if RANK_FIELD in properties else LEGACY_FIELDS
            self._expand_on[index] = [WORDS_FIELD] if WORDS_FIELD in properties else self._ranked_on[index]
        return self._ranked_on[index]

    async def upsert(self, collection: str, chunks: Sequence[Chunk]) -> None:
        """Index the chunks (same chunk id: replaced) and refresh, so searches see them on return.

        Creates the collection when needed, so it never gets Elasticsearch's guessed mapping.
        """
        if not chunks:
            return
        await self.ensure_collection(collection)
        index = self._index(collection)
        with self._translated(collection):
            await async_bulk(self._client, index_actions(index, chunks), chunk_size=BATCH_SIZE)
            await self._client.indices.refresh(index=index)
            if await self._ranks_documents(collection, fresh=True):
                whole = index + DOCUMENTS_SUFFIX
                await async_bulk(
                    self._client, index_actions(whole, document_entries(chunks)), chunk_size=BATCH_SIZE
                )
                await self._client.indices.refresh(index=whole)

    async def delete_documents(self, collection: str, doc_ids: Sequence[str]) -> None:
        """Delete every chunk of the documents, visible to searches on return.

        Collects chunk ids with searches and deletes them in bulk rather than with _delete_by_query,
        which needs the reindex module that minimal distributions (the integ-test-zip) lack.
        """
        index = self._index(collection)
        with self._translated(collection):
            # Slices keep each terms query far below Elasticsearch's 65,536-term limit.
            for start in range(0, len(doc_ids), BATCH_SIZE):
                await self._delete_chunks_of(index, doc_ids[start : start + BATCH_SIZE])
            if doc_ids and await self._ranks_documents(collection, fresh=True):
                whole = index + DOCUMENTS_SUFFIX
                actions = ({"_op_type": "delete", "_index": whole, "_id": doc_id} for doc_id in doc_ids)
                await async_bulk(self._client, actions, chunk_size=BATCH_SIZE, ignore_status=(404,))
                await self._client.indices.refresh(index=whole)

    async def _delete_chunks_of(self, index: str, doc_ids: Sequence[str]) -> None:
        while ids := await self._chunk_ids(index, doc_ids):
            actions = ({"_op_type": "delete", "_index": index, "_id": chunk_id} for chunk_id in ids)
            # A chunk deleted meanwhile answers 404: already gone is what we want.
            await async_bulk(self._client, actions, chunk_size=BATCH_SIZE, ignore_status=(404,))
            await self._client.indices.refresh(index=index)

    async def count_chunks(self, collection: str) -> int:
        with self._translated(collection):
            response = await self._client.count(index=self._index(collection))
        return int(response["count"])

    async def chunk_counts(self, collection: str) -> dict[str, int]:
        """A composite terms aggregation on doc_id, paged: no document is fetched."""
        counts: dict[str, int] = {}
        composite: dict[str, Any] = {"size": BATCH_SIZE, "sources": [{"doc": {"terms": {"field": "doc_id"}}}]}
        with self._translated(collection):
            while True:
                response = await self._client.search(
                    index=self._index(collection), size=0, aggs={"docs": {"composite": composite}}
                )
                result = response["aggregations"]["docs"]
                counts.update({b["key"]["doc"]: int(b["doc_count"]) for b in result["buckets"]})
                if not result["buckets"] or "after_key" not in result:
                    return counts
                composite["after"] = result["after_key"]

    async def ensure_collection(self, collection: str) -> None:
        index = self._index(collection)
        with self._translated(collection):
            if await self._client.indices.exists(index=index):
                return
            # The documents' index first: a collection whose chunks' index exists always has it,
            # unless it was created before it existed.
            await self._create_analysed(collection, index + DOCUMENTS_SUFFIX)
            await self._create_analysed(collection, index)
            self._whole.pop(index, None)

    async def _create_analysed(self, collection: str, index: str) -> None:
        """Create the index with the english analyzer, or without stemming where the server lacks it."""
        try:
            await self._create(index, self._body)
        except BadRequestError as exc:
            if not lacks_english_analyzer(exc):
                raise
            logger.warning(
                "Elasticsearch has no english analyzer (no analysis-common module): "
                'collection "%s" uses %s: English stop words, no stemming',
                collection,
                FALLBACK_ANALYZER,
            )
            await self._create(index, self._fallback_body)

    async def drop_collection(self, collection: str) -> None:
        index = self._index(collection)
        self._ranked_on.pop(index, None)  # a new index of that name gets content
        self._expand_on.pop(index, None)
        self._whole.pop(index, None)
        with self._translated(collection):
            await self._client.indices.delete(
                index=[index, index + DOCUMENTS_SUFFIX], ignore_unavailable=True
            )

    async def collection_exists(self, collection: str) -> bool:
        with self._translated(collection):
            return bool(await self._client.indices.exists(index=self._index(collection)))

    async def _create(self, index: str, body: Mapping[str, Any]) -> None:
        try:
            await self._client.indices.create(index=index, **body)
        except BadRequestError as exc:
            # Another process created it between our existence check and this call: fine.
            if exc.message != "resource_already_exists_exception":
                raise

    async def _chunk_ids(self, index: str, doc_ids: Sequence[str]) -> list[str]:
        """Up to BATCH_SIZE ids of chunks that belong to any of the documents."""
        response = await self._client.search(
            index=index,
            query={"terms": {"doc_id": list(doc_ids)}},
            source=False,
            size=BATCH_SIZE,
            track_total_hits=False,
        )
        return [hit["_id"] for hit in response["hits"]["hits"]]

    def _index(self, collection: str) -> str:
        checked_collection_name(collection)
        return self._prefix + collection

    @contextmanager
    def _translated(self, collection: str) -> Iterator[None]:
        """The one place Elasticsearch's exceptions become Fathom's error tree."""
        try:
            yield
        except NotFoundError as exc:
            if exc.message == "index_not_found_exception":
                raise NotFound(f'collection "{collection}" does not exist') from exc
            raise BackendUnavailable(f"Elasticsearch: {error_reason(exc)}") from exc
        except BadRequestError as exc:
            raise InvalidRequest(f'collection "{collection}": {error_reason(exc)}') from exc
        except BulkIndexError as exc:
            if any(disk_block(result.get("error")) for item in exc.errors for result in item.values()):
                raise disk_full(collection) from exc
            raise InvalidRequest(f'collection "{collection}": {bulk_reason(exc)}') from exc
        except ConnectionTimeout as exc:
            raise BackendTimeout(f"Elasticsearch did not answer within {self._timeout:g} s") from exc
        except ApiError as exc:
            body = exc.body if isinstance(exc.body, Mapping) else {}
            if disk_block(body.get("error")):
                raise disk_full(collection) from exc
            raise BackendUnavailable(f"Elasticsearch is unavailable: {exc}") from exc
        except TransportError as exc:
            raise BackendUnavailable(f"Elasticsearch is unavailable: {exc}") from exc


HIGHLIGHT: dict[str, Any] = {
    # encoder=html escapes the passage, so the snippet is safe to render with its <em> tags.
    "encoder": "html",
    "pre_tags": ["<em>"],
    "post_tags": ["</em>"],
    # The query is on content; the snippet highlights its words in the text field.
    "require_field_match": False,
    "fields": {
        # no_match_size: a snippet from the start of the text even when only the title matched.
        "text": {"fragment_size": SNIPPET_CHARS, "number_of_fragments": 1, "no_match_size": SNIPPET_CHARS}
    },
}


def typo_clauses(words: list[tuple[str, str, int]], fields: Sequence[str]) -> list[dict[str, Any]]:
    """Fuzzy clauses for the words the collection does not hold, first letter kept, a swap one edit;
    each match scores the constant TYPO_WEIGHT, as on Tantivy."""
    return [
        {
            "constant_score": {
                "filter": {
                    "fuzzy": {
                        field: {
                            "value": fuzzy.term,
                            "fuzziness": fuzzy.edits,
                            "prefix_length": 1,
                            "transpositions": True,
                            "max_expansions": MAX_EXPANSIONS,
                        }
                    }
                },
                "boost": TYPO_WEIGHT,
            }
        }
        for fuzzy in fuzzy_terms(words)
        for field in fields
    ]


def prefix_clauses(word: str, fields: Sequence[str]) -> list[dict[str, Any]]:
    """The unfinished last word as a prefix of at most MAX_EXPANSIONS terms (top_terms_N keeps the
    first N of the term dictionary), scoring the constant PREFIX_WEIGHT."""
    rewrite = f"top_terms_{MAX_EXPANSIONS}"
    return [
        {
            "constant_score": {
                "filter": {"prefix": {field: {"value": word, "rewrite": rewrite}}},
                "boost": PREFIX_WEIGHT,
            }
        }
        for field in fields
    ]


def search_query(
    text: str,
    filter: Filter | None,
    fields: Sequence[str] = (RANK_FIELD,),
    expansions: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """BM25 over the ranked fields, plus any typo and prefix clauses (each may match alone); filter
    clauses restrict the candidates without scoring them."""
    match: dict[str, Any] = (
        {"match": {fields[0]: {"query": text}}}
        if len(fields) == 1
        else {
            "multi_match": {"query": text, "fields": list(fields), "type": "best_fields", "tie_breaker": 0.3}
        }
    )
    clauses = [filter_clause(condition) for condition in filter.conditions] if filter else []
    if expansions:
        return {"bool": {"should": [match, *expansions], "minimum_should_match": 1, "filter": clauses}}
    return {"bool": {"must": [match], "filter": clauses}}


# Documents, not chunks: a distinct count of doc_id, which Elasticsearch keeps exact up to this many
# (its maximum) and estimates past it.
DOCUMENTS = {"cardinality": {"field": "doc_id", "precision_threshold": 40_000}}


def facet_aggregations(fields: Sequence[str]) -> dict[str, Any]:
    """The total, and per field its FACET_VALUES values with most documents (ties by value)."""
    aggregations: dict[str, Any] = {"total": DOCUMENTS}
    for i, name in enumerate(fields):
        terms = {
            "field": f"metadata.{name}",
            "size": FACET_VALUES,
            "order": [{"docs": "desc"}, {"_key": "asc"}],
        }
        aggregations[f"facet{i}"] = {"terms": terms, "aggs": {"docs": DOCUMENTS}}
    return aggregations


def facet_value(bucket: Mapping[str, Any]) -> FacetValue:
    """A terms bucket as the metadata value it stands for: the mapping turned numbers into doubles,
    booleans into 0/1 and dates into epoch milliseconds."""
    key, text = bucket["key"], bucket.get("key_as_string")
    value: Scalar = key
    if text in ("true", "false"):
        value = text == "true"
    elif isinstance(key, float) and key.is_integer():
        value = int(key)
    elif text is not None and not isinstance(key, float):
        value = text  # a date
    return FacetValue(value=value, count=int(bucket["docs"]["value"]))


def filter_clause(condition: Condition) -> dict[str, Any]:
    field = f"metadata.{condition.field}"
    if isinstance(condition, Equals):
        return {"term": {field: condition.value}}
    if isinstance(condition, AnyOf):
        return {"terms": {field: list(condition.values)}}
    return {"range": {field: range_bounds(condition)}}


def range_bounds(condition: Range) -> dict[str, Any]:
    bounds = {"gte": condition.gte, "gt": condition.gt, "lte": condition.lte, "lt": condition.lt}
    # Dates travel as ISO strings; a time without a zone is UTC to Elasticsearch, as to Tantivy.
    return {
        op: value.isoformat() if isinstance(value, date) else value
        for op, value in bounds.items()
        if value is not None
    }


async def index_actions(index: str, chunks: Sequence[Chunk]) -> AsyncIterator[dict[str, Any]]:
    for chunk in chunks:
        yield {
            "_op_type": "index",
            "_index": index,
            "_id": chunk.id,
            "_source": {
                "doc_id": chunk.doc_id,
                "position": chunk.position,
                "title": chunk.title,
                "text": chunk.text,
                "metadata": chunk.metadata,
            },
        }


def hit_from_response(hit: Mapping[str, Any]) -> Hit:
    source = hit["_source"]
    fragments = hit.get("highlight", {}).get("text", [])
    return Hit(
        chunk_id=hit["_id"],
        doc_id=source["doc_id"],
        score=float(hit["_score"]),
        title=source.get("title", ""),
        text=source.get("text", ""),
        snippet=fragments[0] if fragments else "",
        metadata=source.get("metadata") or {},
    )


def lacks_english_analyzer(exc: BadRequestError) -> bool:
    return "analyzer [english]" in error_reason(exc)


def disk_block(error: object) -> bool:
    """Whether an error is the block Elasticsearch puts on an index at its flood-stage disk watermark
    (read-only-allow-delete): its way of saying the disk is full. It lifts once space is freed."""
    if not isinstance(error, Mapping):
        return False
    causes = [error, *(error.get("root_cause") or [])]
    return any(
        isinstance(cause, Mapping)
        and cause.get("type") == "cluster_block_exception"
        and "read-only-allow-delete" in str(cause.get("reason"))
        for cause in causes
    )


def disk_full(collection: str) -> StorageFull:
    return StorageFull(
        f'the server\'s disk is full: Elasticsearch holds collection "{collection}" read-only until'
        " space is freed"
    )


def error_reason(exc: ApiError) -> str:
    """Elasticsearch's own sentence for the failure, which names the field or setting at fault."""
    body = exc.body if isinstance(exc.body, Mapping) else {}
    error = body.get("error")
    if isinstance(error, Mapping):
        causes = error.get("root_cause") or [error]
        return str(causes[0].get("reason") or exc.message)
    return str(exc.message)


def bulk_reason(exc: BulkIndexError) -> str:
    """The first failed item's reason: usually a metadata value that does not fit its field's type."""
    for item in exc.errors:
        for result in item.values():
            error = result.get("error")
            if isinstance(error, Mapping):
                return f"chunk {result.get('_id')}: {error.get('reason')}"
    return str(exc)
