"""What the listeners' limits need in file descriptors, and raising RLIMIT_NOFILE
(forwarder/fd_limits.py). Limits are changed only in child processes."""

from __future__ import annotations

import ipaddress
import resource
import subprocess
import sys

from ironlb.dataplane.forwarder.fd_limits import RESERVE, SLACK, fds_needed
from ironlb.dataplane.state import ListenerKey, ListenerOptions

from .conftest import state

LOCAL = ipaddress.ip_address("127.0.0.1")


def test_two_per_tcp_connection_one_per_udp_session_one_per_listener() -> None:
    tcp, udp = ListenerKey(LOCAL, "tcp", 80), ListenerKey(LOCAL, "udp", 53)
    opts = {tcp: ListenerOptions(max_connections=300), udp: ListenerOptions(udp_max_sessions=100)}
    assert fds_needed(state((tcp, []), (udp, []), options=opts)) == (
        SLACK + RESERVE + (1 + 600) + (1 + 100)
    )


def run_with_nofile(soft: int, hard: int, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child Python whose RLIMIT_NOFILE is ``(soft, hard)``."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, preexec_fn=limit
    )
    assert out.returncode == 0, out.stderr
    return out


def test_the_soft_limit_is_raised_up_to_the_hard_limit_and_never_lowered() -> None:
    code = (
        "from ironlb.dataplane.forwarder.fd_limits import raise_nofile; "
        "print(raise_nofile(1000), raise_nofile(100), raise_nofile(10**6))"
    )
    out = run_with_nofile(256, 4096, code).stdout.strip()
    assert out == "(1000, 4096) (1000, 4096) (4096, 4096)"


def test_a_short_hard_limit_is_one_warning() -> None:
    code = (
        "import logging, ipaddress; logging.basicConfig(format='%(message)s'); "
        "from ironlb.dataplane.forwarder.fd_limits import NofileGuard; "
        "from ironlb.dataplane.state import DesiredState, ListenerKey; "
        "key = ListenerKey(ipaddress.ip_address('127.0.0.1'), 'tcp', 80); "
        "s = DesiredState.build([(key, [])]); g = NofileGuard(); g.ensure(s); g.ensure(s); "
        "import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    out = run_with_nofile(256, 512, code)
    assert out.stdout.strip() == "(512, 512)"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("RLIMIT_NOFILE is 512 (hard limit) but the listeners' limits need")
