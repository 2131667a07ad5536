"""The data plane's desired state: immutable, hashable, VIPs implied by listeners."""

from __future__ import annotations

import ipaddress

import pytest

from ironlb.dataplane.state import Backend, DesiredState, ListenerKey

VIP = ipaddress.ip_address("198.18.0.10")
B1 = Backend(ipaddress.ip_address("198.18.1.1"), 80)
B2 = Backend(ipaddress.ip_address("198.18.1.2"), 80, ready=False)


def test_listener_vips_are_owned_and_equal_states_hash_equal() -> None:
    a = DesiredState.build([(ListenerKey(VIP, "tcp", 80), [B1, B2])])
    b = DesiredState(listeners={ListenerKey(VIP, "tcp", 80): (B1, B2)})
    assert a.vips == frozenset({VIP})
    assert a == b and hash(a) == hash(b)
    assert a.for_vip(VIP) == {("tcp", 80): (B1, B2)}


def test_listeners_cannot_be_mutated() -> None:
    state = DesiredState.build([(ListenerKey(VIP, "udp", 53), [B1])])
    with pytest.raises(TypeError):
        state.listeners[ListenerKey(VIP, "tcp", 1)] = ()  # type: ignore[index]


def test_formatting_brackets_ipv6() -> None:
    v6 = ipaddress.ip_address("2001:db8::1")
    assert str(Backend(v6, 443)) == "[2001:db8::1]:443"
    assert str(ListenerKey(v6, "tcp", 443)) == "tcp/[2001:db8::1]:443"
