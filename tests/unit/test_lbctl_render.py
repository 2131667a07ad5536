"""Pure parts of ``lbctl``: table/age/JSON/YAML rendering, pool and Service rows, pool
detail text, the status health assessment, and the create flags -> spec mapping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from ironlb.lbctl import render
from ironlb.lbctl.cli import build_parser
from ironlb.lbctl.health import assess, handled_by_ironlb, lease_freshness
from ironlb.lbctl.pools import holders_of, pool_spec
from ironlb.operator.allocator import PoolUsage
from ironlb.operator.pool_status import pool_status

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def ts(delta: timedelta) -> str:
    return (NOW - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def pool(name: str, *, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "creationTimestamp": ts(timedelta(minutes=5))},
        "spec": {"addresses": ["198.18.10.0/24"], **spec},
    }
    if status is not None:
        obj["status"] = status
    return obj


def ready_status(used: int, free: int) -> dict[str, Any]:
    return pool_status(PoolUsage(used, 0, free, 0), None, previous=None, generation=1, now=NOW)


def invalid_status(reason: str) -> dict[str, Any]:
    return pool_status(None, (reason, "it overlaps"), previous=None, generation=1, now=NOW)


def service(
    name: str,
    ns: str = "default",
    ips: tuple[str, ...] = (),
    notes: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "annotations": notes or {}},
        "spec": {"type": "LoadBalancer", **spec},
        "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "Proxy"} for ip in ips]}},
    }


def lease(holder: str | None, renewed: timedelta, duration: int = 15) -> dict[str, Any]:
    renew = (NOW - renewed).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "spec": {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": duration}
    }


# --- table / time / structured -------------------------------------------------------------------


def test_table_aligns_columns_without_trailing_blanks() -> None:
    out = render.table(["A", "LONGER"], [["xyz", "1"], ["q", ""]])
    assert out.splitlines() == ["A     LONGER", "xyz   1", "q"]


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=0), "0s"),
        (timedelta(seconds=119), "119s"),
        (timedelta(minutes=5), "5m"),
        (timedelta(hours=3), "3h"),
        (timedelta(days=3), "3d"),
        (timedelta(seconds=-30), "0s"),  # clock skew: never negative
    ],
)
def test_age(delta: timedelta, expected: str) -> None:
    assert render.age(ts(delta), NOW) == expected


@pytest.mark.parametrize("bad", [None, "", "yesterday", 17])
def test_age_unknown(bad: object) -> None:
    assert render.age(bad, NOW) == "<unknown>"


def test_parse_time_accepts_z_offsets_and_fractions() -> None:
    a = render.parse_time("2026-11-26T12:00:00.123456Z")
    b = render.parse_time("2026-11-26T13:00:00.123456+01:00")
    assert a == b and a is not None and a.tzinfo is not None


def test_structured_round_trips() -> None:
    obj = {"b": [1, {"c": "d"}], "a": None}
    assert json.loads(render.structured(obj, "json")) == obj
    assert yaml.safe_load(render.structured(obj, "yaml")) == obj
    assert render.structured(obj, "json").index('"b"') < render.structured(obj, "json").index('"a"')
    with pytest.raises(ValueError, match="unknown output format"):
        render.structured(obj, "xml")


# --- pools ---------------------------------------------------------------------------------------


def test_pool_state() -> None:
    assert render.pool_state(pool("p")) == "Pending"
    assert render.pool_state(pool("p", status=ready_status(1, 2))) == "Ready"
    assert render.pool_state(pool("p", status=invalid_status("Overlap"))) == "Invalid (Overlap)"
    not_ready = {"conditions": [{"type": "Ready", "status": "False", "reason": "Starting"}]}
    assert render.pool_state(pool("p", status=not_ready)) == "NotReady (Starting)"


def test_pool_rows_sorted_with_counts_and_wide_columns() -> None:
    pools = [
        pool("zeta", status=invalid_status("InvalidSpec")),
        pool(
            "alpha",
            status=ready_status(3, 253),
            autoAssign=False,
            avoidBuggyIPs=True,
            addresses=["198.18.10.0/24", "198.18.11.1-198.18.11.9"],
            serviceAllocation={"priority": 7, "namespaces": ["a", "b"]},
        ),
    ]
    rows = render.pool_rows(pools, NOW)
    assert rows == [
        ["alpha", "198.18.10.0/24,198.18.11.1-198.18.11.9", "3", "253", "false", "Ready", "5m"],
        ["zeta", "198.18.10.0/24", "0", "0", "true", "Invalid (InvalidSpec)", "5m"],
    ]
    wide = render.pool_rows(pools, NOW, wide=True)
    assert wide[0][len(render.POOL_HEADERS) :] == ["true", "7", "a,b"]
    assert wide[1][len(render.POOL_HEADERS) :] == ["false", "-", "-"]
    assert render.pool_rows([pool("new")], NOW)[0][2:4] == ["-", "-"]  # no status yet


def test_pool_detail_lists_spec_status_conditions_and_holders() -> None:
    p = pool(
        "web",
        status=ready_status(1, 255),
        serviceAllocation={"priority": 2, "namespaces": ["shop"]},
        l2={"interfaces": ["eth0"], "nodeSelectors": [{"matchLabels": {"rack": "a"}}]},
    )
    holders = [service("api", "shop", ("198.18.10.1",), {render.ALLOCATED_FROM_POOL: "web"})]
    text = render.pool_detail(p, holders, NOW)
    assert "Name:             web" in text
    assert "  198.18.10.0/24" in text
    assert "Priority:            2" in text and "Namespaces:          shop" in text
    assert "Interfaces:          eth0" in text and '{"matchLabels":{"rack":"a"}}' in text
    assert "Status:           Ready" in text
    assert "IPv4:           1 assigned, 255 available" in text
    assert "Allocating" in text and "Invalid" in text  # both conditions listed
    assert "Services (1):" in text
    assert any(line.split() == ["shop", "api", "198.18.10.1"] for line in text.splitlines())
    assert "Services:         <none>" in render.pool_detail(pool("empty"), [], NOW)


# --- services ------------------------------------------------------------------------------------


def test_service_rows_pending_and_missing_annotations() -> None:
    rows = render.service_rows(
        [
            service(
                "b",
                "shop",
                ("198.18.10.2", "fd00:198:18::2"),
                {
                    render.ALLOCATED_FROM_POOL: "web",
                    render.ANNOUNCING_NODE: "node-1",
                },
            ),
            service("a", "shop"),
            service("z", "apps", ("198.18.10.9",)),
        ]
    )
    assert rows == [
        ["apps", "z", "198.18.10.9", "-", "-", "-", "0/0", "-"],
        ["shop", "a", "<pending>", "-", "-", "-", "0/0", "-"],
        ["shop", "b", "198.18.10.2,fd00:198:18::2", "web", "node-1", "-", "0/0", "-"],
    ]


def test_endpoint_counts_and_latest_warning() -> None:
    svc = service("web", "shop", ("198.18.10.2",))
    mine = {"metadata": {"namespace": "shop", "labels": {render.SERVICE_NAME_LABEL: "web"}}}
    slices = [
        {**mine, "endpoints": [{"conditions": {"ready": True}}, {"conditions": {"ready": False}}]},
        {**mine, "endpoints": [{}]},  # ready unset counts as ready (discovery.k8s.io/v1)
        {
            "metadata": {"namespace": "other", "labels": mine["metadata"]["labels"]},
            "endpoints": [{}],
        },
    ]
    assert render.endpoint_counts(svc, slices) == (2, 3)

    def event(kind: str, when: str, reason: str) -> dict[str, Any]:
        obj = {"kind": "Service", "name": "web", "namespace": "shop"}
        return {"type": kind, "lastTimestamp": when, "reason": reason, "involvedObject": obj}

    events = [
        event("Warning", "2026-01-01T00:00:01Z", "Old"),
        event("Warning", "2026-01-01T00:00:09Z", "New"),
        event("Normal", "2026-01-01T00:00:10Z", "IPAllocated"),
    ]
    latest = render.latest_warning(svc, events)
    assert latest is not None and latest["reason"] == "New"


def test_holders_need_annotation_and_ingress() -> None:
    holding = service("a", ips=("198.18.10.1",), notes={render.ALLOCATED_FROM_POOL: "web"})
    no_ip = service("b", notes={render.ALLOCATED_FROM_POOL: "web"})
    other = service("c", ips=("198.18.20.1",), notes={render.ALLOCATED_FROM_POOL: "other"})
    assert holders_of("web", [holding, no_ip, other]) == [holding]


# --- health --------------------------------------------------------------------------------------


def test_lease_freshness() -> None:
    assert lease_freshness(lease("c-1", timedelta(seconds=5)), NOW) == ("c-1", 10.0)
    holder, left = lease_freshness(lease("c-1", timedelta(seconds=60)), NOW)
    assert holder == "c-1" and left is not None and left < 0
    assert lease_freshness({"spec": {"holderIdentity": "x"}}, NOW) == ("x", None)


def healthy_inputs() -> dict[str, Any]:
    return {
        "crd_registered": True,
        "lease": lease("controller-0", timedelta(seconds=2)),
        "lease_ref": "ironlb-system/ironlb-controller",
        "pools": [pool("web", status=ready_status(1, 255))],
        "services": [service("a", ips=("198.18.10.1",))],
        "now": NOW,
    }


def test_assess_healthy() -> None:
    health = assess(**healthy_inputs())
    assert health.healthy, health.problems
    text = "\n".join(health.lines)
    assert "leader controller-0, Lease fresh (13s left)" in text
    assert "1 total, 1 Ready, 0 Invalid" in text
    assert "1 LoadBalancer, 0 pending" in text


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"crd_registered": False}, "CRD (ipaddresspools.ironlb.io) is not installed"),
        ({"lease": None}, "Lease ironlb-system/ironlb-controller not found"),
        ({"lease": lease(None, timedelta(seconds=1))}, "has no holder"),
        ({"lease": lease("controller-0", timedelta(seconds=75))}, "expired 60s ago"),
        ({"pools": [pool("bad", status=invalid_status("Overlap"))]}, "bad: Invalid (Overlap)"),
        ({"services": [service("waiting", "shop")]}, "without an address: shop/waiting"),
    ],
)
def test_assess_problems(change: dict[str, Any], problem: str) -> None:
    health = assess(**{**healthy_inputs(), **change})
    assert not health.healthy
    assert len(health.problems) == 1 and problem in health.problems[0]


def test_services_of_other_classes_are_not_ours() -> None:
    assert handled_by_ironlb(service("a", loadBalancerClass="ironlb.io/ironlb"))
    assert not handled_by_ironlb(service("b", loadBalancerClass="example.com/other"))
    assert not handled_by_ironlb({"spec": {"type": "ClusterIP"}})
    other = service("b", loadBalancerClass="example.com/other")  # pending, but not ours
    assert assess(**{**healthy_inputs(), "services": [other]}).healthy


# --- flags ---------------------------------------------------------------------------------------


def test_create_flags_map_to_spec() -> None:
    args = build_parser().parse_args(
        ["pool", "create", "web", "--addresses", "198.18.10.0/24, 198.18.11.1-198.18.11.9,",
         "--addresses", "fd00:198:18::/120", "--no-auto-assign", "--avoid-buggy-ips",
         "--priority", "3", "--namespace", "a", "--namespace", "b"]
    )  # fmt: skip
    assert pool_spec(args) == {
        "addresses": ["198.18.10.0/24", "198.18.11.1-198.18.11.9", "fd00:198:18::/120"],
        "autoAssign": False,
        "avoidBuggyIPs": True,
        "serviceAllocation": {"priority": 3, "namespaces": ["a", "b"]},
    }
    plain = build_parser().parse_args(["pool", "create", "p", "--addresses", "198.18.10.1"])
    assert pool_spec(plain) == {
        "addresses": ["198.18.10.1"],
        "autoAssign": True,
        "avoidBuggyIPs": False,
    }


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["pool", "create", "web"])
    assert exc.value.code == 2
    assert "--addresses" in capsys.readouterr().err


def test_pool_counts_are_exact_for_huge_ipv6_ranges() -> None:
    """``lbctl pool list``/``show`` print the exact ``freeText`` (as the Ready condition says),
    not the int64 ``free`` counter capped at 2**63-1; an older status without it still prints."""
    huge = pool_status(PoolUsage(2, 3, 254, 2**64 - 3), None, previous=None, generation=1, now=NOW)
    assert huge["free"] == 2**63 - 1
    row = render.pool_rows([pool("v6", status=huge)], NOW)[0]
    assert row[2:4] == ["5", str(254 + 2**64 - 3)]
    assert f"{254 + 2**64 - 3} available" in huge["conditions"][0]["message"]
    detail = render.pool_detail(pool("v6", status=huge), [], NOW)
    assert f"Free:           {254 + 2**64 - 3}" in detail
    old = {k: v for k, v in huge.items() if not k.endswith("Text")}
    assert render.pool_rows([pool("v6", status=old)], NOW)[0][2:4] == ["5", str(2**63 - 1)]
