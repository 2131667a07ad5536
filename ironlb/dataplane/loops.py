"""Which listener of a set a backend would reach: finds forwarding loops (pure).

A backend that is a listener of the same balancer sends every connection
back in, and through the listener's backends again, until the connection
limit or the file descriptors run out. The config parser refuses such a
backend (:func:`ironlb.dataplane.config.parse_config`); this module holds
only the rule for "this backend reaches that listener", so it can be tested
on its own and reused wherever a backend list meets the node's listeners:
the speaker's states come from Kubernetes, not from a file, so
:func:`without_self_loops` leaves out, before the workers get a state, a
backend (an endpoint) that is its own proxy listener.

The rule follows how Linux delivers a connection made on the node itself:

* a connect to the unspecified address (``0.0.0.0``, ``::``) goes to the
  loopback address of its family (``127.0.0.1``, ``::1``);
* a socket bound to an exact address gets the connections to that address;
  a wildcard socket (``0.0.0.0`` / ``::``) of the same family, protocol and
  port gets the rest. IPv6 listeners are ``IPV6_V6ONLY``
  (:func:`~ironlb.dataplane.forwarder.listeners.bind_socket`), so a ``::``
  listener never receives IPv4;
* a wildcard listener gets loopback connections for sure. It gets the
  node's own interface addresses too, but the parser reads no interfaces,
  so only loopback (and unspecified) backends are matched against it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import replace

from ironlb.common.addresses import IPAddress
from ironlb.common.protocols import Protocol
from ironlb.dataplane.state import Backend, DesiredState, ListenerKey

_LOOPBACK: dict[int, IPAddress] = {
    4: ipaddress.IPv4Address("127.0.0.1"),
    6: ipaddress.IPv6Address("::1"),
}
_ANY: dict[int, IPAddress] = {
    4: ipaddress.IPv4Address("0.0.0.0"),
    6: ipaddress.IPv6Address("::"),
}


def reached_listener(
    address: IPAddress, port: int, protocol: Protocol, listeners: Collection[ListenerKey]
) -> ListenerKey | None:
    """The listener in ``listeners`` a connection to ``address:port`` over
    ``protocol`` from this node would land on, or ``None`` when it leaves them.

    An exact listener beats a wildcard one, as the kernel's socket lookup
    does; see the module docstring for the rule and its limit.
    """
    if address.is_unspecified:
        address = _LOOPBACK[address.version]
    exact = ListenerKey(address, protocol, port)
    if exact in listeners:
        return exact
    if address.is_loopback:
        wildcard = ListenerKey(_ANY[address.version], protocol, port)
        if wildcard in listeners:
            return wildcard
    return None


def without_self_loops(
    state: DesiredState,
) -> tuple[DesiredState, tuple[tuple[ListenerKey, Backend], ...]]:
    """``state`` less every backend that reaches its own listener, and the
    ``(listener, backend)`` pairs left out (in listener order).

    The state is returned as it is (the same object) when nothing loops, so
    an unchanged state still compares and hashes as before.
    """
    dropped: list[tuple[ListenerKey, Backend]] = []
    listeners = dict(state.listeners)
    for key, spec in state.listeners.items():
        keep = []
        for backend in spec.backends:
            if reached_listener(backend.address, backend.port, key.protocol, listeners) == key:
                dropped.append((key, backend))
            else:
                keep.append(backend)
        if len(keep) != len(spec.backends):
            listeners[key] = replace(spec, backends=tuple(keep))
    if not dropped:
        return state, ()
    return replace(state, listeners=listeners), tuple(dropped)
