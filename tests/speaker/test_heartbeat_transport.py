"""Heartbeats over real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from ironlb.speaker.heartbeat import Heartbeat, encode
from ironlb.speaker.heartbeat_transport import HeartbeatService

KEY = b"s" * 32


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


async def test_two_speakers_hear_each_other_and_measure_rtt() -> None:
    heard: dict[str, list[tuple[str, bool]]] = {"a": [], "b": []}
    ports: dict[str, int] = {}

    def service(me: str) -> HeartbeatService:
        def peers() -> dict[str, tuple[str, int]]:
            return {p: ("127.0.0.1", port) for p, port in ports.items() if p != me}

        def on_heartbeat(sender: str, leaving: bool) -> None:
            heard[me].append((sender, leaving))

        return HeartbeatService(
            me,
            [KEY],
            peers=peers,
            on_heartbeat=on_heartbeat,
            bind=("127.0.0.1", 0),
            interval=0.05,
        )

    services = {name: service(name) for name in ("a", "b")}
    for name, svc in services.items():
        await svc.start()
        ports[name] = svc.port
    try:
        await until(lambda: len(heard["a"]) > 3 and len(heard["b"]) > 3)
        await until(lambda: services["a"].rtt.get("b", 0) > 0)
        assert {s for s, _ in heard["a"]} == {"b"}
    finally:
        await services["b"].stop(leaving=True)
        await until(lambda: ("b", True) in heard["a"])
        await services["a"].stop(leaving=False)


async def test_forged_and_replayed_datagrams_are_counted_and_ignored() -> None:
    heard: list[str] = []
    capture = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    capture.bind(("127.0.0.1", 0))
    capture.settimeout(5)
    svc = HeartbeatService(
        "a",
        [KEY],
        peers=lambda: {"spy": ("127.0.0.1", capture.getsockname()[1])},
        on_heartbeat=lambda s, _leaving: heard.append(s),
        bind=("127.0.0.1", 0),
        interval=0.05,
    )
    await svc.start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        import time

        genuine = encode(Heartbeat("b", "a", 1, 1, time.time_ns()), KEY)
        sender.sendto(genuine, ("127.0.0.1", svc.port))
        await until(lambda: heard == ["b"])
        sender.sendto(genuine, ("127.0.0.1", svc.port))  # replayed
        forged = encode(Heartbeat("b", "a", 1, 2, time.time_ns()), b"wrong-key-" * 4)
        sender.sendto(forged, ("127.0.0.1", svc.port))
        captured = await asyncio.to_thread(capture.recv, 512)  # a's own heartbeat to "spy"
        sender.sendto(captured, ("127.0.0.1", svc.port))  # misaddressed: it was for "spy"
        await until(lambda: sum(svc.rejected.values()) >= 3)
        assert svc.rejected == {"replayed": 1, "bad_mac": 1, "wrong_destination": 1}
        assert heard == ["b"]
    finally:
        await svc.stop()
        sender.close()
        capture.close()
