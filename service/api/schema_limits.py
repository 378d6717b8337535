"""The configured limits, written into the app's OpenAPI document: a value the schema allows is one the
server takes, with the bounds of this server's settings, not the defaults.

The request structs cannot carry them (they are module-level, and each app has its own settings), so
they are set on the generated schema, property by property, beside the bounds the structs declare.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from litestar import Litestar
from litestar.openapi.spec import Reference, Schema
from litestar.openapi.spec.enums import OpenAPIType

from service.api.embeddings import MAX_INPUTS
from service.api.fields import NOT_BLANK
from service.settings import Settings

Keyword = Literal["maximum", "max_length", "max_items"]


@dataclass(frozen=True)
class Limit:
    """`keyword` of property `field` of component `schema` is the setting `value` reads."""

    schema: str
    field: str
    keyword: Keyword
    value: Callable[[Settings], int]


LIMITS = (
    # top_k is also held to [search] max_depth, the deepest a page may reach.
    Limit("SearchRequest", "top_k", "maximum", lambda s: min(s.search.max_top_k, s.search.max_depth)),
    Limit("SearchRequest", "candidates", "maximum", lambda s: s.search.max_candidates),
    Limit("SearchRequest", "query", "max_length", lambda s: s.search.max_query_chars),
    Limit("ContextRequest", "query", "max_length", lambda s: s.search.max_query_chars),
    Limit("ContextRequest", "max_tokens", "maximum", lambda s: s.context.max_tokens),
    Limit("RerankRequest", "query", "max_length", lambda s: s.rerank.max_query_chars),
    Limit("RerankRequest", "documents", "max_items", lambda s: s.rerank.max_documents),
    Limit("RerankRequest", "max_chunks_per_doc", "maximum", lambda s: s.rerank.max_chunks_per_doc),
    # `input` is a string or a list of them: maxLength binds the string, maxItems the list.
    Limit("EmbeddingsRequest", "input", "max_length", lambda s: s.embedding.max_input_chars),
    Limit("EmbeddingsRequest", "input", "max_items", lambda _: MAX_INPUTS),
)


def model_ids(settings: Settings) -> list[str]:
    """The rerank models a request may name; none per search when search reranks through a URL."""
    return [] if settings.search.rerank.url else sorted(settings.rerank.enabled_models())


# Names a request may choose among: this server's configured ones.
NAMES: tuple[tuple[str, str, Callable[[Settings], list[str]]], ...] = (
    ("EmbeddingsRequest", "model", lambda s: [s.embedding.model]),
    ("RerankRequest", "model", lambda s: sorted(s.rerank.enabled_models())),
    ("RerankOptions", "model", model_ids),
    ("ContextRequest", "tokenizer", lambda s: sorted({s.embedding.model, *s.context.tokenizers})),
)


def state_limits(app: Litestar, settings: Settings) -> None:
    """Write LIMITS and NAMES, read from `settings`, into the app's OpenAPI document."""
    schemas = (app.openapi_schema.components.schemas or {}) if app.openapi_schema.components else {}
    for limit in LIMITS:
        component = schemas.get(limit.schema)
        field = (component.properties or {}).get(limit.field) if component else None
        if not isinstance(field, Schema):
            raise LookupError(f"{limit.schema}.{limit.field} is not in the OpenAPI document to bound")
        setattr(field, limit.keyword, limit.value(settings))
    for schema, name, names in NAMES:
        component = schemas.get(schema)
        field = (component.properties or {}).get(name) if component else None
        if isinstance(field, Schema) and names(settings):
            state_names(field, names(settings))
    state_embedding_inputs(schemas.get("EmbeddingsRequest"), settings)
    state_union_bounds(schemas)


# Bounds a struct declares on one arm of a union, which Litestar's generated schema leaves out:
# (component, field, the arm's type, keyword -> value).
UNION_BOUNDS: tuple[tuple[str, str, OpenAPIType, dict[str, float]], ...] = (
    ("SearchRequest", "vector_floor", OpenAPIType.NUMBER, {"minimum": -1.0, "maximum": 1.0}),  # Cosine
)


def state_union_bounds(schemas: Mapping[str, Schema | Reference]) -> None:
    for schema, name, arm_type, bounds in UNION_BOUNDS:
        component = schemas.get(schema)
        field = (component.properties or {}).get(name) if isinstance(component, Schema) else None
        arms = (
            [arm for arm in field.one_of or [] if isinstance(arm, Schema)]
            if isinstance(field, Schema)
            else []
        )
        typed = [arm for arm in arms if arm.type == arm_type]
        if not typed:
            raise LookupError(f"{schema}.{name} has no {arm_type.value} arm in the OpenAPI document to bound")
        for arm in typed:
            for keyword, value in bounds.items():
                setattr(arm, keyword, value)


def state_names(field: Schema, names: list[str]) -> None:
    """An enum on the string itself, or on the string arm of an optional one (null stays allowed)."""
    arms = [arm for arm in field.one_of or [] if isinstance(arm, Schema) and arm.type == OpenAPIType.STRING]
    for target in arms or [field]:
        target.enum = list(names)


def state_embedding_inputs(component: Schema | None, settings: Settings) -> None:
    """A list `input` holds texts, each as bounded as a single one (the struct types it loosely, to
    answer token ids with a message of their own)."""
    field = (component.properties or {}).get("input") if component else None
    if not isinstance(field, Schema):
        raise LookupError("EmbeddingsRequest.input is not in the OpenAPI document to bound")
    field.min_length = field.min_items = 1
    field.pattern = NOT_BLANK
    for arm in field.one_of or []:
        if isinstance(arm, Schema) and arm.items is not None:
            arm.items = Schema(
                type=OpenAPIType.STRING,
                min_length=1,
                max_length=settings.embedding.max_input_chars,
                pattern=NOT_BLANK,
            )
