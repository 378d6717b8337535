"""One table from error class to HTTP status, and one JSON error body for every failure.

Route handlers hold no try/except: they raise from service/errors.py and these handlers answer.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.types import ExceptionHandlersMap

from service import errors
from service.api.dependencies import runtime_of
from service.api.fields import PATTERN_PROBLEMS
from service.api.mcp import JSONRPC_ERRORS

log = logging.getLogger("fathom.api")

# status, error type (the names Cohere- and OpenAI-style clients expect)
STATUS: dict[type[errors.FathomError], tuple[int, str]] = {
    errors.InvalidRequest: (400, "invalid_request_error"),
    errors.Unauthorized: (401, "authentication_error"),
    errors.QuotaExceeded: (402, "insufficient_quota"),
    errors.Forbidden: (403, "permission_error"),
    errors.NotFound: (404, "not_found_error"),
    errors.Conflict: (409, "conflict_error"),
    errors.RateLimited: (429, "rate_limit_error"),
    errors.ClientGone: (499, "client_closed_request"),  # nginx's status: logged, never read
    errors.ModelUnavailable: (503, "service_unavailable"),
    errors.Overloaded: (429, "overloaded_error"),
    errors.BackendUnavailable: (503, "service_unavailable"),
    errors.BackendTimeout: (503, "service_unavailable"),
    errors.StorageFull: (507, "insufficient_storage"),
}

_HTTP_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}
HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ErrorDetail(msgspec.Struct):
    message: Annotated[str, msgspec.Meta(description="What went wrong and what to fix")]
    type: Annotated[str, msgspec.Meta(description="The error's family, e.g. invalid_request_error")]
    code: Annotated[str, msgspec.Meta(description="A stable machine-readable code, e.g. quota_exceeded")]


class ErrorResponse(msgspec.Struct):
    """The one error body. `error` is Fathom's (and OpenAI's) shape; the same text is repeated where the
    clients of the APIs Fathom stands in for read it: top-level `message` (Cohere's SDKs) and `detail`
    (Jina's clients, which fail with KeyError('detail') on an error body without it)."""

    error: ErrorDetail
    message: Annotated[str, msgspec.Meta(description="error.message again, where Cohere's clients read it")]
    detail: Annotated[str, msgspec.Meta(description="error.message again, where Jina's clients read it")]


def error_body(message: str, error_type: str, code: str) -> ErrorResponse:
    return ErrorResponse(ErrorDetail(message, error_type, code), message, message)


def error_response(
    status: int, message: str, error_type: str, code: str, headers: dict[str, str] | None = None
) -> Response[ErrorResponse]:
    return Response(
        error_body(message, error_type, code), status_code=status, media_type=MediaType.JSON, headers=headers
    )


def status_of(exc: errors.FathomError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500, "internal_error"


def handle_search_error(request: Request[Any, Any, Any], exc: errors.FathomError) -> Response[Any]:
    status, error_type = status_of(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, errors.Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="fathom"'
    if isinstance(exc, errors.RateLimited | errors.Overloaded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after + 0.5)))
    if status in (503, 507):
        headers["Retry-After"] = "5"
    message = str(exc)
    if isinstance(exc, errors.NotFound):
        message += collection_hint(request)
    if answers_jsonrpc(request):
        return jsonrpc_error_response(status, message, error_type, exc.code, headers)
    return error_response(status, message, error_type, exc.code, headers)


def answers_jsonrpc(request: Request[Any, Any, Any]) -> bool:
    """Whether the route speaks JSON-RPC (the /mcp mount, which marks itself in its `opt`)."""
    handler = request.scope.get("route_handler")
    return handler is not None and bool(handler.opt.get(JSONRPC_ERRORS))


# JSON-RPC's range for errors a server defines; the HTTP status and Fathom's code travel in `data`.
JSONRPC_SERVER_ERROR = -32000


def jsonrpc_error_response(
    status: int, message: str, error_type: str, code: str, headers: dict[str, str]
) -> Response[dict[str, Any]]:
    """An error on /mcp (a bad key, a missing scope, a rate limit) as a JSON-RPC error: MCP clients read
    that body at any status and show its message, where Fathom's REST body reached the user only as
    "Server returned an error response". The status and WWW-Authenticate stay as MCP's authorization
    spec asks."""
    body = {
        "jsonrpc": "2.0",
        "id": None,  # the guard answers before the body, and so the request's id, is read
        "error": {
            "code": JSONRPC_SERVER_ERROR,
            "message": message,
            "data": {"status": status, "type": error_type, "code": code},
        },
    }
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def collection_hint(request: Request[Any, Any, Any]) -> str:
    """For a 404 on a collection this server does not know: the existing name nearest to it."""
    name = request.path_params.get("name") or request.state.get("collection")
    nearest = runtime_of(request).search.nearest_collection(name) if isinstance(name, str) else None
    return f'; did you mean "{nearest}"?' if nearest else ""


# msgspec's words for a broken constraint, and what a client reads instead.
_FRIENDLY = [
    (re.compile(r"Expected `str` of length >= 1"), "must not be empty"),
    (re.compile(r"Expected `array` of length >= 1"), "must hold at least one item"),
    (re.compile(r"Expected `(?:int|number)` >= (\S+)"), r"must be at least \1"),
    (re.compile(r"Expected `(?:int|number)` <= (\S+)"), r"must be at most \1"),
]
_PATTERN = re.compile(r"Expected `str` matching regex (.*)")
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `([^`]*)`")


def problem_text(key: object, text: str) -> str:
    """One parse error as 'field problem', in the words a client can act on."""
    unknown = _UNKNOWN_FIELD.search(text)
    if unknown:  # `key` is the object holding it: "data" for the body itself
        inside = f"{key}." if key and key != "data" else ""
        return f"unknown field `{inside}{unknown.group(1)}`"
    if key == "data":  # the body as a whole: empty, or not an object
        return f"the request body must be a JSON object ({text})"
    broken = _PATTERN.fullmatch(text)
    if broken:
        return f"{key} {pattern_problem(broken.group(1))}" if key else pattern_problem(broken.group(1))
    for pattern, friendly in _FRIENDLY:
        if pattern.fullmatch(text):
            return f"{key} {pattern.sub(friendly, text)}" if key else pattern.sub(friendly, text)
    return f"{key}: {text}" if key else text


def pattern_problem(quoted: str) -> str:
    """The words for a pattern msgspec names (as its repr), or the pattern itself."""
    for pattern, problem in PATTERN_PROBLEMS.items():
        if quoted == repr(pattern):
            return problem
    return f"must match the pattern {quoted}"


def validation_message(exc: ValidationException) -> str:
    """Litestar's parse errors, told as 'field: problem' so the client knows what to fix."""
    problems = [
        problem_text(item.get("key"), str(item.get("message", "invalid value")))
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, dict)
    ]
    return "invalid request: " + ("; ".join(problems) or str(exc.detail))


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorResponse]:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        return error_response(400, validation_message(exc), "invalid_request_error", "invalid_request")
    if isinstance(exc.__cause__, SerializationException):
        return error_response(
            400, f"the request body is not valid JSON: {exc.detail}", "invalid_request_error", "invalid_json"
        )
    if status == 404:
        message = f"no route {request.method} {request.url.path}; see /schema for the API"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    elif status == 413:
        message = too_large(request)
    else:
        message = str(exc.detail)
    code = HTTP_CODES.get(status, "http_error")
    error_type = _HTTP_TYPES.get(status, "invalid_request_error" if status < 500 else "internal_error")
    return error_response(status, message, error_type, code, exc.headers)


def too_large(request: Request[Any, Any, Any]) -> str:
    """The 413's message, naming the limit: the route's own, else the server's [server] max_body_bytes."""
    handler = request.scope.get("route_handler")
    limit = handler.resolve_request_max_body_size() if isinstance(handler, HTTPRouteHandler) else None
    if limit is None:
        return "the request body is too large; send fewer or shorter texts"
    return f"the request body is larger than the limit of {limit} bytes; send fewer or shorter texts"


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    """Log the trace for operators; the client sees a plain message, never the trace."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(
        500, "internal server error; the operator's log has the details", "internal_error", "internal_error"
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    errors.FathomError: handle_search_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
