"""L2 announcement: answer ARP and NDP for the VIPs this node owns.

:class:`~ironlb.dataplane.l2.announcer.Announcer` is the entry point. The
packet code (:mod:`.arp`, :mod:`.ndp`) is pure and unit-tested on its own;
:mod:`.sockets` opens the raw ``AF_PACKET`` sockets, :mod:`.interfaces` picks
and watches the interfaces, :mod:`.metrics` counts what happens.
"""

from ironlb.dataplane.l2.announcer import Announcer

__all__ = ["Announcer"]
