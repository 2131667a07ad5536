"""``ironlb forward`` as a process: workers, SIGHUP reload, SIGTERM, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from ironlb.dataplane.state import ListenerKey
from tests.support import eventually

from .conftest import PYTHON, Backends, Hold, free_port, udp_key, who
from .conftest import tcp_key as make_key
from .test_affinity_forward import client_ip, homes, only


def config_text(port: int, backends: list[int], extra: str = "") -> str:
    listed = ", ".join(f'"127.0.0.1:{p}"' for p in backends)
    return (
        f"listeners:\n  - address: 127.0.0.1\n    port: {port}\n    backends: [{listed}]\n{extra}"
    )


def _set_nofile(limits: tuple[int, int]) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


class Forward:
    """A running ``ironlb forward`` with its log file."""

    def __init__(
        self,
        tmp: Path,
        config: str,
        workers: int = 2,
        *extra: str,
        nofile: tuple[int, int] | None = None,
    ) -> None:
        self.config = tmp / "lb.yaml"
        self.config.write_text(config)
        self.log = tmp / "forward.log"
        self.metrics_port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ironlb.cli",
                "forward",
                "--config",
                str(self.config),
                "--workers",
                str(workers),
                "--metrics-address",
                f"127.0.0.1:{self.metrics_port}",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
            start_new_session=True,
            preexec_fn=None if nofile is None else lambda: _set_nofile(nofile),
        )

    def text(self) -> str:
        return self.log.read_text()

    def wait_log(self, needle: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.text().count(needle) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not logged; log:\n{self.text()}")

    def workers(self) -> set[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        pids = {int(p) for p in children.read_text().split()} if children.exists() else set()
        out = set()
        for pid in pids:
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.add(pid)
            except FileNotFoundError:
                pass
        return out

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


Start = Callable[..., Forward]


@pytest.fixture
def run_forward(tmp_path: Path) -> Iterator[Start]:
    """Start ``ironlb forward``; stopped (workers included) when the test ends."""
    started: list[Forward] = []

    def start(
        config: str, workers: int = 2, *extra: str, nofile: tuple[int, int] | None = None
    ) -> Forward:
        fwd = Forward(tmp_path, config, workers, *extra, nofile=nofile)
        started.append(fwd)
        return fwd

    try:
        yield start
    finally:
        for fwd in started:
            pids = fwd.workers() if fwd.proc.poll() is None else set()
            fwd.stop()
            for pid in pids:  # never leave a worker behind
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.split(") ")[1][0] != "Z"


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_two_workers_reload_on_sighup_and_stop_on_sigterm(
    backends: Backends, run_forward: Start
) -> None:
    b0, b1 = await backends.tcp("b0"), await backends.tcp("b1")
    key = make_key()
    fwd = run_forward(config_text(key.port, [b0.port]))
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    workers = fwd.workers()
    assert len(workers) == 2
    assert {await who(key) for _ in range(10)} == {"b0"}
    # a connection open across the reloads
    reader, writer = await asyncio.open_connection(str(key.vip), key.port)
    assert await reader.readline() == b"b0\n"

    fwd.config.write_text(config_text(key.port, [b1.port]))
    fwd.proc.send_signal(signal.SIGHUP)
    await asyncio.to_thread(fwd.wait_log, "(changed)")
    await asyncio.sleep(0.5)  # the workers apply the new state
    assert {await who(key) for _ in range(10)} == {"b1"}

    fwd.config.write_text(config_text(key.port, [b0.port]).replace("port:", "port: x", 1))
    fwd.proc.send_signal(signal.SIGHUP)
    await asyncio.to_thread(fwd.wait_log, "reload failed, keeping the running config")
    assert f"{fwd.config}:3: listeners[0].port:" in fwd.text()
    assert {await who(key) for _ in range(6)} == {"b1"}  # the old config still runs

    writer.write(b"survived")
    assert await asyncio.wait_for(reader.readexactly(8), 10) == b"survived"
    writer.close()

    await asyncio.sleep(1.5)  # workers push counters once a second
    text = await asyncio.to_thread(fwd.metrics)
    listener = str(key)
    assert metric(text, "ironlb_forward_accepted_connections_total", listener=listener) == 27
    assert metric(text, "ironlb_forward_workers") == 2
    assert metric(text, "ironlb_forward_config_reloads_total", result="failed") == 1
    assert metric(text, "ironlb_forward_backend_up", listener=listener) == 1

    fwd.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(fwd.proc.wait, 20) == 0
    await eventually(lambda: not any(alive(p) for p in workers), timeout=20, what="workers gone")
    assert "Traceback" not in fwd.text()
    assert "stopped" in fwd.text()


async def test_workers_die_with_the_parent(backends: Backends, run_forward: Start) -> None:
    b0 = await backends.tcp("b0")
    key = make_key()
    fwd = run_forward(config_text(key.port, [b0.port]))
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    workers = fwd.workers()
    fwd.proc.kill()
    fwd.proc.wait(10)
    await eventually(lambda: not any(alive(p) for p in workers), timeout=20, what="workers gone")


async def test_a_killed_worker_is_restarted(backends: Backends, run_forward: Start) -> None:
    b0 = await backends.tcp("b0")
    key = make_key()
    fwd = run_forward(config_text(key.port, [b0.port]))
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    victim = min(fwd.workers())
    os.kill(victim, signal.SIGKILL)
    await eventually(lambda: len(fwd.workers() - {victim}) == 2, timeout=20, what="a new worker")
    await asyncio.to_thread(fwd.wait_log, "accepting", count=3)
    assert "restarting it" in fwd.text()
    assert {await who(key) for _ in range(6)} == {"b0"}


async def test_health_checks_take_a_dead_backend_out(
    backends: Backends, run_forward: Start
) -> None:
    b0 = await backends.tcp("b0")
    dead = free_port()
    key = make_key()
    extra = "    health_check: {interval: 0.1, timeout: 0.5, rise: 1, fall: 1}\n"
    fwd = run_forward(config_text(key.port, [dead, b0.port], extra), workers=1)
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    await asyncio.to_thread(fwd.wait_log, f"backend 127.0.0.1:{dead} is DOWN")
    await asyncio.sleep(0.5)
    assert {await who(key) for _ in range(6)} == {"b0"}
    await asyncio.sleep(1.2)
    text = await asyncio.to_thread(fwd.metrics)
    up = "ironlb_forward_backend_up"
    assert metric(text, up, backend=f"127.0.0.1:{dead}") == 0
    assert metric(text, up, backend=str(b0)) == 1
    assert metric(text, "ironlb_forward_backend_connect_failures_total") == 0


async def test_a_port_in_use_fails_the_start_naming_the_holder(run_forward: Start) -> None:
    """Here the holder is this test process (no SO_REUSEPORT, so the workers could
    not bind either): refused before the workers start, one line, exit 2."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        fwd = run_forward(config_text(port, [free_port()]), workers=1)
        assert await asyncio.to_thread(fwd.proc.wait, 30) == 2
        errors = error_lines(fwd.text())
        assert len(errors) == 1, fwd.text()
        assert f"listener tcp/127.0.0.1:{port} is already held by pid {os.getpid()} (" in errors[0]
        assert "cannot bind" not in fwd.text()
    finally:
        taken.close()


