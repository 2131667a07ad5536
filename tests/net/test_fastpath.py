"""The nftables fast path in the namespace lab (root).

node1 holds the table (forwarding on); the client routes the VIPs via node1;
three backends answer TCP and UDP, IPv4 and IPv6, with their own name. Checked
from the client: exact round-robin, not-ready backends skipped, a listener with
no ready backend refuses (RST / ICMP unreachable), an open connection keeps its
backend across table replacements (conntrack), removal leaves no table, bad
input leaves the old table alone, and ``ironlb forward`` with ``mode: nftables``
applies, follows health checks and removes the table on SIGTERM.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from ironlb.dataplane.fastpath.kernel_path import KernelPath
from ironlb.dataplane.fastpath.nftables import (
    NftError,
    apply_state,
    forwarding_off,
    list_table,
    remove_table,
    run_nft,
    table_exists,
)
from ironlb.dataplane.fastpath.render import RenderError, affinity_set, parse_pins, render_table
from ironlb.dataplane.state import PROTOCOLS, Backend, DesiredState, ListenerKey, ListenerOptions
from ironlb.lab.netlab import Lab
from ironlb.lab.netlab.nsutil import write_sysctl
from tests.net.conftest import LabFactory
from tests.net.forward_helpers import forward_without_capability, start_forward
from tests.net.l2_helpers import wait_for

pytestmark = pytest.mark.root

PORT = 8080  # the listener port
BACKEND_PORT = 9000

# TCP: send "<name>\n", then echo every line as "<name>:<line>". UDP: answer <name>.
# Dual-stack sockets on "::" serve IPv4 and IPv6.
BACKEND = """
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
def serve(conn):
    with conn:
        conn.sendall((name + "\\n").encode())
        buf = b""
        while True:
            data = conn.recv(4096)
            if not data:
                return
            buf += data
            while b"\\n" in buf:
                line, buf = buf.split(b"\\n", 1)
                conn.sendall(name.encode() + b":" + line + b"\\n")
def tcp():
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("::", port))
    srv.listen(128)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
udp.bind(("::", port))
threading.Thread(target=tcp, daemon=True).start()
print("listening", flush=True)
while True:
    data, peer = udp.recvfrom(2048)
    udp.sendto(name.encode(), peer)
"""

# argv: proto addr port count -> one line per fresh connection: the backend's name,
# or "refused" (TCP RST / ICMP port unreachable), "timeout" or another error's name.
# UDP retries like a real UDP client: the kernel rate-limits ICMP errors per host
# (IcmpOutRateLimitHost), so a single probe may go unanswered.
CLIENT = """
import socket, sys
proto, addr, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
def udp(s):
    for _ in range(4):
        s.send(b"who")
        try:
            return s.recv(100).decode()
        except TimeoutError:
            continue
    raise TimeoutError
for _ in range(count):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as s:
        s.settimeout(5 if proto == "tcp" else 1.2)
        try:
            s.connect((addr, port))
            if proto == "udp":
                print(udp(s), flush=True)
            else:
                print(s.makefile().readline().strip(), flush=True)
        except ConnectionRefusedError:
            print("refused", flush=True)
        except TimeoutError:
            print("timeout", flush=True)
        except OSError as exc:
            print(exc.__class__.__name__, flush=True)
"""

# One long-lived TCP connection: prints the greeting, then echoes stdin lines through it.
LONG_CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
f = s.makefile("rw")
print(f.readline().strip(), flush=True)
for line in sys.stdin:
    f.write(line)
    f.flush()
    print(f.readline().strip(), flush=True)
"""


SERVERS: dict[str, subprocess.Popen[Any]] = {}


