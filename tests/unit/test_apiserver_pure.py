"""Pure parts of the local API server: selectors, merge patch, Service allocation,
the store's history and watch backlog, and CRD parsing. No sockets."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironlb.lab.apiserver.defaults import DefaultingError, ServiceAllocator
from ironlb.lab.apiserver.errors import ApiError
from ironlb.lab.apiserver.patching import apply_patch, merge_patch
from ironlb.lab.apiserver.registry import Registry, RegistryError, crd_types, version_priority
from ironlb.lab.apiserver.selectors import (
    SelectorError,
    make_filter,
    parse_field_selector,
    parse_label_selector,
)
from ironlb.lab.apiserver.store import ObjectStore, TooOldError
from tests.cluster.apiserver_helpers import widget_crd


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        ("a=1", {"a": "1"}, True),
        ("a==1", {"a": "2"}, False),
        ("a!=1", {}, True),
        ("a!=1", {"a": "1"}, False),
        ("a in (1, 2)", {"a": "2"}, True),
        ("a notin (1,2)", {"a": "3"}, True),
        ("a notin (1,2)", {}, True),
        ("a", {"a": ""}, True),
        ("!a", {"a": ""}, False),
        ("a=", {"a": ""}, True),
        ("x.io/role=lb,tier in (a,b),!skip", {"x.io/role": "lb", "tier": "b"}, True),
        ("n>3", {"n": "4"}, True),
        ("n<3", {"n": "x"}, False),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    accept = make_filter(selector, None)
    assert accept({"metadata": {"labels": labels}}) is expected


@pytest.mark.parametrize("bad", ["a in (1", "a in ()", "a=b c", "-a", "a,,b", "n>x", "a=(x)"])
def test_bad_label_selectors(bad: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(bad)


def test_field_selectors() -> None:
    obj = {
        "metadata": {"name": "n", "namespace": "d"},
        "spec": {"type": "LoadBalancer", "on": True},
    }
    assert make_filter(None, "metadata.name=n,spec.type==LoadBalancer")(obj)
    assert make_filter(None, "spec.on=true,status.phase=")(obj)
    assert not make_filter(None, "metadata.namespace!=d")(obj)
    for bad in ("metadata.name", "=x", "a..b=c"):
        with pytest.raises(SelectorError):
            parse_field_selector(bad)


def test_merge_patch_rfc7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "l": [3], "n": {"x": None}}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "l": [3], "n": {}}
    assert target["c"] == {"d": "e", "f": "g"}  # input untouched


def test_apply_patch_errors() -> None:
    obj = {"metadata": {"resourceVersion": "5"}}
    test_op = [{"op": "test", "path": "/metadata/resourceVersion", "value": "4"}]
    with pytest.raises(ApiError) as failed:
        apply_patch(obj, "application/json-patch+json", test_op)
    assert failed.value.code == 422
    with pytest.raises(ApiError) as media:
        apply_patch(obj, "text/plain", {})
    assert media.value.code == 415
    assert apply_patch(obj, "application/merge-patch+json; charset=utf-8", {"a": 1})["a"] == 1


def test_dynamic_cluster_ips_and_node_ports_leave_the_static_band_to_requests() -> None:
    """KEP-3070 / KEP-3668: dynamic values come from above the static band, so values a
    client asks for in the band stay free (the flake a module-long property run found)."""
    allocator = ServiceAllocator()  # 10.96.0.0/12: band of 256; 30000-32767: band of 86
    made = []
    for _ in range(300):
        svc: dict[str, Any] = {"spec": {"type": "NodePort", "ports": [{"port": 80}]}}
        allocator.apply(svc)
        made.append(svc)
    ips = [ipaddress.ip_address(s["spec"]["clusterIP"]) for s in made]
    assert min(ips) == ipaddress.ip_address("10.96.1.0")
    assert min(s["spec"]["ports"][0]["nodePort"] for s in made) == 30086
    wanted: dict[str, Any] = {
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.50",
            "ports": [{"port": 1, "nodePort": 30001}],
        }
    }
    allocator.apply(wanted)
    assert wanted["spec"]["clusterIP"] == "10.96.0.50"


def test_service_allocator_exhaustion_and_release() -> None:
    allocator = ServiceAllocator(cidr="10.96.0.0/28", node_ports=(30000, 30001))
    services: list[dict[str, Any]] = []
    for index in range(4):  # .10 .. .13 usable, .14 is the last before broadcast
        svc: dict[str, Any] = {
            "spec": {"type": "NodePort" if index < 2 else "ClusterIP", "ports": [{"port": 80}]}
        }
        allocator.apply(svc)
        services.append(svc)
    assert [s["spec"]["clusterIP"] for s in services] == [f"10.96.0.{n}" for n in range(10, 14)]
    assert [s["spec"]["ports"][0]["nodePort"] for s in services[:2]] == [30000, 30001]
    with pytest.raises(DefaultingError, match="no NodePorts left"):
        allocator.apply({"spec": {"type": "NodePort", "ports": [{"port": 1}]}})
    allocator.release(services[0])
    again: dict[str, Any] = {
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30000}]}
    }
    allocator.apply(again)
    assert again["spec"]["ports"][0]["nodePort"] == 30000
    with pytest.raises(DefaultingError, match="not in the valid range"):
        allocator.apply({"spec": {"clusterIP": "10.97.0.1"}})


def test_service_type_change_releases_node_ports() -> None:
    allocator = ServiceAllocator(node_ports=(30000, 30000))
    old: dict[str, Any] = {"spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    allocator.apply(old)
    new: dict[str, Any] = {
        "spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30000}]}
    }
    allocator.apply(new, old)
    assert "nodePort" not in new["spec"]["ports"][0]
    other: dict[str, Any] = {"spec": {"type": "NodePort", "ports": [{"port": 81}]}}
    allocator.apply(other)
    assert other["spec"]["ports"][0]["nodePort"] == 30000


def test_store_history_and_backlog() -> None:
    store = ObjectStore(history_size=3)
    key = ("", "configmaps")
    for index in range(5):
        store.put(key, "default", f"c{index}", {"metadata": {"name": f"c{index}"}})
    assert store.resource_version == 5
    with pytest.raises(TooOldError):
        store.watch(key, None, 1)
    backlog, watch = store.watch(key, "default", 3)
    assert [e.rv for e in backlog] == [4, 5]
    removed = store.remove(key, "default", "c0")
    assert removed is not None and removed["metadata"]["resourceVersion"] == "6"
    event = watch.queue.get_nowait()
    assert event is not None and event.type == "DELETED" and event.rv == 6
    store.close_all_watches()
    assert watch.queue.get_nowait() is None


def test_crd_parsing() -> None:
    types = crd_types(widget_crd(scope="Cluster"))
    assert [(t.version, t.namespaced, t.has_status) for t in types] == [
        ("v1", False, True),
        ("v1beta1", False, True),
    ]
    registry = Registry()
    registry.register_crd(widget_crd())
    assert registry.group_versions()["lab.ironlb.io"] == ["v1", "v1beta1"]
    with pytest.raises(RegistryError):
        bad = widget_crd()
        bad["spec"]["names"]["plural"] = "Widgets"
        bad["metadata"]["name"] = "Widgets.lab.ironlb.io"
        crd_types(bad)
    assert sorted(["v1alpha1", "v2", "v1beta2", "v1"], key=version_priority, reverse=True) == [
        "v2",
        "v1",
        "v1beta2",
        "v1alpha1",
    ]


def test_strategic_merge_patch_as_kubectl_sends_it() -> None:
    old = {
        "metadata": {"finalizers": ["a"], "labels": {"x": "1"}},
        "spec": {
            "ports": [{"port": 80, "nodePort": 30000}, {"port": 443, "nodePort": 30001}],
            "selector": {"app": "web", "old": "yes"},
        },
    }
    patch = {
        "metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]},
        "spec": {
            "$setElementOrder/ports": [{"port": 443}, {"port": 8080}],
            "ports": [{"port": 8080}, {"$patch": "delete", "port": 80}],
            "selector": {"$patch": "replace", "app": "api"},
        },
    }
    result = apply_patch(old, "application/strategic-merge-patch+json", patch)
    assert result["metadata"] == {"finalizers": ["b"], "labels": {"x": "1"}}
    assert result["spec"]["ports"] == [{"port": 443, "nodePort": 30001}, {"port": 8080}]
    assert result["spec"]["selector"] == {"app": "api"}
    # Lists without a known merge key are replaced, and directives never reach the object.
    other = apply_patch(
        {"spec": {"items": [1, 2]}},
        "application/strategic-merge-patch+json",
        {"spec": {"items": [3], "$retainKeys": ["items"]}},
    )
    assert other == {"spec": {"items": [3]}}


def test_table_jsonpath() -> None:
    from ironlb.lab.apiserver.tables import human_age, jsonpath

    obj = {"spec": {"a": [{"ip": "1"}, {"ip": "2"}], "b": {"c": 3}}}
    assert jsonpath(obj, ".spec.a[*].ip") == ["1", "2"]
    assert jsonpath(obj, ".spec.a[1].ip") == ["2"]
    assert jsonpath(obj, "{.spec.b.c}") == [3]
    assert jsonpath(obj, ".spec.missing") == []
    assert human_age(None) == "<unknown>"


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["put", "remove"]), st.sampled_from("abcde"), st.integers(0, 3)),
        max_size=60,
    ),
    cut=st.integers(0, 60),
)
def test_store_events_replay_to_the_same_state(ops: list[tuple[str, str, int]], cut: int) -> None:
    """Replaying the history from 0 - or a watch's backlog plus its live events from any
    point - rebuilds exactly what the store holds: no event is lost or reordered."""
    store = ObjectStore()
    key = ("", "configmaps")
    watch = None
    backlog: list[Any] = []
    for index, (op, name, value) in enumerate(ops):
        if index == cut:
            backlog, watch = store.watch(key, None, None)
        if op == "put":
            store.put(key, "default", name, {"metadata": {"name": name}, "data": {"v": str(value)}})
        else:
            store.remove(key, "default", name)
    if watch is None:
        backlog, watch = store.watch(key, None, None)

    def replay(events: list[Any]) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for event in events:
            if event.type == "DELETED":
                del state[event.obj["metadata"]["name"]]
            else:
                state[event.obj["metadata"]["name"]] = event.obj
        return state

    expected = {o["metadata"]["name"]: o for o in store.objects(key)}
    history, _ = store.watch(key, None, 0)
    assert replay(history) == expected
    live = []
    while not watch.queue.empty():
        live.append(watch.queue.get_nowait())
    assert replay(backlog + live) == expected
    versions = [e.rv for e in history]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
