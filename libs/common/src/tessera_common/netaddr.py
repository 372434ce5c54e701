"""Client addresses, kept only truncated (DESIGN.md §1, invariant 1)."""

from __future__ import annotations

import ipaddress

IPV4_PREFIX = 24
IPV6_PREFIX = 48


def truncate_ip(address: str) -> str:
    """The client's network, not the client: IPv4 to /24, IPv6 to /48.

    Anything that is not an IP address (a Unix socket, a test client's name) maps to
    ``"unknown"`` rather than being passed through."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = IPV4_PREFIX if ip.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
