"""Send and receive speaker heartbeats over UDP (the asyncio adapter).

Every ``interval`` seconds one signed heartbeat (:mod:`.heartbeat`) goes to
every peer returned by ``peers()`` (node name -> (InternalIP, port)). A
received datagram is verified (MAC, then :class:`~.heartbeat.ReplayGuard`);
only accepted ones reach ``on_heartbeat(sender, leaving)``; the others are
counted by reason. Each heartbeat echoes the last sequence number received
from its destination, which gives a round-trip time per peer. Send errors
(an unreachable peer) are counted and logged at most every 10 s per peer,
never raised: a dead peer must not stop heartbeats to the live ones.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from ironlb.speaker.heartbeat import Heartbeat, HeartbeatRejected, ReplayGuard, decode, encode

log = logging.getLogger("ironlb.speaker.heartbeat")

Peers = Callable[[], Mapping[str, tuple[str, int]]]
_LOG_EVERY = 10.0


class _Metrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        reg = registry or CollectorRegistry(auto_describe=False)
        self.sent = Counter("ironlb_speaker_heartbeats_sent", "Heartbeats sent", registry=reg)
        self.received = Counter(
            "ironlb_speaker_heartbeats_received", "Heartbeats accepted", ["peer"], registry=reg
        )
        self.rejected = Counter(
            "ironlb_speaker_heartbeats_rejected",
            "Heartbeats ignored (forged, replayed, stale, misaddressed, malformed)",
            ["reason"],
            registry=reg,
        )
        self.rtt = Gauge(
            "ironlb_speaker_heartbeat_rtt_seconds",
            "Latest heartbeat round trip per peer",
            ["peer"],
            registry=reg,
        )


class HeartbeatService(asyncio.DatagramProtocol):
    """Heartbeats of ``node`` to and from its peers; see the module docstring."""

    def __init__(
        self,
        node: str,
        keys: Sequence[bytes],
        *,
        peers: Peers,
        on_heartbeat: Callable[[str, bool], None],
        bind: tuple[str, int] = ("0.0.0.0", 7473),
        interval: float = 0.1,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not keys:
            raise ValueError("at least one heartbeat key is needed")
        self.node = node
        self._keys = list(keys)
        self._peers = peers
        self._on_heartbeat = on_heartbeat
        self._bind = bind
        self.interval = interval
        self._metrics = _Metrics(registry)
        self._guard = ReplayGuard(node)
        self._incarnation = secrets.randbits(64)
        self._seq = 0
        self._sent_at: dict[int, int] = {}  # seq -> monotonic ns (recent ones only)
        self._received: dict[str, tuple[int, int]] = {}  # peer -> (its seq, our monotonic ns)
        self._last_error_log: dict[str, float] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self.rejected: dict[str, int] = {}
        self.rtt: dict[str, float] = {}
        self.send_errors = 0
        self.port = bind[1]

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the UDP socket and start sending. Raises OSError naming the address."""
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=self._bind)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot bind UDP {self._bind[0]}:{self._bind[1]}: {exc.strerror}"
            ) from None
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        self._task = loop.create_task(self._run(), name="ironlb-heartbeats")

    async def stop(self, leaving: bool = True) -> None:
        """Stop sending; with ``leaving`` first tell every peer we hand over."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if leaving:
            self.send_round(leaving=True)
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def set_keys(self, keys: Sequence[bytes]) -> None:
        """Sign with ``keys[0]`` from now on; accept any of ``keys`` (rotation)."""
        if not keys:
            raise ValueError("at least one heartbeat key is needed")
        self._keys = list(keys)

    async def _run(self) -> None:
        while True:
            self.send_round()
            await asyncio.sleep(self.interval)

    # -- sending -----------------------------------------------------------------------

    def send_round(self, *, leaving: bool = False) -> None:
        """One heartbeat to every peer."""
        if self._transport is None:
            return
        self._seq += 1
        now_mono = time.monotonic_ns()
        self._sent_at[self._seq] = now_mono
        self._sent_at.pop(self._seq - 100, None)
        wall = time.time_ns()
        for peer, address in self._peers().items():
            echo_seq, echo_hold = 0, 0
            got = self._received.get(peer)
            if got is not None:
                echo_seq, echo_hold = got[0], now_mono - got[1]
            data = encode(
                Heartbeat(
                    sender=self.node,
                    destination=peer,
                    incarnation=self._incarnation,
                    seq=self._seq,
                    sent_ns=wall,
                    leaving=leaving,
                    echo_seq=echo_seq,
                    echo_hold_ns=echo_hold,
                ),
                self._keys[0],
            )
            try:
                self._transport.sendto(data, address)
                self._metrics.sent.inc()
            except OSError as exc:
                self._send_failed(peer, exc)

    def _send_failed(self, peer: str, exc: BaseException) -> None:
        self.send_errors += 1
        now = time.monotonic()
        if now - self._last_error_log.get(peer, -_LOG_EVERY) >= _LOG_EVERY:
            self._last_error_log[peer] = now
            log.warning("heartbeat to %s failed: %s", peer, exc)

    def error_received(self, exc: Exception) -> None:
        self.send_errors += 1
        log.debug("heartbeat socket error: %s", exc)

    # -- receiving ---------------------------------------------------------------------

    def _reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self._metrics.rejected.labels(reason).inc()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            hb = decode(data, self._keys)
        except HeartbeatRejected as exc:
            self._reject(exc.reason)
            return
        reason = self._guard.check(hb, time.time_ns())
        if reason is not None:
            self._reject(reason)
            return
        now = time.monotonic_ns()
        self._received[hb.sender] = (hb.seq, now)
        sent = self._sent_at.get(hb.echo_seq) if hb.echo_seq else None
        if sent is not None:
            rtt = max(0, now - sent - hb.echo_hold_ns) / 1e9
            self.rtt[hb.sender] = rtt
            self._metrics.rtt.labels(hb.sender).set(rtt)
        self._metrics.received.labels(hb.sender).inc()
        self._on_heartbeat(hb.sender, hb.leaving)
