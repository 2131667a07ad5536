"""Speaker heartbeats on the wire: signed, sequenced, timestamped (pure).

One heartbeat is one UDP datagram from one speaker to one peer::

    version(1) flags(1) incarnation(8) seq(8) sent_ns(8) echo_seq(8) echo_hold_ns(8)
    len(sender)(1) sender  len(destination)(1) destination  HMAC-SHA256(32)

The MAC (RFC 2104 HMAC with SHA-256, key from the Secret ``ironlb-heartbeat``)
covers everything before it, the destination included, so a heartbeat meant
for node A is worthless at node B. ``incarnation`` is random per process
start, ``seq`` grows by one per heartbeat within it; with ``sent_ns`` (the
sender's wall clock) :class:`ReplayGuard` refuses replays and stale copies.
``echo_seq`` / ``echo_hold_ns`` return the last sequence number received from
the destination and how long it was held, so the destination can measure the
round trip. ``leaving`` (flag bit 0) says the sender is handing its VIPs over.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

VERSION = 1
_HEAD = struct.Struct("!BBQQQQQ")
_MAC_LEN = 32
_FLAG_LEAVING = 0x01
MIN_KEY_BYTES = 16
SECRET_NAME = "ironlb-heartbeat"


class HeartbeatRejected(ValueError):
    """A datagram that is not a valid heartbeat; ``reason`` is a stable metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class KeyMissing(ValueError):
    """The heartbeat Secret has no usable key; ``str()`` says how to create one."""


@dataclass(frozen=True)
class Heartbeat:
    """One heartbeat; times in nanoseconds (``sent_ns`` is wall clock, ``time.time_ns()``)."""

    sender: str
    destination: str
    incarnation: int
    seq: int
    sent_ns: int
    leaving: bool = False
    echo_seq: int = 0
    echo_hold_ns: int = 0


def _name(text: str) -> bytes:
    raw = text.encode()
    if not 0 < len(raw) < 256:
        raise ValueError(f"node name must be 1-255 bytes, got {text!r}")
    return bytes([len(raw)]) + raw


def encode(hb: Heartbeat, key: bytes) -> bytes:
    """The signed datagram for ``hb``. Raises ValueError for an over-long node name."""
    body = (
        _HEAD.pack(
            VERSION,
            _FLAG_LEAVING if hb.leaving else 0,
            hb.incarnation,
            hb.seq,
            hb.sent_ns,
            hb.echo_seq,
            max(0, hb.echo_hold_ns),
        )
        + _name(hb.sender)
        + _name(hb.destination)
    )
    return body + hmac.new(key, body, hashlib.sha256).digest()


def decode(data: bytes, keys: bytes | Sequence[bytes]) -> Heartbeat:
    """Verify and parse a datagram; any of ``keys`` may have signed it (key rotation).

    Raises :class:`HeartbeatRejected` with reason ``malformed``, ``version`` or ``bad_mac``.
    """
    if len(data) < _HEAD.size + 2 + _MAC_LEN:
        raise HeartbeatRejected("malformed", "too short")
    body, mac = data[:-_MAC_LEN], data[-_MAC_LEN:]
    candidates = [keys] if isinstance(keys, bytes) else list(keys)
    if not any(
        hmac.compare_digest(hmac.new(k, body, hashlib.sha256).digest(), mac) for k in candidates
    ):
        raise HeartbeatRejected("bad_mac")
    version, flags, incarnation, seq, sent_ns, echo_seq, hold = _HEAD.unpack_from(body)
    if version != VERSION:
        raise HeartbeatRejected("version", f"version {version}")
    at = _HEAD.size
    names: list[str] = []
    for _ in range(2):
        if at >= len(body):
            raise HeartbeatRejected("malformed", "truncated name")
        size = body[at]
        raw = body[at + 1 : at + 1 + size]
        if size == 0 or len(raw) != size:
            raise HeartbeatRejected("malformed", "bad name length")
        try:
            names.append(raw.decode())
        except UnicodeDecodeError:
            raise HeartbeatRejected("malformed", "name is not UTF-8") from None
        at += 1 + size
    if at != len(body):
        raise HeartbeatRejected("malformed", "trailing bytes")
    return Heartbeat(
        sender=names[0],
        destination=names[1],
        incarnation=incarnation,
        seq=seq,
        sent_ns=sent_ns,
        leaving=bool(flags & _FLAG_LEAVING),
        echo_seq=echo_seq,
        echo_hold_ns=hold,
    )


class ReplayGuard:
    """Accepts each heartbeat at most once, and only while it is fresh.

    Per sender it keeps the last accepted ``(incarnation, seq, sent_ns)``:
    within an incarnation ``seq`` must grow; a new incarnation (a restarted
    speaker) must carry a newer ``sent_ns``, so copies from an older process
    cannot be played back later. ``max_skew`` (seconds) bounds how far the
    sender's clock may be from ours: node clocks must agree within it (NTP).
    """

    def __init__(self, self_node: str, max_skew: float = 5.0) -> None:
        self.self_node = self_node
        self.max_skew_ns = int(max_skew * 1e9)
        self._last: dict[str, tuple[int, int, int]] = {}

    def check(self, hb: Heartbeat, now_ns: int) -> str | None:
        """``None`` and remember it when ``hb`` is new, else the rejection reason
        (``wrong_destination``, ``stale``, ``replayed``)."""
        if hb.destination != self.self_node:
            return "wrong_destination"
        if abs(now_ns - hb.sent_ns) > self.max_skew_ns:
            return "stale"
        last = self._last.get(hb.sender)
        if last is not None:
            incarnation, seq, sent = last
            if hb.incarnation == incarnation:
                if hb.seq <= seq:
                    return "replayed"
            elif hb.sent_ns <= sent:
                return "replayed"
        self._last[hb.sender] = (hb.incarnation, hb.seq, hb.sent_ns)
        return None


def heartbeat_key_from_secret(secret: Mapping[str, Any], namespace: str) -> bytes:
    """The key in Secret ``<namespace>/ironlb-heartbeat`` (data key ``key``, base64 as the
    API returns Secret data). Raises :class:`KeyMissing` saying how to create one."""
    how = (
        f"create it with: kubectl -n {namespace} create secret generic {SECRET_NAME} "
        "--from-literal=key=$(head -c32 /dev/urandom | base64)"
    )
    data = secret.get("data") or {}
    value = data.get("key") if isinstance(data, Mapping) else None
    if not isinstance(value, str) or not value:
        raise KeyMissing(f"Secret {namespace}/{SECRET_NAME} has no data key 'key': {how}")
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyMissing(f"Secret {namespace}/{SECRET_NAME}: data.key is not base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise KeyMissing(
            f"Secret {namespace}/{SECRET_NAME}: the key has {len(key)} bytes, "
            f"at least {MIN_KEY_BYTES} are needed: {how}"
        )
    return key
