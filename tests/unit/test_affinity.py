"""ClientIP affinity (ironlb.dataplane.forwarder.affinity): rendezvous order and pin table."""

from __future__ import annotations

import os
import random
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from ironlb.dataplane.forwarder.affinity import Affinity, rank

settings_ = settings(max_examples=300, deadline=None, database=None)


def name(item: str) -> bytes:
    return item.encode()


BACKENDS = st.lists(
    st.from_regex(r"10\.0\.[0-9]{1,3}\.[0-9]{1,3}:[0-9]{2,5}", fullmatch=True),
    min_size=1,
    max_size=8,
    unique=True,
)
CLIENTS = st.lists(st.binary(min_size=4, max_size=4), min_size=1, max_size=40, unique=True)


@settings_
@given(BACKENDS, st.binary(min_size=4, max_size=16), st.randoms(use_true_random=False))
def test_rank_is_a_permutation_that_ignores_the_input_order(
    backends: list[str], client: bytes, rnd: random.Random
) -> None:
    order = rank(client, backends, name)
    assert sorted(order) == sorted(backends)
    shuffled = list(backends)
    rnd.shuffle(shuffled)
    assert rank(client, shuffled, name) == order


@settings_
@given(BACKENDS, CLIENTS, st.data())
def test_removing_a_backend_moves_only_its_clients_to_their_next_ranked(
    backends: list[str], clients: list[bytes], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(backends))
    left = [b for b in backends if b != gone]
    for with_pins in (True, False):  # a worker that saw the client before, and one that did not
        aff: Affinity[str] = Affinity(60.0, name)
        aff.update(backends)
        before = {c: aff.pick(c, 0.0) for c in clients}
        if not with_pins:
            aff = Affinity(60.0, name)
        aff.update(left)
        for c in clients:
            after = aff.pick(c, 1.0)
            if before[c] != gone:
                assert after == before[c]
            elif left:
                assert after == rank(c, backends, name)[1]
            else:
                assert after is None


@settings_
@given(BACKENDS, CLIENTS, st.from_regex(r"10\.1\.0\.[0-9]{1,3}:80", fullmatch=True))
def test_a_joining_backend_takes_no_pinned_client_until_the_pin_expires(
    backends: list[str], clients: list[bytes], new: str
) -> None:
    aff: Affinity[str] = Affinity(10.0, name)
    aff.update(backends)
    first = {c: aff.pick(c, 0.0) for c in clients}
    aff.update([*backends, new])
    assert all(aff.pick(c, 5.0) == first[c] for c in clients)  # used at 5: live until 15
    assert aff.expire(15.0) == 0
    assert aff.expire(15.5) == len(clients)
    assert len(aff) == 0
    for c in clients:  # unpinned: rank over the new set decides
        assert aff.pick(c, 16.0) == rank(c, [*backends, new], name)[0]


def test_a_pin_lasts_the_timeout_from_its_last_use() -> None:
    aff: Affinity[str] = Affinity(10.0, name)
    aff.update(["a:1"])
    assert aff.pick(b"\x01\x02\x03\x04", 0.0) == "a:1"
    aff.update(["a:1", "b:1", "c:1", "d:1"])
    # every use refreshes the pin: 9 s apart, it never expires
    for t in range(9, 100, 9):
        assert aff.pick(b"\x01\x02\x03\x04", float(t)) == "a:1"
        assert aff.expire(float(t) + 9.5) == 0
    assert aff.expire(99.0 + 10.5) == 1


def test_clients_spread_over_the_backends() -> None:
    backends = [f"10.0.0.{i}:80" for i in range(4)]
    aff: Affinity[str] = Affinity(60.0, name)
    aff.update(backends)
    counts = dict.fromkeys(backends, 0)
    for i in range(4000):
        got = aff.pick(i.to_bytes(4, "big"), 0.0)
        assert got is not None
        counts[got] += 1
    assert all(700 < n < 1300 for n in counts.values()), counts


def test_nothing_ready_picks_nothing_and_pins_nothing() -> None:
    aff: Affinity[str] = Affinity(60.0, name)
    assert aff.pick(b"\x7f\x00\x00\x01", 0.0) is None
    assert len(aff) == 0
    assert aff.fallbacks(b"\x7f\x00\x00\x01") == []


def test_the_order_is_the_same_in_another_process_with_another_hash_seed() -> None:
    backends = [f"10.0.0.{i}:8080" for i in range(6)]
    clients = [bytes([10, 9, 8, i]) for i in range(20)]
    here = [rank(c, backends, name)[0] for c in clients]
    code = (
        "from ironlb.dataplane.forwarder.affinity import rank\n"
        f"backends = {backends!r}\n"
        f"clients = {clients!r}\n"
        "print([rank(c, backends, str.encode)[0] for c in clients])\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == repr(here)
