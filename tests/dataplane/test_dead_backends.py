"""Dead backends must not cost clients: passive detection through a real Forwarder.

Loopback only: UDP backends that are stopped (the kernel answers ICMP port
unreachable) or silent (a socket that never reads: no answer, no ICMP), and
TCP backends that refuse or blackhole (SYNs dropped). Clients are plain
sockets that behave like a DNS resolver (one query, a retry on the same
socket after a timeout) or like a TCP client that connects and reads.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ironlb.dataplane.forwarder.listeners import Forwarder
from ironlb.dataplane.forwarder.metrics import ForwarderCollector
from ironlb.dataplane.forwarder.outlier import BASE_HOLD, FAILURES
from ironlb.dataplane.state import Backend, ListenerKey, ListenerOptions

from .conftest import LOCAL, Backends, UdpNamed, dead_backend, state, tcp_key, udp_key, who
from .test_udp import client


async def query(key: ListenerKey, payload: bytes, wait: float, retry: bool = False) -> list[bytes]:
    """A new client sends ``payload``: the answer to each try (``b""``: lost).
    With ``retry`` a lost query is sent once more from the same socket."""
    transport, proto = await client(key)
    answers: list[bytes] = []
    try:
        for _ in range(2 if retry else 1):
            transport.sendto(payload, (str(key.vip), key.port))
            try:
                answers.append((await asyncio.wait_for(proto.replies.get(), wait))[0])
                break
            except TimeoutError:
                answers.append(b"")
    finally:
        transport.close()
    return answers


async def restart_udp(backends: Backends, name: str, backend: Backend) -> None:
    """A UDP backend called ``name`` on ``backend``'s (free again) port."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: UdpNamed(name, set()), local_addr=(str(backend.address), backend.port)
    )
    backends.udp.append(transport)


