"""The pure parts of ``lbctl status`` / ``doctor``: figures, usage bars, server versions."""

from __future__ import annotations

import pytest

from ironlb.lbctl.doctor import server_minor
from ironlb.lbctl.overview import figure, pool_usage, usage_bar
from ironlb.operator.allocator import INT64_MAX


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (9_999_999, "9999999"),
        (10_000_000, "1.0e7"),
        (2**64, "1.8e19"),
        (INT64_MAX, "9.2e18+"),
    ],
)
def test_figure(n: int, text: str) -> None:
    assert figure(n) == text


@pytest.mark.parametrize(
    ("used", "free", "bar"),
    [
        (0, 16, "[----]"),
        (16, 0, "[####]"),
        (8, 8, "[##--]"),
        (1, 10**18, "[#---]"),  # any use shows
        (10**18, 1, "[###-]"),  # room left shows
        (0, 0, "[    ]"),
        (None, 3, "[????]"),
    ],
)
def test_usage_bar(used: int | None, free: int | None, bar: str) -> None:
    assert usage_bar(used, free, width=4) == bar


@pytest.mark.parametrize(
    ("version", "parsed"),
    [
        ({"major": "1", "minor": "32"}, (1, 32)),
        ({"major": "1", "minor": "27+", "gitVersion": "v1.27.9-eks-1"}, (1, 27)),
        ({"major": "", "minor": "", "gitVersion": "v1.30.2+k3s1"}, (1, 30)),
        ({"gitVersion": "nonsense"}, None),
        ({}, None),
    ],
)
def test_server_minor(version: dict[str, str], parsed: tuple[int, int] | None) -> None:
    assert server_minor(version) == parsed


def test_capped_counter_exact_from_spec_else_at_least() -> None:
    status = {"assignedIPv6": 3, "availableIPv6": INT64_MAX, "assignedIPv4": 0}
    pool = {"metadata": {"name": "p"}, "spec": {"addresses": ["fd00::/64"]}, "status": status}
    [v6] = pool_usage(pool)
    assert (v6.family, v6.used, v6.free, v6.exact_free) == ("IPv6", 3, INT64_MAX, 2**64 - 3)
    assert v6.shown_free == "1.8e19"
    broken = {**pool, "spec": {"addresses": ["fd00::1/64"]}}  # host bits: no size to trust
    [v6] = pool_usage(broken)
    assert v6.exact_free is None and v6.shown_free == "9.2e18+"
    small = {"metadata": {"name": "s"}, "spec": {"addresses": ["198.18.0.0/30"]}}
    assert [(u.family, u.shown_free) for u in pool_usage(small)] == [("IPv4", "-")]