@pytest.fixture
def fplab(lab_factory: LabFactory) -> Iterator[Lab]:
    """1 node routing the VIPs, 3 backends serving; the table is removed at the end.

    The backend servers are in ``SERVERS`` by host name (the lab kills them).
    """
    lab = lab_factory(nodes=1, backends=3)
    SERVERS.clear()
    node = lab.nodes[0]
    for key in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"):
        lab.run(node, "sysctl", "-qw", key)
    for family in (4, 6):
        vip, via = lab.vip(0, family), node.ipv4 if family == 4 else node.ipv6
        lab.run(lab.client, "ip", f"-{family}", "route", "add", str(vip), "via", str(via))
    for backend in lab.backends:
        proc = lab.popen(
            backend,
            sys.executable,
            "-c",
            BACKEND,
            backend.name,
            str(BACKEND_PORT),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "listening"
        SERVERS[backend.name] = proc
    yield lab
    with lab.in_netns(node):
        remove_table()


def _state(lab: Lab, family: int, ready: list[bool] | None = None) -> DesiredState:
    """tcp and udp listeners on VIP 0 of ``family`` over the backends."""
    ready = ready if ready is not None else [True] * len(lab.backends)
    backends = [
        Backend(b.ipv4 if family == 4 else b.ipv6, BACKEND_PORT, r)
        for b, r in zip(lab.backends, ready, strict=True)
    ]
    vip = lab.vip(0, family)
    return DesiredState.build((ListenerKey(vip, proto, PORT), backends) for proto in PROTOCOLS)


def _both(lab: Lab, ready: list[bool] | None = None) -> DesiredState:
    four, six = _state(lab, 4, ready), _state(lab, 6, ready)
    return DesiredState(listeners={**four.listeners, **six.listeners})


def _apply(lab: Lab, state: DesiredState) -> None:
    with lab.in_netns(lab.nodes[0]):
        apply_state(state)


def _ask(lab: Lab, proto: str, vip: IPv4Address | IPv6Address, count: int) -> list[str]:
    out = lab.run(lab.client, sys.executable, "-c", CLIENT, proto, str(vip), str(PORT), str(count))
    return out.stdout.split()


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_new_flows_go_round_robin_over_all_backends(fplab: Lab, family: int, proto: str) -> None:
    _apply(fplab, _both(fplab))
    names = _ask(fplab, proto, fplab.vip(0, family), 6)
    # numgen inc: strict rotation, so each backend gets exactly 2 of 6.
    assert Counter(names) == {b.name: 2 for b in fplab.backends}
    assert names[:3] == names[3:]


def test_not_ready_backends_get_nothing_and_none_ready_refuses(fplab: Lab) -> None:
    _apply(fplab, _both(fplab, ready=[True, False, True]))
    b1, _, b3 = (b.name for b in fplab.backends)
    for proto in ("tcp", "udp"):
        assert Counter(_ask(fplab, proto, fplab.vip(0, 4), 4)) == {b1: 2, b3: 2}
    _apply(fplab, _both(fplab, ready=[False, False, False]))
    for family in (4, 6):
        for proto in ("tcp", "udp"):
            # Refused at once (RST / ICMP port unreachable), not a silent timeout.
            assert _ask(fplab, proto, fplab.vip(0, family), 2) == ["refused", "refused"]


def test_open_connections_keep_their_backend_across_table_changes(fplab: Lab) -> None:
    _apply(fplab, _both(fplab))
    vip = fplab.vip(0, 4)
    long = fplab.popen(
        fplab.client,
        sys.executable,
        "-c",
        LONG_CLIENT,
        str(vip),
        str(PORT),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert long.stdin is not None and long.stdout is not None
    first = long.stdout.readline().strip()
    index = [b.name for b in fplab.backends].index(first)

    def echo(word: str) -> str:
        assert long.stdin is not None and long.stdout is not None
        long.stdin.write(word + "\n")
        long.stdin.flush()
        return str(long.stdout.readline()).strip()

    try:
        # Take its backend out of the set: new flows avoid it, the open one stays.
        ready = [i != index for i in range(3)]
        _apply(fplab, _both(fplab, ready=ready))
        assert first not in _ask(fplab, "tcp", vip, 4)
        assert echo("one") == f"{first}:one"
        # No backend at all: new flows are refused, the open one still works.
        _apply(fplab, _both(fplab, ready=[False] * 3))
        assert _ask(fplab, "tcp", vip, 1) == ["refused"]
        assert echo("two") == f"{first}:two"
        # Back to all: still the same backend for the open connection.
        _apply(fplab, _both(fplab))
        assert echo("three") == f"{first}:three"
    finally:
        long.kill()
        long.wait(5)


def test_local_clients_reach_a_loopback_vip_through_the_output_hook(fplab: Lab) -> None:
    """DNAT of locally generated traffic, loopback to loopback (no route_localnet)."""
    node = fplab.nodes[0]
    server = fplab.popen(
        node, sys.executable, "-c", BACKEND, "local", str(BACKEND_PORT), stdout=subprocess.PIPE
    )
    assert server.stdout is not None and server.stdout.readline().strip() == b"listening"
    vip = IPv4Address("127.0.0.10")
    backend = Backend(IPv4Address("127.0.0.1"), BACKEND_PORT)
    with fplab.in_netns(node):
        apply_state(DesiredState.build([(ListenerKey(vip, "tcp", PORT), [backend])]))
    out = fplab.run(node, sys.executable, "-c", CLIENT, "tcp", str(vip), str(PORT), "2")
    assert out.stdout.split() == ["local", "local"]
    route_localnet = fplab.run(node, "sysctl", "-n", "net.ipv4.conf.lo.route_localnet")
    assert route_localnet.stdout.strip() == "0"


def test_forwarding_sysctls_are_checked_per_namespace(fplab: Lab) -> None:
    state = _both(fplab)
    with fplab.in_netns(fplab.nodes[0]):
        assert forwarding_off(state) == []
    with fplab.in_netns(fplab.backends[0]):
        # A new namespace may inherit the host's forwarding settings
        # (net.core.devconf_inherit_init_net): set what this test depends on.
        write_sysctl("net.ipv4.ip_forward", 0)
        write_sysctl("net.ipv6.conf.all.forwarding", 0)
        assert forwarding_off(state) == ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]
        assert forwarding_off(_state(fplab, 6)) == ["net.ipv6.conf.all.forwarding"]


def test_removal_leaves_no_table_and_bad_input_keeps_the_old_one(fplab: Lab) -> None:
    node = fplab.nodes[0]
    state = _both(fplab)
    _apply(fplab, state)
    with fplab.in_netns(node):
        before = run_nft("list table inet ironlb")
        # Rejected by the renderer: nothing reaches the kernel.
        mixed = DesiredState.build(
            [(ListenerKey(fplab.vip(1), "tcp", 80), [Backend(fplab.backends[0].ipv6, 80)])]
        )
        with pytest.raises(RenderError, match="IPv6 backend"):
            apply_state(mixed)
        # Rejected by the kernel half-way through the batch: all or nothing.
        broken = render_table(state).replace(
            "chain postrouting {", "chain postrouting {\n\t\tno such statement"
        )
        with pytest.raises(NftError, match="syntax error"):
            run_nft(broken)
        assert run_nft("list table inet ironlb") == before
        remove_table()
        assert not table_exists()
        remove_table()  # idempotent
    assert "ironlb" not in fplab.run(node, "nft", "list", "tables").stdout
    # Without the table nothing forwards the VIP any more.
    (answer,) = _ask(fplab, "tcp", fplab.vip(0, 4), 1)
    assert answer not in {b.name for b in fplab.backends}


def _config(lab: Lab) -> str:
    backends4 = ", ".join(f"'{b.ipv4}:{BACKEND_PORT}'" for b in lab.backends)
    backends6 = ", ".join(f"'[{b.ipv6}]:{BACKEND_PORT}'" for b in lab.backends)
    return (
        "defaults:\n"
        "  mode: nftables\n"
        "  health_check: {interval: 0.2, timeout: 0.5, rise: 1, fall: 1}\n"
        "listeners:\n"
        f"  - {{address: {lab.vip(0)}, port: {PORT}, backends: [{backends4}]}}\n"
        f"  - {{address: {lab.vip(0)}, port: {PORT}, protocol: udp, backends: [{backends4}]}}\n"
        f"  - {{address: '{lab.vip(0, 6)}', port: {PORT}, backends: [{backends6}]}}\n"
        f"  - {{address: {lab.vip(0)}, port: {PORT + 1}, mode: proxy, backends: [{backends4}]}}\n"
    )


def test_forward_with_mode_nftables_applies_follows_health_and_removes(
    fplab: Lab, tmp_path: Path
) -> None:
    node = fplab.nodes[0]
    config = tmp_path / "lb.yaml"
    config.write_text(_config(fplab))
    proc = start_forward(fplab, node, config)
    names = [b.name for b in fplab.backends]
    try:

        def listing() -> str:
            return str(fplab.run(node, "nft", "list", "tables").stdout)

        def sockets() -> str:
            return str(fplab.run(node, "ss", "-Hltun").stdout)

        wait_for(lambda: "table inet ironlb" in listing(), what="the fast-path table")
        # The kernel forwards the nftables listeners: the workers bind only the proxy one.
        wait_for(lambda: f":{PORT + 1} " in sockets(), what="the proxy listener")
        assert f":{PORT} " not in sockets()
        assert Counter(_ask(fplab, "tcp", fplab.vip(0, 4), 3)) == dict.fromkeys(names, 1)
        assert Counter(_ask(fplab, "tcp", fplab.vip(0, 6), 3)) == dict.fromkeys(names, 1)
        assert Counter(_ask(fplab, "udp", fplab.vip(0, 4), 3)) == dict.fromkeys(names, 1)

        # backend3 dies: the health check takes it out of the table.
        dead = fplab.backends[2]
        SERVERS[dead.name].kill()

        def table_without_dead() -> bool:
            text = fplab.run(node, "nft", "list", "table", "inet", "ironlb").stdout
            return str(dead.ipv4) not in text and str(dead.ipv6) not in text

        wait_for(table_without_dead, timeout=20, what="backend3 out of the table")
        assert set(_ask(fplab, "tcp", fplab.vip(0, 4), 4)) == set(names[:2])

        # A bad reload keeps the table; SIGTERM removes it.
        config.write_text("listeners: [")
        proc.send_signal(signal.SIGHUP)
        assert set(_ask(fplab, "tcp", fplab.vip(0, 4), 2)) == set(names[:2])
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "kernel mode: table inet ironlb applied" in err
        assert "ironlb" not in listing()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_forward_with_an_unappliable_table_exits_1(fplab: Lab, tmp_path: Path) -> None:
    """Without CAP_NET_ADMIN the table cannot be written: a clear error, exit 1."""
    node = fplab.nodes[0]
    config = tmp_path / "lb.yaml"
    config.write_text(_config(fplab))
    out = forward_without_capability(fplab, node, "net_admin", config)
    assert out.returncode == 1, out.stderr
    assert "cannot apply the nftables table" in out.stderr
    assert "ironlb" not in fplab.run(node, "nft", "list", "tables").stdout


# --- one owner per table, drift repaired, stale tables removed ----------------------------------


def _forward(lab: Lab, config: Path) -> subprocess.Popen[str]:
    return start_forward(lab, lab.nodes[0], config)


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=5)
    return err


