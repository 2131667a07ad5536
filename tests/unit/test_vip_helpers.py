"""Pure parts of VIP binding: address checks, marks, sync plans, ARP sysctl values."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ironlb.dataplane.vip import (
    IRONLB_ADDR_PROTO,
    BindChanges,
    VipError,
    arp_sysctl_updates,
    ensure_arp_sysctls,
    host_prefixlen,
    ipv4_label,
    is_marked,
    parse_vip,
    plan_sync,
)


def test_parse_vip_accepts_unicast() -> None:
    assert parse_vip(" 198.18.0.200 ") == IPv4Address("198.18.0.200")
    assert parse_vip("fd00:198:18::200") == IPv6Address("fd00:198:18::200")
    assert parse_vip(IPv4Address("10.0.0.1")) == IPv4Address("10.0.0.1")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "not an IP address"),
        ("198.18.0.256", "not an IP address"),
        ("198.18.0.0/24", "not an IP address"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("127.0.0.5", "loopback"),
        ("::1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("255.255.255.255", "broadcast"),
    ],
)
def test_parse_vip_refuses_unfit(value: str, why: str) -> None:
    with pytest.raises(VipError, match=why):
        parse_vip(value)


def test_host_prefixlen_and_label() -> None:
    assert host_prefixlen(IPv4Address("1.2.3.4")) == 32
    assert host_prefixlen(IPv6Address("2001:db8::1")) == 128
    assert ipv4_label("lo") == "lo:ilb"
    assert ipv4_label("abcdefghijk") == "abcdefghijk:ilb"  # 15 chars: fits
    assert ipv4_label("abcdefghijkl") is None  # would exceed IFNAMSIZ


def test_is_marked() -> None:
    assert is_marked(IRONLB_ADDR_PROTO, None, "lo")
    assert is_marked(None, "lo:ilb", "lo")  # IPv4 label alone (kernel without IFA_PROTO)
    assert not is_marked(None, "lo", "lo")
    assert not is_marked(0, None, "lo")
    assert not is_marked(1, "lo:ilb2", "lo")
    assert not is_marked(None, "lo:ilb", "eth0")


addresses = st.one_of(
    st.ip_addresses(v=4).map(lambda a: ip_address(str(a))),
    st.ip_addresses(v=6).map(lambda a: ip_address(str(a))),
)


@given(st.frozensets(addresses, max_size=8), st.frozensets(addresses, max_size=8))
def test_plan_sync_reaches_desired_with_minimal_changes(current, desired) -> None:
    plan = plan_sync(current, desired)
    assert (current - plan.removed) | plan.added == desired
    assert not plan.added & current
    assert plan.removed <= current
    assert not plan.removed & desired


def test_bind_changes_truthiness() -> None:
    assert not BindChanges()
    assert BindChanges(added=frozenset({IPv4Address("1.1.1.1")}))


def test_arp_sysctl_updates_only_raise() -> None:
    assert arp_sysctl_updates({"arp_ignore": 0, "arp_announce": 0}) == {
        "arp_ignore": 1,
        "arp_announce": 2,
    }
    assert arp_sysctl_updates({"arp_ignore": 2, "arp_announce": 2}) == {}
    assert arp_sysctl_updates({"arp_ignore": 8, "arp_announce": 1}) == {"arp_announce": 2}


def test_ensure_arp_sysctls_writes_files(tmp_path: Path) -> None:
    conf = tmp_path / "all"
    conf.mkdir()
    (conf / "arp_ignore").write_text("3\n")
    (conf / "arp_announce").write_text("0\n")
    assert ensure_arp_sysctls(tmp_path) == {"arp_announce": 2}
    assert (conf / "arp_ignore").read_text() == "3\n"
    assert (conf / "arp_announce").read_text() == "2\n"
    assert ensure_arp_sysctls(tmp_path) == {}
