"""Request bodies: what cannot be decoded, or has the wrong types, is the client's error (400).

Litestar turns msgspec's DecodeError into a 400, but JSON nested thousands of levels deep raises
RecursionError, which escaped as a 500. Bytes that are not UTF-8 raise UnicodeDecodeError before msgspec
0.23 and a DecodeError without the position from 0.23 on: either way the client is told which byte,
where. Litestar also converts bodies leniently (`"top_n": "5"` became 5): a client sending a string where
a number belongs has a bug it should hear about, so bodies are checked strictly first.

Litestar also reads any body as JSON whatever its Content-Type says, so a form (curl's `-d` without a
header) or `text/plain` was answered as if it were JSON: a body declared as something else is refused
with 415 before it is decoded. The Cohere and OpenAI SDKs and httpx's `json=` send application/json.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, SerializationException, ValidationException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE

# msgspec's "... - at `$.documents[0].id`": the problem, then where.
_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$\.?(?P<key>[^`]*)`)?$", re.S)
# application/json, and structured syntaxes on it such as application/merge-patch+json (RFC 6839).
_JSON_TYPE = re.compile(r"application/(?:[^/;\s]+\+)?json")


class JsonBodyRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        check_json_type(self.content_type[0])
        try:
            value = await super().json()
        except UnicodeDecodeError as exc:
            raise SerializationException(not_utf8(exc)) from exc
        except SerializationException:
            # Checked only once decoding has failed: a valid body pays nothing for the better message.
            try:
                (await self.body()).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SerializationException(not_utf8(exc)) from exc
            raise
        except RecursionError as exc:
            raise SerializationException("the body is nested too deeply; flatten it") from exc
        check_strictly(value, self.route_handler.parsed_fn_signature.parameters.get("data"))
        return value


def check_json_type(content_type: str) -> None:
    """415 unless the Content-Type (parameters such as charset already split off) is JSON's."""
    if _JSON_TYPE.fullmatch(content_type.lower()):
        return
    # Cut short: the header is the client's, and the answer need only show which it was.
    sent = f'Content-Type "{content_type[:100]}"' if content_type else "no Content-Type"
    raise ClientException(
        status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        detail=f"the body must be JSON sent with Content-Type: application/json; the request has {sent}",
    )


def not_utf8(error: UnicodeDecodeError) -> str:
    return f"the body is not UTF-8: byte {error.object[error.start]:#04x} at offset {error.start}"


def check_strictly(value: Any, data: Any) -> None:
    """ValidationException (400, 'field: problem') when `value` is not the route's body type as sent."""
    if data is None:
        return
    try:
        msgspec.convert(value, type=data.annotation, strict=True)
    except msgspec.ValidationError as exc:
        found = _AT.match(str(exc))
        message = found["message"] if found else str(exc)
        key = (found["key"] if found else None) or "data"
        raise ValidationException(
            detail=str(exc), extra=[{"key": key, "message": message, "source": "body"}]
        ) from exc
