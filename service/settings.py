"""Settings: the packaged default.toml, then the FATHOM_CONFIG file, then FATHOM_* environment variables."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import msgspec

from service.packaged import packaged

# Shipped in the package: `pip install .` serves without a checkout beside it.
DEFAULT_CONFIG = packaged("default.toml")
ENV_PREFIX = "FATHOM_"


class ConfigError(Exception):
    """The configuration cannot be read or does not validate; the message says which key."""


class ServerSettings(msgspec.Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 10_485_760
    # Proxies (addresses or CIDRs) whose X-Forwarded-For names the client; from any other peer it is ignored.
    trusted_proxies: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        self.proxy_networks()

    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """`trusted_proxies` parsed; ValueError naming an entry that is not an address or CIDR."""
        networks = []
        for entry in self.trusted_proxies:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"server.trusted_proxies: {entry!r} is not an IP address or CIDR"
                    " (like 10.0.0.5 or 10.0.0.0/8)"
                ) from None
        return tuple(networks)


class AuthSettings(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True
    # /metrics is open by default, for scrapers on a private network; true asks for an admin key.
    metrics_admin_only: bool = False
    # Requests a minute each visitor (client address) may make with one public key; 0: no such limit.
    visitor_rate_limit: int = 120

    def __post_init__(self) -> None:
        if self.visitor_rate_limit < 0:
            raise ValueError("auth.visitor_rate_limit must be 0 (off) or more requests per minute")


class ModelSettings(msgspec.Struct, forbid_unknown_fields=True):
    """One reranker model: a local folder, or nothing for a hub id fastembed can download."""

    path: str | None = None
    enabled: bool = True
    # "int8": ONNX Runtime dynamic quantisation at load, cached under <data_dir>/models/int8.
    quantize: Literal["none", "int8"] = "none"


class RerankSettings(msgspec.Struct, forbid_unknown_fields=True):
    default_model: str = "BAAI/bge-reranker-v2-m3"
    max_documents: int = 1000
    max_length: int = 512
    max_query_chars: int = 10_000
    batch_size: int = 16
    max_wait_ms: float = 2.0
    max_queue_pairs: int = 20_000
    max_request_tokens: int = 300_000
    request_timeout: float = 30.0
    chunks_per_doc: int = 10
    max_chunks_per_doc: int = 50
    cycle_ms: float = 200.0
    threads: int = 0
    # ONNX Runtime's idle intra-op threads spin (true) or sleep (false, Fathom's default): see the README.
    allow_spinning: bool = False
    models: dict[str, ModelSettings] = msgspec.field(default_factory=dict)

    def enabled_models(self) -> dict[str, ModelSettings]:
        return {name: model for name, model in self.models.items() if model.enabled}


class EmbeddingSettings(msgspec.Struct, forbid_unknown_fields=True):
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    path: str | None = None
    max_length: int = 256
    max_input_chars: int = 10_000
    batch_size: int = 32
    query_cache_size: int = 1024
    query_cache_bytes: int = 33_554_432
    threads: int = 0
    quantize: Literal["none", "int8"] = "none"
    # An OpenAI-compatible /v1/embeddings to embed with instead of this process (see remote_embedder).
    url: str = ""
    api_key: str = ""
    timeout: float = 60.0
    concurrency: int = 4
    max_retries: int = 8

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError("embedding.url must be empty (embed in this process) or an http(s):// URL")
        if self.timeout <= 0 or self.concurrency < 1 or self.max_retries < 0:
            raise ValueError(
                "embedding.timeout must be positive, concurrency at least 1 and max_retries 0 or more"
            )


class ElasticsearchSettings(msgspec.Struct, forbid_unknown_fields=True):
    """`shards`, `replicas`, `bm25_k1` and `bm25_b` apply when Fathom creates a collection's index,
    not to existing ones.

    `replicas` is a number of replica copies, or a range like "0-1" that Elasticsearch expands with
    the number of nodes (the default: no replica on one node, one as soon as a second node joins).
    `url` may list several nodes of one cluster, comma-separated: requests go round them, and a node
    that does not answer is set aside while the others serve.
    `bm25_k1` (term frequency saturation) and `bm25_b` (length normalisation) are BM25's parameters
    on the field ranked, in the documents' index and the chunks' alike; the defaults are Lucene's,
    which Tantivy fixes (on whole documents they beat k1 0.9, b 0.4 on Cranfield and CACM: docs/ranking.md).
    """

    url: str = "http://127.0.0.1:9200"
    index_prefix: str = "fathom-"
    request_timeout: float = 10.0
    shards: int = 1
    replicas: int | str = "0-1"
    bm25_k1: float = 1.2
    bm25_b: float = 0.75

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError("elasticsearch.shards must be at least 1")
        if isinstance(self.replicas, int) and self.replicas < 0:
            raise ValueError('elasticsearch.replicas must be 0 or more, or a range like "0-1"')
        if not 0 <= self.bm25_k1 <= 10 or not 0 <= self.bm25_b <= 1:
            raise ValueError("elasticsearch.bm25_k1 must be between 0 and 10 and bm25_b between 0 and 1")

    def nodes(self) -> list[str]:
        """The node URLs in `url`."""
        return [node.strip() for node in self.url.split(",") if node.strip()]


class QdrantSettings(msgspec.Struct, forbid_unknown_fields=True):
    """A server (`url`) or, when `url` is empty, local mode in `path` (default <data_dir>/qdrant)."""

    url: str = ""
    api_key: str = ""
    path: str = ""
    collection_prefix: str = "fathom-"
    # gRPC on `grpc_port` for points (search, upsert, scroll): less encoding work per call than JSON.
    prefer_grpc: bool = False
    grpc_port: int = 6334
    # Applied when Fathom creates a collection; a single server takes the defaults. On a cluster,
    # replication_factor 2 keeps every shard answering when one peer is lost.
    shards: int = 1
    replication_factor: int = 1

    def __post_init__(self) -> None:
        if self.shards < 1 or self.replication_factor < 1:
            raise ValueError("qdrant.shards and qdrant.replication_factor must be at least 1")


class SearchRerankSettings(msgspec.Struct, forbid_unknown_fields=True):
    """In-process model (`model`, empty: the rerank default), or a remote /v1/rerank at `url`."""

    enabled: bool = True
    depth: int = 50
    model: str = ""
    url: str = ""
    api_key: str = ""
    timeout: float = 10.0
    budget_ms: float = 300.0
    # Fused hits per rerank block (each sorted on its own; a page scores the blocks it shows in full).
    block: int = 10
    # Rerank scores kept by (model, query, passage), at most this many (0: none kept).
    cache_entries: int = 100_000

    def __post_init__(self) -> None:
        if self.block < 1 or self.cache_entries < 0:
            raise ValueError("search.rerank.block must be at least 1 and cache_entries 0 or more")


class SearchSettings(msgspec.Struct, forbid_unknown_fields=True):
    # Off for a rerank-only replica: no stores or embedder are opened, /v1/search answers 503.
    enabled: bool = True
    lexical: Literal["tantivy", "elasticsearch"] = "tantivy"
    default_top_k: int = 10
    max_top_k: int = 100
    candidates: int = 100
    max_candidates: int = 1000
    # How deep pages of results (cursor) may go: past it a search gives no next cursor.
    max_depth: int = 200
    # Bounds on one query: characters, and terms (runs of letters and digits, as the analysers cut them).
    max_query_chars: int = 8192
    max_query_terms: int = 1024
    rrf_k: int = 60
    # Lexical words the collection does not hold also match within a typo (service/search/typos.py);
    # a request's `typo_tolerance` overrides it.
    typo_tolerance: bool = True
    lexical_timeout: float = 5.0
    vector_timeout: float = 5.0
    # Vector hits the lexical side did not find count only from this cosine up: "auto" measures each
    # collection (service/search/floor.py), a number fixes it, "off" keeps every hit. `vector_floors`
    # sets it per collection; a request's `vector_floor` overrides both.
    vector_floor: float | Literal["auto", "off"] = "auto"
    vector_floors: dict[str, float | Literal["auto", "off"]] = msgspec.field(default_factory=dict)
    vector_floor_probes: int = 64
    vector_floor_percentile: float = 99.0
    rerank: SearchRerankSettings = msgspec.field(default_factory=SearchRerankSettings)

    def __post_init__(self) -> None:
        floors = [self.vector_floor, *self.vector_floors.values()]
        if any(not isinstance(floor, str) and not -1 <= floor <= 1 for floor in floors):
            raise ValueError('search.vector_floor(s) must be "auto", "off" or a cosine between -1 and 1')
        if self.vector_floor_probes < 1 or not 0 <= self.vector_floor_percentile <= 100:
            raise ValueError("search.vector_floor_probes must be at least 1, the percentile 0 to 100")


class ContextSettings(msgspec.Struct, forbid_unknown_fields=True):
    """/v1/context budgets; `tokenizers` names tokenizer.json files (or folders holding one) to count with."""

    default_max_tokens: int = 1000
    max_tokens: int = 32_768
    tokenizers: dict[str, str] = msgspec.field(default_factory=dict)


class StateSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Where keys, quotas, rate limits and the ingest journal live: SQLite under data_dir (empty `url`),
    or a PostgreSQL database (`postgresql://user:password@host:port/db`) that every replica shares.

    `lease_seconds`: how long a replica's unfinished writes stay its own without renewal; another
    replica finishes them once it runs out. `replica_name` names this replica in the journal
    (default: the host name; the pid and a random part are added)."""

    url: str = ""
    lease_seconds: float = 30.0
    replica_name: str = ""

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("postgresql://", "postgres://")):
            raise ValueError("state.url must be empty (SQLite under data_dir) or a postgresql:// URL")
        if not 0.5 <= self.lease_seconds <= 3600:
            raise ValueError("state.lease_seconds must be between 0.5 and 3600")


class AnalyticsSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Search and click events (service/analytics/), kept in the state store for `retention_days`.

    Events wait in memory, at most `buffer_events` of them, and are written every `flush_seconds`;
    past the bound new events are dropped (and counted), so recording never holds up a search."""

    enabled: bool = True
    retention_days: int = 90
    buffer_events: int = 10_000
    flush_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.retention_days < 1 or self.buffer_events < 1:
            raise ValueError("analytics.retention_days and analytics.buffer_events must be at least 1")
        if not 0.05 <= self.flush_seconds <= 3600:
            raise ValueError("analytics.flush_seconds must be between 0.05 and 3600")


class Settings(msgspec.Struct, forbid_unknown_fields=True):
    data_dir: str = "data"
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    rerank: RerankSettings = msgspec.field(default_factory=RerankSettings)
    embedding: EmbeddingSettings = msgspec.field(default_factory=EmbeddingSettings)
    elasticsearch: ElasticsearchSettings = msgspec.field(default_factory=ElasticsearchSettings)
    qdrant: QdrantSettings = msgspec.field(default_factory=QdrantSettings)
    state: StateSettings = msgspec.field(default_factory=StateSettings)
    search: SearchSettings = msgspec.field(default_factory=SearchSettings)
    context: ContextSettings = msgspec.field(default_factory=ContextSettings)
    analytics: AnalyticsSettings = msgspec.field(default_factory=AnalyticsSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `override` laid over it, tables merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_env_value(raw: str) -> Any:
    """An environment value as TOML would read it (`8080`, `true`, `["a"]`), else as a plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """FATHOM_SECTION__KEY=value as nested tables.

    Only variables whose first part names a setting count (FATHOM_DATA_DIR, FATHOM_SERVER__...):
    other FATHOM_* variables (FATHOM_CONFIG itself, test and tool variables) are not settings. A
    misspelt key inside a known section is still an error.
    """
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if path[0] not in Settings.__struct_fields__:
            continue
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = parse_env_value(raw)
    return tree


