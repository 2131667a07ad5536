"""The namespace lab itself: reachability, layout, isolation, teardown, crash clean-up, CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ironlb.lab.netlab import Lab, LabError, cleanup_stale
from ironlb.lab.netlab.nsutil import list_netns, netns_pids, read_sysctl
from ironlb.lab.netlab.plan import random_prefix

from .lab_crash import crashed_lab, pid_alive, wait_gone

pytestmark = pytest.mark.root


def _netns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("family", [4, 6])
def test_client_pings_node_and_backend(lab: Lab, family: int) -> None:
    for target in (lab.nodes[0], lab.backends[0]):
        addr = target.ipv4 if family == 4 else target.ipv6
        res = lab.run(lab.client, "ping", f"-{family}", "-c", "1", "-W", "5", str(addr))
        assert "1 received" in res.stdout


def test_hosts_have_planned_macs_and_addresses(lab: Lab) -> None:
    assert [h.name for h in lab.hosts] == ["client", "node1", "node2", "backend1"]
    for host in lab.hosts:
        link = json.loads(lab.run(host, "ip", "-j", "link", "show", "eth0").stdout)[0]
        assert link["address"] == host.mac
        assert link["operstate"] == "UP"
        addrs = json.loads(lab.run(host, "ip", "-j", "addr", "show", "eth0").stdout)[0]
        have = {(a["local"], a["prefixlen"]) for a in addrs["addr_info"]}
        assert (str(host.ipv4), 24) in have
        assert (str(host.ipv6), 64) in have
        # DAD is off, so the global IPv6 address is usable at once (never "tentative").
        v6 = next(a for a in addrs["addr_info"] if a["local"] == str(host.ipv6))
        assert not v6.get("tentative", False)
        lo = json.loads(lab.run(host, "ip", "-j", "link", "show", "lo").stdout)[0]
        assert "UP" in lo["flags"]


def test_veth_peers_live_in_the_switch_namespace(lab: Lab) -> None:
    for host in lab.hosts:
        out = lab.run(host, "ip", "link", "show", "eth0").stdout
        assert f"link-netns {lab.switch_netns}" in out
    bridge = subprocess.run(
        ["ip", "netns", "exec", lab.switch_netns, "ip", "-j", "link", "show", "master", "br0"],
        check=True,
        capture_output=True,
        text=True,
    )
    ports = {link["ifname"] for link in json.loads(bridge.stdout)}
    assert ports == {h.name for h in lab.hosts}


def test_node_sysctls_are_set_only_in_node_namespaces(lab: Lab) -> None:
    root_before = read_sysctl("net.ipv4.conf.all.arp_ignore")
    for host in lab.hosts:
        with lab.in_netns(host):
            ignore = read_sysctl("net.ipv4.conf.eth0.arp_ignore")
            announce = read_sysctl("net.ipv4.conf.all.arp_announce")
            dad = read_sysctl("net.ipv6.conf.eth0.accept_dad")
        assert dad == "0"
        if host.role == "node":
            assert (ignore, announce) == ("1", "2")
        else:
            assert (ignore, announce) == ("0", "0")
    assert read_sysctl("net.ipv4.conf.all.arp_ignore") == root_before


def test_in_netns_creates_sockets_there_and_restores(lab: Lab) -> None:
    own = os.stat("/proc/thread-self/ns/net").st_ino
    node = lab.nodes[0]
    with lab.in_netns(node):
        assert os.stat("/proc/thread-self/ns/net").st_ino != own
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((str(node.ipv4), 0))
    assert os.stat("/proc/thread-self/ns/net").st_ino == own
    try:
        listener.listen()
        port = listener.getsockname()[1]
        # The socket stays in the node's namespace: the client reaches it there.
        res = lab.run(
            lab.client,
            sys.executable,
            "-c",
            f"import socket; socket.create_connection(('{node.ipv4}', {port}), timeout=5)",
        )
        assert res.returncode == 0
        conn, peer = listener.accept()
        conn.close()
        assert peer[0] == str(lab.client.ipv4)
    finally:
        listener.close()


async def test_lab_builds_from_inside_a_running_event_loop(lab_factory) -> None:
    lab = lab_factory(nodes=1, backends=0)
    res = lab.run(lab.client, "ping", "-c", "1", "-W", "5", str(lab.nodes[0].ipv6))
    assert "1 received" in res.stdout


def test_run_reports_failures(lab: Lab) -> None:
    with pytest.raises(subprocess.CalledProcessError):
        lab.run(lab.client, "false")
    assert lab.run(lab.client, "false", check=False).returncode == 1
    ghost = Lab(prefix=random_prefix())  # planned, never brought up
    with pytest.raises(FileNotFoundError, match="does not exist"), ghost.in_netns(ghost.client):
        pass


def test_down_removes_namespaces_and_processes(lab_factory) -> None:
    lab = lab_factory(nodes=1, backends=2)
    tracked = lab.popen(lab.nodes[0], "sleep", "600")
    # A process the lab does not know about, left in a backend namespace.
    stray = subprocess.Popen(["ip", "netns", "exec", lab.backends[1].netns, "sleep", "600"])
    try:
        deadline = time.monotonic() + 5
        while not netns_pids(lab.backends[1].netns) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(_netns_list()) >= 4
        lab.down()
        stray.wait(timeout=5)  # raises TimeoutExpired if down() left it running
        tracked.wait(timeout=5)
        assert not [n for n in _netns_list() if n.startswith(lab.prefix + "-")]
    finally:
        stray.kill()
        stray.wait()


def test_prefix_in_use_is_refused(lab: Lab) -> None:
    second = Lab(prefix=lab.prefix)
    with pytest.raises(LabError, match="in use"):
        second.up()
    second.down()
    # The refused second lab removed nothing of the first one.
    assert len(list_netns(lab.prefix)) == 1 + len(lab.hosts)


def test_cleanup_after_crash(tmp_path) -> None:
    body = """
        lab = Lab(nodes=1, backends=1, prefix=sys.argv[1])
        lab.up()
        child = subprocess.Popen(["ip", "netns", "exec", lab.nodes[0].netns, "sleep", "600"])
        print(child.pid, flush=True)
    """
    with crashed_lab(tmp_path, body) as (prefix, line):
        leftover = int(line)
        # The crashed run left its namespaces and a process behind.
        assert len(list_netns(prefix)) == 4
        assert pid_alive(leftover)
        cli = [sys.executable, "-m", "ironlb.cli", "lab", "net"]
        again = subprocess.run([*cli, "up", "--prefix", prefix], capture_output=True, text=True)
        assert again.returncode == 2
        assert "in use" in again.stderr
        removed = cleanup_stale(prefix)
        assert sorted(removed) == sorted(
            f"{prefix}-{n}" for n in ("sw", "client", "node1", "backend1")
        )
        assert not list_netns(prefix)
        assert not wait_gone([leftover])
        assert cleanup_stale(prefix) == []


def test_cli_up_and_down_json() -> None:
    prefix = random_prefix()
    cli = [sys.executable, "-m", "ironlb.cli", "lab", "net"]
    try:
        up = subprocess.run(
            [*cli, "up", "--nodes", "3", "--backends", "2", "--prefix", prefix, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert up.returncode == 0, up.stderr
        data = json.loads(up.stdout)
        assert data["prefix"] == prefix
        names = [h["name"] for h in data["hosts"]]
        assert names == ["client", "node1", "node2", "node3", "backend1", "backend2"]
        assert set(_netns_list()) >= {h["netns"] for h in data["hosts"]} | {f"{prefix}-sw"}
        node3 = data["hosts"][3]
        shown = subprocess.run(
            ["ip", "netns", "exec", node3["netns"], "ip", "-j", "link", "show", "eth0"],
            check=True,
            capture_output=True,
            text=True,
        )
        assert json.loads(shown.stdout)[0]["address"] == node3["mac"]
        client_ns, backend2_v6 = data["hosts"][0]["netns"], data["hosts"][5]["ipv6"]
        ping = subprocess.run(
            ["ip", "netns", "exec", client_ns, "ping", "-c1", "-W5", backend2_v6],
            capture_output=True,
            text=True,
        )
        assert ping.returncode == 0, ping.stdout
        down = subprocess.run(
            [*cli, "down", "--prefix", prefix, "--json"], capture_output=True, text=True
        )
        assert down.returncode == 0, down.stderr
        assert len(json.loads(down.stdout)["removed"]) == 7
        assert not [n for n in _netns_list() if n.startswith(prefix + "-")]
    finally:
        cleanup_stale(prefix)


def test_cli_rejects_bad_input() -> None:
    cli = [sys.executable, "-m", "ironlb.cli", "lab", "net"]
    bad = subprocess.run([*cli, "up", "--prefix", "Bad-Prefix"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "invalid lab prefix" in bad.stderr
    many = subprocess.run([*cli, "up", "--nodes", "500"], capture_output=True, text=True)
    assert many.returncode == 2
    assert "nodes must be" in many.stderr
