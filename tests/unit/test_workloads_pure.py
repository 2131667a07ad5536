"""Pure decisions of the lab workload controllers: names, rollouts, scheduling,
DaemonSets, EndpointSlices, and the lab API's scale view and apps defaults."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironlb.lab.apiserver import errors
from ironlb.lab.apiserver.apps_defaults import apply_defaults
from ironlb.lab.apiserver.scale import replicas_of, scale_of, selector_string
from ironlb.lab.workloads import daemonsets, deployments, endpointslices, names, scheduling
from ironlb.lab.workloads.deployments import SpecError, scaled_value, surge_and_unavailable

TEMPLATE = {
    "metadata": {"labels": {"app": "web"}, "creationTimestamp": None},
    "spec": {"containers": [{"name": "c", "image": "nginx"}]},
}
_serial = itertools.count(1)


def deployment(replicas: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "default", "uid": "d-1", "generation": 2},
        "spec": {"replicas": replicas, "template": TEMPLATE, **spec},
    }


def realize(body: dict[str, Any], ready: bool = False, node: str | None = None) -> dict[str, Any]:
    """A created pod as the API would store it (name from generateName)."""
    n = next(_serial)
    meta = dict(body["metadata"])
    meta["name"] = meta.pop("generateName") + f"x{n:04d}"
    meta["creationTimestamp"] = f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}Z"
    meta["uid"] = f"p-{n}"
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]}
    spec = dict(body["spec"])
    if node:
        spec["nodeName"] = node
    return {"metadata": meta, "spec": spec, "status": status}


def node(name: str, ready: bool = True, **spec: Any) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, **spec.pop("labels", {})}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


# --- names -----------------------------------------------------------------------


def test_fnv1a_32_reference_vectors() -> None:
    assert names.fnv1a_32(b"") == 0x811C9DC5
    assert names.fnv1a_32(b"a") == 0xE40C292C
    assert names.fnv1a_32(b"foobar") == 0xBF9CF968


def test_safe_encode_maps_digits_as_kubernetes_does() -> None:
    # '0' is 48, 48 % 27 = 21 -> '4'; '6' is 54 -> 0 -> 'b'
    assert names.safe_encode("0123456789") == "456789bcdf"


def test_template_hash_is_stable_and_changes_with_the_template() -> None:
    first = names.template_hash(TEMPLATE)
    reordered = {"spec": TEMPLATE["spec"], "metadata": {"labels": {"app": "web"}}}
    assert names.template_hash(reordered) == first
    changed = {**TEMPLATE, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}
    assert names.template_hash(changed) != first
    assert names.template_hash(TEMPLATE, collision_count=1) != first
    assert set(first) <= set("456789bcdf") and 1 <= len(first) <= 10


@given(st.integers(min_value=0, max_value=40))
def test_random_suffix_alphabet(length: int) -> None:
    suffix = names.random_suffix(length=length)
    assert len(suffix) == length and set(suffix) <= set(names.ALPHABET)


# --- deployments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "total", "up", "expected"),
    [("25%", 4, True, 1), ("25%", 3, True, 1), ("25%", 3, False, 0), (2, 9, False, 2)],
)
def test_scaled_value(value: Any, total: int, up: bool, expected: int) -> None:
    assert scaled_value(value, total, round_up=up, name="x") == expected


@pytest.mark.parametrize("value", ["25", "x%", -1, True, 1.5])
def test_scaled_value_refuses(value: Any) -> None:
    with pytest.raises(SpecError, match=r"^maxSurge: "):
        scaled_value(value, 4, round_up=True, name="maxSurge")


def test_surge_and_unavailable_never_both_zero() -> None:
    spec = {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}}
    assert surge_and_unavailable(spec, 3) == (0, 1)


def test_new_deployment_creates_named_owned_pods() -> None:
    plan = deployments.reconcile(deployment(3), [])
    pod_hash = names.template_hash(TEMPLATE)
    assert len(plan.create) == 3 and plan.delete == []
    body = plan.create[0]
    assert body["metadata"]["generateName"] == f"web-{pod_hash}-"
    assert body["metadata"]["labels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert body["metadata"]["ownerReferences"][0]["uid"] == "d-1"
    assert plan.status is not None and plan.status["observedGeneration"] == 2


def test_scale_down_prefers_unscheduled_then_not_ready_then_newest() -> None:
    d = deployment(3)
    bodies = deployments.reconcile(d, []).create
    ready_old = realize(bodies[0], ready=True, node="n1")
    not_ready = realize(bodies[1], ready=False, node="n1")
    unscheduled = realize(bodies[2], ready=True)
    ready_new = realize(bodies[0], ready=True, node="n2")
    pods = [ready_old, not_ready, unscheduled, ready_new]
    assert deployments.reconcile(deployment(3), pods).delete == [unscheduled["metadata"]["name"]]
    assert deployments.reconcile(deployment(2), pods).delete == [
        unscheduled["metadata"]["name"],
        not_ready["metadata"]["name"],
    ]
    assert deployments.reconcile(deployment(1), pods).delete[2] == ready_new["metadata"]["name"]


def test_other_owners_pods_are_ignored() -> None:
    foreign = realize(deployments.reconcile(deployment(1), []).create[0], ready=True)
    foreign["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    assert len(deployments.reconcile(deployment(1), [foreign]).create) == 1


def test_unknown_strategy_and_bad_replicas_are_spec_errors() -> None:
    with pytest.raises(SpecError, match='Unsupported value: "Sideways"'):
        deployments.reconcile(deployment(1, strategy={"type": "Sideways"}), [])
    with pytest.raises(SpecError, match=r"spec\.replicas"):
        deployments.reconcile(deployment(-1), [])


@settings(max_examples=60, deadline=None)
@given(
    replicas=st.integers(min_value=0, max_value=7),
    surge=st.sampled_from([0, 1, 2, "25%", "50%"]),
    unavailable=st.sampled_from([0, 1, "25%", "50%"]),
    readiness=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_rolling_update_bounds_and_converges(
    replicas: int, surge: Any, unavailable: Any, readiness: list[bool]
) -> None:
    strategy = {"rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    old_template = {**TEMPLATE, "spec": {"containers": [{"name": "c", "image": "old"}]}}
    old = deployment(replicas, template=old_template)
    pods = [realize(b, ready=True, node="n") for b in deployments.reconcile(old, []).create]
    new = deployment(replicas, strategy=strategy)
    max_surge, max_unavailable = surge_and_unavailable(new["spec"], replicas)
    for step in range(60):
        plan = deployments.reconcile(new, pods)
        pods = [p for p in pods if p["metadata"]["name"] not in plan.delete]
        pods += [realize(b, node="n") for b in plan.create]
        assert len(pods) <= replicas + max_surge
        available = sum(1 for p in pods if p["status"]["conditions"][0]["status"] == "True")
        assert available >= min(replicas - max_unavailable, replicas)
        for pod in pods:  # the kubelet readies some pods each step; all of them late on
            if step >= 40 or readiness[step]:
                pod["status"]["conditions"][0]["status"] = "True"
    current = names.template_hash(TEMPLATE)
    assert len(pods) == replicas
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in pods} <= {current}
    status = deployments.reconcile(new, pods).status
    assert status is not None and status.get("updatedReplicas", 0) == replicas


# --- scheduling --------------------------------------------------------------------


def test_pick_node_fewest_pods_skips_cordoned_not_ready_and_unselected() -> None:
    nodes = [
        node("a"),
        node("b"),
        node("c", unschedulable=True),
        node("d", ready=False),
        node("e", labels={"disk": "ssd"}),
    ]
    busy = [{"metadata": {}, "spec": {"nodeName": "a"}, "status": {}}]
    pod: dict[str, Any] = {"metadata": {}, "spec": {}}
    assert scheduling.pick_node(pod, nodes, busy) == "b"
    assert scheduling.pick_node(pod, nodes[:1], busy) == "a"
    assert scheduling.pick_node({"spec": {"nodeSelector": {"disk": "ssd"}}}, nodes, []) == "e"
    assert scheduling.pick_node({"spec": {"nodeSelector": {"disk": "hdd"}}}, nodes, []) is None
    tolerant = {"spec": {"tolerations": [{"operator": "Exists"}], "nodeSelector": {}}}
    assert scheduling.pick_node(tolerant, [nodes[2]], []) == "c"
    finished = {"metadata": {}, "spec": {"nodeName": "b"}, "status": {"phase": "Succeeded"}}
    assert scheduling.pick_node(pod, nodes[:2], [*busy, finished]) == "b"


# --- daemonsets --------------------------------------------------------------------


def daemonset(**template_spec: Any) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"app": "agent"}},
        "spec": {"containers": [], **template_spec},
    }
    return {
        "metadata": {"name": "agent", "namespace": "default", "uid": "ds-1", "generation": 1},
        "spec": {"template": template},
    }


def test_daemonset_covers_matching_nodes_cordoned_included() -> None:
    nodes = [
        node("a"),
        node("b", unschedulable=True),
        node("c", ready=False),
        node("x", labels={"role": "edge"}),
    ]
    plan = daemonsets.reconcile(daemonset(), nodes, [])
    assert sorted(b["spec"]["nodeName"] for b in plan.create) == ["a", "b", "c", "x"]
    body = plan.create[0]
    assert body["metadata"]["generateName"] == "agent-"
    assert {
        "key": "node.kubernetes.io/unschedulable",
        "operator": "Exists",
        "effect": "NoSchedule",
    } in body["spec"]["tolerations"]
    selective = daemonsets.reconcile(daemonset(nodeSelector={"role": "edge"}), nodes, [])
    assert [b["spec"]["nodeName"] for b in selective.create] == ["x"]


def test_daemonset_removes_misscheduled_and_duplicate_pods() -> None:
    ds = daemonset(nodeSelector={"role": "edge"})
    nodes = [node("a"), node("x", labels={"role": "edge"})]
    wrong = realize(daemonsets.pod_for(ds, "a", "h"), ready=True, node="a")
    first = realize(daemonsets.reconcile(ds, nodes, []).create[0], ready=True)
    second = realize(daemonsets.reconcile(ds, nodes, []).create[0], ready=False)
    plan = daemonsets.reconcile(ds, nodes, [wrong, first, second])
    assert sorted(plan.delete) == sorted([wrong["metadata"]["name"], second["metadata"]["name"]])
    assert plan.create == []
    assert plan.status is not None and plan.status["numberMisscheduled"] == 1


def test_daemonset_rolls_one_node_at_a_time() -> None:
    nodes = [node("a"), node("b"), node("c")]
    old = daemonset(containers=[{"name": "c", "image": "v1"}])
    pods = [realize(b, ready=True) for b in daemonsets.reconcile(old, nodes, []).create]
    new = daemonset(containers=[{"name": "c", "image": "v2"}])
    plan = daemonsets.reconcile(new, nodes, pods)
    assert len(plan.delete) == 1 and plan.create == []


# --- endpointslices ----------------------------------------------------------------


def pod(name: str, ips: list[str], ready: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"u-{name}",
            "labels": {"app": "web"},
            **extra.pop("meta", {}),
        },
        "spec": {
            "nodeName": "node1",
            "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}],
            **extra,
        },
        "status": {
            "phase": "Running",
            "podIPs": [{"ip": ip} for ip in ips],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def service(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "default", "uid": "s-1"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}],
            **spec,
        },
    }


def test_resolve_port_named_numeric_default_and_missing() -> None:
    p = pod("a", [])
    assert endpointslices.resolve_port(p, {"port": 80, "targetPort": "http"}) == 8080
    assert endpointslices.resolve_port(p, {"port": 80, "targetPort": 9000}) == 9000
    assert endpointslices.resolve_port(p, {"port": 80}) == 80
    assert endpointslices.resolve_port(p, {"port": 80, "targetPort": "grpc"}) is None
    assert (
        endpointslices.resolve_port(p, {"port": 80, "targetPort": "http", "protocol": "UDP"})
        is None
    )


def test_desired_slices_families_conditions_and_skips() -> None:
    pods = [
        pod("a", ["198.19.1.10", "fd00:198:19:1::10"]),
        pod("b", ["198.19.2.10"], ready=False),
        pod("c", []),  # no IP yet
        pod("d", ["198.19.1.11"], meta={"deletionTimestamp": "2026-01-01T00:00:00Z"}),
        {
            **pod("e", ["198.19.1.12"]),
            "status": {"phase": "Failed", "podIPs": [{"ip": "198.19.1.12"}]},
        },
        {
            **pod("f", ["198.19.1.13"]),
            "metadata": {"name": "f", "namespace": "other", "labels": {"app": "web"}},
        },
    ]
    wanted = endpointslices.desired_slices(service(ipFamilies=["IPv4", "IPv6"]), pods)
    ports = (("", "TCP", 8080),)
    assert set(wanted) == {("IPv4", ports), ("IPv6", ports)}
    v4 = {e["targetRef"]["name"]: e["conditions"] for e in wanted[("IPv4", ports)]}
    assert v4 == {
        "a": {"ready": True, "serving": True, "terminating": False},
        "b": {"ready": False, "serving": False, "terminating": False},
        "d": {"ready": False, "serving": True, "terminating": True},
    }
    assert [e["addresses"] for e in wanted[("IPv6", ports)]] == [["fd00:198:19:1::10"]]
    published = endpointslices.desired_slices(service(publishNotReadyAddresses=True), pods)
    assert all(e["conditions"]["ready"] for e in published[("IPv4", ports)])


def test_pods_lacking_a_named_port_go_to_another_slice() -> None:
    other = pod("z", ["198.19.1.20"])
    other["spec"]["containers"][0]["ports"] = []
    wanted = endpointslices.desired_slices(service(), [pod("a", ["198.19.1.10"]), other])
    assert set(wanted) == {("IPv4", (("", "TCP", 8080),)), ("IPv4", ())}


def test_placeholder_slice_and_no_selector() -> None:
    assert endpointslices.desired_slices(service(), []) == {("IPv4", ()): []}
    assert endpointslices.desired_slices(service(selector=None), [pod("a", ["198.19.1.1"])]) == {}


def test_diff_creates_updates_and_deletes() -> None:
    svc = service()
    first = endpointslices.diff(svc, [pod("a", ["198.19.1.10"])], [])
    assert len(first.create) == 1 and not first.update and not first.delete
    created = {**first.create[0], "metadata": {**first.create[0]["metadata"], "name": "web-abcde"}}
    created["metadata"].pop("generateName")
    assert endpointslices.diff(svc, [pod("a", ["198.19.1.10"])], [created]).create == []
    change = endpointslices.diff(svc, [pod("a", ["198.19.1.10"], ready=False)], [created])
    assert [name for name, _ in change.update] == ["web-abcde"]
    stale = {**created, "metadata": {**created["metadata"], "name": "web-stale"}, "ports": []}
    cleanup = endpointslices.diff(svc, [pod("a", ["198.19.1.10"])], [created, stale])
    assert cleanup.delete == ["web-stale"]
    foreign = {
        **stale,
        "metadata": {**stale["metadata"], "labels": {"kubernetes.io/service-name": "web"}},
    }
    assert endpointslices.diff(svc, [pod("a", ["198.19.1.10"])], [created, foreign]).delete == []


# --- lab API: scale and apps defaults -----------------------------------------------


def test_scale_view_and_refusals() -> None:
    obj = {
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
        "spec": {
            "replicas": 4,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
            },
        },
        "status": {"replicas": 3},
    }
    scale = scale_of(obj)
    assert scale["spec"] == {"replicas": 4}
    assert scale["status"] == {"replicas": 3, "selector": "app=web,tier in (a,b)"}
    assert selector_string({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}) == "!x"
    for bad in (
        {"spec": {"replicas": -2}},
        {"spec": {"replicas": True}},
        {"spec": {"replicas": "3"}},
    ):
        with pytest.raises(errors.ApiError) as caught:
            replicas_of(bad)
        assert caught.value.code == 422


def test_apps_defaults() -> None:
    deploy: dict[str, Any] = {"spec": {"strategy": {}}}
    apply_defaults("Deployment", deploy)
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    recreate: dict[str, Any] = {"spec": {"strategy": {"type": "Recreate"}}}
    apply_defaults("Deployment", recreate)
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}
    ds: dict[str, Any] = {"spec": {}}
    apply_defaults("DaemonSet", ds)
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    other: dict[str, Any] = {"spec": {}}
    apply_defaults("ConfigMap", other)
    assert other == {"spec": {}}
