"""The fast-path renderer: DesiredState -> nftables text (pure, no root needed).

The text's structure is checked line by line; that the kernel accepts it and
forwards with it is tests/net/test_fastpath.py's job.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ironlb.dataplane.config import parse_config
from ironlb.dataplane.fastpath.render import (
    RenderError,
    affinity_set,
    listener_chain,
    parse_pins,
    render_removal,
    render_table,
    without_pins,
)
from ironlb.dataplane.state import Backend, DesiredState, ListenerKey, ListenerOptions

ip = ipaddress.ip_address
VIP4 = ip("198.18.0.200")
VIP6 = ip("fd00:198:18::200")
TCP80 = ListenerKey(VIP4, "tcp", 80)


def _state(*entries: tuple[ListenerKey, list[Backend]]) -> DesiredState:
    return DesiredState.build(entries)


def _chain(text: str, name: str, kind: str = "chain") -> list[str]:
    """The body lines of ``chain name { ... }`` (or ``set name { ... }``)."""
    lines = [line.strip() for line in text.splitlines()]
    start = lines.index(f"{kind} {name} {{")
    end = lines.index("}", start)
    return lines[start + 1 : end]


def test_one_listener_renders_an_atomic_replacement_with_round_robin_dnat() -> None:
    state = _state(
        (TCP80, [Backend(ip("198.18.0.101"), 9000), Backend(ip("198.18.0.102"), 9001)]),
    )
    text = render_table(state)
    lines = text.splitlines()
    # Create-if-missing, delete, define: one transaction that replaces the table.
    assert lines[1:4] == [
        "table inet ironlb {}",
        "delete table inet ironlb",
        "table inet ironlb {",
    ]
    assert lines[-1] == "}"
    assert _chain(text, "tcp_198_18_0_200_80") == [
        "meta l4proto tcp dnat ip to numgen inc mod 2 map "
        "{ 0 : 198.18.0.101 . 9000, 1 : 198.18.0.102 . 9001 } "
        'comment "tcp/198.18.0.200:80"'
    ]
    assert _chain(text, "services") == [
        "ip daddr . meta l4proto . th dport vmap "
        "{ 198.18.0.200 . tcp . 80 : jump tcp_198_18_0_200_80 }"
    ]
    assert _chain(text, "prerouting") == [
        "type nat hook prerouting priority dstnat; policy accept;",
        "jump services",
    ]
    assert _chain(text, "output")[1] == "jump services"
    post = _chain(text, "postrouting")
    assert 'ct status dnat ct original ip daddr @vips4 oifname != "lo" masquerade' in post
    assert _chain(text, "vips4", "set") == ["type ipv4_addr", "elements = { 198.18.0.200 }"]
    assert _chain(text, "vips6", "set") == ["type ipv6_addr"]


def test_ipv6_and_udp_listeners() -> None:
    udp6 = ListenerKey(VIP6, "udp", 53)
    state = _state(
        (udp6, [Backend(ip("fd00:198:18::101"), 5353), Backend(ip("fd00:198:18::102"), 5353)]),
        (ListenerKey(VIP4, "udp", 53), [Backend(ip("198.18.0.101"), 5353)]),
    )
    text = render_table(state)
    assert _chain(text, "udp_fd00_198_18__200_53") == [
        "meta l4proto udp dnat ip6 to numgen inc mod 2 map "
        "{ 0 : fd00:198:18::101 . 5353, 1 : fd00:198:18::102 . 5353 } "
        'comment "udp/[fd00:198:18::200]:53"'
    ]
    services = _chain(text, "services")
    assert services == [
        "ip daddr . meta l4proto . th dport vmap "
        "{ 198.18.0.200 . udp . 53 : jump udp_198_18_0_200_53 }",
        "ip6 daddr . meta l4proto . th dport vmap "
        "{ fd00:198:18::200 . udp . 53 : jump udp_fd00_198_18__200_53 }",
    ]
    assert "elements = { fd00:198:18::200 }" in text
    post = _chain(text, "postrouting")
    assert 'ct status dnat ct original ip6 daddr @vips6 oifname != "lo" masquerade' in post


def test_not_ready_backends_are_left_out_and_none_ready_rejects() -> None:
    down = Backend(ip("198.18.0.102"), 9000, ready=False)
    up = Backend(ip("198.18.0.103"), 9000)
    udp = ListenerKey(VIP4, "udp", 5000)
    state = _state(
        (TCP80, [down, up]),
        (ListenerKey(VIP4, "tcp", 81), [down]),
        (udp, []),
    )
    text = render_table(state)
    assert "198.18.0.102" not in _chain(text, "tcp_198_18_0_200_80")[0]
    assert "numgen inc mod 1 map { 0 : 198.18.0.103 . 9000 }" in text
    assert _chain(text, "tcp_198_18_0_200_81") == [
        'meta l4proto tcp reject with tcp reset comment "tcp/198.18.0.200:81"'
    ]
    assert _chain(text, "udp_198_18_0_200_5000") == [
        'meta l4proto udp reject with icmpx port-unreachable comment "udp/198.18.0.200:5000"'
    ]


def test_an_empty_state_is_a_table_with_no_services() -> None:
    text = render_table(DesiredState())
    assert _chain(text, "services") == []
    assert "elements" not in text
    assert "numgen" not in text
    assert text.startswith("# ironlb fast path: 0 listener(s)")


def test_order_is_canonical_and_rendering_is_repeatable() -> None:
    a = ListenerKey(ip("198.18.0.201"), "tcp", 80)
    b = ListenerKey(VIP4, "udp", 80)
    c = ListenerKey(VIP6, "tcp", 80)
    d = ListenerKey(VIP4, "tcp", 8080)
    backends = {
        a: [Backend(ip("198.18.0.101"), 1)],
        b: [Backend(ip("198.18.0.102"), 2)],
        c: [Backend(ip("fd00:198:18::101"), 3)],
        d: [Backend(ip("198.18.0.103"), 4)],
    }
    one = render_table(_state(*[(k, backends[k]) for k in (a, b, c, d)]))
    other = render_table(_state(*[(k, backends[k]) for k in (c, d, b, a)]))
    assert one == other
    assert render_table(_state(*[(k, backends[k]) for k in (a, b, c, d)])) == one
    chains = [line.strip() for line in one.splitlines() if line.strip().startswith("chain ")]
    assert chains == [
        "chain prerouting {",
        "chain output {",
        "chain services {",
        "chain tcp_198_18_0_200_8080 {",
        "chain udp_198_18_0_200_80 {",
        "chain tcp_198_18_0_201_80 {",
        "chain tcp_fd00_198_18__200_80 {",
        "chain postrouting {",
    ]


def test_backend_order_is_the_round_robin_order() -> None:
    first = Backend(ip("198.18.0.109"), 1)
    second = Backend(ip("198.18.0.101"), 1)
    text = render_table(_state((TCP80, [first, second])))
    assert "{ 0 : 198.18.0.109 . 1, 1 : 198.18.0.101 . 1 }" in text


def test_a_config_file_renders_through_desired_state() -> None:
    config = parse_config(
        "defaults: {mode: nftables}\n"
        "listeners:\n"
        "  - {address: 198.18.0.200, port: 80, backends: ['198.18.0.101:8080']}\n"
        "  - {address: 198.18.0.200, port: 81, mode: proxy, backends: ['198.18.0.101:8081']}\n",
        "lb.yaml",
    )
    nft = config.mode_keys("kernel")
    assert nft == {TCP80}
    assert config.mode_keys("proxy") == {ListenerKey(VIP4, "tcp", 81)}
    state = config.desired_state()
    text = render_table(state.only("kernel"))
    assert "198.18.0.101 . 8080" in text
    assert "8081" not in text


def test_bad_input_is_a_clear_error() -> None:
    mixed = _state((TCP80, [Backend(ip("fd00::1"), 80)]))
    with pytest.raises(RenderError, match=r"IPv6 backend \[fd00::1\]:80 for an IPv4 VIP"):
        render_table(mixed)
    with pytest.raises(RenderError, match="port must be 1-65535"):
        render_table(_state((ListenerKey(VIP4, "tcp", 0), [])))
    with pytest.raises(RenderError, match="backend port"):
        render_table(_state((TCP80, [Backend(VIP4, 70000)])))
    with pytest.raises(RenderError, match="table name"):
        render_table(DesiredState(), table="bad name; flush ruleset")
    with pytest.raises(RenderError, match="table name"):
        render_removal("")


def test_removal_is_create_then_delete() -> None:
    assert render_removal() == "table inet ironlb {}\ndelete table inet ironlb\n"


def test_config_mode_must_be_proxy_or_nftables() -> None:
    from ironlb.dataplane.config import ConfigError

    with pytest.raises(ConfigError, match=r"lb.yaml:2: listeners\[0\].mode: must be proxy or"):
        parse_config(
            "listeners:\n"
            "  - {address: 127.0.0.1, port: 80, mode: ebpf, backends: ['127.0.0.1:1']}\n",
            "lb.yaml",
        )


@given(
    ports=st.lists(st.integers(1, 65535), min_size=1, max_size=8, unique=True),
    ready=st.lists(st.booleans(), min_size=1, max_size=6),
)
def test_every_listener_gets_one_chain_and_exactly_its_ready_backends(
    ports: list[int], ready: list[bool]
) -> None:
    backends = [Backend(ip(f"198.18.0.{101 + i}"), 9000, r) for i, r in enumerate(ready)]
    state = _state(*[(ListenerKey(VIP4, "tcp", p), backends) for p in ports])
    text = render_table(state)
    n_ready = sum(ready)
    for port in ports:
        (rule,) = _chain(text, listener_chain(ListenerKey(VIP4, "tcp", port)))
        if n_ready:
            assert f"numgen inc mod {n_ready} map" in rule
            assert rule.count(" . 9000") == n_ready
        else:
            assert "reject with tcp reset" in rule
    assert _chain(text, "services")[0].count(": jump ") == len(ports)


def test_source_ranges_reject_other_clients_before_dnat() -> None:
    nets = (ipaddress.ip_network("198.18.0.0/24"), ipaddress.ip_network("fd00::/64"))
    opts = {TCP80: ListenerOptions(mode="kernel", source_ranges=nets)}
    text = render_table(DesiredState.build([(TCP80, [Backend(ip("198.18.0.101"), 80)])], opts))
    rules = _chain(text, listener_chain(TCP80))
    assert rules[0].startswith(
        "meta l4proto tcp ip saddr != { 198.18.0.0/24 } reject with tcp reset"
    )
    assert "dnat ip to" in rules[1]
    udp = ListenerKey(VIP6, "udp", 53)
    v4_only = {udp: ListenerOptions(source_ranges=nets[:1])}
    text = render_table(DesiredState.build([(udp, [Backend(ip("fd00::101"), 53)])], v4_only))
    assert _chain(text, listener_chain(udp)) == [
        f'meta l4proto udp reject with icmpx port-unreachable comment "{udp}"'
    ]


def test_listeners_without_masquerade_keep_the_client_address() -> None:
    local = ListenerKey(ip("198.18.0.201"), "tcp", 80)
    opts = {local: ListenerOptions(masquerade=False)}
    backend = [Backend(ip("198.19.1.10"), 8080)]
    text = render_table(DesiredState.build([(TCP80, backend), (local, backend)], opts))
    assert _chain(text, "vips4", "set") == ["type ipv4_addr", "elements = { 198.18.0.200 }"]


def _affine(*entries: tuple[ListenerKey, list[Backend]], timeout: float = 600) -> DesiredState:
    opts = ListenerOptions(mode="kernel", affinity_timeout=timeout)
    return DesiredState.build(entries, {key: opts for key, _ in entries})


B1, B2 = Backend(ip("198.18.0.101"), 9000), Backend(ip("198.18.0.102"), 9000)


def test_affinity_renders_a_set_and_a_chain_per_ready_backend() -> None:
    not_ready = Backend(ip("198.18.0.103"), 9000, ready=False)
    text = render_table(_affine((TCP80, [B1, B2, not_ready])))
    s1, s2 = affinity_set(TCP80, B1), affinity_set(TCP80, B2)
    assert s1 != s2 and s1.startswith("aff_") and len(s1) == 20
    assert affinity_set(TCP80, not_ready) not in text
    assert _chain(text, s1, "set") == [
        "type ipv4_addr",
        "size 65535",
        "flags dynamic,timeout",
        "timeout 600s",
    ]
    comment = 'comment "tcp/198.18.0.200:80"'
    assert _chain(text, "tcp_198_18_0_200_80") == [
        f"meta l4proto tcp ip saddr @{s1} goto tcp_198_18_0_200_80_0 {comment}",
        f"meta l4proto tcp ip saddr @{s2} goto tcp_198_18_0_200_80_1 {comment}",
        "meta l4proto tcp numgen inc mod 2 vmap "
        f"{{ 0 : goto tcp_198_18_0_200_80_0, 1 : goto tcp_198_18_0_200_80_1 }} {comment}",
    ]
    assert _chain(text, "tcp_198_18_0_200_80_1") == [
        f"update @{s2} {{ ip saddr timeout 600s }} {comment}",
        f"meta l4proto tcp dnat ip to 198.18.0.102:9000 {comment}",
    ]


def test_affinity_over_ipv6_udp() -> None:
    key = ListenerKey(VIP6, "udp", 53)
    backend = Backend(ip("fd00:198:18::101"), 5353)
    text = render_table(_affine((key, [backend]), timeout=0.4))  # at least 1 s
    name = affinity_set(key, backend)
    assert "type ipv6_addr" in _chain(text, name, "set")
    assert "timeout 1s" in _chain(text, name, "set")
    chain = listener_chain(key)
    assert _chain(text, f"{chain}_0")[1].startswith(
        "meta l4proto udp dnat ip6 to [fd00:198:18::101]:5353 "
    )
    assert _chain(text, chain)[0].startswith(f"meta l4proto udp ip6 saddr @{name} goto")


def test_pins_are_carried_over_for_ready_backends_only_and_clamped() -> None:
    s1, s2 = affinity_set(TCP80, B1), affinity_set(TCP80, B2)
    pins = {
        s1: [(ip("198.18.0.9"), 30), (ip("198.18.0.8"), 9999), (ip("fd00::9"), 30)],
        s2: [(ip("198.18.0.7"), 30)],
        "aff_0000000000000000": [(ip("198.18.0.6"), 30)],
    }
    text = render_table(_affine((TCP80, [B1, Backend(B2.address, B2.port, False)])), pins=pins)
    assert _chain(text, s1, "set")[-1] == (
        "elements = { 198.18.0.8 timeout 600s expires 600s, 198.18.0.9 timeout 600s expires 30s }"
    )
    assert s2 not in text and "198.18.0.7" not in text and "198.18.0.6" not in text
    assert render_table(_affine((TCP80, [B1])), pins=pins) == render_table(
        _affine((TCP80, [B1])), pins=pins
    )


# nft -T output (real listings indent with tabs; the parser does not care)
LISTING = """\
table inet ironlb {
    comment "ironlb pid=1 start=2"
    set vips4 {
        type ipv4_addr
        elements = { 198.18.0.200 }
    }

    set aff_0123456789abcdef {
        type ipv4_addr
        size 65535
        flags dynamic,timeout
        timeout 600s
        elements = { 10.9.0.1 expires 491s, 10.9.0.2 timeout 600s expires 3s,
                 10.9.1.1 expires 599s, bogus expires 5s,
                 10.9.1.5 expires 599s }
    }

    set aff_fedcba9876543210 {
        type ipv6_addr
        flags dynamic,timeout
        timeout 600s
        elements = { fd00::1 expires 99s }
    }

    set aff_1111111111111111 {
        type ipv4_addr
        flags dynamic,timeout
        timeout 600s
    }
}
"""


def test_pins_are_read_from_a_numeric_time_listing() -> None:
    assert parse_pins(LISTING) == {
        "aff_0123456789abcdef": [
            (ip("10.9.0.1"), 491),
            (ip("10.9.0.2"), 3),
            (ip("10.9.1.1"), 599),
            (ip("10.9.1.5"), 599),
        ],
        "aff_fedcba9876543210": [(ip("fd00::1"), 99)],
    }
    assert parse_pins("") == {}


def test_the_listing_compared_for_repairs_leaves_the_pins_out() -> None:
    kept = without_pins(LISTING)
    assert "10.9." not in kept and "fd00::1" not in kept
    assert "elements = { 198.18.0.200 }" in kept  # other sets are compared in full
    assert kept.count("set aff_") == 3 and kept.rstrip().endswith("}")
    other = LISTING.replace("expires 491s", "expires 12s").replace("10.9.1.5", "10.9.1.6")
    assert without_pins(other) == kept
