"""The data plane's desired state: immutable, hashable, owned VIPs apart from listeners."""

from __future__ import annotations

import ipaddress

import pytest

from ironlb.dataplane.state import (
    Backend,
    DesiredState,
    ListenerKey,
    ListenerOptions,
    ListenerSpec,
)

VIP = ipaddress.ip_address("198.18.0.10")
B1 = Backend(ipaddress.ip_address("198.18.1.1"), 80)
B2 = Backend(ipaddress.ip_address("198.18.1.2"), 80, ready=False)


def test_owned_vips_are_independent_and_equal_states_hash_equal() -> None:
    key = ListenerKey(VIP, "tcp", 80)
    a = DesiredState.build([(key, [B1, B2])])
    b = DesiredState(listeners={key: ListenerSpec((B1, B2))})
    assert a.vips == frozenset()  # a standby listens without owning
    assert a == b and hash(a) == hash(b)
    assert a.listener_vips() == frozenset({VIP})
    owned = a.with_vips([VIP])
    assert owned.vips == frozenset({VIP}) and owned != a
    assert a.backends(key) == (B1, B2)
    assert a.listeners[key].ready == (B1,)


def test_options_are_part_of_the_state_and_split_by_mode() -> None:
    k1, k2 = ListenerKey(VIP, "tcp", 80), ListenerKey(VIP, "udp", 53)
    kernel = ListenerOptions(mode="kernel")
    state = DesiredState.build([(k1, [B1]), (k2, [B1])], {k2: kernel}, vips=[VIP])
    assert state != DesiredState.build([(k1, [B1]), (k2, [B1])], vips=[VIP])
    assert set(state.only("kernel").listeners) == {k2}
    assert set(state.only("proxy").listeners) == {k1}
    assert state.only("kernel").vips == frozenset({VIP})


def test_source_ranges_allow_only_their_family_and_networks() -> None:
    opts = ListenerOptions(source_ranges=(ipaddress.ip_network("198.18.0.0/24"),))
    assert opts.allows(ipaddress.ip_address("198.18.0.7"))
    assert not opts.allows(ipaddress.ip_address("198.18.1.7"))
    assert not opts.allows(ipaddress.ip_address("fd00::7"))
    assert ListenerOptions().allows(ipaddress.ip_address("fd00::7"))


def test_states_pickle_for_the_workers() -> None:
    import pickle

    state = DesiredState.build([(ListenerKey(VIP, "tcp", 80), [B1])], vips=[VIP])
    assert pickle.loads(pickle.dumps(state)) == state


def test_listeners_cannot_be_mutated() -> None:
    state = DesiredState.build([(ListenerKey(VIP, "udp", 53), [B1])])
    with pytest.raises(TypeError):
        state.listeners[ListenerKey(VIP, "tcp", 1)] = ListenerSpec()  # type: ignore[index]


def test_formatting_brackets_ipv6() -> None:
    v6 = ipaddress.ip_address("2001:db8::1")
    assert str(Backend(v6, 443)) == "[2001:db8::1]:443"
    assert str(ListenerKey(v6, "tcp", 443)) == "tcp/[2001:db8::1]:443"
