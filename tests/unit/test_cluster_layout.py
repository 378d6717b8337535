"""Shard and replica settings: defaults fit one node, bad values are refused, Elasticsearch gets them."""

from __future__ import annotations

import pytest

from service.backends.elasticsearch import load_index_body, with_layout
from service.settings import ConfigError, ElasticsearchSettings, load_settings, settings_from_dict


def test_defaults_suit_a_single_node() -> None:
    settings = load_settings(environ={})
    assert (settings.qdrant.shards, settings.qdrant.replication_factor) == (1, 1)
    assert (settings.elasticsearch.shards, settings.elasticsearch.replicas) == (1, "0-1")
    assert settings.qdrant.prefer_grpc is False


def test_environment_sets_a_cluster_layout() -> None:
    environ = {"FATHOM_QDRANT__REPLICATION_FACTOR": "2", "FATHOM_ELASTICSEARCH__REPLICAS": "1"}
    settings = load_settings(environ=environ)
    assert settings.qdrant.replication_factor == 2
    assert settings.elasticsearch.replicas == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"qdrant": {"shards": 0}}, "qdrant.shards"),
        ({"qdrant": {"replication_factor": 0}}, "replication_factor"),
        ({"elasticsearch": {"shards": 0}}, "elasticsearch.shards"),
        ({"elasticsearch": {"replicas": -1}}, "elasticsearch.replicas"),
    ],
)
def test_impossible_layouts_are_refused(raw: dict[str, dict[str, int]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_dict(raw)


def test_index_body_carries_a_replica_count_or_an_auto_expand_range() -> None:
    fixed = with_layout(load_index_body(), ElasticsearchSettings(shards=3, replicas=1))["settings"]
    assert (fixed["number_of_shards"], fixed["number_of_replicas"]) == (3, 1)
    assert "auto_expand_replicas" not in fixed
    auto = with_layout(load_index_body(), ElasticsearchSettings())["settings"]
    assert (auto["number_of_shards"], auto["auto_expand_replicas"]) == (1, "0-1")
    assert "number_of_replicas" not in auto
