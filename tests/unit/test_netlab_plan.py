"""Pure layout rules of the namespace lab (no root needed)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from ironlb.lab.netlab.nsutil import sysctl_path
from ironlb.lab.netlab.plan import (
    LAN4,
    LAN6,
    LabError,
    plan_hosts,
    random_prefix,
    validate_prefix,
    vip_address,
)


def test_plan_names_addresses_and_macs() -> None:
    hosts = plan_hosts("ilbx", nodes=2, backends=2)
    assert [(h.name, h.role, h.netns) for h in hosts] == [
        ("client", "client", "ilbx-client"),
        ("node1", "node", "ilbx-node1"),
        ("node2", "node", "ilbx-node2"),
        ("backend1", "backend", "ilbx-backend1"),
        ("backend2", "backend", "ilbx-backend2"),
    ]
    node2 = hosts[2]
    assert node2.ipv4 == IPv4Address("198.18.0.12")
    assert node2.ipv6 == IPv6Address("fd00:198:18::12")
    assert node2.mac == "02:00:c6:12:00:0c"
    assert hosts[3].ipv4 == IPv4Address("198.18.0.101")
    assert all(h.ifname == "eth0" for h in hosts)


def test_plan_is_unique_and_inside_the_lan_at_the_limits() -> None:
    hosts = plan_hosts("p", nodes=89, backends=99)
    for attr in ("ipv4", "ipv6", "mac", "netns"):
        assert len({getattr(h, attr) for h in hosts}) == len(hosts)
    assert all(h.ipv4 in LAN4 and h.ipv6 in LAN6 for h in hosts)
    for h in hosts:
        first = int(h.mac.split(":")[0], 16)
        assert first & 0x02 and not first & 0x01  # locally administered, unicast
    vips = {vip_address(i) for i in range(55)}
    assert not vips & {h.ipv4 for h in hosts}
    assert max(vips) == IPv4Address("198.18.0.254")


def test_vip_addresses() -> None:
    assert vip_address(0) == IPv4Address("198.18.0.200")
    assert vip_address(3, 6) == IPv6Address("fd00:198:18::203")
    for bad in (-1, 55):
        with pytest.raises(LabError, match="VIP index"):
            vip_address(bad)
    with pytest.raises(LabError, match="family"):
        vip_address(0, 5)


@pytest.mark.parametrize("prefix", ["", "a-b", "ILB", "x" * 25, "a/b", "a b"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(LabError, match="invalid lab prefix"):
        validate_prefix(prefix)


def test_random_prefixes_are_valid_and_distinct() -> None:
    prefixes = {random_prefix() for _ in range(50)}
    assert len(prefixes) > 40
    for p in prefixes:
        assert validate_prefix(p) == p and p.startswith("ilb")


@pytest.mark.parametrize(("nodes", "backends"), [(-1, 1), (90, 1), (1, 100), (1, -1)])
def test_bad_sizes_are_refused(nodes: int, backends: int) -> None:
    with pytest.raises(LabError, match="must be"):
        plan_hosts("ilb", nodes, backends)


def test_sysctl_path() -> None:
    assert str(sysctl_path("net.ipv4.conf.all.arp_ignore")) == (
        "/proc/sys/net/ipv4/conf/all/arp_ignore"
    )
    for bad in ("", "net/ipv4", "net..x"):
        with pytest.raises(ValueError, match="bad sysctl key"):
            sysctl_path(bad)
