"""BM25 passages in embedded Tantivy indexes: one folder per collection, no server needed."""

from __future__ import annotations

import asyncio
import errno
import html
import json
import logging
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import tantivy

from service.backends.whole_documents import document_entries
from service.errors import BackendUnavailable, FathomError, InvalidRequest, NotFound, StorageFull
from service.search.collections import checked_collection_name
from service.search.facets import FacetCounts, count_documents, disjunctive_counts
from service.search.filters import parse_iso_date
from service.search.models import AnyOf, Chunk, Condition, Equals, Filter, Hit, Range, Scalar
from service.search.redact import for_clients
from service.search.typos import (
    EXACT,
    MAX_EXPANSIONS,
    PREFIX_WEIGHT,
    TYPO_WEIGHT,
    Matching,
    fuzzy_terms,
    typed_words,
    unfinished_word,
)

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

# BM25 ranks on one field, `content` (title and text together), as textbook BM25 does. Summing
# separate title and text scores instead weighs a title word as if it were several (a title is short,
# so length normalisation inflates it): with RRF fusion that cost nDCG@10 0.031 on CACM and 0.003 on
# Cranfield against one field (measured with `fathom eval` on both). Indexes written before `content`
# existed are still searched over title and text (LEGACY_FIELDS) until their collection is re-indexed.
RANK_FIELDS = ["content"]
LEGACY_FIELDS = ["title", "text"]
SNIPPET_FIELD = "text"
SNIPPET_CHARS = 200
# Text is analysed as classic English BM25 setups do: runs of letters and digits, lowercased,
# English stop words removed, Snowball-stemmed. Queries go through the same analyser and become one
# term query per token, repeats included, so a word said twice weighs twice (as in Lucene); there is
# no query syntax for user text to trip over. On CACM's long natural-language queries, stop words and
# repeats move nDCG@10 from 0.42 to 0.47 (Cranfield: 0.37 to 0.38).
ANALYZER = "fathom_english"
# Typo and prefix matching compare what was typed with the words of the text, not with their stems: a
# typo changes where the stemmer cuts ("transiton" stays whole, "transition" becomes "transit") and a
# half-typed word is no word to stem. `words` holds title and text lowercased, stop words out, unstemmed;
# only which documents hold a word (no frequencies or positions), since those matches score a constant.
# Indexes written before it existed fall back to matching the stems until re-indexed.
WORDS_FIELD = "words"
WORDS_ANALYZER = "fathom_words"
WRITER_HEAP_BYTES = 64_000_000
# BM25 ranks documents, not chunks: a second index in the collection's folder holds one entry per
# document, its whole text, so term frequencies and length normalisation are the document's, as in
# textbook BM25 (Tantivy's k1 1.2 and b 0.75 are fixed in the library). Chunks still supply each
# hit's snippet and passage: a document's best-matching chunk. A collection written before this index
# existed has no such folder and keeps ranking chunks until it is dropped and indexed again.
DOCUMENTS_FOLDER = "documents"
# Chunks read per ranked document to find each one's best-matching chunk in one search.
CHUNKS_PER_DOCUMENT = 8


