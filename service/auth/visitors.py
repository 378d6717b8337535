"""Per-visitor rate limits for public keys: one visitor cannot spend the whole site's allowance.

A public key is shared by every visitor of the page that holds it. Its own rate limit (the key
store's GCRA) bounds them all together; on top of that, each visitor (a client address) gets
`[auth] visitor_rate_limit` requests a minute of it, so a few people typing at once, or one script
hammering the key, cannot lock everyone else out.

State is a GCRA time per (key, visitor) in this process's memory, bounded to MAX_VISITORS entries
(the least recently seen are forgotten first, which only gives them a fresh bucket). Replicas do not
share it: behind a proxy spreading requests over N replicas a visitor may get up to N times the limit.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from service.errors import RateLimited

MAX_VISITORS = 100_000


class VisitorLimits:
    """GCRA per (key name, visitor): a burst of `per_minute`, then evenly spaced requests."""

    def __init__(self, per_minute: int, *, max_visitors: int = MAX_VISITORS) -> None:
        self._per_minute = per_minute
        self._max = max_visitors
        self._tat: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._per_minute > 0

    def admit(self, key: str, visitor: str, now: float | None = None) -> None:
        """Count one request of `visitor` on `key`; RateLimited when the visitor is over its limit."""
        if not self.enabled:
            return
        now = time.monotonic() if now is None else now
        interval = 60.0 / self._per_minute
        with self._lock:
            tat = max(self._tat.pop((key, visitor), now), now)
            wait = tat - now - (60.0 - interval)
            if wait > 0:
                self._tat[(key, visitor)] = tat
                raise visitor_limited(self._per_minute, wait)
            self._tat[(key, visitor)] = tat + interval
            while len(self._tat) > self._max:
                self._tat.popitem(last=False)

    def refund(self, key: str, visitor: str) -> None:
        """Give back the slot of a request then refused for another reason (the key's overall limit)."""
        if not self.enabled:
            return
        with self._lock:
            if (key, visitor) in self._tat:
                self._tat[(key, visitor)] -= 60.0 / self._per_minute


def visitor_limited(per_minute: int, wait: float) -> RateLimited:
    return RateLimited(
        f"this visitor's rate limit of {per_minute} requests per minute on this key is used up;"
        f" retry in {wait:.1f} s",
        retry_after=wait,
    )
