"""Service semantics kube-proxy gave users, end to end in the lab: ``spec.sessionAffinity:
ClientIP`` pins the client to one pod and moves it only when that pod goes; the
``ironlb.io/idle-timeout`` annotation closes idle connections; a bad value is a
Warning Event and the Service is still served; kernel mode pins as well."""

from __future__ import annotations

import asyncio
import collections
import functools

import pytest

from ironlb.lab.netlab import LabHost
from tests.support import eventually

from .cluster import Cluster

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]

# One connection, one request, then idle: how long until the proxy closes it.
IDLE_CLIENT = """
import socket, time
s = socket.create_connection(("%(vip)s", 80), timeout=10)
s.sendall(b"hi\\n")
s.recv(256)
start = time.monotonic()
try:
    rest = s.recv(256)
except OSError:
    rest = b""
print(round(time.monotonic() - start, 2), len(rest))
"""


async def test_client_ip_affinity_pins_moves_only_when_the_pod_goes_and_timeouts_apply(
    lab_cluster: Cluster,
) -> None:
    cl = lab_cluster
    pods = cl.lab.pods
    # Pins live on the VIP's owner: wait until every speaker sees all three, so
    # the owner elected now stays (a failover would start without the pins).
    for node in cl.lab.nodes:
        await eventually(
            functools.partial(_sees_all, cl, node),
            timeout=30,
            what=f"three live speakers seen by {node.name}",
        )
    vip = await cl.expose(
        "sticky",
        pods,
        annotations={"ironlb.io/idle-timeout": "1s", "ironlb.io/connect-timeout": "soon"},
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}},
    )
    await eventually(
        lambda: not any(a.startswith("ERR") for a in cl.ask(vip, count=3)),
        what="the VIP answering",
    )
    owner = await eventually(lambda: cl.announcing_node("sticky"), what="sticky announced")
    got = cl.ask(vip, count=30)
    assert len(set(got)) == 1, (collections.Counter(got), owner)  # 30 of 30 on one pod
    home = got[0]
    assert home in {p.name for p in pods}

    # Another pod goes not ready: the client stays where it is.
    other = next(p for p in pods if p.name != home)
    await cl.set_endpoints("sticky", pods, ready=lambda p: p is not other)
    await asyncio.sleep(1.5)  # the speaker applies the new endpoints
    assert set(cl.ask(vip, count=10)) == {home}, (home, owner, await cl.announcing_node("sticky"))

    # Its own pod goes not ready: it moves, to one pod, and stays there once
    # its old pod is back (the new pin lives on).
    await cl.set_endpoints("sticky", pods, ready=lambda p: p.name != home)
    moved = await eventually(
        lambda: (lambda a: a[0] if len(set(a)) == 1 and a[0] != home else None)(
            cl.ask(vip, count=5)
        ),
        what="the client moved off its not-ready pod",
    )
    assert set(cl.ask(vip, count=20)) == {moved}
    await cl.set_endpoints("sticky", pods)
    await asyncio.sleep(1.5)
    back = cl.ask(vip, count=10)
    assert set(back) == {moved}, (home, moved, back, owner, await cl.announcing_node("sticky"))

    # ironlb.io/idle-timeout: 1s closes an idle connection after 1 to 1.25 s.
    waited, rest = cl.client_run(IDLE_CLIENT % {"vip": vip}).split()
    assert 0.8 <= float(waited) <= 3.0 and rest == "0", (waited, rest)

    # The bad connect-timeout is a Warning naming the annotation; the Service is served.
    reasons = await eventually(
        lambda: _with(cl.event_reasons("sticky"), "InvalidConnectTimeout"),
        what="an InvalidConnectTimeout Event",
    )
    assert "NodeAssigned" in reasons

    # Kernel mode (nftables sets): pinned too, 20 of 20 on one pod.
    kvip = await cl.expose(
        "sticky-kernel",
        pods,
        annotations={"ironlb.io/forwarding-mode": "kernel"},
        sessionAffinity="ClientIP",
    )
    await eventually(
        lambda: not any(a.startswith("ERR") for a in cl.ask(kvip, count=3)),
        what="the kernel-mode VIP answering",
    )
    kgot = cl.ask(kvip, count=20)
    assert len(set(kgot)) == 1, collections.Counter(kgot)
    kowner = await eventually(
        lambda: cl.announcing_node("sticky-kernel"), what="sticky-kernel announced"
    )
    listing = cl.lab.run(cl.lab.host(str(kowner)), "nft", "list", "table", "inet", "ironlb")
    assert "flags dynamic,timeout" in listing.stdout and str(cl.lab.client.ipv4) in listing.stdout


def _sees_all(cl: Cluster, node: LabHost) -> bool:
    return "ironlb_speaker_live_peers 3.0" in cl.metrics(node)


async def _with(reasons: object, reason: str) -> list[str] | None:
    found: list[str] = await reasons  # type: ignore[misc]
    return found if reason in found else None