def passage_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("doc_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_integer_field("position", stored=True)
    # title and text stay indexed for snippets (which highlight the text field's own terms).
    builder.add_text_field("title", stored=True, tokenizer_name=ANALYZER)
    builder.add_text_field("text", stored=True, tokenizer_name=ANALYZER)
    # Filterable copy of the metadata: strings whole (raw), ISO dates as dates; fast for range queries.
    builder.add_json_field(
        "metadata", fast=True, tokenizer_name="raw", index_option="basic", expand_dots_enabled=True
    )
    # The metadata exactly as given, returned with hits.
    builder.add_bytes_field("metadata_source", stored=True)
    # Last, so the fields before it keep the numbers they have in indexes written without it.
    builder.add_text_field("content", stored=False, tokenizer_name=ANALYZER)
    builder.add_text_field("words", stored=False, tokenizer_name=WORDS_ANALYZER, index_option="basic")
    return builder.build()


def english_analyzer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.stopword("english"))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def words_analyzer() -> tantivy.TextAnalyzer:
    """The English analyser without its stemmer, for the `words` field."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.stopword("english"))
        .build()
    )


SCHEMA = passage_schema()
QUERY_ANALYZER = english_analyzer()


def text_query(
    text: str,
    fields: Sequence[str] = RANK_FIELDS,
    schema: tantivy.Schema = SCHEMA,
    *,
    matching: Matching = EXACT,
    searcher: tantivy.Searcher | None = None,
    words_field: str | None = WORDS_FIELD,
) -> tantivy.Query | None:
    """Every analysed query token against each field, summed; None when no token survives.

    With a searcher to read the term dictionary, `matching` adds typo and prefix clauses, on
    `words_field` (unstemmed), or on the stems of `fields` when the index has no such field.
    """
    terms = QUERY_ANALYZER.analyze(text)
    queries = [tantivy.Query.term_query(schema, f, t) for t in terms for f in fields]
    expand_on = [words_field] if words_field else list(fields)
    if searcher is not None and matching.typos:
        queries.extend(typo_queries(text, fields, expand_on, schema, searcher))
    if searcher is not None and matching.prefix:
        queries.extend(prefix_queries(text, expand_on, schema, searcher))
    clauses = [(tantivy.Occur.Should, query) for query in queries]
    return tantivy.Query.boolean_query(clauses) if clauses else None


def typo_queries(
    text: str,
    fields: Sequence[str],
    expand_on: Sequence[str],
    schema: tantivy.Schema,
    searcher: tantivy.Searcher,
) -> list[tantivy.Query]:
    """Fuzzy clauses on `expand_on` for the query words whose stems BM25 finds nowhere in `fields`
    (service/search/typos.py): the word as typed on the unstemmed field, else its stem.

    Tantivy's fuzzy query cannot keep the first letter as Elasticsearch's prefix_length does: a typo
    may be corrected to a word with another first letter. Expanding only words of document frequency
    0 limits what that can do: a word the collection knows is never turned into another. Its match
    scores a constant (TYPO_WEIGHT): Tantivy's fuzzy query scores no BM25.
    """
    unstemmed = list(expand_on) != list(fields)
    words = [
        (word, word.lower() if unstemmed else term, sum(searcher.doc_freq(name, term) for name in fields))
        for word, _, _ in typed_words(text)
        for term in QUERY_ANALYZER.analyze(word)
    ]
    return [
        tantivy.Query.const_score_query(
            tantivy.Query.fuzzy_term_query(schema, name, fuzzy.term, fuzzy.edits, True, False),
            TYPO_WEIGHT,
        )
        for fuzzy in fuzzy_terms(words)
        for name in expand_on
    ]


# Terms read from the dictionary to pick the MAX_EXPANSIONS most frequent completions of a prefix.
PREFIX_SCAN = 5_000


def prefix_queries(
    text: str, fields: Sequence[str], schema: tantivy.Schema, searcher: tantivy.Searcher
) -> list[tantivy.Query]:
    """The unfinished last word as a prefix of its MAX_EXPANSIONS most frequent completions.

    The word is matched as typed (lowercased), not stemmed: a half-typed word is no word for the
    stemmer to cut. Its match scores a constant (PREFIX_WEIGHT).
    """
    word = unfinished_word(text)
    if word is None:
        return []
    completions: Counter[str] = Counter()
    for name in fields:
        completions.update(dict(searcher.terms_with_prefix(name, word, limit=PREFIX_SCAN)))
    terms = [term for term, _ in completions.most_common(MAX_EXPANSIONS)]
    if not terms:
        return []
    return [
        tantivy.Query.const_score_query(tantivy.Query.term_set_query(schema, name, terms), PREFIX_WEIGHT)
        for name in fields
    ]


def has_field(index: tantivy.Index, name: str) -> bool:
    try:
        tantivy.Query.term_query(index.schema, name, "")
    except ValueError:
        return False
    return True


def rank_fields(index: tantivy.Index) -> list[str]:
    """The fields BM25 ranks on in this index: `content`, or title and text in an older index."""
    return RANK_FIELDS if has_field(index, RANK_FIELDS[0]) else LEGACY_FIELDS


@dataclass
class OpenIndex:
    """One collection's index and its single writer, which the lock serialises."""

    index: tantivy.Index
    lock: threading.Lock = field(default_factory=threading.Lock)
    writer: tantivy.IndexWriter | None = None
    fields: list[str] = field(default_factory=lambda: RANK_FIELDS)
    words_field: str | None = WORDS_FIELD
    # The one-entry-per-document index BM25 ranks on, or None in a collection written before it.
    documents: OpenIndex | None = None

    def query(self, text: str, searcher: tantivy.Searcher, matching: Matching) -> tantivy.Query | None:
        return text_query(
            text,
            self.fields,
            self.index.schema,
            matching=matching,
            searcher=searcher,
            words_field=self.words_field,
        )

    def write(self, change: Callable[[tantivy.IndexWriter], None]) -> None:
        """Apply a change and commit it, visible to searchers on return; rolled back if it fails."""
        with self.lock:
            if self.writer is None:
                self.writer = self.index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
            try:
                change(self.writer)
                self.writer.commit()
            except BaseException:
                self.writer.rollback()
                raise
            self.index.reload()

    def close(self) -> None:
        if self.documents is not None:
            self.documents.close()
        with self.lock:
            if self.writer is not None:
                self.writer.wait_merging_threads()
                self.writer = None


