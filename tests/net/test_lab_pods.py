"""Pods in the namespace lab: layout, routing between nodes, the pod server, teardown, CLI."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from ironlb.lab.netlab import Lab, LabError, LabHost, cleanup_stale
from ironlb.lab.netlab.nsutil import list_netns, netns_pids, read_sysctl
from ironlb.lab.netlab.plan import random_prefix

from .lab_crash import crashed_lab, pid_alive, wait_gone

pytestmark = pytest.mark.root

LabFactory = Callable[..., Lab]
CLI = [sys.executable, "-m", "ironlb.cli", "lab", "net"]


@pytest.fixture
def pods_lab(lab_factory: LabFactory) -> Lab:
    return lab_factory(nodes=3, backends=0, pods_per_node=2)


def _addr(host: LabHost, family: int) -> IPv4Address | IPv6Address:
    return host.ipv4 if family == 4 else host.ipv6


def _ping(lab: Lab, src: LabHost, dst: IPv4Address | IPv6Address) -> bool:
    res = lab.run(src, "ping", f"-{dst.version}", "-c", "1", "-W", "3", str(dst), check=False)
    return res.returncode == 0


def _show(peer: tuple[str, int] | tuple[str, int, int, int]) -> str:
    ip = ip_address(peer[0])
    return f"{ip}:{peer[1]}" if ip.version == 4 else f"[{ip}]:{peer[1]}"


def _connect(lab: Lab, src: LabHost, dst: IPv4Address | IPv6Address, port: int) -> socket.socket:
    """A TCP connection made from inside ``src``'s namespace."""
    with lab.in_netns(src):
        return socket.create_connection((str(dst), port), timeout=5)


def _recv_until_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_pods_are_planned_and_built_on_their_nodes(pods_lab: Lab) -> None:
    lab = pods_lab
    assert [p.name for p in lab.pods] == [f"node{n}-pod{m}" for n in (1, 2, 3) for m in (1, 2)]
    node2 = lab.host("node2")
    assert [p.name for p in lab.pods_on(node2)] == ["node2-pod1", "node2-pod2"]
    assert lab.pods_on("node3") == lab.pods[4:]
    assert lab.host("node2-pod1").node == "node2"
    with pytest.raises(KeyError, match="no lab node"):
        lab.pods_on("client")
    # Every namespace shares the run prefix, so `down --prefix` finds them all.
    assert set(list_netns(lab.prefix)) == {lab.switch_netns} | {
        h.netns for h in lab.hosts + lab.pods
    }
    for pod in lab.pods:
        link = json.loads(lab.run(pod, "ip", "-j", "addr", "show", "eth0").stdout)[0]
        assert link["address"] == pod.mac and link["operstate"] == "UP"
        have = {(a["local"], a["prefixlen"]) for a in link["addr_info"]}
        assert {(str(pod.ipv4), 24), (str(pod.ipv6), 64)} <= have
        net = lab.pod_network(pod.node or "")
        routes4 = json.loads(lab.run(pod, "ip", "-j", "route", "show", "default").stdout)
        routes6 = json.loads(lab.run(pod, "ip", "-j", "-6", "route", "show", "default").stdout)
        assert [r["gateway"] for r in routes4] == [str(net.gateway4)]
        assert [r["gateway"] for r in routes6] == [str(net.gateway6)]


