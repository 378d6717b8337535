"""A textbook hybrid that Fathom's ranking is measured against, computed in the same run.

BM25 as Anserini's defaults make it: k1 0.9, b 0.4, Lucene's English stop words, Porter stemming,
title and text as one field, one entry per document, query words counted as often as they occur.
Dense: the configured embedding model (all-MiniLM-L6-v2 in tests) on title + text, cut at its
max_length (256 tokens), one vector per document. Hybrid: RRF with k 60 over the top 100 documents of
each. Nothing here shares code with Fathom's lexical stores or fusion, so it checks them from outside.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import Stemmer

from service.ingest.documents import Document
from service.search.protocols import Embedder

DEPTH = 100
RRF_K = 60
# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET, which Anserini uses.
# fmt: off
STOP_WORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no",
    "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this",
    "to", "was", "will", "with",
))
# fmt: on
WORD = re.compile(r"[^\W_]+")
_PORTER = Stemmer.Stemmer("porter")


def analyze(text: str) -> list[str]:
    """Runs of letters and digits, lowercased, stop words dropped, Porter-stemmed."""
    words = [word for word in WORD.findall(text.lower()) if word not in STOP_WORDS]
    stems: list[str] = _PORTER.stemWords(words)
    return stems


def document_text(document: Document) -> str:
    return f"{document.title}\n{document.text}" if document.title else document.text


class BM25:
    """Okapi BM25 over whole documents, as Lucene scores it (idf log(1 + (N - n + 0.5) / (n + 0.5)))."""

    def __init__(self, documents: Sequence[Document], *, k1: float = 0.9, b: float = 0.4) -> None:
        self._ids = [document.id for document in documents]
        self._k1, self._b = k1, b
        self._postings: dict[str, list[tuple[int, int]]] = {}
        lengths = []
        for number, document in enumerate(documents):
            terms = Counter(analyze(document_text(document)))
            lengths.append(sum(terms.values()))
            for term, count in terms.items():
                self._postings.setdefault(term, []).append((number, count))
        self._lengths = np.array(lengths, dtype=np.float64)
        self._average = float(self._lengths.mean()) if lengths else 0.0

    def search(self, query: str, limit: int = DEPTH) -> list[str]:
        """Ids of the best `limit` documents that share a word with the query, best first."""
        scores = self.scores(query)
        return sorted(scores, key=lambda doc_id: (-scores[doc_id], doc_id))[:limit]

    def scores(self, query: str) -> dict[str, float]:
        """The score of every document sharing a word with the query; a word said twice counts twice."""
        totals = np.zeros(len(self._ids))
        matched = np.zeros(len(self._ids), dtype=bool)
        norms = self._k1 * (1 - self._b + self._b * self._lengths / (self._average or 1.0))
        for term, weight in Counter(analyze(query)).items():
            postings = self._postings.get(term)
            if not postings:
                continue
            rows = np.array([row for row, _ in postings])
            counts = np.array([count for _, count in postings], dtype=np.float64)
            n = len(postings)
            idf = math.log(1 + (len(self._ids) - n + 0.5) / (n + 0.5))
            totals[rows] += weight * idf * counts * (self._k1 + 1) / (counts + norms[rows])
            matched[rows] = True
        return {self._ids[row]: float(totals[row]) for row in np.flatnonzero(matched)}


class DenseIndex:
    """One normalised vector per document; cosine similarity is a dot product."""

    def __init__(self, ids: Sequence[str], vectors: Sequence[Sequence[float]]) -> None:
        self._ids = list(ids)
        self._matrix = np.array(vectors, dtype=np.float32).reshape(len(self._ids), -1)

    def search(self, vector: Sequence[float], limit: int = DEPTH) -> list[str]:
        similarities = self._matrix @ np.array(vector, dtype=np.float32)
        scores = dict(zip(self._ids, map(float, similarities), strict=True))
        return sorted(scores, key=lambda doc_id: (-scores[doc_id], doc_id))[:limit]


def rrf(rankings: Iterable[Sequence[str]], k: int = RRF_K, limit: int = DEPTH) -> list[str]:
    """Sum of 1 / (k + rank) over the rankings, rank from 1; ties by id."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1 / (k + rank)
    return sorted(scores, key=lambda doc_id: (-scores[doc_id], doc_id))[:limit]


Rankings = dict[str, list[str]]  # query id -> document ids, best first


@dataclass(slots=True)
class ReferenceRuns:
    """Each reference stage's ranking of every query, and the milliseconds each query took in it."""

    bm25: Rankings = field(default_factory=dict)
    dense: Rankings = field(default_factory=dict)
    hybrid: Rankings = field(default_factory=dict)
    bm25_ms: list[float] = field(default_factory=list)
    dense_ms: list[float] = field(default_factory=list)

    def stages(self) -> dict[str, tuple[Rankings, list[float]]]:
        """Stage name -> (rankings, latencies); the hybrid pays for both retrievers, run in turn."""
        hybrid_ms = [a + b for a, b in zip(self.bm25_ms, self.dense_ms, strict=True)]
        return {
            "ref-bm25": (self.bm25, self.bm25_ms),
            "ref-dense": (self.dense, self.dense_ms),
            "ref-hybrid": (self.hybrid, hybrid_ms),
        }


async def reference_runs(
    documents: Sequence[Document], queries: dict[str, str], embedder: Embedder
) -> ReferenceRuns:
    """Rank every query with the reference BM25, the reference dense index and their RRF."""
    lexical = BM25(documents)
    vectors = await embedder.embed_passages([document_text(document) for document in documents])
    dense_index = DenseIndex([document.id for document in documents], vectors)
    runs = ReferenceRuns()
    for query_id, text in queries.items():
        started = time.perf_counter()
        runs.bm25[query_id] = lexical.search(text)
        lexical_done = time.perf_counter()
        runs.dense[query_id] = dense_index.search(await embedder.embed_query(text))
        dense_done = time.perf_counter()
        runs.hybrid[query_id] = rrf([runs.bm25[query_id], runs.dense[query_id]])
        runs.bm25_ms.append((lexical_done - started) * 1000)
        runs.dense_ms.append((dense_done - lexical_done) * 1000)
    return runs
