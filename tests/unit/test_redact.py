from service.search.redact import for_clients, without_urls


def test_urls_go_from_readiness_and_paths_too_from_client_answers() -> None:
    reason = "reranker at http://10.0.0.7:8080/v1/rerank is unreachable; journal /var/lib/fathom/journal.db"
    assert without_urls(reason) == "reranker at <url> is unreachable; journal /var/lib/fathom/journal.db"
    assert for_clients(reason) == "reranker at <url> is unreachable; journal <path>"
    assert for_clients("3/4 shards answered") == "3/4 shards answered"
