"""Which Elasticsearch errors mean its disk is full: the flood-stage block, not other cluster blocks."""

from __future__ import annotations

from service.backends.elasticsearch import disk_block

FLOOD = (
    "index [site] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has"
    " read-only-allow-delete block];"
)


def test_the_flood_stage_block_is_a_full_disk_as_an_item_error_or_a_root_cause() -> None:
    assert disk_block({"type": "cluster_block_exception", "reason": FLOOD})
    assert disk_block({"type": "x", "root_cause": [{"type": "cluster_block_exception", "reason": FLOOD}]})


def test_other_blocks_and_errors_are_not() -> None:
    read_only = "index [site] blocked by: [FORBIDDEN/5/index read-only (api)];"
    assert not disk_block({"type": "cluster_block_exception", "reason": read_only})
    assert not disk_block({"type": "mapper_parsing_exception", "reason": "failed to parse"})
    assert not disk_block("a string")
    assert not disk_block(None)
