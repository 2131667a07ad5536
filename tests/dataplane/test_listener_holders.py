"""Who holds a listener: real sockets in this process and in a foreign one."""

from __future__ import annotations

import ipaddress
import os
import socket

import psutil
import pytest

from ironlb.dataplane.listener_holders import (
    Holder,
    _command,
    find_holder,
    held_listeners,
    held_message,
    is_held,
)
from ironlb.dataplane.state import ListenerKey
from tests.support import free_port, wait_for

from .conftest import PYTHON, Hold

#: ``me`` that no process is: makes this test process a foreign holder.
NOBODY = -1


def key(address: str, port: int, protocol: str = "tcp") -> ListenerKey:
    return ListenerKey(ipaddress.ip_address(address), protocol, port)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("held_on", "asked", "protocol"),
    [
        ("127.0.0.1", "127.0.0.1", "tcp"),
        ("127.0.0.1", "127.0.0.1", "udp"),
        ("0.0.0.0", "127.0.0.1", "tcp"),  # a wildcard socket holds every address
        ("127.0.0.1", "0.0.0.0", "udp"),
        ("::1", "::1", "tcp"),
        ("::", "::1", "udp"),
        ("127.0.0.1", "198.18.0.200", "tcp"),  # not held: another address
    ],
)
def test_a_foreign_holder_is_found_with_its_pid(
    foreign: Hold, held_on: str, asked: str, protocol: str
) -> None:
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    port = free_port(kind, "::1" if ":" in held_on else "127.0.0.1")
    pid = foreign(held_on, port, protocol)
    target = key(asked, port, protocol)
    overlaps = asked == held_on or "0.0.0.0" in (asked, held_on) or held_on == "::"
    assert is_held(target) is overlaps
    if overlaps:
        assert find_holder(target) == Holder(pid, PYTHON)
        assert held_listeners([target]) == {target: Holder(pid, PYTHON)}
    else:
        assert held_listeners([target]) == {}


def test_a_free_port_and_the_other_protocol_are_not_held(foreign: Hold) -> None:
    port = free_port()
    assert not is_held(key("127.0.0.1", port))
    foreign("127.0.0.1", port, "tcp")
    assert is_held(key("127.0.0.1", port))
    assert not is_held(key("127.0.0.1", port, "udp"))


def test_sockets_of_this_process_are_ours_and_never_named() -> None:
    """At a reload the workers (descendants of the control process) already hold
    the listeners that stay: they must not count as a stranger."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        target = key("127.0.0.1", sock.getsockname()[1], "udp")
        assert is_held(target)
        assert find_holder(target) is None
        assert held_listeners([target]) == {}
        holder = held_listeners([target], me=NOBODY)[target]
        assert holder.pid == os.getpid()
        assert holder.command


def test_a_child_of_this_process_is_ours(foreign: Hold) -> None:
    """The workers are children of the control process."""
    port = free_port()
    pid = foreign("127.0.0.1", port, "tcp", detach=False)
    target = key("127.0.0.1", port)
    assert is_held(target)
    assert find_holder(target) is None
    assert find_holder(target, me=pid) is None
    assert find_holder(target, me=NOBODY) == Holder(pid, PYTHON)


def test_connections_in_time_wait_do_not_hold_a_tcp_port() -> None:
    """A restart right after a stop: the old connections linger in TIME_WAIT on the
    listener's port (the server side closed first), but nothing listens."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()  # the server closes first: its side ends in TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()

    def in_time_wait() -> bool:
        return any(
            c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT
            for c in psutil.net_connections(kind="tcp4")
        )

    wait_for(in_time_wait, what="a TIME_WAIT connection on the port")
    assert not is_held(key("127.0.0.1", port))


def test_the_message_is_one_line_grouped_by_holder() -> None:
    a, b, c = key("127.0.0.1", 8080), key("127.0.0.1", 53, "udp"), key("::1", 8443)
    one = Holder(1234, "ironlb forward")
    assert held_message({a: one}) == (
        "listener tcp/127.0.0.1:8080 is already held by pid 1234 (ironlb forward): stop it first"
    )
    assert held_message({a: one, b: one}) == (
        "listeners tcp/127.0.0.1:8080, udp/127.0.0.1:53 are already held by pid 1234 "
        "(ironlb forward): stop it first"
    )
    assert held_message({c: Holder(), a: one}) == (
        "listener tcp/127.0.0.1:8080 is already held by pid 1234 (ironlb forward); "
        "listener tcp/[::1]:8443 is already held by another process: stop them first"
    )


@pytest.mark.parametrize(
    ("argv", "shown"),
    [
        (["/usr/bin/ironlb", "forward", "--config", "lb.yaml"], "ironlb forward"),
        (
            ["/usr/bin/python3", "-m", "ironlb.cli", "forward", "-c", "x"],
            "python3 -m ironlb.cli forward",
        ),
        (["python3", "/opt/lb/serve.py", "--port", "80"], "serve.py"),
        (["python3", "-c", "import socket"], "python3"),
        (["/usr/sbin/nginx", "-g", "daemon off;"], "nginx"),
        ([], ""),
    ],
)
def test_the_command_shown_is_the_program_and_its_subcommand(argv: list[str], shown: str) -> None:
    assert _command(argv) == shown
