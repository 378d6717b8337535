"""Every error Fathom reports, in one tree; service/api/errors.py maps each class to an HTTP status.

The message of each says what to fix; `code` is the stable machine-readable name clients read.

FathomError                   any error Fathom reports (unmapped: 500)
├── RequestError              the client must change its request
│   ├── InvalidRequest        400  a field, filter, model or limit the server refuses
│   ├── NotFound              404  no such collection or document
│   └── Conflict              409  the request contradicts what the collection holds
│       └── EmbedderMismatch  409  the collection was indexed by another embedder than this one
├── AccessError               the key does not allow this request
│   ├── Unauthorized          401  no key, a malformed header, a revoked or unknown key
│   ├── QuotaExceeded         402  the key's search units are used up
│   ├── Forbidden             403  the key lacks the scope, the collection or the origin
│   └── RateLimited           429  too many requests this minute (retry_after seconds)
├── ClientGone                499  the client hung up; its work was stopped, nobody reads this
└── ServiceError              the server cannot answer now; the request itself was fine
    ├── ModelUnavailable      503  a rerank or embedding model failed to load, or is loading
    ├── Overloaded            429  the rerank queue is full, or would not reach the request in time
    │                              (retry_after seconds, from the work queued)
    └── BackendUnavailable    503  a store, the journal or a remote reranker cannot be used
        ├── BackendTimeout    503  it did not answer in time
        ├── StoreLocked       503  an embedded store is held by another process
        ├── StateDamaged      503  a state file (journal, key store) cannot be read
        └── StorageFull       507  the disk holding Fathom's state is full

Retrieval stages of a search catch ServiceError (and unexpected exceptions) and degrade instead of
failing; RequestError always reaches the client.
"""

from __future__ import annotations


class FathomError(Exception):
    """Base of every error Fathom reports to a client or a CLI user."""

    code = "internal_error"


class RequestError(FathomError):
    """The request cannot be served as sent."""

    code = "invalid_request"


class InvalidRequest(RequestError):
    code = "invalid_request"


class NotFound(RequestError):
    code = "not_found"


class Conflict(RequestError):
    code = "conflict"


class EmbedderMismatch(Conflict):
    """The collection's vectors come from another embedder than the configured one: queries embedded
    now would be compared with vectors of another space, and new vectors would mix two spaces."""

    code = "embedder_mismatch"


class AccessError(FathomError):
    """Authentication, authorisation and the key's limits."""

    code = "access_denied"


class Unauthorized(AccessError):
    code = "invalid_api_key"


class QuotaExceeded(AccessError):
    code = "quota_exceeded"


class Forbidden(AccessError):
    """The key is valid but lacks the scope, or the collection, the request needs."""

    code = "insufficient_scope"


class RateLimited(AccessError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ClientGone(FathomError):
    """The client disconnected: its work was stopped and nobody reads the answer."""

    code = "client_closed_request"


class ServiceError(FathomError):
    """The server cannot answer now; the same request may succeed later."""

    code = "service_unavailable"


class ModelUnavailable(ServiceError):
    code = "model_not_available"


class Overloaded(ServiceError):
    """Refused at once, not after waiting: TEI's 429 when its queue is full. A client (Cohere's SDK
    does so by itself) retries after `retry_after` seconds, or goes to another replica."""

    code = "overloaded"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendUnavailable(ServiceError):
    code = "backend_unavailable"


class BackendTimeout(BackendUnavailable):
    code = "backend_timeout"


class StoreLocked(BackendUnavailable):
    """An embedded store's folder is held by another process (e.g. `fathom serve` on the same data_dir)."""

    code = "store_locked"


class StateDamaged(BackendUnavailable):
    """A state file (journal, key store) cannot be read; the message names it and what to do."""

    code = "state_damaged"


class StorageFull(BackendUnavailable):
    """The disk holding Fathom's state is full; the message names no server path."""

    code = "insufficient_storage"
