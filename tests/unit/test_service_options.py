"""Per-Service options: spec.sessionAffinity and the timeout annotations, alone and
through plan_node (options per listener, one problem per bad value, Service kept)."""

from __future__ import annotations

from typing import Any

import pytest

from ironlb.dataplane.state import ListenerKey, ListenerOptions
from ironlb.speaker.plan import NodePlan
from ironlb.speaker.service_options import parse_duration, service_options
from tests.unit.test_speaker_plan import KEY, V4, endpoint, endpoint_slice, plan, service


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("2.5", 2.5), (" 30s ", 30.0), ("500ms", 0.5), ("5m", 300.0), ("1h", 3600.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "0", "0s", "-5", "soon", "5 m", "1h30m", "5d", "1e3", "9" * 400]
)
def test_bad_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_defaults_are_those_of_ironlb_forward() -> None:
    opts = service_options({}, {})
    defaults = ListenerOptions()
    assert (opts.idle_timeout, opts.connect_timeout) == (
        defaults.idle_timeout,
        defaults.connect_timeout,
    )
    assert opts.affinity_timeout is None and opts.problems == ()
    assert service_options({"sessionAffinity": "None"}, {}).affinity_timeout is None


def test_client_ip_affinity_with_the_kubernetes_default_and_a_given_timeout() -> None:
    assert service_options({"sessionAffinity": "ClientIP"}, {}).affinity_timeout == 10800.0
    spec = {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {}}}
    assert service_options(spec, {}).affinity_timeout == 10800.0
    spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 86400}}
    assert service_options(spec, {}).affinity_timeout == 86400.0


BAD: list[tuple[dict[str, Any], dict[str, Any], str, str]] = [
    ({}, {"ironlb.io/idle-timeout": "forever"}, "InvalidIdleTimeout", "'forever'"),
    ({}, {"ironlb.io/idle-timeout": "0"}, "InvalidIdleTimeout", "using the default 300s"),
    ({}, {"ironlb.io/connect-timeout": "-1s"}, "InvalidConnectTimeout", "using the default 5s"),
    ({}, {"ironlb.io/connect-timeout": 5}, "InvalidConnectTimeout", "ironlb.io/connect-timeout"),
    ({"sessionAffinity": "Cookie"}, {}, "InvalidSessionAffinity", "serving without affinity"),
    (
        {
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}},
        },
        {},
        "InvalidSessionAffinity",
        "timeoutSeconds: 0 is not an integer in 1..86400; using 10800",
    ),
    (
        {
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}},
        },
        {},
        "InvalidSessionAffinity",
        "86401",
    ),
    (
        {
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": "60"}},
        },
        {},
        "InvalidSessionAffinity",
        "'60'",
    ),
]


@pytest.mark.parametrize(("spec", "annotations", "reason", "message"), BAD)
def test_each_bad_value_is_one_problem_and_keeps_the_default(
    spec: dict[str, Any], annotations: dict[str, Any], reason: str, message: str
) -> None:
    opts = service_options(spec, annotations)
    assert [r for r, _ in opts.problems] == [reason]
    assert message in opts.problems[0][1]
    assert "\n" not in opts.problems[0][1]
    assert (opts.idle_timeout, opts.connect_timeout) == (300.0, 5.0)
    expected = 10800.0 if spec.get("sessionAffinity") == "ClientIP" else None
    assert opts.affinity_timeout == expected


# --- through plan_node ---------------------------------------------------------------------------

TCP = ListenerKey(V4, "tcp", 80)
SLICES = [endpoint_slice("web", [endpoint("10.1.0.1", "n1"), endpoint("10.1.0.2", "n2")])]


def planned(
    annotations: dict[str, str] | None = None, affinity: dict[str, Any] | None = None, **kw: Any
) -> NodePlan:
    svc = service("web", [str(V4)], annotations=annotations)
    svc["spec"].update(affinity or {})
    return plan(services=[svc], slices=SLICES, **kw)


def test_plan_puts_timeouts_and_affinity_into_the_listener_options() -> None:
    p = planned(
        {"ironlb.io/idle-timeout": "90s", "ironlb.io/connect-timeout": "750ms"},
        {
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
        },
    )
    opts = p.state.listeners[TCP].options
    assert (opts.idle_timeout, opts.connect_timeout, opts.affinity_timeout) == (90.0, 0.75, 600.0)
    assert opts.mode == "proxy"
    assert p.problems == {}
    plain = planned().state.listeners[TCP].options
    assert (plain.idle_timeout, plain.connect_timeout, plain.affinity_timeout) == (
        300.0,
        5.0,
        None,
    )


def test_plan_keeps_a_service_with_bad_values_on_the_defaults() -> None:
    p = planned(
        {"ironlb.io/idle-timeout": "a while", "ironlb.io/connect-timeout": "2"},
        {"sessionAffinity": "Sticky"},
    )
    spec = p.state.listeners[TCP]
    assert len(spec.backends) == 2  # still served
    opts = spec.options
    assert (opts.idle_timeout, opts.connect_timeout, opts.affinity_timeout) == (300.0, 2.0, None)
    assert sorted(pr.reason for pr in p.problems[KEY]) == [
        "InvalidIdleTimeout",
        "InvalidSessionAffinity",
    ]
    assert any("ironlb.io/idle-timeout" in pr.message for pr in p.problems[KEY])
    assert p.owners[V4] is not None  # and announced


@pytest.mark.parametrize("how", ["annotation", "default"])
def test_a_kernel_mode_service_keeps_kernel_mode_with_client_ip_affinity(how: str) -> None:
    affinity = {"sessionAffinity": "ClientIP", "externalTrafficPolicy": "Local"}
    if how == "annotation":
        p = planned({"ironlb.io/forwarding-mode": "kernel"}, affinity)
    else:
        p = planned(None, affinity, default_mode="kernel")
    opts = p.state.listeners[TCP].options
    assert (opts.mode, opts.affinity_timeout, opts.masquerade) == ("kernel", 10800.0, False)
    assert KEY not in p.problems