def test_pod_veths_hang_off_cni0_not_the_lan(pods_lab: Lab) -> None:
    lab = pods_lab
    for node in lab.nodes:
        net = lab.pod_network(node)
        ports = json.loads(lab.run(node, "ip", "-j", "link", "show", "master", "cni0").stdout)
        assert sorted(p["ifname"] for p in ports) == ["p1", "p2"]
        cni0 = json.loads(lab.run(node, "ip", "-j", "addr", "show", "cni0").stdout)[0]
        assert cni0["address"] == net.bridge_mac
        have = {a["local"] for a in cni0["addr_info"]}
        assert {str(net.gateway4), str(net.gateway6)} <= have
        eth0 = json.loads(lab.run(node, "ip", "-j", "link", "show", "eth0").stdout)[0]
        assert "master" not in eth0
    # The LAN switch holds only the LAN hosts' ports, no pod.
    bridge = subprocess.run(
        ["ip", "netns", "exec", lab.switch_netns, "ip", "-j", "link", "show", "master", "br0"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert {link["ifname"] for link in json.loads(bridge.stdout)} == {h.name for h in lab.hosts}


def test_forwarding_is_on_in_nodes_only_and_arp_settings_are_kept(pods_lab: Lab) -> None:
    lab = pods_lab
    root = (read_sysctl("net.ipv4.ip_forward"), read_sysctl("net.ipv6.conf.all.forwarding"))
    for host in lab.hosts + lab.pods:
        with lab.in_netns(host):
            forward = (
                read_sysctl("net.ipv4.ip_forward"),
                read_sysctl("net.ipv6.conf.all.forwarding"),
            )
            arp = (
                read_sysctl("net.ipv4.conf.eth0.arp_ignore"),
                read_sysctl("net.ipv4.conf.all.arp_announce"),
            )
        assert forward == (("1", "1") if host.role == "node" else ("0", "0")), host.name
        assert arp == (("1", "2") if host.role == "node" else ("0", "0")), host.name
    assert (read_sysctl("net.ipv4.ip_forward"), read_sysctl("net.ipv6.conf.all.forwarding")) == root


def test_a_lab_without_pods_keeps_forwarding_off(lab: Lab) -> None:
    for node in lab.nodes:
        with lab.in_netns(node):
            assert read_sysctl("net.ipv4.ip_forward") == "0"
            assert read_sysctl("net.ipv6.conf.all.forwarding") == "0"
    assert lab.pods == [] and lab.pod_networks == []
    with pytest.raises(LabError, match="has no pods"):
        lab.start_pod_servers()


@pytest.mark.parametrize("family", [4, 6])
def test_every_node_reaches_every_pod(pods_lab: Lab, family: int) -> None:
    lab = pods_lab
    unreachable = [
        (node.name, pod.name)
        for node in lab.nodes
        for pod in lab.pods
        if not _ping(lab, node, _addr(pod, family))
    ]
    assert unreachable == []


@pytest.mark.parametrize("family", [4, 6])
def test_pods_reach_the_client_and_pods_on_other_nodes(pods_lab: Lab, family: int) -> None:
    lab = pods_lab
    first, last = lab.pods[0], lab.pods[-1]
    assert _ping(lab, first, _addr(lab.client, family))
    assert _ping(lab, last, _addr(lab.client, family))
    assert _ping(lab, first, _addr(last, family))
    # The client holds the pod routes ("a LAN router that knows the pod CIDRs").
    assert _ping(lab, lab.client, _addr(last, family))


@pytest.mark.parametrize("family", [4, 6])
def test_a_pod_connects_to_the_client_with_its_own_address(pods_lab: Lab, family: int) -> None:
    lab = pods_lab
    pod = lab.pods_on("node3")[1]
    kind = socket.AF_INET if family == 4 else socket.AF_INET6
    with lab.in_netns(lab.client):
        listener = socket.socket(kind, socket.SOCK_STREAM)
    with listener:
        listener.bind((str(_addr(lab.client, family)), 0))
        listener.listen()
        listener.settimeout(5)
        port = listener.getsockname()[1]
        with _connect(lab, pod, _addr(lab.client, family), port):
            conn, peer = listener.accept()
            conn.close()
    assert ip_address(peer[0]) == _addr(pod, family)


@pytest.mark.parametrize("family", [4, 6])
def test_podserver_tcp_shows_the_name_and_the_unnatted_peer(pods_lab: Lab, family: int) -> None:
    lab = pods_lab
    servers = lab.start_pod_servers()
    assert sorted(servers) == sorted(p.name for p in lab.pods)
    pod, node1 = lab.host("node2-pod1"), lab.host("node1")
    with _connect(lab, node1, _addr(pod, family), 8080) as sock:
        local = sock.getsockname()
        # Another node's pod sees this node's LAN address: routed, not NATed.
        assert ip_address(local[0]) == _addr(node1, family)
        sock.sendall(b"ping\n")
        sock.sendall(b"pong")
        sock.shutdown(socket.SHUT_WR)  # half-close: the echo still comes back
        got = _recv_until_eof(sock)
    assert got == f"node2-pod1 {_show(local)}\nping\npong".encode()


@pytest.mark.parametrize("family", [4, 6])
def test_podserver_greets_a_silent_client_and_echoes(pods_lab: Lab, family: int) -> None:
    lab = pods_lab
    lab.start_pod_servers()
    pod, node = lab.host("node1-pod2"), lab.host("node1")
    with _connect(lab, node, _addr(pod, family), 8080) as sock:
        local = sock.getsockname()
        line = sock.recv(1024)
        # From its own node, a pod sees the node's cni0 gateway address.
        gateway = lab.pod_network(node).gateway4 if family == 4 else lab.pod_network(node).gateway6
        assert ip_address(local[0]) == gateway
        assert line == f"node1-pod2 {_show(local)}\n".encode()
        for _ in range(3):
            sock.sendall(b"x" * 1000)
            echoed = b""
            while len(echoed) < 1000:
                echoed += sock.recv(4096)
            assert echoed == b"x" * 1000


@pytest.mark.parametrize("family", [4, 6])
def test_podserver_udp_answers_each_datagram(pods_lab: Lab, family: int) -> None:
    lab = pods_lab
    lab.start_pod_servers()
    pod, node3 = lab.host("node1-pod1"), lab.host("node3")
    kind = socket.AF_INET if family == 4 else socket.AF_INET6
    with lab.in_netns(node3):
        sock = socket.socket(kind, socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(5)
        sock.connect((str(_addr(pod, family)), 8053))
        local = sock.getsockname()
        for payload in (b"a", b"b" * 500):
            sock.send(payload)
            assert sock.recv(1024) == f"node1-pod1 {_show(local)}\n".encode()
    assert ip_address(local[0]) == _addr(node3, family)


@pytest.mark.parametrize("family", [4, 6])
def test_podserver_http_via_curl(pods_lab: Lab, family: int) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (apt-get install -y curl)")
    lab = pods_lab
    lab.start_pod_servers()
    pod, node1 = lab.host("node3-pod2"), lab.host("node1")
    host = str(pod.ipv4) if family == 4 else f"[{pod.ipv6}]"
    curl = [
        "curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", "5", "--include",
        f"http://{host}:8080/some/path",
    ]  # fmt: skip
    # Bytes, not text: text mode would turn the CRLFs of the head into LFs.
    res = subprocess.run(
        ["ip", "netns", "exec", node1.netns, *curl], capture_output=True, timeout=30, check=True
    )
    head, _, body = res.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.0 200 OK"
    assert f"Content-Length: {len(body)}" in lines
    name, peer = body.decode().rstrip("\n").split(" ")
    assert name == "node3-pod2"
    assert ip_address(peer.rsplit(":", 1)[0].strip("[]")) == _addr(node1, family)


def test_podserver_ports_and_bad_sockets(pods_lab: Lab) -> None:
    lab = pods_lab
    lab.start_pod_servers(tcp=(9000, 9001), udp=())
    pod, node = lab.host("node2-pod2"), lab.host("node1")
    for port in (9000, 9001):
        with _connect(lab, node, pod.ipv4, port) as sock:
            sock.sendall(b"hi")
            sock.shutdown(socket.SHUT_WR)
            assert _recv_until_eof(sock).endswith(b"\nhi")
    # A second server on the same port: one clear line, exit status 1.
    res = lab.run(
        pod,
        sys.executable,
        "-m",
        "ironlb.lab.podserver",
        "--name",
        "x",
        "--tcp",
        "9000",
        check=False,
    )
    assert res.returncode == 1
    assert res.stderr.strip() == (
        "podserver: cannot listen on tcp 0.0.0.0:9000: Address already in use"
    )
    # The same through the lab: a clear LabError, and the new servers are stopped.
    before = dict(lab.pod_servers)
    with pytest.raises(
        LabError, match=r"node1-pod1 exited with 1: podserver: cannot listen on tcp"
    ):
        lab.start_pod_servers(tcp=(9000,), udp=(9053,))
    assert lab.pod_servers == before
    assert all(proc.poll() is None for proc in before.values())


def test_podserver_exits_zero_on_sigterm(pods_lab: Lab) -> None:
    lab = pods_lab
    servers = lab.start_pod_servers()
    proc = servers["node1-pod1"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_down_removes_pods_and_their_servers(lab_factory: LabFactory) -> None:
    lab = lab_factory(nodes=2, backends=0, pods_per_node=2)
    pids = [proc.pid for proc in lab.start_pod_servers().values()]
    assert all(netns_pids(p.netns) for p in lab.pods)
    lab.down()
    assert not list_netns(lab.prefix)
    assert not wait_gone(pids)


def test_cli_down_after_a_crash_kills_pod_servers(tmp_path) -> None:
    body = """
        lab = Lab(nodes=2, backends=0, pods_per_node=1, prefix=sys.argv[1])
        lab.up()
        servers = lab.start_pod_servers()
        print(" ".join(str(p.pid) for p in servers.values()), flush=True)
    """
    with crashed_lab(tmp_path, body) as (prefix, line):
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2 and all(pid_alive(p) for p in pids)
        assert len(list_netns(prefix)) == 6  # sw, client, 2 nodes, 2 pods
        down = subprocess.run(
            [*CLI, "down", "--prefix", prefix, "--json"], capture_output=True, text=True
        )
        assert down.returncode == 0, down.stderr
        removed = json.loads(down.stdout)["removed"]
        assert removed[:2] == [f"{prefix}-node1-pod1", f"{prefix}-node2-pod1"]
        assert removed[-1] == f"{prefix}-sw"
        assert not list_netns(prefix)
        assert not wait_gone(pids)


def test_cli_up_with_pods_and_servers_json() -> None:
    prefix = random_prefix()
    try:
        up = subprocess.run(
            [
                *CLI,
                "up",
                "--nodes",
                "2",
                "--backends",
                "0",
                "--pods-per-node",
                "2",
                "--serve",
                "--prefix",
                prefix,
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert up.returncode == 0, up.stderr
        data = json.loads(up.stdout)
        pods = {p["name"]: p for p in data["pods"]}
        assert list(pods) == ["node1-pod1", "node1-pod2", "node2-pod1", "node2-pod2"]
        pod = pods["node2-pod2"]
        assert (pod["node"], pod["netns"], pod["ipv4"], pod["ipv6"]) == (
            "node2",
            f"{prefix}-node2-pod2",
            "198.19.2.12",
            "fd00:198:19:2::12",
        )
        assert [n["ipv4"] for n in data["pod_networks"]] == ["198.19.1.0/24", "198.19.2.0/24"]
        assert set(data["pod_servers"]["pids"]) == set(pods)
        # The servers outlive the CLI: ask one over UDP from node1.
        node1 = next(h for h in data["hosts"] if h["name"] == "node1")
        ask = textwrap.dedent(
            f"""
            import socket
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.settimeout(5)
            s.sendto(b"?", ("{pod["ipv6"]}", 8053))
            print(s.recv(100).decode(), end="")
            """
        )
        res = subprocess.run(
            ["ip", "netns", "exec", node1["netns"], sys.executable, "-c", ask],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert res.stdout.startswith(f"node2-pod2 [{node1['ipv6']}]:"), res.stderr
        pids = list(data["pod_servers"]["pids"].values())
        down = subprocess.run([*CLI, "down", "--prefix", prefix], capture_output=True, text=True)
        assert down.returncode == 0, down.stderr
        assert "removed 8 namespace(s)" in down.stdout
        assert not list_netns(prefix)
        assert not wait_gone(pids)
    finally:
        cleanup_stale(prefix)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pods-per-node", "500"], "pods_per_node must be 0..200, got 500"),
        (["--pods-per-node", "-1"], "pods_per_node must be 0..200, got -1"),
        (["--serve"], "--serve needs --pods-per-node 1 or more"),
    ],
)
def test_cli_rejects_bad_pod_input(args: list[str], message: str) -> None:
    bad = subprocess.run([*CLI, "up", *args], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"ironlb lab net: {message}"


def test_lab_up_time_with_three_nodes_by_two_pods(lab_factory: LabFactory, capsys) -> None:
    started = time.monotonic()
    lab = lab_factory(nodes=3, backends=0, pods_per_node=2)
    took_up = time.monotonic() - started
    started = time.monotonic()
    lab.start_pod_servers()
    took_serve = time.monotonic() - started
    assert len(list_netns(lab.prefix)) == 1 + 4 + 6
    with capsys.disabled():
        print(
            f"\nlab up, 3 nodes x 2 pods: {took_up * 1000:.0f} ms; "
            f"6 pod servers ready: {took_serve * 1000:.0f} ms"
        )
