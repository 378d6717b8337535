"""Typo tolerance and prefix-as-you-type on the lexical side: which query words to expand, and how far.

The rules are Meilisearch's and Algolia's defaults, so a search box behaves as users expect from them:
no typo in a word under 5 letters, one edit (Damerau-Levenshtein: a swap of two neighbours is one) from
5 letters, two from 9, the first letter never edited; the last word, when the request says it is still
being typed, also matches as a prefix of at least 3 letters, over at most MAX_EXPANSIONS terms.

Both stores expand a word only when the collection holds none of it (document frequency 0). A word
the collection knows is taken as typed, so its BM25 score is untouched and an exact match always
outranks a typo match of the same word; a word it does not know scores nothing by BM25 anyway, so
fuzzing it can only add documents. Long natural-language queries are where fuzzy expansion hurts:
fuzzing every word of 5 letters or more cost `fathom eval` bm25 nDCG@10 0.027 on Cranfield (0.3640 to
0.3368, hybrid 0.4155 to 0.4067), where this rule was chosen; CACM confirmed it (bm25 0.4834 to 0.4239,
hybrid 0.5556 to 0.5262), while with the rule both stay within 0.0004 of exact matching.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

MIN_TYPO_LETTERS = 5
TWO_TYPO_LETTERS = 9
MIN_PREFIX_LETTERS = 3
# Terms a prefix (or a fuzzy word, on Elasticsearch) may expand to: a two-letter-longer prefix of a
# common stem can match hundreds of terms, each one more posting list to merge.
MAX_EXPANSIONS = 50
# A typo or prefix match scores as a constant (Tantivy's fuzzy and prefix queries score no BM25, and
# Elasticsearch wraps its clause the same way so the two stores rank alike): about the BM25 score of
# a moderately rare word matched once in a short passage. Chosen on Cranfield's known items
# (bench/known_item.py), where success@10 and MRR@10 are flat from 2 to 8; confirmed on CACM's.
TYPO_WEIGHT = 4.0
PREFIX_WEIGHT = 4.0

# Words as the analysers cut them (runs of letters and digits).
WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Matching:
    """How the lexical stores match query words beyond the exact analysed terms.

    `typos`: a word the collection does not hold also matches terms within allowed_edits of it.
    `prefix`: the last word is unfinished, so it also matches terms it begins.
    """

    typos: bool = False
    prefix: bool = False


EXACT = Matching()


def allowed_edits(word: str) -> int:
    """Edits a typed word may have: 0 under 5 letters, 1 from 5, 2 from 9."""
    if len(word) >= TWO_TYPO_LETTERS:
        return 2
    return 1 if len(word) >= MIN_TYPO_LETTERS else 0


@dataclass(frozen=True, slots=True)
class Fuzzy:
    """One analysed query term to match within `edits` edits (first letter kept)."""

    term: str
    edits: int


def typed_words(text: str) -> Iterator[tuple[str, int, int]]:
    """Each word of the query as typed, with its start and end offsets."""
    for found in WORD.finditer(text):
        yield found.group(), found.start(), found.end()


def fuzzy_terms(words: list[tuple[str, str, int]]) -> list[Fuzzy]:
    """The terms to fuzz, from (word as typed, the term to fuzz for it, the document frequency of its
    analysed term: what BM25 finds of it).

    Only terms the collection does not hold, of words long enough to carry a typo; once each.
    """
    chosen: dict[str, Fuzzy] = {}
    for word, term, doc_freq in words:
        edits = allowed_edits(word)
        if doc_freq == 0 and edits and term not in chosen:
            chosen[term] = Fuzzy(term, edits)
    return list(chosen.values())


def unfinished_word(text: str) -> str | None:
    """The query's last word, lowercased, when it is long enough to expand as a prefix."""
    words: list[str] = WORD.findall(text)
    if not words or len(words[-1]) < MIN_PREFIX_LETTERS:
        return None
    return words[-1].lower()