class TantivyIndex:
    """LexicalStore on Tantivy indexes under `base_path` (the app passes <data_dir>/tantivy).

    Every Tantivy call runs in a worker thread; `close()` finishes merges and releases the writers.
    """

    def __init__(self, base_path: str | Path) -> None:
        self._base = Path(base_path)
        self._open: dict[str, OpenIndex] = {}
        self._registry_lock = threading.Lock()

    async def close(self) -> None:
        await asyncio.to_thread(self._close_all)

    async def search(
        self,
        collection: str,
        text: str,
        *,
        limit: int,
        filter: Filter | None = None,
        matching: Matching = EXACT,
    ) -> list[Hit]:
        if limit < 1:  # Tantivy panics on an empty top-k rather than raising
            return []
        return await self._run(collection, self._search, collection, text, limit, filter, matching)

    async def facets(
        self,
        collection: str,
        text: str,
        fields: Sequence[str],
        *,
        filter: Filter | None = None,
        matching: Matching = EXACT,
    ) -> FacetCounts:
        async def count(names: Sequence[str], narrowed: Filter | None) -> FacetCounts:
            return await self._run(collection, self._facets, collection, text, names, narrowed, matching)

        return await disjunctive_counts(count, fields, filter)

    async def upsert(self, collection: str, chunks: Sequence[Chunk]) -> None:
        """Add the chunks, replacing any with the same chunk id; creates the collection if needed."""
        if chunks:
            await self._run(collection, self._upsert, collection, chunks)

    async def delete_documents(self, collection: str, doc_ids: Sequence[str]) -> None:
        await self._run(collection, self._delete_documents, collection, doc_ids)

    async def count_chunks(self, collection: str) -> int:
        return await self._run(collection, self._count, collection)

    async def chunk_counts(self, collection: str) -> dict[str, int]:
        return await self._run(collection, self._chunk_counts, collection)

    async def ensure_collection(self, collection: str) -> None:
        await self._run(collection, self._opened, collection, create=True)

    async def drop_collection(self, collection: str) -> None:
        await self._run(collection, self._drop, collection)

    async def collection_exists(self, collection: str) -> bool:
        return await self._run(collection, lambda: index_exists(self._path(collection)))

    async def _run(self, collection: str, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking Tantivy call off the event loop: the one place its errors are translated."""
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except FathomError:
            raise
        except (ValueError, OSError, RuntimeError) as exc:
            log.warning('Tantivy index of collection "%s" failed', collection, exc_info=exc)
            if disk_full(exc):
                full = f'the server\'s disk is full: collection "{collection}" cannot be written'
                raise StorageFull(full) from exc
            # Tantivy's messages name index files: the path stays in the log above.
            raise BackendUnavailable(
                f'Tantivy index of collection "{collection}" failed: {for_clients(str(exc))}'
            ) from exc

    def _search(
        self, collection: str, text: str, limit: int, filter: Filter | None, matching: Matching
    ) -> list[Hit]:
        opened = self._opened(collection)
        index = opened.index
        searcher = index.searcher()
        query = opened.query(text, searcher, matching)
        if query is None:  # only stop words or punctuation: nothing for BM25 to rank
            return []
        # The generator highlights the terms its query holds for the snippet field.
        snippet_query = text_query(text, [SNIPPET_FIELD]) or query
        snippets = tantivy.SnippetGenerator.create(searcher, snippet_query, SCHEMA, SNIPPET_FIELD)
        snippets.set_max_num_chars(SNIPPET_CHARS)
        if opened.documents is not None:
            ranked = ranked_documents(opened.documents, text, limit, filter, matching)
            passages = best_chunks(searcher, query, [doc_id for _, doc_id in ranked])
            return [
                hit_from_document(score, passages[doc_id], snippets)
                for score, doc_id in ranked
                if doc_id in passages
            ]
        result = searcher.search(filtered(index, query, filter), limit=limit)
        return [hit_from_document(score, searcher.doc(address), snippets) for score, address in result.hits]

    def _facets(
        self,
        collection: str,
        text: str,
        fields: Sequence[str],
        filter: Filter | None,
        matching: Matching,
    ) -> FacetCounts:
        """Counted from the stored fields of every matching passage: exact, in documents.

        Tantivy's cardinality aggregation would count documents without reading them, but it is an
        estimate (HyperLogLog), and a facet count must equal the total of the search it filters to.
        Reading a passage's two fields costs about 8 microseconds.
        """
        opened = self._opened(collection)
        index = opened.index
        searcher = index.searcher()
        query = opened.query(text, searcher, matching)
        if query is None:
            return FacetCounts(total=0, fields={name: [] for name in fields})
        matches = searcher.search(
            filtered(index, query, filter), limit=max(searcher.num_docs, 1), count=False
        )
        documents = (searcher.doc(address) for _, address in matches.hits)
        return count_documents(
            (
                (str(doc.get_first("doc_id")), json.loads(doc.get_first("metadata_source") or b"{}"))
                for doc in documents
            ),
            fields,
        )

    def _upsert(self, collection: str, chunks: Sequence[Chunk]) -> None:
        passages = [passage_document(chunk) for chunk in chunks]
        opened = self._opened(collection, create=True)
        whole = [passage_document(entry) for entry in document_entries(chunks)] if opened.documents else []
        # A delete only hits documents added before it, so each entry replaces its older copies.
        opened.write(partial(replace_entries, "chunk_id", [chunk.id for chunk in chunks], passages))
        if opened.documents is not None:
            ids = list(dict.fromkeys(chunk.doc_id for chunk in chunks))
            opened.documents.write(partial(replace_entries, "doc_id", ids, whole))

    def _delete_documents(self, collection: str, doc_ids: Sequence[str]) -> None:
        def change(writer: tantivy.IndexWriter) -> None:
            for doc_id in doc_ids:
                writer.delete_documents_by_term("doc_id", doc_id)

        opened = self._opened(collection)
        opened.write(change)
        if opened.documents is not None:
            opened.documents.write(change)

    def _count(self, collection: str) -> int:
        return self._opened(collection).index.searcher().num_docs

    def _chunk_counts(self, collection: str) -> dict[str, int]:
        searcher = self._opened(collection).index.searcher()
        if searcher.num_docs == 0:
            return {}
        # One pass over every live passage: the doc_id field is not a fast field, so read the stored one.
        result = searcher.search(tantivy.Query.all_query(), limit=searcher.num_docs, count=False)
        return dict(Counter(str(searcher.doc(address).get_first("doc_id")) for _, address in result.hits))

    def _drop(self, collection: str) -> None:
        with self._registry_lock:
            opened = self._open.pop(collection, None)
            if opened is not None:
                opened.close()
            shutil.rmtree(self._path(collection), ignore_errors=True)

    def _close_all(self) -> None:
        with self._registry_lock:
            for opened in self._open.values():
                opened.close()
            self._open.clear()

    def _opened(self, collection: str, *, create: bool = False) -> OpenIndex:
        """The collection's open index, opened once per process; NotFound unless `create`."""
        path = self._path(collection)
        with self._registry_lock:
            if collection in self._open:
                return self._open[collection]
            if index_exists(path):
                index = tantivy.Index.open(str(path))
            elif create:
                # The documents' index first: a collection folder whose passages' index exists always
                # has it, unless it was written before it existed.
                created_index(path / DOCUMENTS_FOLDER)
                index = created_index(path)
            else:
                raise NotFound(f'collection "{collection}" does not exist')
            opened = self._open[collection] = opened_index(index)
            if index_exists(path / DOCUMENTS_FOLDER):
                opened.documents = opened_index(tantivy.Index.open(str(path / DOCUMENTS_FOLDER)))
            return opened

    def _path(self, collection: str) -> Path:
        checked_collection_name(collection)
        return self._base / collection


def index_exists(path: Path) -> bool:
    # Index.exists raises on a folder that is not there.
    return path.is_dir() and tantivy.Index.exists(str(path))


def created_index(path: Path) -> tantivy.Index:
    """The index at `path`, created empty if there is none yet."""
    if index_exists(path):
        return tantivy.Index.open(str(path))
    path.mkdir(parents=True, exist_ok=True)
    return tantivy.Index(SCHEMA, path=str(path))


def opened_index(index: tantivy.Index) -> OpenIndex:
    """An opened index with Fathom's analysers, ranking on the fields it holds."""
    index.register_tokenizer(ANALYZER, english_analyzer())
    index.register_tokenizer(WORDS_ANALYZER, words_analyzer())
    words = WORDS_FIELD if has_field(index, WORDS_FIELD) else None
    return OpenIndex(index, fields=rank_fields(index), words_field=words)


def replace_entries(
    key: str, values: Sequence[str], entries: Sequence[tantivy.Document], writer: tantivy.IndexWriter
) -> None:
    """Delete every entry whose `key` is one of `values`, then add `entries`."""
    for value in values:
        writer.delete_documents_by_term(key, value)
    for entry in entries:
        writer.add_document(entry)


def ranked_documents(
    documents: OpenIndex, text: str, limit: int, filter: Filter | None, matching: Matching
) -> list[tuple[float, str]]:
    """(BM25 score, document id) of the best `limit` documents for `text`, best first."""
    searcher = documents.index.searcher()
    query = documents.query(text, searcher, matching)
    if query is None:
        return []
    result = searcher.search(filtered(documents.index, query, filter), limit=limit)
    return [(score, str(searcher.doc(address).get_first("doc_id"))) for score, address in result.hits]


def best_chunks(
    searcher: tantivy.Searcher, query: tantivy.Query, doc_ids: Sequence[str]
) -> dict[str, tantivy.Document]:
    """Each document's chunk that matches `query` best: the hit's passage and snippet.

    One search over the chunks of all the documents; a document whose matching chunks all fell
    past its depth (or that matched through its title alone) gets its best chunk by a search of its
    own, which scores its chunks even when none matches, so every ranked document keeps a passage.
    """
    if not doc_ids:
        return {}
    among = tantivy.Query.const_score_query(
        tantivy.Query.term_set_query(SCHEMA, "doc_id", list(doc_ids)), 0.0
    )
    within = tantivy.Query.boolean_query([(tantivy.Occur.Must, query), (tantivy.Occur.Must, among)])
    result = searcher.search(within, limit=len(doc_ids) * CHUNKS_PER_DOCUMENT)
    best: dict[str, tantivy.Document] = {}
    for _, address in result.hits:
        chunk = searcher.doc(address)
        best.setdefault(str(chunk.get_first("doc_id")), chunk)
    for doc_id in doc_ids:
        if doc_id not in best:
            own = tantivy.Query.term_query(SCHEMA, "doc_id", doc_id)
            clauses = [(tantivy.Occur.Must, own), (tantivy.Occur.Should, query)]
            found = searcher.search(tantivy.Query.boolean_query(clauses), limit=1).hits
            if found:
                best[doc_id] = searcher.doc(found[0][1])
    return best


def passage_document(chunk: Chunk) -> tantivy.Document:
    try:
        source = json.dumps(chunk.metadata, default=iso_format, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"chunk {chunk.id}: metadata must be JSON values: {exc}") from exc
    document = tantivy.Document()
    document.add_text("chunk_id", chunk.id)
    document.add_text("doc_id", chunk.doc_id)
    document.add_integer("position", chunk.position)
    document.add_text("title", chunk.title)
    document.add_text("text", chunk.text)
    document.add_text("content", f"{chunk.title}\n{chunk.text}")
    document.add_text("words", f"{chunk.title}\n{chunk.text}")
    try:
        document.add_json("metadata", filterable(json.loads(source)))
    except (ValueError, OverflowError, RecursionError) as exc:
        # This document's value, not the index, is at fault: a refusal, never an outage to retry.
        raise InvalidRequest(f"chunk {chunk.id}: Tantivy cannot index its metadata: {exc}") from exc
    document.add_bytes("metadata_source", source.encode())
    return document


def iso_format(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def filterable(value: Any) -> Any:
    """Metadata as filters see it: ISO dates as RFC 3339 UTC strings, which Tantivy indexes as dates."""
    if isinstance(value, dict):
        return {key: filterable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [filterable(item) for item in value]
    if isinstance(value, str) and (moment := parse_iso_date(value)) is not None:
        return rfc3339(moment)
    return value


def rfc3339(moment: date) -> str:
    """UTC with a Z; a date is its midnight and a time without zone is UTC, as in Elasticsearch."""
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def filtered(index: tantivy.Index, text_query: tantivy.Query, filter: Filter | None) -> tantivy.Query:
    """The text query restricted inside the index, so `limit` counts only matching passages.

    Filter clauses score zero, leaving the BM25 scores as the text alone makes them.
    """
    if filter is None:
        return text_query
    clauses = [(tantivy.Occur.Must, text_query)]
    for condition in filter.conditions:
        for query in condition_queries(index, condition):
            clauses.append((tantivy.Occur.Must, tantivy.Query.const_score_query(query, 0.0)))
    return tantivy.Query.boolean_query(clauses)


def condition_queries(index: tantivy.Index, condition: Condition) -> list[tantivy.Query]:
    path = f"metadata.{condition.field}"
    if isinstance(condition, Equals):
        return [tantivy.Query.term_query(SCHEMA, path, term_value(condition.value))]
    if isinstance(condition, AnyOf):
        return [tantivy.Query.term_set_query(SCHEMA, path, [term_value(v) for v in condition.values])]
    return range_queries(index, path, condition)


def term_value(value: Scalar) -> Scalar | datetime:
    """Dates were indexed as dates, so an ISO string must be looked up as one."""
    if isinstance(value, str) and (moment := parse_iso_date(value)) is not None:
        return datetime.fromisoformat(rfc3339(moment))
    return value


def range_queries(index: tantivy.Index, path: str, condition: Range) -> list[tantivy.Query]:
    """One single-bound query per bound: Tantivy 0.27 panics on a two-sided range over a JSON field
    whose bounds parse as different number types (e.g. `[2.5 TO 8]`, where 8.0 parses as an integer).

    tantivy-py builds range queries on JSON paths only through the query parser; the path was
    validated by parse_filter and the bounds are formatted numbers or dates, so nothing needs escaping.
    """
    bounds = {">=": condition.gte, ">": condition.gt, "<=": condition.lte, "<": condition.lt}
    return [
        index.parse_query(f"{path}:{op}{bound_text(value)}")
        for op, value in bounds.items()
        if value is not None
    ]


def bound_text(value: float | date) -> str:
    if isinstance(value, date):
        return rfc3339(value)
    # Positional notation: the query parser reads no exponents.
    return format(Decimal(repr(value)), "f")


def hit_from_document(score: float, document: tantivy.Document, snippets: tantivy.SnippetGenerator) -> Hit:
    text = document.get_first("text") or ""
    return Hit(
        chunk_id=str(document.get_first("chunk_id")),
        doc_id=str(document.get_first("doc_id")),
        score=float(score),
        title=document.get_first("title") or "",
        text=text,
        snippet=snippet_html(snippets.snippet_from_doc(document), text),
        metadata=json.loads(document.get_first("metadata_source") or b"{}"),
    )


def snippet_html(snippet: tantivy.Snippet, text: str) -> str:
    """The best fragment with <em> around matched words, HTML-escaped; else the start of the text."""
    if snippet.fragment():
        # to_html escapes the passage before adding its <b> tags, so every "<b>" left is a tag.
        return snippet.to_html().replace("<b>", "<em>").replace("</b>", "</em>")
    return html.escape(text[:SNIPPET_CHARS])


def disk_full(exc: BaseException) -> bool:
    """ENOSPC, raised as OSError or wrapped by Tantivy in a ValueError's text ("os error 28")."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc)
    return "No space left on device" in text or "os error 28" in text
