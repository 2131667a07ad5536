"""PROXY protocol headers (HAProxy's proxy-protocol.txt): v1 text lines and v2 binary
headers for IPv4, IPv6 and IPv4-mapped clients; refusals."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from proxyprotocol.v2 import ProxyProtocolV2

from ironlb.dataplane.forwarder.proxy_header import header

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def test_v1_is_one_text_line_in_the_spec_order() -> None:
    line = header("v1", ("198.18.0.9", 40000), ("198.18.0.200", 80))
    assert line == b"PROXY TCP4 198.18.0.9 198.18.0.200 40000 80\r\n"
    six = header("v1", ("fd00::9", 40000, 0, 0), ("fd00::200", 443, 0, 0))
    assert six == b"PROXY TCP6 fd00::9 fd00::200 40000 443\r\n"


def test_a_mapped_ipv4_client_of_a_dual_stack_listener_is_sent_as_tcp4() -> None:
    got = header("v1", ("::ffff:198.18.0.9", 1, 0, 0), ("::ffff:198.18.0.200", 2, 0, 0))
    assert got == b"PROXY TCP4 198.18.0.9 198.18.0.200 1 2\r\n"


def test_v2_is_the_binary_header_byte_by_byte() -> None:
    got = header("v2", ("198.18.0.9", 40000), ("198.18.0.200", 80))
    assert got[:12] == V2_SIGNATURE
    # version 2 + PROXY command; AF_INET + STREAM; 12 address bytes follow
    assert got[12:16] == bytes([0x21, 0x11]) + struct.pack("!H", 12)
    assert got[16:] == (
        ip_address("198.18.0.9").packed
        + ip_address("198.18.0.200").packed
        + struct.pack("!HH", 40000, 80)
    )
    six = header("v2", ("fd00::9", 1, 0, 0), ("fd00::200", 2, 0, 0))
    assert six[13] == 0x21 and struct.unpack("!H", six[14:16]) == (36,)


@pytest.mark.parametrize(
    ("client", "local", "says"),
    [
        (("198.18.0.9", 1), ("fd00::200", 2, 0, 0), "different families"),
        (("/run/x.sock", 1), ("198.18.0.200", 2), "does not appear to be an IPv4 or IPv6"),
        ((b"\x00", 1), ("198.18.0.200", 2), "not an IP socket address"),
    ],
)
def test_addresses_that_cannot_be_stated_are_refused(
    client: tuple[object, ...], local: tuple[object, ...], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        header("v1", client, local)


def _not_mapped(address: IPv4Address | IPv6Address) -> bool:
    """Mapped clients come with a mapped listener (the explicit test above)."""
    return not isinstance(address, IPv6Address) or address.ipv4_mapped is None


@given(
    st.ip_addresses(v=4) | st.ip_addresses(v=6).filter(_not_mapped),
    st.integers(0, 65535),
    st.integers(0, 65535),
)
def test_v2_headers_parse_back_to_the_same_addresses(
    address: object, sport: int, dport: int
) -> None:
    client = str(address)
    local = "198.18.0.200" if ":" not in client else "fd00::200"
    data = header("v2", (client, sport), (local, dport))
    parsed = ProxyProtocolV2().unpack(data)
    peer, sock = parsed.peername, parsed.sockname
    assert isinstance(peer, tuple) and isinstance(sock, tuple)
    assert peer[:2] == (str(ip_address(client)), sport)
    assert sock[:2] == (local, dport)