def read_toml(path: Path | Traversable) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def with_paths_from(config_file: Path) -> dict[str, Any]:
    """A config file's tables, its relative paths made absolute against the file's own folder.

    An assistant starts `fathom mcp --config /abs/offline.toml` from wherever it likes (often `/`): paths
    read against the working directory then name nothing. Paths from the environment and the packaged
    defaults stay relative to the working directory, as a shell user expects of them.
    """
    layer = read_toml(config_file)
    folder = config_file.resolve().parent

    def absolute(value: Any) -> Any:
        # Empty means "not set" (a hub download, Qdrant under data_dir): left as it is.
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            return str(folder / value)
        return value

    if "data_dir" in layer:
        layer["data_dir"] = absolute(layer["data_dir"])
    for section, key in (("embedding", "path"), ("qdrant", "path")):
        table = layer.get(section)
        if isinstance(table, dict) and key in table:
            table[key] = absolute(table[key])
    for model in _table(layer, "rerank", "models").values():
        if isinstance(model, dict) and "path" in model:
            model["path"] = absolute(model["path"])
    tokenizers = _table(layer, "context", "tokenizers")
    for name, value in tokenizers.items():
        tokenizers[name] = absolute(value)
    return layer


def _table(layer: dict[str, Any], *keys: str) -> dict[str, Any]:
    """layer[keys[0]][keys[1]]... when each is a table, else an empty one (validation speaks later)."""
    node: Any = layer
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def load_settings(
    config_file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the three layers once, at start-up; `config_file` wins over FATHOM_CONFIG."""
    environ = os.environ if environ is None else environ
    layers = read_toml(DEFAULT_CONFIG)
    named = config_file or environ.get("FATHOM_CONFIG")
    if named:
        layers = deep_merge(layers, with_paths_from(Path(named)))
    layers = deep_merge(layers, env_overrides(environ))
    return settings_from_dict(layers)


def settings_from_dict(raw: Mapping[str, Any]) -> Settings:
    try:
        return msgspec.convert(raw, type=Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
