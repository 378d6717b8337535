"""Request bodies: what cannot be decoded, or has the wrong types, is the client's error (400).

Litestar turns msgspec's DecodeError into a 400, but bytes that are not UTF-8 raise UnicodeDecodeError
and JSON nested thousands of levels deep raises RecursionError: both escaped as 500s. Litestar also
converts bodies leniently (`"top_n": "5"` became 5): a client sending a string where a number belongs
has a bug it should hear about, so bodies are checked strictly first.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import SerializationException, ValidationException

# msgspec's "... - at `$.documents[0].id`": the problem, then where.
_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$\.?(?P<key>[^`]*)`)?$", re.S)


class JsonBodyRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        try:
            value = await super().json()
        except UnicodeDecodeError as exc:
            raise SerializationException(
                f"the body is not UTF-8: byte {exc.object[exc.start]:#04x} at offset {exc.start}"
            ) from exc
        except RecursionError as exc:
            raise SerializationException("the body is nested too deeply; flatten it") from exc
        check_strictly(value, self.route_handler.parsed_fn_signature.parameters.get("data"))
        return value


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
