"""PROXY protocol headers towards backends, so they see the real client address.

A proxy-mode connection reaches the backend from the node, so an HTTP server
behind it logs the node's address. HAProxy's PROXY protocol
(https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt) fixes that: the
first bytes the proxy sends on the backend connection state the client's
address and port and the address and port it connected to. Version 1 is one
text line (``PROXY TCP4 <src> <dst> <sport> <dport>\\r\\n``), version 2 a
binary header with the 12-byte signature; backends opt in (nginx ``listen ...
proxy_protocol``, HAProxy ``accept-proxy``), and a backend that does not
expect it sees garbage, so it is a per-listener choice, off by default.

The headers are built by the ``proxy-protocol`` library (its v1/v2 packers);
this module only turns a connection's two socket addresses into its input,
including the IPv4-mapped IPv6 addresses a dual-stack listener reports for
IPv4 clients (sent as TCP4, as the client really is). Pure: addresses in,
bytes out. Only TCP: the PROXY header of a UDP datagram would have to lead
every datagram, which no common UDP server reads.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from socket import SOCK_STREAM as STREAM

from proxyprotocol.result import ProxyResult, ProxyResultIPv4, ProxyResultIPv6
from proxyprotocol.v1 import ProxyProtocolV1
from proxyprotocol.v2 import ProxyProtocolV2

from ironlb.dataplane.state import ProxyVersion

__all__ = ["header"]

_PACKERS = {"v1": ProxyProtocolV1(), "v2": ProxyProtocolV2()}


def _address(sockaddr: tuple[object, ...]) -> tuple[IPv4Address | IPv6Address, int]:
    host, port = sockaddr[0], sockaddr[1]
    if not isinstance(host, str) or not isinstance(port, int):
        raise ValueError(f"not an IP socket address: {sockaddr!r}")
    address = ip_address(host.split("%", 1)[0])
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address, port


def header(version: ProxyVersion, client: tuple[object, ...], local: tuple[object, ...]) -> bytes:
    """The PROXY header for a TCP connection from ``client`` (the peer's socket
    address, ``(host, port[, flowinfo, scope])``) to ``local`` (the address the
    client connected to: the listener's VIP and port).

    Raises ValueError for an address that is not IPv4/IPv6 or for two
    addresses of different families (a client and a listener always share one).
    """
    source, dest = _address(client), _address(local)
    result: ProxyResult
    if isinstance(source[0], IPv4Address) and isinstance(dest[0], IPv4Address):
        result = ProxyResultIPv4((source[0], source[1]), (dest[0], dest[1]), protocol=STREAM)
    elif isinstance(source[0], IPv6Address) and isinstance(dest[0], IPv6Address):
        result = ProxyResultIPv6((source[0], source[1]), (dest[0], dest[1]), protocol=STREAM)
    else:
        raise ValueError(f"client {client!r} and listener {local!r} are of different families")
    return _PACKERS[version].pack(result)
