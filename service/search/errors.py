"""One error tree for the whole service; api/errors.py maps each class to an HTTP status."""

from __future__ import annotations


class SearchError(Exception):
    """Base of every error Fathom reports to a client; the message says what to fix."""

    code = "internal_error"


class InvalidRequest(SearchError):
    code = "invalid_request"


class NotFound(SearchError):
    code = "not_found"


class Forbidden(SearchError):
    """The key is valid but lacks the scope, or the collection, the request needs."""

    code = "insufficient_scope"


class Unauthorized(SearchError):
    code = "invalid_api_key"


class QuotaExceeded(SearchError):
    code = "quota_exceeded"


class RateLimited(SearchError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ClientGone(SearchError):
    """The client disconnected: its work was stopped and nobody reads the answer."""

    code = "client_closed_request"


class ModelUnavailable(SearchError):
    code = "model_not_available"


class Overloaded(SearchError):
    code = "overloaded"


class BackendUnavailable(SearchError):
    code = "backend_unavailable"


class BackendTimeout(BackendUnavailable):
    code = "backend_timeout"


class StoreLocked(BackendUnavailable):
    """An embedded store's folder is held by another process (e.g. `fathom serve` on the same data_dir)."""

    code = "store_locked"


class StorageFull(BackendUnavailable):
    """The disk holding Fathom's state is full; the message names no server path."""

    code = "insufficient_storage"


class StateDamaged(BackendUnavailable):
    """A state file (journal, key store) cannot be read; the message names it and what to do."""

    code = "state_damaged"
