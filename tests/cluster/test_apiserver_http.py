"""The local API server over real HTTP (aiohttp client): discovery, CRUD, errors, patches,
generation, the status subresource, finalizers, lists with selectors, Services, namespaces."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from ironlb.lab.apiserver import LocalApiServer, run_in_thread
from tests.cluster.apiserver_helpers import call

pytestmark = pytest.mark.cluster

CM = "/api/v1/namespaces/default/configmaps"
SVC = "/api/v1/namespaces/default/services"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSONPATCH = {"Content-Type": "application/json-patch+json"}


def assert_status(body: dict[str, Any], code: int, reason: str) -> None:
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["reason"] == reason
    assert body["message"]


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}


# --- discovery -------------------------------------------------------------------------


async def test_discovery_documents(http: aiohttp.ClientSession) -> None:
    version = await call(http, "GET", "/version", 200)
    assert version["major"] == "1" and version["gitVersion"].startswith("v1.")
    assert (await call(http, "GET", "/api", 200))["versions"] == ["v1"]

    core = await call(http, "GET", "/api/v1", 200)
    assert core["kind"] == "APIResourceList" and core["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["services"]["namespaced"] is True
    assert by_name["services"]["kind"] == "Service"
    assert "svc" in by_name["services"]["shortNames"]
    assert "watch" in by_name["services"]["verbs"]
    assert by_name["services/status"]["verbs"] == ["get", "patch", "update"]
    assert by_name["namespaces"]["namespaced"] is False
    assert "configmaps/status" not in by_name

    groups = await call(http, "GET", "/apis", 200)
    assert groups["kind"] == "APIGroupList"
    coordination = next(g for g in groups["groups"] if g["name"] == "coordination.k8s.io")
    assert coordination["preferredVersion"] == {
        "groupVersion": "coordination.k8s.io/v1",
        "version": "v1",
    }
    leases = await call(http, "GET", "/apis/coordination.k8s.io/v1", 200)
    assert leases["groupVersion"] == "coordination.k8s.io/v1"
    assert [r["name"] for r in leases["resources"]] == ["leases"]
    names = {g["name"] for g in groups["groups"]}
    assert {"discovery.k8s.io", "events.k8s.io", "apiextensions.k8s.io"} <= names
    assert {"admissionregistration.k8s.io"} <= names

    missing = await call(http, "GET", "/apis/nope.example.com/v1", 404)
    assert_status(missing, 404, "NotFound")
    unknown = await call(http, "GET", "/api/v1/namespaces/default/gadgets", 404)
    assert_status(unknown, 404, "NotFound")


async def test_initial_namespaces(http: aiohttp.ClientSession) -> None:
    body = await call(http, "GET", "/api/v1/namespaces", 200)
    names = [ns["metadata"]["name"] for ns in body["items"]]
    assert {"default", "kube-system", "kube-public"} <= set(names)
    assert all(ns["status"]["phase"] == "Active" for ns in body["items"])


# --- create / get / errors -------------------------------------------------------------


async def test_create_sets_server_metadata(http: aiohttp.ClientSession) -> None:
    sent = cm("one")
    sent["metadata"]["uid"] = "client-made"
    created = await call(http, "POST", CM, 201, json=sent)
    meta = created["metadata"]
    assert created["kind"] == "ConfigMap" and created["apiVersion"] == "v1"
    assert meta["namespace"] == "default"
    assert meta["uid"] != "client-made" and len(meta["uid"]) == 36
    assert meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert isinstance(meta["resourceVersion"], str)
    got = await call(http, "GET", f"{CM}/one", 200)
    assert got == created

    # One global counter across types: the next write anywhere gets the next number.
    lease = await call(http, "POST", LEASES, 201, json={"metadata": {"name": "l1"}})
    assert int(lease["metadata"]["resourceVersion"]) == int(meta["resourceVersion"]) + 1


async def test_create_errors_are_status_objects(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CM, 201, json=cm("dup"))
    dup = await call(http, "POST", CM, 409, json=cm("dup"))
    assert_status(dup, 409, "AlreadyExists")
    assert dup["details"] == {"name": "dup", "group": "", "kind": "configmaps"}

    missing = await call(http, "GET", f"{CM}/absent", 404)
    assert_status(missing, 404, "NotFound")
    assert missing["message"] == 'configmaps "absent" not found'
    assert missing["details"]["name"] == "absent"

    nameless = await call(http, "POST", CM, 422, json={"metadata": {}})
    assert_status(nameless, 422, "Invalid")
    assert nameless["details"]["causes"][0]["field"] == "metadata.name"

    bad_name = await call(http, "POST", CM, 422, json=cm("Not_A_Name"))
    assert_status(bad_name, 422, "Invalid")

    no_ns = await call(http, "POST", "/api/v1/namespaces/nowhere/configmaps", 404, json=cm("x"))
    assert_status(no_ns, 404, "NotFound")
    assert "nowhere" in no_ns["message"]

    wrong_ns = {"metadata": {"name": "x", "namespace": "kube-system"}}
    assert_status(await call(http, "POST", CM, 400, json=wrong_ns), 400, "BadRequest")
    wrong_kind = {"kind": "Secret", "metadata": {"name": "x"}}
    assert_status(await call(http, "POST", CM, 400, json=wrong_kind), 400, "BadRequest")
    garbage = await call(
        http, "POST", CM, 400, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_status(garbage, 400, "BadRequest")
    protobuf = {"Content-Type": "application/vnd.kubernetes.protobuf"}
    assert_status(
        await call(http, "POST", CM, 415, data=b"k8s\x00", headers=protobuf),
        415,
        "UnsupportedMediaType",
    )
    named_post = await call(http, "POST", f"{CM}/dup", 405, json=cm("dup"))
    assert_status(named_post, 405, "MethodNotAllowed")


async def test_generate_name(http: aiohttp.ClientSession) -> None:
    first = await call(http, "POST", CM, 201, json={"metadata": {"generateName": "gen-"}})
    second = await call(http, "POST", CM, 201, json={"metadata": {"generateName": "gen-"}})
    for body in (first, second):
        name = body["metadata"]["name"]
        assert name.startswith("gen-") and len(name) == len("gen-") + 5
    assert first["metadata"]["name"] != second["metadata"]["name"]


async def test_cluster_scoped_create_ignores_namespace(http: aiohttp.ClientSession) -> None:
    node = {"metadata": {"name": "node-a", "namespace": "default"}, "status": {"phase": "Up"}}
    created = await call(http, "POST", "/api/v1/nodes", 201, json=node)
    assert "namespace" not in created["metadata"]
    assert created["status"] == {"phase": "Up"}  # Nodes may carry status on create
    await call(http, "GET", "/api/v1/nodes/node-a", 200)
    await call(http, "GET", "/api/v1/namespaces/default/nodes/node-a", 404)


async def test_namespaced_objects_are_stored_per_namespace(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", "/api/v1/namespaces", 201, json={"metadata": {"name": "team"}})
    a = await call(http, "POST", CM, 201, json=cm("same", side="a"))
    b = await call(
        http, "POST", "/api/v1/namespaces/team/configmaps", 201, json=cm("same", side="b")
    )
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    got = await call(http, "GET", "/api/v1/namespaces/team/configmaps/same", 200)
    assert got["metadata"]["labels"] == {"side": "b"}
    everywhere = await call(
        http, "GET", "/api/v1/configmaps", 200, params={"labelSelector": "side"}
    )
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]] == [
        ("default", "same"),
        ("team", "same"),
    ]
    # Deleting the namespace takes its objects with it.
    await call(http, "DELETE", "/api/v1/namespaces/team", 200)
    await call(http, "GET", "/api/v1/namespaces/team/configmaps/same", 404)
    await call(http, "GET", f"{CM}/same", 200)


# --- update / patch ---------------------------------------------------------------------


async def test_put_with_stale_resource_version_conflicts(http: aiohttp.ClientSession) -> None:
    created = await call(http, "POST", CM, 201, json=cm("put"))
    stale = dict(created, data={"k": "first"})
    updated = await call(http, "PUT", f"{CM}/put", 200, json=stale)
    assert updated["data"] == {"k": "first"}
    assert int(updated["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]

    again = dict(created, data={"k": "second"})  # still carries the old resourceVersion
    conflict = await call(http, "PUT", f"{CM}/put", 409, json=again)
    assert_status(conflict, 409, "Conflict")
    assert "the object has been modified" in conflict["message"]
    assert (await call(http, "GET", f"{CM}/put", 200))["data"] == {"k": "first"}

    renamed = dict(updated, metadata=dict(updated["metadata"], name="other"))
    assert_status(await call(http, "PUT", f"{CM}/put", 400, json=renamed), 400, "BadRequest")
    assert_status(await call(http, "PUT", f"{CM}/nope", 404, json=cm("nope")), 404, "NotFound")


async def test_patch_content_types(http: aiohttp.ClientSession) -> None:
    created = await call(http, "POST", CM, 201, json=cm("p", keep="yes", drop="yes"))
    rv = created["metadata"]["resourceVersion"]

    merged = await call(
        http,
        "PATCH",
        f"{CM}/p",
        200,
        headers=MERGE,
        json={"metadata": {"labels": {"drop": None, "new": "1"}}, "data": {"x": "y"}},
    )
    assert merged["metadata"]["labels"] == {"keep": "yes", "new": "1"}
    assert merged["data"] == {"k": "v", "x": "y"}

    # A JSON patch guarded by a test of the resourceVersion, as kopf sends it.
    current = merged["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": current},
        {"op": "add", "path": "/metadata/finalizers", "value": ["lab/f"]},
    ]
    patched = await call(http, "PATCH", f"{CM}/p", 200, headers=JSONPATCH, json=ops)
    assert patched["metadata"]["finalizers"] == ["lab/f"]

    stale_ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "remove", "path": "/metadata/finalizers"},
    ]
    failed = await call(http, "PATCH", f"{CM}/p", 422, headers=JSONPATCH, json=stale_ops)
    assert_status(failed, 422, "Invalid")
    assert (await call(http, "GET", f"{CM}/p", 200))["metadata"]["finalizers"] == ["lab/f"]

    strategic = {"Content-Type": "application/strategic-merge-patch+json"}
    smp = await call(http, "PATCH", f"{CM}/p", 200, headers=strategic, json={"data": {"s": "1"}})
    assert smp["data"]["s"] == "1"

    apply_yaml = {"Content-Type": "application/apply-patch+yaml"}
    refused = await call(http, "PATCH", f"{CM}/p", 400, headers=apply_yaml, data=b"data: {}")
    assert_status(refused, 400, "BadRequest")
    assert refused["message"] == "fieldManager is required for apply requests"
    unknown = {"Content-Type": "application/cbor"}
    assert_status(
        await call(http, "PATCH", f"{CM}/p", 415, headers=unknown, data=b"\xa0"),
        415,
        "UnsupportedMediaType",
    )

    bad_merge = await call(http, "PATCH", f"{CM}/p", 422, headers=MERGE, json=["not", "a", "map"])
    assert_status(bad_merge, 422, "Invalid")
    bad_ops = await call(http, "PATCH", f"{CM}/p", 422, headers=JSONPATCH, json=[{"op": "jump"}])
    assert_status(bad_ops, 422, "Invalid")
    bad_path = [{"op": "replace", "path": "/no/such/field", "value": 1}]
    assert_status(
        await call(http, "PATCH", f"{CM}/p", 422, headers=JSONPATCH, json=bad_path), 422, "Invalid"
    )

    # A merge patch that names an old resourceVersion is a precondition: 409.
    stale = {"metadata": {"resourceVersion": rv, "labels": {"z": "1"}}}
    assert_status(
        await call(http, "PATCH", f"{CM}/p", 409, headers=MERGE, json=stale), 409, "Conflict"
    )
    assert_status(
        await call(http, "PATCH", f"{CM}/gone", 404, headers=MERGE, json={"data": {}}),
        404,
        "NotFound",
    )


async def test_noop_update_keeps_resource_version(http: aiohttp.ClientSession) -> None:
    created = await call(http, "POST", CM, 201, json=cm("same", a="1"))
    again = await call(
        http, "PATCH", f"{CM}/same", 200, headers=MERGE, json={"metadata": {"labels": {"a": "1"}}}
    )
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_generation_tracks_spec_only(http: aiohttp.ClientSession) -> None:
    svc = {"metadata": {"name": "gen"}, "spec": {"ports": [{"port": 80}]}}
    created = await call(http, "POST", SVC, 201, json=svc)
    assert created["metadata"]["generation"] == 1

    labelled = await call(
        http,
        "PATCH",
        f"{SVC}/gen",
        200,
        headers=MERGE,
        json={"metadata": {"labels": {"a": "b"}, "annotations": {"c": "d"}}},
    )
    assert labelled["metadata"]["generation"] == 1
    status = {"status": {"loadBalancer": {"ingress": [{"ip": "198.18.0.10"}]}}}
    with_status = await call(http, "PATCH", f"{SVC}/gen/status", 200, headers=MERGE, json=status)
    assert with_status["metadata"]["generation"] == 1
    assert int(with_status["metadata"]["resourceVersion"]) > int(
        labelled["metadata"]["resourceVersion"]
    )
    spec = await call(
        http,
        "PATCH",
        f"{SVC}/gen",
        200,
        headers=MERGE,
        json={"spec": {"sessionAffinity": "ClientIP"}},
    )
    assert spec["metadata"]["generation"] == 2


async def test_status_subresource_is_kept_apart(http: aiohttp.ClientSession) -> None:
    await call(
        http, "POST", SVC, 201, json={"metadata": {"name": "st"}, "spec": {"ports": [{"port": 80}]}}
    )
    ingress = {"loadBalancer": {"ingress": [{"ip": "198.18.0.5"}]}}

    # Status sent to the main resource is ignored, spec sent to /status is ignored.
    main = await call(
        http,
        "PATCH",
        f"{SVC}/st",
        200,
        headers=MERGE,
        json={"status": ingress, "spec": {"sessionAffinity": "ClientIP"}},
    )
    assert main["status"] == {"loadBalancer": {}}
    assert main["spec"]["sessionAffinity"] == "ClientIP"
    sub = await call(
        http,
        "PATCH",
        f"{SVC}/st/status",
        200,
        headers=MERGE,
        json={
            "status": ingress,
            "spec": {"sessionAffinity": "None"},
            "metadata": {"labels": {"ignored": "yes"}},
        },
    )
    assert sub["status"] == ingress
    assert sub["spec"]["sessionAffinity"] == "ClientIP"
    assert "labels" not in sub["metadata"]

    # PUT behaves the same way.
    put_main = dict(sub, status={"loadBalancer": {}})
    after_put = await call(http, "PUT", f"{SVC}/st", 200, json=put_main)
    assert after_put["status"] == ingress
    cleared = await call(
        http, "PUT", f"{SVC}/st/status", 200, json=dict(after_put, status={"loadBalancer": {}})
    )
    assert cleared["status"] == {"loadBalancer": {}}
    got = await call(http, "GET", f"{SVC}/st/status", 200)
    assert got["status"] == {"loadBalancer": {}}

    # ConfigMaps have no status subresource.
    await call(http, "POST", CM, 201, json=cm("nostatus"))
    assert_status(await call(http, "GET", f"{CM}/nostatus/status", 404), 404, "NotFound")


# --- delete / finalizers -----------------------------------------------------------------


async def test_delete_without_finalizers_removes(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CM, 201, json=cm("bye"))
    deleted = await call(http, "DELETE", f"{CM}/bye", 200)
    assert deleted["metadata"]["name"] == "bye"
    await call(http, "GET", f"{CM}/bye", 404)
    assert_status(await call(http, "DELETE", f"{CM}/bye", 404), 404, "NotFound")


async def test_finalizers_hold_deletion(http: aiohttp.ClientSession) -> None:
    body = cm("held")
    body["metadata"]["finalizers"] = ["lab/one", "lab/two"]
    created = await call(http, "POST", CM, 201, json=body)
    wrong_uid = {"preconditions": {"uid": "0000"}}
    assert_status(await call(http, "DELETE", f"{CM}/held", 409, json=wrong_uid), 409, "Conflict")

    marked = await call(http, "DELETE", f"{CM}/held", 200)
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert marked["metadata"]["uid"] == created["metadata"]["uid"]
    again = await call(http, "DELETE", f"{CM}/held", 200)
    assert again["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]

    still = await call(
        http,
        "PATCH",
        f"{CM}/held",
        200,
        headers=MERGE,
        json={"metadata": {"finalizers": ["lab/two"]}},
    )
    assert still["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    # A client cannot clear deletionTimestamp.
    cleared = await call(
        http,
        "PATCH",
        f"{CM}/held",
        200,
        headers=MERGE,
        json={"metadata": {"deletionTimestamp": None}},
    )
    assert cleared["metadata"]["deletionTimestamp"]
    await call(
        http,
        "PATCH",
        f"{CM}/held",
        200,
        headers=JSONPATCH,
        json=[{"op": "remove", "path": "/metadata/finalizers"}],
    )
    await call(http, "GET", f"{CM}/held", 404)


async def test_delete_collection_with_selector(http: aiohttp.ClientSession) -> None:
    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        await call(http, "POST", CM, 201, json=cm(name, tier=tier))
    deleted = await call(http, "DELETE", CM, 200, params={"labelSelector": "tier=x"})
    assert sorted(i["metadata"]["name"] for i in deleted["items"]) == ["a", "b"]
    left = await call(http, "GET", CM, 200, params={"labelSelector": "tier"})
    assert [i["metadata"]["name"] for i in left["items"]] == ["c"]


# --- list and selectors ------------------------------------------------------------------


async def test_list_shape_and_selectors(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CM, 201, json=cm("a1", app="web", tier="front"))
    await call(http, "POST", CM, 201, json=cm("a2", app="web", tier="back"))
    last = await call(http, "POST", CM, 201, json=cm("a3", app="db"))
    listed = await call(http, "GET", CM, 200)
    assert listed["kind"] == "ConfigMapList" and listed["apiVersion"] == "v1"
    assert listed["metadata"]["resourceVersion"] == last["metadata"]["resourceVersion"]
    assert all(i["kind"] == "ConfigMap" and i["apiVersion"] == "v1" for i in listed["items"])

    async def names(**params: str) -> list[str]:
        body = await call(http, "GET", CM, 200, params=params)
        return [i["metadata"]["name"] for i in body["items"]]

    assert await names(labelSelector="app=web") == ["a1", "a2"]
    assert await names(labelSelector="app==web,tier!=front") == ["a2"]
    assert await names(labelSelector="app in (db, cache)") == ["a3"]
    assert await names(labelSelector="app notin (db),tier") == ["a1", "a2"]
    assert await names(labelSelector="app,!tier") == ["a3"]
    assert await names(fieldSelector="metadata.name=a2") == ["a2"]
    assert await names(fieldSelector="metadata.name!=a2,metadata.namespace=default") == ["a1", "a3"]
    assert await names(fieldSelector="data.k=v", labelSelector="tier=back") == ["a2"]
    bad = await call(http, "GET", CM, 400, params={"labelSelector": "app in (web"})
    assert_status(bad, 400, "BadRequest")
    bad_field = await call(http, "GET", CM, 400, params={"fieldSelector": "metadata.name"})
    assert_status(bad_field, 400, "BadRequest")


# --- Services ------------------------------------------------------------------------------


async def test_service_defaulting(http: aiohttp.ClientSession) -> None:
    lb = {
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]},
    }
    created = await call(http, "POST", SVC, 201, json=lb)
    spec = created["spec"]
    assert spec["clusterIP"].startswith("10.") and spec["clusterIPs"] == [spec["clusterIP"]]
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["sessionAffinity"] == "None" and spec["externalTrafficPolicy"] == "Cluster"
    assert spec["allocateLoadBalancerNodePorts"] is True
    assert [p["protocol"] for p in spec["ports"]] == ["TCP", "UDP"]
    assert [p["targetPort"] for p in spec["ports"]] == [80, 53]
    node_ports = [p["nodePort"] for p in spec["ports"]]
    assert all(30000 <= p <= 32767 for p in node_ports) and len(set(node_ports)) == 2

    plain = await call(
        http,
        "POST",
        SVC,
        201,
        json={"metadata": {"name": "plain"}, "spec": {"ports": [{"port": 80}]}},
    )
    assert plain["spec"]["type"] == "ClusterIP"
    assert plain["spec"]["clusterIP"] != spec["clusterIP"]
    assert "nodePort" not in plain["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in plain["spec"]

    no_np = {
        "metadata": {"name": "nonp"},
        "spec": {
            "type": "LoadBalancer",
            "allocateLoadBalancerNodePorts": False,
            "ports": [{"port": 80}],
        },
    }
    created_no_np = await call(http, "POST", SVC, 201, json=no_np)
    assert "nodePort" not in created_no_np["spec"]["ports"][0]

    # Updates keep the allocations; changing the ClusterIP is refused.
    resent = {
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]},
    }
    updated = await call(http, "PUT", f"{SVC}/lb", 200, json=resent)
    assert updated["spec"]["clusterIP"] == spec["clusterIP"]
    assert [p["nodePort"] for p in updated["spec"]["ports"]] == node_ports
    moved = await call(
        http, "PATCH", f"{SVC}/lb", 422, headers=MERGE, json={"spec": {"clusterIP": "10.96.9.9"}}
    )
    assert_status(moved, 422, "Invalid")
    taken = {
        "metadata": {"name": "taken"},
        "spec": {"clusterIP": spec["clusterIP"], "ports": [{"port": 1}]},
    }
    assert_status(await call(http, "POST", SVC, 422, json=taken), 422, "Invalid")
    bad_type = {"metadata": {"name": "bt"}, "spec": {"type": "Magic"}}
    assert_status(await call(http, "POST", SVC, 422, json=bad_type), 422, "Invalid")
    headless = {"metadata": {"name": "hl"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}}
    assert (await call(http, "POST", SVC, 201, json=headless))["spec"]["clusterIPs"] == ["None"]

    # Deleting releases the ClusterIP: it can be asked for explicitly again.
    await call(http, "DELETE", f"{SVC}/lb", 200)
    again = {
        "metadata": {"name": "again"},
        "spec": {"clusterIP": spec["clusterIP"], "ports": [{"port": 1}]},
    }
    assert (await call(http, "POST", SVC, 201, json=again))["spec"]["clusterIP"] == spec[
        "clusterIP"
    ]


async def test_metadata_validation(http: aiohttp.ClientSession) -> None:
    bad_label = {"metadata": {"name": "l", "labels": {"bad key": "v"}}}
    assert_status(await call(http, "POST", CM, 422, json=bad_label), 422, "Invalid")
    bad_value = {"metadata": {"name": "l", "labels": {"k": "-starts-with-dash"}}}
    assert_status(await call(http, "POST", CM, 422, json=bad_value), 422, "Invalid")
    number = {"metadata": {"name": "l", "annotations": {"k": 1}}}
    assert_status(await call(http, "POST", CM, 400, json=number), 400, "BadRequest")
    with_rv = {"metadata": {"name": "l", "resourceVersion": "5"}}
    assert_status(await call(http, "POST", CM, 400, json=with_rv), 400, "BadRequest")
    ok = {"metadata": {"name": "l", "labels": {"ironlb.io/pool": "p-1", "empty": ""}}}
    await call(http, "POST", CM, 201, json=ok)


async def test_no_new_finalizers_while_deleting(http: aiohttp.ClientSession) -> None:
    body = cm("fin")
    body["metadata"]["finalizers"] = ["lab/one"]
    await call(http, "POST", CM, 201, json=body)
    await call(http, "DELETE", f"{CM}/fin", 200)
    more = {"metadata": {"finalizers": ["lab/one", "lab/two"]}}
    refused = await call(http, "PATCH", f"{CM}/fin", 422, headers=MERGE, json=more)
    assert_status(refused, 422, "Invalid")
    assert "no new finalizers" in refused["message"]


async def test_kubeconfig_fixture(kubeconfig: Path, apiserver: LocalApiServer) -> None:
    config = yaml.safe_load(kubeconfig.read_text())
    assert config["current-context"] == "ironlb-lab"
    server = config["clusters"][0]["cluster"]["server"]
    assert server == apiserver.url and server.startswith("http://127.0.0.1:")
    async with (
        aiohttp.ClientSession(server) as session,
        session.get("/api/v1/namespaces/default") as rsp,
    ):
        assert rsp.status == 200


def test_thread_runner_reports_bind_errors() -> None:
    with run_in_thread() as first:
        port = int(first.url.rsplit(":", 1)[1])
        with pytest.raises(OSError):
            run_in_thread(port=port).start()
        with urllib.request.urlopen(f"{first.url}/version", timeout=30) as rsp:
            assert json.load(rsp)["major"] == "1"


async def test_owner_references_garbage_collection(http: aiohttp.ClientSession) -> None:
    svc = await call(
        http,
        "POST",
        SVC,
        201,
        json={"metadata": {"name": "own"}, "spec": {"ports": [{"port": 80}]}},
    )
    owner = {"apiVersion": "v1", "kind": "Service", "name": "own", "uid": svc["metadata"]["uid"]}
    slices = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
    dependent = {
        "metadata": {"name": "own-a", "ownerReferences": [owner]},
        "addressType": "IPv4",
        "endpoints": [],
    }
    await call(http, "POST", slices, 201, json=dependent)
    held = {"metadata": {"name": "own-b", "ownerReferences": [owner], "finalizers": ["lab/x"]}}
    await call(http, "POST", CM, 201, json=held)
    await call(http, "POST", CM, 201, json={"metadata": {"name": "unrelated"}})
    await call(http, "DELETE", f"{SVC}/own", 200)
    await call(http, "GET", f"{slices}/own-a", 404)
    marked = await call(http, "GET", f"{CM}/own-b", 200)
    assert marked["metadata"]["deletionTimestamp"]
    await call(http, "GET", f"{CM}/unrelated", 200)

    # Orphaning leaves dependents alone.
    svc2 = await call(
        http,
        "POST",
        SVC,
        201,
        json={"metadata": {"name": "own2"}, "spec": {"ports": [{"port": 80}]}},
    )
    orphan_owner = dict(owner, name="own2", uid=svc2["metadata"]["uid"])
    await call(
        http,
        "POST",
        CM,
        201,
        json={"metadata": {"name": "kept", "ownerReferences": [orphan_owner]}},
    )
    await call(http, "DELETE", f"{SVC}/own2", 200, json={"propagationPolicy": "Orphan"})
    await call(http, "GET", f"{CM}/kept", 200)


async def test_namespace_deletion_releases_service_addresses(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", "/api/v1/namespaces", 201, json={"metadata": {"name": "gone"}})
    made = await call(
        http,
        "POST",
        "/api/v1/namespaces/gone/services",
        201,
        json={"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}},
    )
    await call(http, "DELETE", "/api/v1/namespaces/gone", 200)
    again = {
        "metadata": {"name": "s"},
        "spec": {"clusterIP": made["spec"]["clusterIP"], "ports": [{"port": 80}]},
    }
    await call(http, "POST", SVC, 201, json=again)


async def test_ipv6_loopback_listener() -> None:
    server = LocalApiServer(host="::1")
    await server.start()
    try:
        assert server.url.startswith("http://[::1]:")
        async with aiohttp.ClientSession(server.url) as session, session.get("/api") as rsp:
            assert rsp.status == 200
    finally:
        await server.stop()


# Found by tests/cluster/test_props_apiserver.py.


async def test_a_refused_service_holds_no_cluster_ip_or_node_port(
    http: aiohttp.ClientSession,
) -> None:
    """The ClusterIP and first NodePort of a Service refused for a later port stay free."""
    refused = {
        "metadata": {"name": "a"},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.50",
            "ports": [{"port": 80, "nodePort": 30001}, {"port": 81, "nodePort": 30001}],
        },
    }
    body = await call(http, "POST", SVC, 422, json=refused)
    assert "spec.ports[1].nodePort" in body["message"]
    wanted = {
        "metadata": {"name": "b"},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.50",
            "ports": [{"port": 80, "nodePort": 30001}],
        },
    }
    created = await call(http, "POST", SVC, 201, json=wanted)
    assert created["spec"]["clusterIP"] == "10.96.0.50"
    assert created["spec"]["ports"][0]["nodePort"] == 30001


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"type": "NodePort", "ports": [{"port": 80, "nodePort": [1]}]}, "spec.ports[0].nodePort"),
        ({"type": "ClusterIP", "clusterIP": 174063666}, "spec.clusterIP"),  # 10.96.0.50
    ],
)
async def test_wrongly_typed_service_fields_are_422_not_500(
    http: aiohttp.ClientSession, spec: dict[str, Any], field: str
) -> None:
    body = await call(http, "POST", SVC, 422, json={"metadata": {"name": "a"}, "spec": spec})
    assert_status(body, 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == field
    assert (await call(http, "GET", SVC, 200))["items"] == []


@pytest.mark.parametrize(
    ("refs", "code"),
    [
        ([None], 400),
        ({}, 400),
        ("x", 400),
        ([{"apiVersion": "v1", "kind": "Pod", "name": "p"}], 422),
        ([{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u", "controller": "yes"}], 400),
    ],
)
async def test_malformed_owner_references_are_refused_and_not_stored(
    http: aiohttp.ClientSession, refs: Any, code: int
) -> None:
    obj = {"metadata": {"name": "cm", "ownerReferences": refs}}
    body = await call(http, "POST", CM, code, json=obj)
    assert body["kind"] == "Status"
    assert "ownerReferences" in body["message"]
    await call(http, "GET", f"{CM}/cm", 404)
    await call(http, "POST", CM, 201, json={"metadata": {"name": "cm"}, "data": {"a": "1"}})
    before = await call(http, "GET", f"{CM}/cm", 200)
    body = await call(http, "PUT", f"{CM}/cm", code, json=obj)
    body = await call(
        http, "PATCH", f"{CM}/cm", code, json={"metadata": {"ownerReferences": refs}}, headers=MERGE
    )
    assert await call(http, "GET", f"{CM}/cm", 200) == before


async def test_patches_get_the_checks_a_put_gets(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", CM, 201, json={"metadata": {"name": "cm"}})
    before = await call(http, "GET", f"{CM}/cm", 200)
    patch = {"metadata": {"labels": {"a": 1}}}
    body = await call(http, "PATCH", f"{CM}/cm", 400, json=patch, headers=MERGE)
    assert "metadata.labels" in body["message"]
    assert await call(http, "GET", f"{CM}/cm", 200) == before


async def test_a_service_port_listed_twice_is_refused(http: aiohttp.ClientSession) -> None:
    """As on kube-apiserver: before, both got NodePorts and every later update was refused."""
    spec = {"type": "LoadBalancer", "ports": [{"port": 443}, {"port": 443}]}
    body = await call(http, "POST", SVC, 422, json={"metadata": {"name": "a"}, "spec": spec})
    assert body["details"]["causes"][0]["field"] == "spec.ports[1]"
    assert "Duplicate value" in body["message"]


@pytest.mark.parametrize(
    ("raw", "media"),
    [
        (b"metadata: {name: y}\ndata: {x: !!timestamp nope}\n", "application/yaml"),
        (b"metadata: {name: y}\ndata: {x: 2001-12-14}\n", "application/yaml"),
        (b"metadata: {name: y}\ndata: {x: !!binary aGk=}\n", "application/yaml"),
        (b"metadata: {name: y}\ndata: {x: !!set {a}}\n", "application/yaml"),
        (b"metadata: &m {name: y, x: *m}\n", "application/yaml"),
        (b'{"metadata": {"name": "y"}, "data": {"x": NaN}}', "application/json"),
    ],
)
async def test_bodies_json_cannot_hold_are_400_and_not_stored(
    http: aiohttp.ClientSession, raw: bytes, media: str
) -> None:
    """Before, these were stored, answered 500, and broke every later list of ConfigMaps."""
    body = await call(http, "POST", CM, 400, data=raw, headers={"Content-Type": media})
    assert body["message"].startswith("the request body is not valid JSON/YAML: ")
    assert "\n" not in body["message"]
    assert (await call(http, "GET", CM, 200))["items"] == []
