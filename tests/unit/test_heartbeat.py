"""Heartbeat wire format, replay guard and key loading (pure)."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ironlb.speaker.heartbeat import (
    Heartbeat,
    HeartbeatRejected,
    KeyMissing,
    ReplayGuard,
    decode,
    encode,
    heartbeat_key_from_secret,
)

KEY = b"k" * 32
NOW = 1_800_000_000 * 10**9
HB = Heartbeat("node1", "node2", incarnation=7, seq=1, sent_ns=NOW, echo_seq=3, echo_hold_ns=5)


def test_round_trip_keeps_every_field_and_is_small() -> None:
    data = encode(dataclasses.replace(HB, leaving=True), KEY)
    assert len(data) < 200
    assert decode(data, KEY) == dataclasses.replace(HB, leaving=True)


def test_forged_tampered_truncated_are_rejected_by_reason() -> None:
    data = encode(HB, KEY)
    with pytest.raises(HeartbeatRejected) as err:
        decode(encode(HB, b"x" * 32), KEY)
    assert err.value.reason == "bad_mac"
    tampered = bytearray(data)
    tampered[10] ^= 1
    with pytest.raises(HeartbeatRejected) as err:
        decode(bytes(tampered), KEY)
    assert err.value.reason == "bad_mac"
    with pytest.raises(HeartbeatRejected) as err:
        decode(data[:20], KEY)
    assert err.value.reason == "malformed"


def test_rotation_accepts_either_key() -> None:
    old = b"o" * 32
    assert decode(encode(HB, old), [KEY, old]) == HB


@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_rejected(data: bytes) -> None:
    with pytest.raises(HeartbeatRejected):
        decode(data, KEY)


def test_replay_guard_refuses_replays_stale_and_misaddressed() -> None:
    guard = ReplayGuard("node2")
    assert guard.check(HB, NOW) is None
    assert guard.check(HB, NOW) == "replayed"  # the same datagram again
    assert guard.check(dataclasses.replace(HB, seq=2), NOW) is None
    assert guard.check(dataclasses.replace(HB, destination="node3", seq=3), NOW) == (
        "wrong_destination"
    )
    assert guard.check(dataclasses.replace(HB, seq=9, sent_ns=NOW - 6 * 10**9), NOW) == "stale"
    restarted = dataclasses.replace(HB, incarnation=8, seq=1, sent_ns=NOW + 1)
    assert guard.check(restarted, NOW) is None  # a restart starts its sequence anew
    old_life = dataclasses.replace(HB, incarnation=7, seq=50, sent_ns=NOW)
    assert guard.check(old_life, NOW) == "replayed"  # an old process's copy


def test_key_from_secret_and_clear_errors() -> None:
    secret = {"data": {"key": base64.b64encode(KEY).decode()}}
    assert heartbeat_key_from_secret(secret, "ironlb-system") == KEY
    with pytest.raises(KeyMissing, match="kubectl -n lb create secret generic ironlb-heartbeat"):
        heartbeat_key_from_secret({}, "lb")
    with pytest.raises(KeyMissing, match="at least 16"):
        heartbeat_key_from_secret({"data": {"key": base64.b64encode(b"short").decode()}}, "lb")
    with pytest.raises(KeyMissing, match="not base64"):
        heartbeat_key_from_secret({"data": {"key": "***"}}, "lb")
