"""Which address a request counts as, and the per-visitor GCRA behind public keys."""

from __future__ import annotations

import ipaddress

import pytest

from service.auth.client_address import client_address
from service.auth.visitors import VisitorLimits
from service.errors import RateLimited
from service.settings import ServerSettings

PROXIES = ServerSettings(trusted_proxies=["10.0.0.0/8", "fd00::1"]).proxy_networks()


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("192.0.2.1", None, "192.0.2.1"),
        ("192.0.2.1", "198.51.100.1", "192.0.2.1"),  # untrusted peer: its header is ignored
        ("10.1.2.3", "198.51.100.1", "198.51.100.1"),
        ("10.1.2.3", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # what the client wrote itself is not believed
        ("10.1.2.3", "198.51.100.1, 10.9.9.9", "198.51.100.1"),  # a chain of trusted proxies is skipped
        ("10.1.2.3", "198.51.100.1, garbage", "10.1.2.3"),  # stop at a hop the proxy did not write
        ("10.1.2.3", None, "10.1.2.3"),
        ("fd00::1", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # an IPv6 client is its /64
        ("::ffff:192.0.2.7", None, "192.0.2.7"),
        ("testclient", "198.51.100.1", "testclient"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    assert client_address(peer, forwarded, PROXIES) == expected


def test_a_bad_trusted_proxy_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'"):
        ServerSettings(trusted_proxies=["10.0.0.300"])
    assert ServerSettings(trusted_proxies=["::1"]).proxy_networks() == (ipaddress.ip_network("::1"),)


def test_each_visitor_has_its_own_burst_then_even_spacing() -> None:
    limits = VisitorLimits(2)
    limits.admit("k", "a", now=0.0)
    limits.admit("k", "a", now=0.0)
    with pytest.raises(RateLimited, match="visitor's rate limit of 2") as refused:
        limits.admit("k", "a", now=0.0)
    assert refused.value.retry_after == pytest.approx(30.0)
    limits.admit("k", "b", now=0.0)  # another visitor, and the same visitor on another key, are apart
    limits.admit("other", "a", now=0.0)
    limits.admit("k", "a", now=30.0)  # one slot drained
    limits.refund("k", "a")
    limits.admit("k", "a", now=30.0)  # a refunded slot is free again


def test_the_table_stays_bounded_and_zero_turns_it_off() -> None:
    limits = VisitorLimits(1, max_visitors=3)
    for visitor in "abcd":
        limits.admit("k", visitor, now=0.0)
    limits.admit("k", "a", now=0.0)  # forgotten as the least recently seen: a fresh bucket
    off = VisitorLimits(0)
    for _ in range(5):
        off.admit("k", "a", now=0.0)
