"""Round-robin rotation (pure)."""

from __future__ import annotations

from ironlb.dataplane.forwarder.balancer import RoundRobin


def test_cycles_in_order() -> None:
    rr = RoundRobin("abc")
    assert [rr.pick() for _ in range(7)] == list("abcabca")


def test_empty_rotation_picks_nothing() -> None:
    rr: RoundRobin[str] = RoundRobin()
    assert rr.pick() is None
    rr.update("x")
    assert rr.pick() == "x"
    rr.update("")
    assert rr.pick() is None


def test_equal_update_keeps_the_position() -> None:
    rr = RoundRobin("abc")
    rr.pick()
    rr.update(["a", "b", "c"])
    assert rr.pick() == "b"


def test_changed_rotation_continues_after_the_last_pick() -> None:
    rr = RoundRobin("abcd")
    assert [rr.pick(), rr.pick()] == ["a", "b"]
    rr.update("xbcd")  # 'a' replaced: continue after 'b'
    assert rr.pick() == "c"
    rr.update("ad")  # last pick 'c' gone: position kept modulo the new size
    assert rr.pick() in ("a", "d")
    assert sorted(rr.pick() or "" for _ in range(4)) == ["a", "a", "d", "d"]
