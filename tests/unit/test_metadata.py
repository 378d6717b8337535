"""Metadata every store takes: checked before a document is journalled, never a crash."""

from __future__ import annotations

from service.ingest.metadata import metadata_problem


def test_text_that_is_not_utf8_is_a_problem_not_a_crash() -> None:
    # How Python holds a file name's byte 0xe9 when the name is not UTF-8: a lone surrogate.
    assert metadata_problem({"path": "caf\udce9.txt"}) == (
        "metadata.path: text is not valid UTF-8 (it holds a lone surrogate)"
    )
    assert metadata_problem({"caf\udce9": 1}) == (
        "metadata: key 'caf\\udce9' is not valid UTF-8 (it holds a lone surrogate)"
    )
    assert metadata_problem({"path": "café.txt", "tags": ["naïve"]}) is None
