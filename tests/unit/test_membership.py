"""Liveness rules of the speaker membership, with an explicit clock."""

from __future__ import annotations

from ironlb.speaker.membership import Membership


def members() -> Membership:
    m = Membership("a", lease_duration=10.0, heartbeat_timeout=0.5)
    m.own_lease_renewed(0.0)
    return m


def test_heartbeats_make_a_peer_alive_and_their_stop_kills_it_despite_a_valid_lease() -> None:
    m = members()
    m.observe_lease("b", renewed=True, valid_for=10.0, now=0.0)
    m.observe_heartbeat("b", now=1.0, leaving=False)
    assert m.alive(1.2) == {"a", "b"}
    assert m.alive(1.6) == {"a"}  # SIGKILL: silent for > 0.5 s, Lease still valid
    assert m.next_deadline(1.2) == 1.5


def test_a_valid_lease_alone_counts_until_heartbeats_were_heard() -> None:
    m = members()
    m.observe_lease("b", renewed=True, valid_for=10.0, now=0.0)
    assert "b" in m.alive(5.0)
    assert "b" not in m.alive(10.5)  # expired


def test_blocked_heartbeats_with_a_renewing_lease_stay_alive() -> None:
    m = members()
    m.observe_heartbeat("b", now=0.0, leaving=False)
    m.observe_lease("b", renewed=True, valid_for=10.0, now=0.1)
    assert "b" not in m.alive(1.0)  # quiet, and no renewal since
    m.observe_lease("b", renewed=True, valid_for=10.0, now=2.0)
    assert "b" in m.alive(2.1)  # the API vouches for it
    m.observe_lease("b", renewed=False, valid_for=8.0, now=3.0)
    assert "b" in m.alive(3.0)


def test_leaving_is_dead_at_once_until_heard_again() -> None:
    m = members()
    m.observe_lease("b", renewed=True, valid_for=10.0, now=0.0)
    m.observe_heartbeat("b", now=1.0, leaving=False)
    m.observe_heartbeat("b", now=1.1, leaving=True)
    assert "b" not in m.alive(1.1)
    m.observe_heartbeat("b", now=2.0, leaving=False)
    assert "b" in m.alive(2.0)


def test_released_lease_and_forgotten_lease_are_dead() -> None:
    m = members()
    m.observe_lease("b", renewed=True, valid_for=0.0, now=0.0)
    assert "b" not in m.alive(0.0)
    m.observe_lease("c", renewed=True, valid_for=10.0, now=0.0)
    m.forget_lease("c")
    assert "c" not in m.alive(0.1)


def test_self_cut_off_from_api_and_peers_is_not_connected_once_its_lease_would_expire() -> None:
    m = members()
    assert m.self_connected(9.9) and "a" in m.alive(9.9)
    assert not m.self_connected(10.1) and "a" not in m.alive(10.1)
    m.observe_heartbeat("b", now=10.2, leaving=False)  # a peer is heard: connected again
    assert m.self_connected(10.3)
    status = m.peer_status(10.3)
    assert status["b"].alive and status["b"].heartbeat_age is not None