def _table(lab: Lab) -> str:
    return str(lab.run(lab.nodes[0], "nft", "list", "tables").stdout)


def test_a_second_instance_never_takes_the_table(fplab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "lb.yaml"
    config.write_text(_config(fplab))
    names = {b.name for b in fplab.backends}
    first = _forward(fplab, config)
    try:
        wait_for(lambda: "table inet ironlb" in _table(fplab), what="the first instance's table")
        other = tmp_path / "other.yaml"
        ports = _config(fplab).replace(f"port: {PORT + 1}", "port: 7071")
        other.write_text(ports.replace(f"port: {PORT}", "port: 7070"))
        second = _forward(fplab, other)
        err = _stop(second) if second.wait(30) is not None else ""
        assert second.returncode == 1, err
        assert f"table inet ironlb belongs to another ironlb, pid {first.pid}" in err, err
        # The first keeps serving, and its table is still its own.
        assert set(_ask(fplab, "tcp", fplab.vip(0, 4), 3)) == names
        listing = fplab.run(fplab.nodes[0], "nft", "list", "table", "inet", "ironlb").stdout
        assert f'comment "ironlb pid={first.pid} ' in listing
    finally:
        err = _stop(first)
    assert "ironlb" not in _table(fplab), err


def test_a_flushed_ruleset_is_written_again(fplab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "lb.yaml"
    config.write_text(_config(fplab))
    names = {b.name for b in fplab.backends}
    proc = _forward(fplab, config)
    try:
        wait_for(lambda: "table inet ironlb" in _table(fplab), what="the table")
        assert set(_ask(fplab, "tcp", fplab.vip(0, 4), 3)) == names
        fplab.run(fplab.nodes[0], "nft", "flush", "ruleset")  # what nftables.service does
        assert "ironlb" not in _table(fplab)
        wait_for(lambda: "table inet ironlb" in _table(fplab), timeout=15, what="the repair")
        assert set(_ask(fplab, "tcp", fplab.vip(0, 4), 3)) == names
        # Someone edits our table: put back as well.
        fplab.run(fplab.nodes[0], "nft", "flush", "chain", "inet", "ironlb", "services")

        def whole() -> bool:
            text = fplab.run(fplab.nodes[0], "nft", "list", "chain", "inet", "ironlb", "services")
            return "vmap" in text.stdout

        wait_for(whole, timeout=15, what="the edited chain rewritten")
        assert set(_ask(fplab, "tcp", fplab.vip(0, 4), 3)) == names
    finally:
        err = _stop(proc)
    assert "table inet ironlb is missing; writing it again" in err
    assert "was changed by someone else" in err


def test_a_stale_table_from_a_killed_instance_is_removed_at_start(
    fplab: Lab, tmp_path: Path
) -> None:
    config = tmp_path / "lb.yaml"
    config.write_text(_config(fplab))
    crashed = _forward(fplab, config)
    wait_for(lambda: "table inet ironlb" in _table(fplab), what="the table")
    crashed.kill()
    crashed.communicate(timeout=10)
    assert "table inet ironlb" in _table(fplab)  # left behind, still DNATing
    # The next start is proxy mode only: the stale table must go, not keep serving.
    proxy = tmp_path / "proxy.yaml"
    proxy.write_text(_config(fplab).replace("mode: nftables", "mode: proxy"))
    proc = _forward(fplab, proxy)
    try:
        wait_for(lambda: "ironlb" not in _table(fplab), timeout=15, what="the stale table gone")
    finally:
        err = _stop(proc)
    assert f"removed a stale table inet ironlb left by pid {crashed.pid}, which is gone" in err


def test_kernel_mode_with_a_loopback_backend_warns_that_remote_clients_cannot_reach_it(
    fplab: Lab, tmp_path: Path
) -> None:
    config = tmp_path / "lb.yaml"
    config.write_text(
        "defaults: {mode: kernel}\n"
        "listeners:\n"
        f"  - {{address: {fplab.vip(0)}, port: {PORT}, backends: ['127.0.0.1:{BACKEND_PORT}']}}\n"
        f"  - {{address: {fplab.vip(1)}, port: {PORT}, backends: ['{fplab.backends[0].ipv4}:"
        f"{BACKEND_PORT}']}}\n"
    )
    with fplab.in_netns(fplab.nodes[0]):
        write_sysctl("net.ipv4.conf.all.route_localnet", 0)
    proc = _forward(fplab, config)
    try:
        wait_for(lambda: "table inet ironlb" in _table(fplab), what="the table")
    finally:
        err = _stop(proc)
    warnings = [line for line in err.splitlines() if "loopback backend" in line]
    assert len(warnings) == 1, err
    assert f"{fplab.vip(0)}:{PORT}" in warnings[0] and "127.0.0.1" in warnings[0]


# argv: proto addr port count source -> one line per new flow from ``source``: the
# backend's name (each flow a new socket, so a new conntrack entry).
SOURCED_CLIENT = """
import socket, sys
proto, addr, source = sys.argv[1], sys.argv[2], sys.argv[5]
port, count = int(sys.argv[3]), int(sys.argv[4])
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
for _ in range(count):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as s:
        s.settimeout(3)
        s.bind((source, 0))
        s.connect((addr, port))
        if proto == "udp":
            s.send(b"who")
            print(s.recv(100).decode(), flush=True)
        else:
            print(s.makefile().readline().strip(), flush=True)
"""

SOURCES = [f"198.18.0.{150 + i}" for i in range(9)]


def _affine(lab: Lab, timeout: float, ready: list[bool] | None = None) -> DesiredState:
    """_both(), every listener with ClientIP affinity of ``timeout`` seconds."""
    plain = _both(lab, ready)
    opts = ListenerOptions(mode="kernel", affinity_timeout=timeout)
    return DesiredState.build(
        ((key, list(spec.backends)) for key, spec in plain.listeners.items()),
        dict.fromkeys(plain.listeners, opts),
    )


def _from(lab: Lab, proto: str, vip: IPv4Address | IPv6Address, count: int, src: str) -> set[str]:
    argv = (proto, str(vip), str(PORT), str(count), src)
    return set(lab.run(lab.client, sys.executable, "-c", SOURCED_CLIENT, *argv).stdout.split())


def _homes(lab: Lab, count: int = 6) -> dict[str, str]:
    homes = {}
    for src in SOURCES:
        names = _from(lab, "tcp", lab.vip(0, 4), count, src)
        assert len(names) == 1, (src, names)
        homes[src] = names.pop()
    return homes


def test_client_ip_affinity_pins_survives_table_changes_and_moves_only_from_a_gone_backend(
    fplab: Lab,
) -> None:
    for src in SOURCES:  # more client addresses on the client's LAN interface
        fplab.run(fplab.client, "ip", "addr", "add", f"{src}/32", "dev", "eth0")
    names = [b.name for b in fplab.backends]
    path = KernelPath()
    with fplab.in_netns(fplab.nodes[0]):
        path.apply(_affine(fplab, 600))
    before = _homes(fplab, count=20)  # 20 of 20 flows of each client on one backend
    assert len(set(before.values())) == 3  # numgen spreads the first flows
    client6 = str(fplab.client.ipv6)
    assert len(_from(fplab, "tcp", fplab.vip(0, 6), 10, client6)) == 1
    assert len(_from(fplab, "udp", fplab.vip(0, 4), 10, SOURCES[0])) == 1
    with fplab.in_netns(fplab.nodes[0]):
        assert not path.repair()  # pins come and go: no reason to rewrite
    gone = before[SOURCES[0]]
    ready = [n != gone for n in names]
    with fplab.in_netns(fplab.nodes[0]):
        path.apply(_affine(fplab, 600, ready))  # a new table: the pins are carried over
    after = _homes(fplab)
    moved = {s for s in SOURCES if after[s] != before[s]}
    assert moved == {s for s in SOURCES if before[s] == gone}
    assert gone not in after.values()
    with fplab.in_netns(fplab.nodes[0]):
        path.apply(_affine(fplab, 600))  # the backend is back: nobody moves
    assert _homes(fplab) == after


def test_client_ip_affinity_pins_expire_after_the_timeout(fplab: Lab) -> None:
    path = KernelPath()
    key = ListenerKey(fplab.vip(0, 4), "tcp", PORT)
    with fplab.in_netns(fplab.nodes[0]):
        path.apply(_affine(fplab, 2))
    client = str(fplab.client.ipv4)
    (home,) = _from(fplab, "tcp", key.vip, 3, client)
    backend = next(b for b in fplab.backends if b.name == home)
    pinned = affinity_set(key, Backend(backend.ipv4, BACKEND_PORT))

    def elements() -> list[tuple[IPv4Address | IPv6Address, int]]:
        with fplab.in_netns(fplab.nodes[0]):
            listing = list_table()
        assert listing is not None
        return parse_pins(listing).get(pinned, [])

    ((addr, left),) = elements()
    assert str(addr) == client and 0 <= left <= 2
    wait_for(lambda: not elements(), timeout=10, what="the pin to expire")
    assert len(_from(fplab, "tcp", key.vip, 1, client)) == 1