@pytest.fixture
def silent_udp() -> Iterator[Backend]:
    """A UDP backend that never answers and sends no ICMP (bound, never read)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield Backend(LOCAL, sock.getsockname()[1])
    finally:
        sock.close()


async def test_a_stopped_udp_backend_costs_at_most_the_first_few_queries(
    forwarder: Forwarder, backends: Backends, caplog: pytest.LogCaptureFixture
) -> None:
    pool = [await backends.udp_server(f"u{i}") for i in range(3)]
    backends.udp[1].close()  # u1 stops: its port answers ICMP port unreachable
    dead = pool[1]
    key = udp_key()
    await forwarder.apply(state((key, pool)))
    with caplog.at_level(logging.WARNING, "ironlb.forward"):
        answers = [(await query(key, b"q%d" % i, 1.0))[0] for i in range(60)]
    lost = [i for i, a in enumerate(answers) if not a]
    assert len(lost) <= FAILURES and all(i < 3 * FAILURES for i in lost), lost
    for i, answer in enumerate(answers):
        if answer:
            assert answer.split(b":") in ([b"u0", b"q%d" % i], [b"u2", b"q%d" % i])
    stats = forwarder.stats.listeners[str(key)].backends[str(dead)]
    assert stats.ejections == 1
    assert stats.failed == FAILURES  # then no new session was sent to it
    assert stats.udp_sessions == FAILURES
    out = [r.getMessage() for r in caplog.records if "taken out" in r.getMessage()]
    assert out == [
        f"listener {key}: backend {dead} taken out for 2s after {FAILURES} failed flows in a "
        "row (passive check; one probe flow then tries it again)"
    ]


async def test_a_silent_udp_backend_costs_first_queries_and_a_retry_is_answered(
    forwarder: Forwarder, backends: Backends, silent_udp: Backend
) -> None:
    """No ICMP: unanswered datagrams are the signal; the retry goes elsewhere."""
    pool = [await backends.udp_server("u0"), silent_udp, await backends.udp_server("u2")]
    key = udp_key()
    opts = {key: ListenerOptions(udp_reply_timeout=0.3)}
    await forwarder.apply(state((key, pool), options=opts))
    results = [await query(key, b"q%d" % i, 0.6, retry=True) for i in range(30)]
    first_lost = [i for i, tries in enumerate(results) if tries[0] == b""]
    assert 1 <= len(first_lost) <= FAILURES and all(i < 3 * FAILURES for i in first_lost)
    for i, tries in enumerate(results):  # every client got its answer, lost ones on the retry
        assert tries[-1].split(b":")[1] == b"q%d" % i
        assert tries[-1].split(b":")[0] in (b"u0", b"u2")
    stats = forwarder.stats.listeners[str(key)].backends[str(silent_udp)]
    assert stats.ejections == 1
    assert stats.udp_sessions == FAILURES


async def test_one_way_udp_silence_is_no_failure(
    forwarder: Forwarder, backends: Backends, silent_udp: Backend
) -> None:
    """``udp_expect_reply=False``: a backend that never answers stays in."""
    key = udp_key()
    u0 = await backends.udp_server("u0")
    opts = {key: ListenerOptions(udp_reply_timeout=0.1, udp_expect_reply=False)}
    await forwarder.apply(state((key, [silent_udp, u0]), options=opts))
    transports = [await client(key) for _ in range(8)]
    try:
        for _ in range(3):
            for transport, _ in transports:
                transport.sendto(b"event", (str(key.vip), key.port))
            await asyncio.sleep(0.2)
    finally:
        for transport, _ in transports:
            transport.close()
    stats = forwarder.stats.listeners[str(key)].backends[str(silent_udp)]
    assert (stats.udp_sessions, stats.failed, stats.ejections) == (4, 0, 0)
    assert forwarder.listeners[key].targets[(str(LOCAL), silent_udp.port)].outlier.admit(0.0)


async def test_a_udp_backend_back_up_gets_traffic_after_the_probe(
    forwarder: Forwarder, backends: Backends, caplog: pytest.LogCaptureFixture
) -> None:
    pool = [await backends.udp_server(f"u{i}") for i in range(3)]
    backends.udp[1].close()
    key = udp_key()
    await forwarder.apply(state((key, pool)))
    with caplog.at_level(logging.WARNING, "ironlb.forward"):
        for i in range(3 * FAILURES):
            await query(key, b"q%d" % i, 1.0)
        stats = forwarder.stats.listeners[str(key)].backends[str(pool[1])]
        assert stats.ejections == 1
        await restart_udp(backends, "back", pool[1])
        await asyncio.sleep(BASE_HOLD + 0.1)
        names = [(await query(key, b"x", 1.0))[0].partition(b":")[0] for _ in range(9)]
    assert names.count(b"back") == 3, names  # the probe, then its full share again
    messages = [r.getMessage() for r in caplog.records]
    assert sum("taken out" in m for m in messages) == 1
    assert (
        messages.count(f"listener {key}: backend {pool[1]} is back in (a probe flow worked)") == 1
    )


async def test_a_blackholed_tcp_backend_stops_costing_the_connect_timeout(
    forwarder: Forwarder, backends: Backends, blackhole: Backend
) -> None:
    """Clients arrive every 20 ms for 4 s; after the first connect timeouts
    only the probes (one per hold-down) wait for a connect timeout."""
    loop = asyncio.get_running_loop()
    key = tcp_key()
    timeout = 0.3
    opts = {key: ListenerOptions(connect_timeout=timeout)}
    await forwarder.apply(
        state((key, [blackhole, await backends.tcp("b1"), await backends.tcp("b2")]), options=opts)
    )
    start = loop.time()

    async def timed() -> tuple[float, float, str]:
        began = loop.time()
        name = await asyncio.wait_for(who(key), 10)
        return began - start, loop.time() - began, name

    tasks = []
    for _ in range(200):
        tasks.append(asyncio.ensure_future(timed()))
        await asyncio.sleep(0.02)
    results = await asyncio.gather(*tasks)
    assert {name for _, _, name in results} == {"b1", "b2"}  # every client served
    slow = [(round(at, 2), round(took, 2)) for at, took, _ in results if took >= timeout]
    late = [s for s in slow if s[0] > 2 * timeout * 1.25]
    # the first connect window costs clients; later only the probes of the hold-downs do
    assert len(late) <= 2, slow
    assert len(slow) <= 10 + 2, slow
    stats = forwarder.stats.listeners[str(key)].backends[str(blackhole)]
    assert stats.ejections == 1
    registry = CollectorRegistry()
    registry.register(ForwarderCollector(forwarder.stats.snapshot, dict, lambda: 1, dict))
    text = generate_latest(registry).decode()
    line = f'ironlb_forward_backend_ejections_total{{backend="{blackhole}",listener="{key}"}} 1.0'
    assert line in text
    print(f"slow clients (started at s, waited s): {slow} of {len(results)}")


async def test_a_refusing_tcp_backend_comes_back_after_the_probe(
    forwarder: Forwarder, backends: Backends
) -> None:
    dead = dead_backend()
    key = tcp_key()
    await forwarder.apply(state((key, [dead, await backends.tcp("b1")])))
    assert {await who(key) for _ in range(2 * FAILURES)} == {"b1"}
    assert forwarder.stats.listeners[str(key)].backends[str(dead)].ejections == 1
    await backends.tcp("back", port=dead.port)
    assert {await who(key) for _ in range(4)} == {"b1"}  # still held down
    await asyncio.sleep(BASE_HOLD)
    names = [await who(key) for _ in range(6)]
    assert names.count("back") == 3, names
