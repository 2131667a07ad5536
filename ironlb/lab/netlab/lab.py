"""The namespace lab: a client, nodes and backends on one bridged LAN, pods on the nodes.

Everything lives in network namespaces named ``<prefix>-...``; the root
namespace is never touched. The bridge sits in its own ``<prefix>-sw``
namespace; each host namespace holds ``lo`` and ``eth0`` (one end of a veth
pair whose other end is a port of the bridge). Links, addresses and sysctls are
set with pyroute2 from inside each namespace (:func:`in_netns`), commands run
with ``ip netns exec``.

Pods (``pods_per_node > 0``) are laid out as a bridge CNI (flannel's
``host-gw`` backend, say) lays them out: each pod is a namespace whose ``eth0``
is a veth pair with its other end ``pM`` in the node namespace, a port of the
node's own bridge ``cni0`` that carries the pod gateway (198.19.N.1,
fd00:198:19:N::1). That bridge is never joined with the LAN: pod traffic is
routed by the node, which has IPv4 and IPv6 forwarding on (inside its
namespace only) and a route to every other node's pod CIDRs via that node's
LAN address. Nothing NATs. The client has the same routes, like a LAN router
that knows the pod CIDRs: a pod that connects to the client (source address
198.19.N.x) gets its replies, and a connection a load balancer on a node
forwards to a pod without masquerading can be answered. Backends get no pod
routes. Labs without pods keep forwarding off, so their nodes behave exactly
as before.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, overload

from pyroute2 import IPRoute

from ironlb.lab.netlab import nsutil
from ironlb.lab.netlab.plan import (
    BRIDGE_NAME,
    LAN4,
    LAN6,
    POD_BRIDGE,
    POD_PREFIXLEN4,
    POD_PREFIXLEN6,
    LabError,
    LabHost,
    PodNetwork,
    PodPort,
    cleanup_order,
    plan_hosts,
    plan_pod_networks,
    plan_pods,
    pod_port,
    random_prefix,
    switch_netns,
    validate_prefix,
    vip_address,
)

IFA_F_NODAD = 0x02
DEFAULT_TIMEOUT = 30.0
PODSERVER_MODULE = "ironlb.lab.podserver"
# The directory holding the ``ironlb`` package, so that pod servers import this
# very tree even when it is not installed.
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]


class Lab:
    """A LAN of network namespaces; use as a context manager or call up()/down().

    ``hosts`` are the LAN hosts (client, nodes, backends); ``pods`` the
    ``pods_per_node`` pods of every node (none by default), each a
    :class:`LabHost` with ``role == "pod"`` and ``node`` set. Sizes outside the
    plan's limits raise :class:`LabError`. ``pod_network=True`` builds the
    nodes' pod networks (``cni0``, forwarding, routes) even without static
    pods, for pods added at run time with :meth:`add_pod`.
    """

    def __init__(
        self,
        nodes: int = 2,
        backends: int = 1,
        prefix: str | None = None,
        pods_per_node: int = 0,
        pod_network: bool = False,
    ) -> None:
        self.prefix = validate_prefix(prefix) if prefix is not None else random_prefix()
        self.hosts: list[LabHost] = plan_hosts(self.prefix, nodes, backends)
        self.client: LabHost = self.hosts[0]
        self.nodes: list[LabHost] = [h for h in self.hosts if h.role == "node"]
        self.backends: list[LabHost] = [h for h in self.hosts if h.role == "backend"]
        self.pod_ports: list[PodPort] = plan_pods(self.prefix, nodes, pods_per_node)
        self.pods: list[LabHost] = [port.pod for port in self.pod_ports]
        self.pod_networks: list[PodNetwork] = (
            plan_pod_networks(nodes) if self.pods or pod_network else []
        )
        self.pod_servers: dict[str, subprocess.Popen[str]] = {}
        self.switch_netns = switch_netns(self.prefix)
        self._procs: list[subprocess.Popen[Any]] = []
        self._owns_prefix = False

    # -- lifecycle -------------------------------------------------------

    def up(self) -> None:
        """Build the LAN. Raises :class:`LabError` if the prefix is already in use."""
        in_use = nsutil.list_netns(self.prefix)
        if in_use:
            raise LabError(
                f"lab prefix {self.prefix!r} is in use (namespaces: {', '.join(in_use)}); "
                f"remove them with `ironlb lab net down --prefix {self.prefix}`"
            )
        self._owns_prefix = True
        try:
            _in_fresh_thread(self._build)
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Kill tracked and leftover processes, remove every namespace of this prefix.

        A lab whose up() was refused (prefix in use) removes nothing.
        """
        procs, self._procs = self._procs, []
        self.pod_servers = {}
        for proc in procs:
            _stop(proc)
        if self._owns_prefix:
            cleanup_stale(self.prefix)
            self._owns_prefix = False

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # -- using the lab ---------------------------------------------------

    def host(self, name: str) -> LabHost:
        """The host or pod with role name ``name`` ("client", "node1", "node1-pod2", ...)."""
        for h in (*self.hosts, *self.pods):
            if h.name == name:
                return h
        raise KeyError(f"no lab host {name!r}; have {[h.name for h in self.hosts + self.pods]}")

    def pods_on(self, node: LabHost | str) -> list[LabHost]:
        """The pods living on ``node`` (a node host or its role name), in pod order.

        Raises KeyError if ``node`` is not a node of this lab.
        """
        name = self._node_name(node)
        return [p for p in self.pods if p.node == name]

    def pod_network(self, node: LabHost | str) -> PodNetwork:
        """The pod CIDRs and gateway of ``node``. Raises KeyError in a lab without pods."""
        name = self._node_name(node)
        for net in self.pod_networks:
            if net.node == name:
                return net
        raise KeyError(f"lab {self.prefix!r} has no pods (pods_per_node=0)")

    def _node_name(self, node: LabHost | str) -> str:
        name = node if isinstance(node, str) else node.name
        if name not in {n.name for n in self.nodes}:
            raise KeyError(f"no lab node {name!r}; have {[n.name for n in self.nodes]}")
        return name

    def start_pod_servers(
        self,
        tcp: Sequence[int] = (8080,),
        udp: Sequence[int] = (8053,),
        timeout: float = DEFAULT_TIMEOUT,
    ) -> dict[str, subprocess.Popen[str]]:
        """Start one :mod:`ironlb.lab.podserver` per pod and wait until each is listening.

        Each is named after its pod (``node2-pod1``), listens on ``tcp`` and
        ``udp`` ports on all its addresses, and is killed on :meth:`down`.
        Returns (and keeps in ``pod_servers``) pod name -> process. Raises
        :class:`LabError` (after stopping the servers it started) if the lab
        has no pods or a server exits or is not ready within ``timeout`` s.
        """
        if not self.pods:
            raise LabError(f"lab {self.prefix!r} has no pods (pods_per_node=0)")
        argv_ports = [f"--tcp={port}" for port in tcp] or ["--no-tcp"]
        argv_ports += [f"--udp={port}" for port in udp] or ["--no-udp"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        started: dict[str, tuple[subprocess.Popen[str], IO[str]]] = {}
        with contextlib.ExitStack() as files:
            try:
                for pod in self.pods:
                    errors = files.enter_context(tempfile.TemporaryFile(mode="w+"))
                    proc: subprocess.Popen[str] = self.popen(
                        pod,
                        sys.executable,
                        "-m",
                        PODSERVER_MODULE,
                        "--name",
                        pod.name,
                        *argv_ports,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=errors,
                        text=True,
                        env=env,
                    )
                    started[pod.name] = (proc, errors)
                deadline = time.monotonic() + timeout
                for name, (server, output) in started.items():
                    _wait_ready(name, server, output, deadline)
            except BaseException:
                for proc, _ in started.values():
                    _stop(proc)
                raise
        servers = {name: proc for name, (proc, _) in started.items()}
        self.pod_servers.update(servers)
        return servers

    def add_pod(self, node: LabHost | str, pod_index: int) -> LabHost:
        """Build pod ``pod_index`` of ``node`` now, as the static pods are built; return it.

        Its names and addresses come from :func:`~ironlb.lab.netlab.plan.pod_port`
        (``node2`` pod 3: ``<prefix>-node2-pod3``, 198.19.2.13, fd00:198:19:2::13).
        Raises KeyError for an unknown node or a lab without pod networks,
        :class:`LabError` for an index out of range or already built.
        """
        name = self._node_name(node)
        net = self.pod_network(name)
        port = pod_port(self.prefix, int(name.removeprefix("node")), pod_index)
        if any(p.name == port.pod.name for p in self.pods):
            raise LabError(f"pod {port.pod.name} already exists in lab {self.prefix!r}")
        node_host = self.host(name)
        try:
            _in_fresh_thread(lambda: self._build_pod(port, node_host, net))
        except BaseException:
            with contextlib.suppress(Exception):
                _in_fresh_thread(lambda: self._remove_pod(port, node_host))
            raise
        self.pod_ports.append(port)
        self.pods.append(port.pod)
        return port.pod

    def remove_pod(self, pod: LabHost | str) -> None:
        """Kill the processes in a pod's namespace, remove its veth pair and namespace.

        A pod that is already gone is a no-op (for clean-up paths).
        """
        name = pod if isinstance(pod, str) else pod.name
        port = next((p for p in self.pod_ports if p.pod.name == name), None)
        if port is None or port.pod.node is None:
            return
        node_host = self.host(port.pod.node)
        _in_fresh_thread(lambda: self._remove_pod(port, node_host))
        self.pod_ports.remove(port)
        self.pods.remove(port.pod)

    def _remove_pod(self, port: PodPort, node: LabHost) -> None:
        nsutil.kill_netns_pids(port.pod.netns)
        # Delete the node end first: the pair goes at once, so the same index
        # can be built again right away (a namespace's links go asynchronously).
        with nsutil.in_netns(node.netns), IPRoute() as ipr:
            found = ipr.link_lookup(ifname=port.node_ifname)
            if found:
                ipr.link("del", index=found[0])
        nsutil.remove_netns(port.pod.netns)

    def run(
        self,
        host: LabHost,
        *argv: str,
        check: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the host's namespace; output captured as text."""
        return subprocess.run(
            ["ip", "netns", "exec", host.netns, *argv],
            check=check,
            timeout=timeout,
            capture_output=True,
            text=True,
        )

    def popen(self, host: LabHost, *argv: str, **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the host's namespace; it is killed on :meth:`down`.

        It gets its own session (process group) so that down() reaches its
        children too; pass ``start_new_session=False`` to opt out.
        """
        kw.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, *argv], **kw
        )
        self._procs.append(proc)
        return proc

    @overload
    def vip(self, index: int, family: Literal[4] = 4) -> IPv4Address: ...
    @overload
    def vip(self, index: int, family: Literal[6]) -> IPv6Address: ...
    @overload
    def vip(self, index: int, family: int) -> IPv4Address | IPv6Address: ...
    def vip(self, index: int, family: int = 4) -> IPv4Address | IPv6Address:
        """The ``index``-th (0-based) VIP address: 198.18.0.200+ or fd00:198:18::200+."""
        return vip_address(index, family)

    def in_netns(self, host: LabHost) -> contextlib.AbstractContextManager[None]:
        """Enter the host's namespace in THIS thread for the ``with`` body."""
        return nsutil.in_netns(host.netns)

    # -- building --------------------------------------------------------

    def _build(self) -> None:
        self._build_switch()
        for host in self.hosts:
            self._build_host(host)
        if not self.pod_networks:
            return
        by_name = {n.name: n for n in self.nodes}
        for net in self.pod_networks:
            self._build_pod_network(by_name[net.node], net)
        for port in self.pod_ports:
            assert port.pod.node is not None
            self._build_pod(port, by_name[port.pod.node], self.pod_network(port.pod.node))
        self._add_pod_routes(self.client, self.pod_networks)

    def _build_switch(self) -> None:
        nsutil.create_netns(self.switch_netns)
        with nsutil.in_netns(self.switch_netns), IPRoute() as ipr:
            # The switch takes no part in IP: keep it silent on the LAN.
            nsutil.write_sysctl("net.ipv6.conf.all.disable_ipv6", 1)
            nsutil.write_sysctl("net.ipv6.conf.default.disable_ipv6", 1)
            # Snooping off: flood all multicast, so NDP solicitations for VIPs
            # (which no host joined the group of) reach every port.
            ipr.link("add", ifname=BRIDGE_NAME, kind="bridge", br_mcast_snooping=0)
            ipr.link("set", index=_index(ipr, "lo"), state="up")
            ipr.link("set", index=_index(ipr, BRIDGE_NAME), state="up")

    def _build_host(self, host: LabHost) -> None:
        nsutil.create_netns(host.netns)
        with nsutil.in_netns(host.netns), IPRoute() as ipr:
            for scope in ("all", "default"):
                nsutil.write_sysctl(f"net.ipv6.conf.{scope}.accept_dad", 0)
            # A new namespace inherits IPv4 settings from the host's (Linux,
            # net.core.devconf_inherit_init_net=0): start from a known state.
            nsutil.write_sysctl("net.ipv4.ip_forward", 0)
            nsutil.write_sysctl("net.ipv6.conf.all.forwarding", 0)
            sw_fd = os.open(nsutil.NETNS_RUN_DIR / self.switch_netns, os.O_RDONLY)
            try:
                ipr.link(
                    "add",
                    ifname=host.ifname,
                    kind="veth",
                    address=host.mac,
                    peer={"ifname": host.name, "net_ns_fd": sw_fd},
                )
            finally:
                os.close(sw_fd)
            nsutil.write_sysctl(f"net.ipv6.conf.{host.ifname}.accept_dad", 0)
            if host.role == "node":
                for scope in ("all", host.ifname):
                    nsutil.write_sysctl(f"net.ipv4.conf.{scope}.arp_ignore", 1)
                    nsutil.write_sysctl(f"net.ipv4.conf.{scope}.arp_announce", 2)
            ipr.link("set", index=_index(ipr, "lo"), state="up")
            idx = _index(ipr, host.ifname)
            _add_addresses(ipr, idx, (host.ipv4, LAN4.prefixlen), (host.ipv6, LAN6.prefixlen))
            ipr.link("set", index=idx, state="up")
        with nsutil.in_netns(self.switch_netns), IPRoute() as ipr:
            port = _index(ipr, host.name)
            ipr.link("set", index=port, master=_index(ipr, BRIDGE_NAME), state="up")

    def _build_pod_network(self, node: LabHost, net: PodNetwork) -> None:
        """In the node: forwarding on, bridge ``cni0`` with the pod gateways, routes to peers."""
        with nsutil.in_netns(node.netns), IPRoute() as ipr:
            nsutil.write_sysctl("net.ipv4.ip_forward", 1)
            nsutil.write_sysctl("net.ipv6.conf.all.forwarding", 1)
            # A fixed MAC (a bridge otherwise takes its lowest port's) and no
            # snooping, as for the LAN switch.
            ipr.link(
                "add",
                ifname=POD_BRIDGE,
                kind="bridge",
                address=net.bridge_mac,
                br_mcast_snooping=0,
            )
            idx = _index(ipr, POD_BRIDGE)
            nsutil.write_sysctl(f"net.ipv6.conf.{POD_BRIDGE}.accept_dad", 0)
            _add_addresses(ipr, idx, (net.gateway4, POD_PREFIXLEN4), (net.gateway6, POD_PREFIXLEN6))
            ipr.link("set", index=idx, state="up")
        others = [n for n in self.pod_networks if n.node != node.name]
        self._add_pod_routes(node, others)

    def _add_pod_routes(self, host: LabHost, nets: Sequence[PodNetwork]) -> None:
        """Routes on ``host`` to each of ``nets`` via its node's LAN address."""
        with nsutil.in_netns(host.netns), IPRoute() as ipr:
            eth0 = _index(ipr, host.ifname)
            for net in nets:
                ipr.route("add", dst=str(net.ipv4), gateway=str(net.node_ipv4), oif=eth0)
                ipr.route("add", dst=str(net.ipv6), gateway=str(net.node_ipv6), oif=eth0)

    def _build_pod(self, port: PodPort, node: LabHost, net: PodNetwork) -> None:
        """A pod namespace, its veth pair into the node's ``cni0``, addresses, default routes."""
        pod = port.pod
        nsutil.create_netns(pod.netns)
        with nsutil.in_netns(pod.netns), IPRoute() as ipr:
            for scope in ("all", "default"):
                nsutil.write_sysctl(f"net.ipv6.conf.{scope}.accept_dad", 0)
            node_fd = os.open(nsutil.NETNS_RUN_DIR / node.netns, os.O_RDONLY)
            try:
                ipr.link(
                    "add",
                    ifname=pod.ifname,
                    kind="veth",
                    address=pod.mac,
                    peer={
                        "ifname": port.node_ifname,
                        "address": port.node_mac,
                        "net_ns_fd": node_fd,
                    },
                )
            finally:
                os.close(node_fd)
        # The node end first: IPv6 refuses a gateway route over a link without carrier.
        with nsutil.in_netns(node.netns), IPRoute() as ipr:
            end = _index(ipr, port.node_ifname)
            ipr.link("set", index=end, master=_index(ipr, POD_BRIDGE), state="up")
        with nsutil.in_netns(pod.netns), IPRoute() as ipr:
            nsutil.write_sysctl(f"net.ipv6.conf.{pod.ifname}.accept_dad", 0)
            ipr.link("set", index=_index(ipr, "lo"), state="up")
            idx = _index(ipr, pod.ifname)
            _add_addresses(ipr, idx, (pod.ipv4, POD_PREFIXLEN4), (pod.ipv6, POD_PREFIXLEN6))
            ipr.link("set", index=idx, state="up")
            ipr.route("add", dst="0.0.0.0/0", gateway=str(net.gateway4), oif=idx)
            ipr.route("add", dst="::/0", gateway=str(net.gateway6), oif=idx)


def _in_fresh_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` on a new thread and re-raise its error here.

    The sync pyroute2 IPRoute runs its own event loop, which fails on a thread
    that already runs one (an async test calling up()); a fresh thread has none,
    and its setns() calls cannot disturb the caller's namespace either.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=target, name="ironlb-lab-build")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]


def _wait_ready(name: str, proc: subprocess.Popen[str], errors: IO[str], deadline: float) -> None:
    """Block until ``proc`` prints its ``ready`` line; LabError if it exits or times out."""
    assert proc.stdout is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LabError(f"pod server {name} was not ready in time")
        readable, _, _ = select.select([proc.stdout], [], [], left)
        if not readable:
            continue
        line = proc.stdout.readline()
        if line.startswith("ready "):
            return
        if not line:  # EOF: it exited
            proc.wait(timeout=DEFAULT_TIMEOUT)
            errors.seek(0)
            why = errors.read().strip().splitlines()
            raise LabError(
                f"pod server {name} exited with {proc.returncode}: "
                f"{why[-1] if why else 'no error output'}"
            )


def _add_addresses(
    ipr: IPRoute, index: int, v4: tuple[IPv4Address, int], v6: tuple[IPv6Address, int]
) -> None:
    """An IPv4 and an IPv6 address (without duplicate address detection) on one link."""
    ipr.addr("add", index=index, address=str(v4[0]), prefixlen=v4[1])
    ipr.addr("add", index=index, address=str(v6[0]), prefixlen=v6[1], flags=IFA_F_NODAD)


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"interface {ifname!r} not found")
    return int(found[0])


def _stop(proc: subprocess.Popen[Any], grace: float = 2.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=grace)


def cleanup_stale(prefix: str) -> list[str]:
    """Remove every namespace named ``<prefix>-*`` and kill the processes left in it.

    For tearing down after a crash (or a CLI ``up``). Returns the removed names.
    """
    validate_prefix(prefix)
    # Pods, then hosts, the switch last: pods and hosts hold the processes.
    names = cleanup_order(prefix, nsutil.list_netns(prefix))
    for name in names:
        nsutil.kill_netns_pids(name)
        nsutil.remove_netns(name)
    return names


@contextlib.contextmanager
def lab(
    nodes: int = 2,
    backends: int = 1,
    prefix: str | None = None,
    pods_per_node: int = 0,
    pod_network: bool = False,
) -> Iterator[Lab]:
    """``with lab() as l:`` — a Lab that is up inside the block and removed after."""
    the_lab = Lab(
        nodes=nodes,
        backends=backends,
        prefix=prefix,
        pods_per_node=pods_per_node,
        pod_network=pod_network,
    )
    with the_lab:
        yield the_lab