GIB = 1024 * 1024 * 1024
CHUNK = 1024 * 1024


def pattern() -> tuple[bytes, list[int]]:
    """Random data and the offsets of the 1 MiB chunks that make up 1 GiB."""
    data = os.urandom(4 * CHUNK)
    return data, [(i * 7919 * 4099) % (3 * CHUNK) for i in range(GIB // CHUNK)]


@pytest.mark.slow
async def test_one_gib_each_way_arrives_intact(run_forward: Start) -> None:
    data, offsets = pattern()
    view = memoryview(data)
    expected = hashlib.sha256()
    for off in offsets:
        expected.update(view[off : off + CHUNK])
    results: dict[str, str] = {}

    async def send(writer: asyncio.StreamWriter) -> None:
        for off in offsets:
            writer.write(view[off : off + CHUNK])
            await writer.drain()
        writer.write_eof()

    async def receive(reader: asyncio.StreamReader, who: str) -> None:
        digest = hashlib.sha256()
        while chunk := await reader.read(4 * CHUNK):
            digest.update(chunk)
        results[who] = digest.hexdigest()

    backend_done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.gather(send(writer), receive(reader, "backend"))
        writer.close()
        backend_done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        key = make_key()
        fwd = run_forward(config_text(key.port, [server.sockets[0].getsockname()[1]]), workers=1)
        await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
        reader, writer = await asyncio.open_connection(str(key.vip), key.port)
        await asyncio.wait_for(asyncio.gather(send(writer), receive(reader, "client")), 240)
        await asyncio.wait_for(backend_done.wait(), 60)
        writer.close()
    finally:
        server.close()
    assert results == {"backend": expected.hexdigest(), "client": expected.hexdigest()}


async def test_sigterm_to_the_whole_group_drains_open_connections(
    run_forward: Start, backends: Backends
) -> None:
    """systemd and ``kill -- -PGID`` signal every process: the workers must keep
    serving open connections until the control process ends the drain."""
    key = make_key()
    backend = await backends.tcp("b0")
    fwd = run_forward(config_text(key.port, [backend.port]), 1, "--drain-seconds", "3")
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    reader, writer = await asyncio.open_connection(str(key.vip), key.port)
    assert await asyncio.wait_for(reader.readline(), 5) == b"b0\n"
    os.killpg(fwd.proc.pid, signal.SIGTERM)
    await asyncio.sleep(1.0)  # inside the drain period
    writer.write(b"still here\n")
    assert await asyncio.wait_for(reader.readline(), 5) == b"still here\n"
    writer.close()
    assert await asyncio.to_thread(fwd.proc.wait, 20) == 0
    assert "drained" in fwd.text()


def test_metrics_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Issue 8, item 12: not a 41-line traceback."""

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    config = tmp_path / "lb.yaml"
    config.write_text(config_text(free_port(), [free_port()]))
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "ironlb.cli",
                "forward",
                "--config",
                str(config),
                "--workers",
                "1",
                "--metrics-address",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        busy.close()
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if "ERROR" in line or "Traceback" in line]
    assert len(errors) == 1, out.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}: Address already in use" in errors[0]


# -- issue 8, item 10: max_connections / max_sessions are per listener, counted across
# the worker processes (forwarder/shared_limits.py)


async def served(port: int) -> asyncio.StreamWriter | None:
    """Connect; the stream when the backend greets, None when closed at once."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        line = await asyncio.wait_for(reader.readline(), 10)
    except ConnectionResetError:
        line = b""
    if line == b"b0\n":
        return writer
    assert line == b""
    writer.close()
    return None


async def serve_many(port: int, count: int) -> list[asyncio.StreamWriter]:
    """``count`` connections one after the other; the ones served (held open)."""
    out = []
    for _ in range(count):
        writer = await served(port)
        if writer is not None:
            out.append(writer)
    return out


async def serve_one_eventually(port: int, timeout: float = 20) -> asyncio.StreamWriter:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        writer = await served(port)
        if writer is not None:
            return writer
        await asyncio.sleep(0.1)
    raise AssertionError("no connection served in time")


async def test_limit_4_with_2_workers_serves_exactly_4_and_keeps_count_across_a_reload(
    backends: Backends, run_forward: Start
) -> None:
    b0 = await backends.tcp("b0")
    key = make_key()
    fwd = run_forward(config_text(key.port, [b0.port], "    max_connections: 4\n"), 2)
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    assert len(fwd.workers()) == 2
    held = await serve_many(key.port, 12)
    assert len(held) == 4
    assert backends.counts == {"b0": 4}
    await asyncio.to_thread(fwd.wait_log, "connection limit 4 reached")
    assert "connection limit 2 " not in fwd.text()

    held.pop().close()  # one slot free again, whichever worker takes the next one
    held.append(await serve_one_eventually(key.port))
    assert await serve_many(key.port, 4) == []

    # New options at reload: the 4 open connections stay counted.
    fwd.config.write_text(config_text(key.port, [b0.port], "    max_connections: 6\n"))
    fwd.proc.send_signal(signal.SIGHUP)
    await asyncio.to_thread(fwd.wait_log, "(changed)")
    held.append(await serve_one_eventually(key.port))
    held += await serve_many(key.port, 8)
    assert len(held) == 6
    assert backends.counts == {"b0": 4 + 1 + 2}  # nothing over the limit reached b0
    await asyncio.to_thread(fwd.wait_log, "connection limit 6 reached")
    for writer in held:
        writer.close()
    assert "Traceback" not in fwd.text()


async def test_udp_max_sessions_3_with_2_workers_answers_exactly_3_clients(
    backends: Backends, run_forward: Start
) -> None:
    backend = await backends.udp_server("u0")
    port = free_port(socket.SOCK_DGRAM)
    fwd = run_forward(
        f"listeners:\n  - address: 127.0.0.1\n    port: {port}\n    protocol: udp\n"
        f'    max_sessions: 3\n    backends: ["127.0.0.1:{backend.port}"]\n',
        2,
    )
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(12)]
    try:
        for sock in clients:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            sock.sendto(b"hi", ("127.0.0.1", port))
        await asyncio.to_thread(fwd.wait_log, "UDP session limit 3 reached")
        answered: set[int] = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(answered) == 3 and deadline - time.monotonic() > 1.5:
                deadline = time.monotonic() + 1.5  # any 4th answer would be in flight now
            for i, sock in enumerate(clients):
                try:
                    assert sock.recv(100) == b"u0:hi"
                    answered.add(i)
                except BlockingIOError:
                    pass
            await asyncio.sleep(0.05)
        assert len(answered) == 3
        assert len(backends.udp_peers["u0"]) == 3
        assert "UDP session limit 1 " not in fwd.text()
    finally:
        for sock in clients:
            sock.close()


# -- issue 8, item 9: file descriptors (forwarder/fd_limits.py)


@pytest.fixture
def many_fds() -> Iterator[None]:
    """This test process holds ~1500 sockets (clients and backends): allow them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def worker_nofile(fwd: Forward) -> int:
    (pid,) = fwd.workers()
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no Max open files line")


async def test_the_soft_fd_limit_is_raised_to_what_max_connections_needs(
    backends: Backends, run_forward: Start, many_fds: None
) -> None:
    b0 = await backends.tcp("b0")
    key = make_key()
    extra = "    max_connections: 300\n"
    fwd = run_forward(config_text(key.port, [b0.port], extra), 1, nofile=(256, 4096))
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    assert worker_nofile(fwd) >= 2 * 300
    held = await serve_many(key.port, 300)
    assert len(held) == 300  # soft limit 256 would serve ~115
    for writer in held:
        writer.close()
    assert "RLIMIT_NOFILE" not in fwd.text()  # enough: no warning
    assert "Traceback" not in fwd.text()


async def test_300_tcp_connections_at_an_fd_limit_of_256_are_served_or_closed_and_counted(
    backends: Backends, run_forward: Start, many_fds: None
) -> None:
    b0 = await backends.tcp("b0")
    key = make_key()
    extra = "    max_connections: 1000\n"
    fwd = run_forward(config_text(key.port, [b0.port], extra), 1, nofile=(256, 256))
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    assert "RLIMIT_NOFILE is 256 (hard limit) but the listeners' limits need" in fwd.text()
    held: list[asyncio.StreamWriter] = []
    for _ in range(300 // 15):  # waves of 15 concurrent connects
        # served() fails on a client left hanging (no answer and no close in 10 s)
        wave = await asyncio.gather(*(served(key.port) for _ in range(15)))
        held += [w for w in wave if w is not None]
    assert 0 < len(held) < 300
    listener = str(key)

    def counted() -> bool:
        text = fwd.metrics()
        return metric(text, "ironlb_forward_fd_exhausted_total", listener=listener) == 300 - len(
            held
        )

    await eventually(counted, timeout=20, what="every client answered or counted")
    for writer in held:
        writer.close()
    (await serve_one_eventually(key.port)).close()  # the descriptors were given back
    text = fwd.text()
    assert "Traceback" not in text
    assert text.count("RLIMIT_NOFILE is 256") == 1
    assert 1 <= text.count("no file descriptor for an upstream") < 30  # rate-limited


async def test_400_udp_clients_at_an_fd_limit_of_256_get_answers_or_counted_drops(
    backends: Backends, run_forward: Start, many_fds: None
) -> None:
    backend = await backends.udp_server("u0")
    port = free_port(socket.SOCK_DGRAM)
    fwd = run_forward(
        f"listeners:\n  - address: 127.0.0.1\n    port: {port}\n    protocol: udp\n"
        f'    max_sessions: 1000\n    backends: ["127.0.0.1:{backend.port}"]\n',
        1,
        nofile=(256, 256),
    )
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(400)]
    answered: set[int] = set()

    def collect() -> None:
        for i, sock in enumerate(clients):
            try:
                assert sock.recv(100) == b"u0:hi"
                answered.add(i)
            except BlockingIOError:
                pass

    try:
        for sock in clients:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
        for start in range(0, 400, 20):  # waves of 20, so no socket buffer overflows
            for sock in clients[start : start + 20]:
                sock.sendto(b"hi", ("127.0.0.1", port))
            await asyncio.sleep(0.02)
            collect()
        listener = f"udp/127.0.0.1:{port}"

        def counted() -> bool:
            collect()
            text = fwd.metrics()
            drops = metric(text, "ironlb_forward_fd_exhausted_total", listener=listener)
            return len(answered) + drops == 400

        await eventually(counted, timeout=20, what="every client answered or counted")
        assert 0 < len(answered) < 400
    finally:
        for sock in clients:
            sock.close()
    text = fwd.text()
    assert "Traceback" not in text
    assert 1 <= text.count("no file descriptor for a UDP session") < 30  # rate-limited


# -- issue 8, item 11: no reconfiguration loses new flows


async def test_udp_listener_removed_and_added_back_by_sighup_serves_every_new_client(
    backends: Backends, run_forward: Start
) -> None:
    """Two workers, UDP sessions open; SIGHUP without the UDP listener, then
    with it again (another backend): every new client is answered by the new
    backend and the open sessions by the old one."""
    u0, u1 = await backends.udp_server("u0"), await backends.udp_server("u1")
    tcp_backend = await backends.tcp("b0")
    tcp_port, udp_port = free_port(), free_port(socket.SOCK_DGRAM)
    tcp_part = config_text(tcp_port, [tcp_backend.port])

    def udp_part(backend: int) -> str:
        return (
            f"  - address: 127.0.0.1\n    port: {udp_port}\n    protocol: udp\n"
            f"    session_timeout: 60\n    backends: ['127.0.0.1:{backend}']\n"
        )

    fwd = run_forward(tcp_part + udp_part(u0.port), 2)
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")

    def ask(socks: list[socket.socket], payload: bytes) -> list[bytes | None]:
        for sock in socks:
            sock.sendto(payload, ("127.0.0.1", udp_port))
        answers: list[bytes | None] = []
        for sock in socks:
            try:
                answers.append(sock.recv(100))
            except TimeoutError:
                answers.append(None)
        return answers

    def clients(n: int) -> list[socket.socket]:
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(1.0)
        return socks

    old, new = clients(6), clients(40)
    try:
        assert await asyncio.to_thread(ask, old, b"a") == [b"u0:a"] * 6
        for n, text in enumerate((tcp_part, tcp_part + udp_part(u1.port)), start=1):
            fwd.config.write_text(text)
            fwd.proc.send_signal(signal.SIGHUP)
            await asyncio.to_thread(fwd.wait_log, "(changed)", n)
            await asyncio.sleep(1.0)  # both workers apply it
        answers = await asyncio.to_thread(ask, new, b"n")
        assert answers == [b"u1:n"] * 40, f"{answers.count(None)} of 40 new clients got nothing"
        assert await asyncio.to_thread(ask, old, b"b") == [b"u0:b"] * 6
    finally:
        for sock in old + new:
            sock.close()


async def test_a_reload_to_a_self_loop_is_refused_and_the_running_config_kept(
    backends: Backends, run_forward: Start
) -> None:
    """Issue 8, item 12: a backend equal to its listener fails the reload like a bad file."""
    b0 = await backends.tcp("b0")
    key = make_key()
    fwd = run_forward(config_text(key.port, [b0.port]), 1)
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    fwd.config.write_text(config_text(key.port, [b0.port, key.port]))
    fwd.proc.send_signal(signal.SIGHUP)
    await asyncio.to_thread(fwd.wait_log, "reload failed, keeping the running config")
    assert (
        f"{fwd.config}:4: listeners[0].backends[1]: backend 127.0.0.1:{key.port} is this "
        f"listener itself ({key}): connections would loop back in"
    ) in fwd.text()
    assert {await who(key) for _ in range(6)} == {"b0"}


# -- issue 8, item 12: listeners another process holds (SO_REUSEPORT would let a second
# instance in silently) are refused, naming the holder (dataplane/listener_holders.py)


def listeners_text(*entries: tuple[ListenerKey, int]) -> str:
    """A config of ``(listener, backend port on 127.0.0.1)`` entries."""
    text = "listeners:\n"
    for key, backend in entries:
        text += (
            f"  - address: {key.vip}\n    port: {key.port}\n    protocol: {key.protocol}\n"
            f'    backends: ["127.0.0.1:{backend}"]\n'
        )
    return text


def forward_once(config: Path) -> subprocess.CompletedProcess[str]:
    """Run ``ironlb forward`` to its exit (it should refuse to start)."""
    return subprocess.run(
        [sys.executable, "-m", "ironlb.cli", "forward", "--config", str(config), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "ERROR" in line or "Traceback" in line]


async def test_a_second_forward_on_the_same_listeners_is_refused_naming_the_first(
    backends: Backends, run_forward: Start, tmp_path: Path
) -> None:
    b0, u0 = await backends.tcp("b0"), await backends.udp_server("u0")
    tcp, udp = make_key(), udp_key()
    config = listeners_text((tcp, b0.port), (udp, u0.port))
    first = run_forward(config, 2)
    await asyncio.to_thread(first.wait_log, "ready: all workers are serving")
    second_config = tmp_path / "second.yaml"
    second_config.write_text(config)

    second = await asyncio.to_thread(forward_once, second_config)

    assert second.returncode == 2, second.stderr
    errors = error_lines(second.stderr)
    assert len(errors) == 1, second.stderr
    assert errors[0].endswith(
        f"listeners {tcp}, {udp} are already held by pid {first.proc.pid} "
        f"({PYTHON} -m ironlb.cli forward): stop it first"
    ), errors[0]
    assert "ready: all workers" not in second.stderr
    assert first.proc.poll() is None
    assert {await who(tcp) for _ in range(4)} == {"b0"}  # the first still serves
    assert error_lines(first.text()) == []


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
async def test_a_foreign_process_on_a_listener_is_refused_naming_it(
    foreign: Hold, tmp_path: Path, protocol: str
) -> None:
    key = make_key() if protocol == "tcp" else udp_key()
    pid = foreign(str(key.vip), key.port, protocol)
    config = tmp_path / "lb.yaml"
    config.write_text(listeners_text((key, free_port())))

    out = await asyncio.to_thread(forward_once, config)

    assert out.returncode == 2, out.stderr
    errors = error_lines(out.stderr)
    assert len(errors) == 1, out.stderr
    assert errors[0].endswith(
        f"listener {key} is already held by pid {pid} ({PYTHON}): stop it first"
    ), errors[0]


async def test_a_reload_adding_a_listener_held_by_another_process_is_refused(
    backends: Backends, run_forward: Start, foreign: Hold
) -> None:
    b0, b1 = await backends.tcp("b0"), await backends.tcp("b1")
    old, new = make_key(), make_key()
    fwd = run_forward(listeners_text((old, b0.port)), 1)
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    pid = foreign(str(new.vip), new.port, "tcp")
    fwd.config.write_text(listeners_text((old, b1.port), (new, b1.port)))
    fwd.proc.send_signal(signal.SIGHUP)
    await asyncio.to_thread(fwd.wait_log, "reload failed, keeping the running config")
    assert error_lines(fwd.text())[-1].endswith(
        f"reload failed, keeping the running config: listener {new} is already held by "
        f"pid {pid} ({PYTHON}): stop it first"
    )
    assert {await who(old) for _ in range(4)} == {"b0"}  # the old config, not b1

    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: not alive(pid), timeout=10, what="the holder gone")
    fwd.proc.send_signal(signal.SIGHUP)
    await asyncio.to_thread(fwd.wait_log, "(changed)")
    await asyncio.sleep(0.5)  # the workers apply the new state
    assert {await who(old) for _ in range(4)} == {"b1"}
    assert await who(new) == "b1"


async def test_a_reload_bringing_back_our_own_draining_udp_listener_is_accepted(
    backends: Backends, run_forward: Start
) -> None:
    """A removed UDP listener keeps its socket in the worker while a session lives:
    taking it back is not a foreign holder."""
    b0, u0 = await backends.tcp("b0"), await backends.udp_server("u0")
    tcp, udp = make_key(), udp_key()
    both = listeners_text((tcp, b0.port), (udp, u0.port))
    fwd = run_forward(both, 1)
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        client.settimeout(10)
        client.sendto(b"ping", (str(udp.vip), udp.port))
        assert (await asyncio.to_thread(client.recvfrom, 100))[
            0
        ] == b"u0:ping"  # a session: the socket stays open

        fwd.config.write_text(listeners_text((tcp, b0.port)))
        fwd.proc.send_signal(signal.SIGHUP)
        await asyncio.to_thread(fwd.wait_log, "(changed)")
        worker = next(iter(fwd.workers()))
        await eventually(
            lambda: any(
                c.laddr and c.laddr.port == udp.port
                for c in psutil.Process(worker).net_connections(kind="udp")
            ),
            timeout=5,
            what="the draining socket still open in the worker",
        )
        fwd.config.write_text(both)
        fwd.proc.send_signal(signal.SIGHUP)
        await asyncio.to_thread(fwd.wait_log, "(changed)", 2)
        assert "reload failed" not in fwd.text()
        client.sendto(b"again", (str(udp.vip), udp.port))
        assert (await asyncio.to_thread(client.recvfrom, 100))[0] == b"u0:again"
    finally:
        client.close()


async def test_sigterm_stops_accepting_drains_then_closes(
    run_forward: Start, backends: Backends
) -> None:
    """Issue 12 (stopping strands clients), without ``announce``: on SIGTERM new
    clients are refused at once, an open connection keeps working through the
    drain, and what is still open at its end is closed (the client sees EOF or a
    reset within a second), not cut at the start nor left hanging."""
    key = make_key()
    backend = await backends.tcp("b0")
    fwd = run_forward(config_text(key.port, [backend.port]), 2, "--drain-seconds", "3")
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    reader, writer = await asyncio.open_connection(str(key.vip), key.port)
    assert await asyncio.wait_for(reader.readline(), 5) == b"b0\n"
    loop = asyncio.get_running_loop()
    fwd.proc.send_signal(signal.SIGTERM)
    stopped = loop.time()
    await asyncio.sleep(0.8)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(str(key.vip), key.port)
    for i in range(3):  # inside the drain period
        msg = f"still here {i}\n".encode()
        writer.write(msg)
        assert await asyncio.wait_for(reader.readline(), 5) == msg
        await asyncio.sleep(0.3)
    try:
        end = await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        end = b""
    closed_after = loop.time() - stopped
    assert end == b""
    assert 3.0 <= closed_after <= 5.0, closed_after
    writer.close()
    assert await asyncio.to_thread(fwd.proc.wait, 20) == 0


async def test_udp_checks_and_passive_detection_in_ironlb_forward(
    backends: Backends, run_forward: Start
) -> None:
    """Two UDP listeners, each with a stopped backend beside a live one: the
    active send/expect check marks it DOWN; without a check, passive detection
    takes it out after a few queries, counted in the ejections metric."""
    live = await backends.udp_server("u0")
    checked, passive = udp_key(), udp_key()
    dead = free_port(socket.SOCK_DGRAM)
    text = (
        "listeners:\n"
        f"  - {{address: 127.0.0.1, port: {checked.port}, protocol: udp,\n"
        f'     backends: ["127.0.0.1:{dead}", "127.0.0.1:{live.port}"],\n'
        "     health_check: {type: udp, send: ping, expect: 'u0:ping', interval: 0.1,\n"
        "                    timeout: 0.3, rise: 1, fall: 1}}\n"
        f"  - {{address: 127.0.0.1, port: {passive.port}, protocol: udp,\n"
        f'     backends: ["127.0.0.1:{dead}", "127.0.0.1:{live.port}"]}}\n'
    )
    fwd = run_forward(text, workers=1)
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    await asyncio.to_thread(fwd.wait_log, f"backend 127.0.0.1:{dead} is DOWN")
    loop = asyncio.get_running_loop()
    for key in (checked, passive):
        for i in range(9):  # new clients; each must be answered by u0
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (str(key.vip), key.port))
                await loop.sock_sendall(sock, b"q%d" % i)
                answer = await asyncio.wait_for(loop.sock_recv(sock, 100), 5)
            finally:
                sock.close()
            assert answer == b"u0:q%d" % i
    await asyncio.to_thread(fwd.wait_log, f"listener {passive}: backend 127.0.0.1:{dead} taken out")
    await asyncio.sleep(1.5)  # workers push counters once a second
    metrics = await asyncio.to_thread(fwd.metrics)
    ejections = "ironlb_forward_backend_ejections_total"
    assert metric(metrics, ejections, listener=str(passive), backend=f"127.0.0.1:{dead}") == 1
    assert metric(metrics, ejections, listener=str(checked)) == 0  # never sent traffic
    up = "ironlb_forward_backend_up"
    assert metric(metrics, up, listener=str(checked), backend=f"127.0.0.1:{dead}") == 0


async def test_client_ip_affinity_holds_across_two_workers_and_a_reload(
    backends: Backends, run_forward: Start
) -> None:
    pool = [await backends.tcp(f"b{i}") for i in range(4)]
    key = make_key()
    affinity = "    session_affinity: {client_ip: {timeout: 600}}\n"
    fwd = run_forward(config_text(key.port, [b.port for b in pool], affinity))
    await asyncio.to_thread(fwd.wait_log, "ready: all workers are serving")
    assert len(fwd.workers()) == 2
    clients = [client_ip(n) for n in range(1, 21)]
    # 50 connections per client from new source ports: SO_REUSEPORT spreads
    # them over both workers, which pick the same backend without shared state
    before = only(await homes(key, clients, per_client=50))
    assert len(set(before.values())) >= 2
    gone = before[clients[0]]
    left = [b.port for i, b in enumerate(pool) if f"b{i}" != gone]
    fwd.config.write_text(config_text(key.port, left, affinity))
    fwd.proc.send_signal(signal.SIGHUP)
    await asyncio.to_thread(fwd.wait_log, "(changed)")
    await asyncio.sleep(0.5)  # the workers apply the new state
    after = only(await homes(key, clients, per_client=10))
    assert {c for c in clients if after[c] != before[c]} == {
        c for c in clients if before[c] == gone
    }
    await asyncio.sleep(1.5)  # workers push counters once a second
    text = await asyncio.to_thread(fwd.metrics)
    assert metric(text, "ironlb_forward_accepted_connections_total", listener=str(key)) == 1200
    assert "Traceback" not in fwd.text()
