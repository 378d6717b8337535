"""How a Qdrant server's failures become Fathom errors: a full disk is a 507, anything else a 503."""

from __future__ import annotations

import grpc
import httpx
from qdrant_client.http.exceptions import UnexpectedResponse

from service.backends.qdrant import translate, translate_grpc
from service.errors import BackendUnavailable, StorageFull

ENOSPC = "Service internal error: No space left on device: WAL buffer size exceeds available disk space"


class FailedCall(grpc.RpcError):
    """The shape of the asyncio client's failed call: a code and details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_a_full_disk_on_the_server_is_storage_full_over_http_and_grpc() -> None:
    content = f'{{"status":{{"error":"{ENOSPC}"}}}}'.encode()
    over_http = translate(UnexpectedResponse(500, "Internal Server Error", content, httpx.Headers()), "site")
    over_grpc = translate_grpc(FailedCall(grpc.StatusCode.INTERNAL, ENOSPC), "site")
    for error in (over_http, over_grpc):
        assert isinstance(error, StorageFull), error
        assert str(error) == 'the server\'s disk is full: collection "site" cannot be written'


def test_other_internal_errors_stay_unavailable() -> None:
    other = translate_grpc(FailedCall(grpc.StatusCode.INTERNAL, "Service internal error: a bug"), "site")
    assert isinstance(other, BackendUnavailable) and not isinstance(other, StorageFull)
