"""The ingest journal's bookkeeping: intents until committed, seen runs, invalidation."""

from __future__ import annotations

from pathlib import Path

from service.ingest.journal import Committed, Intent, Journal


def test_intents_stay_until_committed_and_survive_reopening(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    assert journal.add_collection("c") and not journal.add_collection("c")
    journal.begin("c", [Intent("a", "write", "h1", '{"id": "a"}'), Intent("b", "delete")])
    journal.close()

    reopened = Journal(tmp_path / "j.sqlite3")  # as after a kill: the intents are what is left
    assert [i.doc_id for i in reopened.pending("c")] == ["a", "b"]
    reopened.commit_writes("c", [("a", "h1", 3)], run=7)
    reopened.commit_deletes("c", ["b"])
    assert reopened.pending("c") == []
    assert reopened.committed("c", ["a", "b"]) == {"a": Committed("h1", 3)}
    reopened.close()


def test_unseen_and_invalidate(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.commit_writes("c", [("a", "h", 1), ("b", "h", 2)], run=1)
    journal.mark_seen("c", ["a"], run=2)
    assert journal.unseen("c", run=2) == ["b"]
    journal.invalidate("c", ["a"])
    assert journal.committed("c", ["a"])["a"].content_hash == ""
    assert journal.chunk_counts("c") == {"a": 1, "b": 2} and journal.document_count("c") == 2
    journal.close()
