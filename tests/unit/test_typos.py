"""Which query words typo tolerance and prefix matching expand, and how far (pure rules)."""

from __future__ import annotations

from service.search.typos import MIN_PREFIX_LETTERS, Fuzzy, allowed_edits, fuzzy_terms, unfinished_word


def test_no_typo_under_five_letters_one_to_eight_two_from_nine() -> None:
    assert [allowed_edits("a" * n) for n in range(1, 12)] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]


def test_only_words_the_collection_lacks_are_fuzzed_once_each() -> None:
    words = [
        ("bondary", "bondari", 0),  # unknown, 7 letters: one edit
        ("layr", "layr", 0),  # unknown but under 5 letters
        ("flows", "flow", 12),  # known: taken as typed
        ("trnsitions", "trnsit", 0),  # edits follow the word as typed, not its stem
        ("bondary", "bondari", 0),  # said twice, fuzzed once
    ]
    assert fuzzy_terms(words) == [Fuzzy("bondari", 1), Fuzzy("trnsit", 2)]


def test_the_last_word_is_a_prefix_from_three_letters() -> None:
    assert unfinished_word("boundary layer Tran") == "tran"
    assert unfinished_word("boundary layer tr") is None
    assert unfinished_word("  ") is None
    assert MIN_PREFIX_LETTERS == 3
