"""Who is asking: the client's address, read through proxies only when they are trusted.

`X-Forwarded-For` is whatever the sender wrote, so it is believed only from a peer listed in
`[server] trusted_proxies`. Proxies append the address they saw, so the list is read from the right,
skipping trusted proxies; the first address that is not one is the client. Any other peer is the
client itself, whatever header it sends. An IPv6 client is its /64: one host usually holds a whole /64
and could otherwise take a new address per request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

IPV6_VISITOR_PREFIX = 64


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip().removeprefix("[").split("]")[0])
    except ValueError:
        return None


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def client_address(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The visitor behind a request from `peer` carrying `forwarded_for`, as text."""
    client = _address(peer or "")
    if client is None:
        return peer or "unknown"
    if forwarded_for and _trusted(client, proxies):
        for hop in reversed(forwarded_for.split(",")):
            seen = _address(hop)
            if seen is None:  # a hop the proxies did not write: stop at the last one that is sure
                break
            client = seen
            if not _trusted(client, proxies):
                break
    if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped is not None:
        return str(client.ipv4_mapped)
    if client.version == 6:
        return str(ipaddress.ip_network(f"{client}/{IPV6_VISITOR_PREFIX}", strict=False))
    return str(client)
