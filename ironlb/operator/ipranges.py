"""Address range arithmetic for IP address pools.

An :class:`IPRange` is an inclusive ``[first, last]`` run of addresses of one
family, held as integers so that sizes, overlaps and offsets are exact and
cheap even for IPv6 ranges of 2**64 addresses and more. This module parses the
three spellings a pool accepts (``CIDR``, ``a-b`` and a single address) and
knows MetalLB's "buggy IP" rule (IPv4 addresses ending in ``.0`` or ``.255``
confuse some CPE firmwares and can be skipped with ``avoidBuggyIPs``).

Pure code: no Kubernetes imports.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ironlb.common.addresses import IPAddress

__all__ = [
    "IPRange",
    "RangeError",
    "buggy_count",
    "is_buggy",
    "parse_range",
    "to_address",
]


class RangeError(ValueError):
    """A textual address range that cannot be parsed; the message names the text."""


@dataclass(frozen=True, order=True)
class IPRange:
    """An inclusive run of addresses ``first..last`` of one family (4 or 6).

    ``text`` keeps the spelling the user wrote (for messages and display); it
    takes no part in equality or ordering.
    """

    version: int
    first: int
    last: int
    text: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.version not in (4, 6):
            raise RangeError(f"unknown IP version {self.version}")
        top = (1 << (32 if self.version == 4 else 128)) - 1
        if not 0 <= self.first <= self.last <= top:
            raise RangeError(f"bad range bounds {self.first}..{self.last} for IPv{self.version}")

    @property
    def size(self) -> int:
        """Number of addresses in the range (an exact Python int)."""
        return self.last - self.first + 1

    @property
    def start(self) -> IPAddress:
        return to_address(self.version, self.first)

    @property
    def end(self) -> IPAddress:
        return to_address(self.version, self.last)

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.version and self.first <= int(ip) <= self.last

    def overlaps(self, other: IPRange) -> bool:
        return (
            self.version == other.version and self.first <= other.last and other.first <= self.last
        )

    def usable_size(self, avoid_buggy_ips: bool) -> int:
        """Addresses the allocator may hand out (buggy ones removed if asked)."""
        if avoid_buggy_ips and self.version == 4:
            return self.size - buggy_count(self.first, self.last)
        return self.size

    def __str__(self) -> str:
        if self.text:
            return self.text
        if self.first == self.last:
            return str(self.start)
        return f"{self.start}-{self.end}"


def to_address(version: int, value: int) -> IPAddress:
    """The address object of family ``version`` for integer ``value``."""
    if version == 4:
        return ipaddress.IPv4Address(value)
    return ipaddress.IPv6Address(value)


def is_buggy(version: int, value: int) -> bool:
    """MetalLB's rule: an IPv4 address whose last octet is 0 or 255."""
    return version == 4 and (value & 0xFF) in (0, 0xFF)


def _buggy_upto(n: int) -> int:
    """How many x in [0, n] have x % 256 in (0, 255); 0 for n < 0."""
    if n < 0:
        return 0
    zeros = n // 256 + 1
    ones = (n - 255) // 256 + 1 if n >= 255 else 0
    return zeros + ones


def buggy_count(first: int, last: int) -> int:
    """Number of buggy IPv4 addresses in the inclusive integer range, in O(1)."""
    return _buggy_upto(last) - _buggy_upto(first - 1)


def _parse_address(text: str, whole: str) -> IPAddress:
    if "%" in text:
        raise RangeError(f"{whole!r}: scoped addresses ({text!r}) are not allowed")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise RangeError(f"{whole!r}: {text!r} is not an IP address") from None


def parse_range(text: str) -> IPRange:
    """Parse ``"198.18.10.0/24"``, ``"198.18.10.10-198.18.10.20"`` or ``"198.18.10.5"``.

    IPv6 is spelled the same way. Host bits set in a CIDR (``198.18.10.7/24``)
    are rejected rather than silently masked: the user most likely meant a
    different block, and the error names the network address they probably
    wanted. Spaces around the ``-`` of a range are allowed (as in MetalLB).
    """
    if not isinstance(text, str):
        raise RangeError(f"{text!r} is not a string")
    raw = text.strip()
    if not raw:
        raise RangeError("empty address")
    if "/" in raw:
        if "%" in raw:
            raise RangeError(f"{text!r}: scoped addresses are not allowed")
        try:
            net = ipaddress.ip_network(raw, strict=True)
        except ValueError as exc:
            try:
                loose = ipaddress.ip_network(raw, strict=False)
            except ValueError:
                raise RangeError(f"{text!r} is not a valid CIDR ({exc})") from None
            raise RangeError(
                f"{text!r} has host bits set; did you mean {loose.with_prefixlen!r}?"
            ) from None
        return IPRange(net.version, int(net.network_address), int(net.broadcast_address), raw)
    if "-" in raw:
        parts = raw.split("-")
        if len(parts) != 2:
            raise RangeError(f"{text!r} is not a range of the form 'first-last'")
        lo = _parse_address(parts[0].strip(), text)
        hi = _parse_address(parts[1].strip(), text)
        if lo.version != hi.version:
            raise RangeError(f"{text!r} mixes IPv{lo.version} and IPv{hi.version}")
        if int(lo) > int(hi):
            raise RangeError(f"{text!r} is reversed: {lo} is after {hi}")
        return IPRange(lo.version, int(lo), int(hi), raw)
    ip = _parse_address(raw, text)
    return IPRange(ip.version, int(ip), int(ip), raw)
