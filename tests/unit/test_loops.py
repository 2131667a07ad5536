"""Which listener a backend reaches, and leaving self-loops out of a state."""

from __future__ import annotations

import ipaddress

import pytest

from ironlb.dataplane.loops import reached_listener, without_self_loops
from ironlb.dataplane.state import Backend, DesiredState, ListenerKey, ListenerOptions

ip = ipaddress.ip_address


def key(address: str, port: int = 80, protocol: str = "tcp") -> ListenerKey:
    return ListenerKey(ip(address), protocol, port)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("backend", "listeners", "reached"),
    [
        ("127.0.0.1", ["127.0.0.1"], "127.0.0.1"),
        ("127.0.0.9", ["0.0.0.0"], "0.0.0.0"),
        ("127.0.0.1", ["0.0.0.0", "127.0.0.1"], "127.0.0.1"),  # exact beats wildcard
        ("0.0.0.0", ["127.0.0.1"], "127.0.0.1"),  # connect to 0.0.0.0 is to 127.0.0.1
        ("0.0.0.0", ["0.0.0.0"], "0.0.0.0"),
        ("::", ["::1"], "::1"),
        ("::1", ["::"], "::"),
        ("::1", ["0.0.0.0"], None),  # IPv6 listeners are V6ONLY, and v4 ones never get v6
        ("127.0.0.1", ["::"], None),
        ("198.18.0.200", ["198.18.0.200"], "198.18.0.200"),
        ("198.18.0.200", ["0.0.0.0"], None),  # may be local, but the rule reads no links
        ("127.0.0.2", ["127.0.0.1"], None),
    ],
)
def test_reached_listener(backend: str, listeners: list[str], reached: str | None) -> None:
    keys = {key(a) for a in listeners}
    got = reached_listener(ip(backend), 80, "tcp", keys)
    assert got == (None if reached is None else key(reached))
    assert reached_listener(ip(backend), 81, "tcp", keys) is None  # another port
    assert reached_listener(ip(backend), 80, "udp", keys) is None  # another protocol


def test_without_self_loops_drops_only_the_looping_backends() -> None:
    vip = key("198.18.0.200", 443)
    local = key("0.0.0.0", 8080, "udp")
    pod = Backend(ip("10.0.0.5"), 443)
    looping = Backend(ip("198.18.0.200"), 443)
    chained = Backend(ip("127.0.0.1"), 8080)  # udp/0.0.0.0:8080, but vip is tcp
    state = DesiredState.build(
        [(vip, [pod, looping, chained]), (local, [Backend(ip("127.0.0.1"), 8080, ready=False)])],
        {local: ListenerOptions(udp_session_timeout=5)},
        vips=[ip("198.18.0.200")],
    )
    clean, dropped = without_self_loops(state)
    assert dropped == (
        (vip, looping),
        (local, Backend(ip("127.0.0.1"), 8080, ready=False)),
    )
    assert clean.backends(vip) == (pod, chained)
    assert clean.backends(local) == ()
    assert clean.listeners[local].options.udp_session_timeout == 5
    assert clean.vips == state.vips


def test_a_state_without_loops_is_returned_unchanged() -> None:
    state = DesiredState.build([(key("127.0.0.1"), [Backend(ip("127.0.0.1"), 81)])])
    clean, dropped = without_self_loops(state)
    assert clean is state
    assert dropped == ()
