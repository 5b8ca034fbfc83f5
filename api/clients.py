"""Who is asking: the client address that failed keys are counted by.

The client is the connection's peer. An X-Forwarded-For header is believed only from a peer
named in `api.trusted_proxies`: from anyone else it is the client's own claim, and would let it
pick a new address for every guess. Of the addresses a trusted proxy forwards, the client is the
nearest one that is not itself a trusted proxy (reading from the right, the end each proxy
appends to); the ones further left were written by whoever sent the request.

uvicorn rewrites the peer the same way when the server runs with `proxy_headers` (api/server.py
turns it on only with trusted proxies and trusts exactly those): the app does not rely on that
alone, and reading an address already rewritten gives the same answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddress:
    def __init__(self, trusted_proxies: Sequence[str]) -> None:
        self.networks: list[Network] = [
            ipaddress.ip_network(p, strict=False) for p in trusted_proxies
        ]

    def trusts(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # a name, "testclient", garbage: never a trusted proxy
            return False
        return any(address in network for network in self.networks)

    def of(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The client behind a request from `peer` carrying these X-Forwarded-For headers
        (in the order received)."""
        if peer is None:
            return "unknown"
        if not self.networks or not self.trusts(peer):
            return peer
        hops = [_host(hop) for header in forwarded_for for hop in header.split(",")]
        hops = [hop for hop in hops if hop]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        # Only proxies (or nothing) forwarded: the farthest one is the best we know.
        return hops[0] if hops else peer


def _host(hop: str) -> str:
    """The address of one X-Forwarded-For entry, without a port some proxies add (1.2.3.4:5678,
    [::1]:5678): counted with it, every new connection would be a new client."""
    hop = hop.strip()
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else hop
    if hop.count(":") == 1:
        return hop.split(":")[0]
    return hop
